"""Runs the cross-language error-details scenario (PROTOCOL §4.1) against
whichever server serves ``proto/details/v1`` on ``$NATS_URL`` (the twin of
tests/src/bin/details_client.rs and tests/ts/details_client.ts): every case
of ``Explain`` on ``ExplainService`` (internal errors withheld) and on
``ExplainOpenService`` (exposed), a malformed request sent raw, and the
`plain` reply read raw. One line ``ok CASE`` per check (``ok CASE open`` on
the open service); on the first mismatch ``FAIL CASE: ...`` and exit status 1.

usage: NATS_URL=nats://... python details_client.py
(with the generated ``details.v1`` modules and the runtime on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import nats
import nats_micro_runtime as rt
from details.v1 import details_nats_pb2 as details
from details.v1 import details_pb2
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as rpc
from google.rpc import status_pb2
from nats.aio.client import Client as NatsClient

PLAIN_DATA = b'\x00\xff{"id":42}\n'
SUBJECTS = {"": "details.v1.explain.explain", " open": "details.v1.open.explain"}
"""The Explain subject of each service, by the suffix its checks print."""


def check(name: str, ok: bool, detail: object) -> None:
    if ok:
        print(f"ok {name}", flush=True)
    else:
        print(f"FAIL {name}: {detail!r}", flush=True)
        sys.exit(1)


Explain = Callable[[details_pb2.ExplainRequest], Awaitable[rt.Response[details_pb2.ExplainResponse]]]
"""A generated client's ``explain`` method."""


async def failure(explain: Explain, case: str) -> rt.NatsMicroError:
    """The error ``case`` fails with (exits if it succeeds)."""
    try:
        response, _ = await explain(details_pb2.ExplainRequest(case=case))
    except rt.NatsMicroError as err:
        return err
    check(case, False, f"succeeded with {response}")
    raise AssertionError("unreachable")


def has_details(err: rt.NatsMicroError, *expected: Message) -> bool:
    """Whether ``err`` carries exactly ``expected``, in order (compared as
    messages, not bytes: encoders may order map entries differently)."""
    if len(err.details) != len(expected):
        return False
    for detail, message in zip(err.details, expected):
        if err.detail(type(message)) is None or detail.type_url.rpartition("/")[2] != message.DESCRIPTOR.full_name:
            return False
        if type(message).FromString(detail.value) != message:
            return False
    return True


def duration(seconds: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


async def run_cases(nc: NatsClient, suffix: str, explain: Explain, exposed: bool) -> None:
    def named(case: str) -> str:
        return case + suffix

    response, _ = await explain(details_pb2.ExplainRequest(case="echo"))
    check(named("echo"), response.case == "echo", response)

    err = await failure(explain, "plain")
    ok = err.code == rt.NOT_FOUND and err.message == "plain" and err.data == PLAIN_DATA and not err.details
    check(named("plain"), ok and rt.ERROR_DETAILS_HEADER not in err.headers, err)

    # The reply as a peer without details reads it: code, message, and exactly the 12 bytes.
    raw = await nc.request(SUBJECTS[suffix], details_pb2.ExplainRequest(case="plain").SerializeToString(), timeout=5)
    headers = raw.headers or {}
    ok = headers.get("Nats-Service-Error-Code") in ("404", "NOT_FOUND") and headers.get("Nats-Service-Error") == "plain"
    check(named("plain raw"), ok and raw.data == PLAIN_DATA and rt.ERROR_DETAILS_HEADER not in headers, (headers, raw.data))

    err = await failure(explain, "standard")
    # snippet: python-error-details-client
    bad_request = err.bad_request()
    delay = err.retry_delay()  # seconds, from the RetryInfo
    localized = err.detail(rpc.LocalizedMessage)
    # end snippet
    expected = (
        rpc.ErrorInfo(reason="STOCK_LOW", domain="shop.example", metadata={"sku": "A-1"}),
        rpc.RetryInfo(retry_delay=duration(1, 500_000_000)),
        rpc.QuotaFailure(violations=[rpc.QuotaFailure.Violation(subject="user:7", description="daily")]),
        rpc.PreconditionFailure(
            violations=[rpc.PreconditionFailure.Violation(type="TOS", subject="user:7", description="terms")]
        ),
        rpc.BadRequest(field_violations=[rpc.BadRequest.FieldViolation(field="items[0].qty", description="must be positive")]),
        rpc.RequestInfo(request_id="r-1", serving_data="s"),
        rpc.ResourceInfo(resource_type="order", resource_name="o-9", owner="u-7", description="locked"),
        rpc.Help(links=[rpc.Help.Link(description="docs", url="https://example.com/h")]),
        rpc.LocalizedMessage(locale="fr-FR", message="échec"),
    )
    ok = err.code == rt.FAILED_PRECONDITION and err.message == "standard" and err.data == b"d" and has_details(err, *expected)
    typed = (
        bad_request is not None
        and bad_request.field_violations[0].field == "items[0].qty"
        and delay == 1.5
        and localized is not None
        and localized.message == "échec"
    )
    check(named("standard"), ok and typed, err)

    err = await failure(explain, "custom")
    ok = details.is_explain_service_quota_gone(err) or details.is_explain_open_service_quota_gone(err)
    hint = err.detail(details_pb2.Hint)
    ok = ok and err.message == "custom" and err.data == b"" and hint is not None and hint.level == 7
    ok = ok and has_details(err, details_pb2.Hint(text="hint", level=7), rpc.RetryInfo(retry_delay=duration(0, 250_000_000)))
    check(named("custom"), ok, err)

    err = await failure(explain, "debug")
    debugged = [rpc.DebugInfo(stack_entries=["frame 1", "frame 2"], detail="secret")] if exposed else []
    ok = has_details(err, *debugged, rpc.ErrorInfo(reason="DEBUGGED", domain="shop.example"))
    check(named("debug"), err.code == rt.INTERNAL and err.message == "debug" and ok, err)

    err = await failure(explain, "unknown")
    ok = err.code == rt.ABORTED and len(err.details) == 1
    ok = ok and err.details[0].type_url == "type.googleapis.com/details.v1.Unlisted" and err.details[0].value == b"\x08\x01"
    check(named("unknown"), ok, err)

    err = await failure(explain, "oversized")
    localized_messages = err.details_of(rpc.LocalizedMessage)
    marker = err.details_of(rpc.ErrorInfo)
    kept = len(localized_messages)
    ok = err.code == rt.INVALID_ARGUMENT and err.message == "oversized" and 0 < kept < 200
    ok = ok and all(m.locale == "en" and m.message == "x" * 8192 for m in localized_messages)
    truncated = rpc.ErrorInfo(reason="DETAILS_TRUNCATED", domain="nats-micro", metadata={"dropped": str(200 - kept)})
    last = err.details[-1].type_url if err.details else ""
    ok = ok and len(err.details) == kept + 1 and marker == [truncated] and last.endswith("/google.rpc.ErrorInfo")
    check(named("oversized"), ok, (err.code, err.message, kept, marker))

    # A body that does not decode as ExplainRequest: the runtime's INVALID_ARGUMENT with a BadRequest.
    raw = await nc.request(SUBJECTS[suffix], b"\xff\xff\xff", timeout=5)
    headers = raw.headers or {}
    ok = headers.get("Nats-Service-Error-Code") in ("400", "INVALID_ARGUMENT")
    ok = ok and headers.get(rt.ERROR_DETAILS_HEADER) == rt.ERROR_DETAILS_MARKER
    violations: list[rpc.BadRequest.FieldViolation] = []
    if ok:
        status = status_pb2.Status.FromString(raw.data)
        requests = [rpc.BadRequest.FromString(d.value) for d in status.details if d.type_url.endswith("/google.rpc.BadRequest")]
        violations = [v for r in requests for v in r.field_violations]
        ok = status.code == 3 and len(status.details) == 1 and len(violations) == 1 and violations[0].description != ""
    check(named("malformed"), ok, (headers, violations))


async def main() -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    withheld = details.ExplainServiceClient(nc)
    exposed = details.ExplainOpenServiceClient(nc)
    explains: list[tuple[str, Explain, bool]] = [("", withheld.explain, False), (" open", exposed.explain, True)]
    for suffix, explain, is_open in explains:
        await run_cases(nc, suffix, explain, is_open)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
