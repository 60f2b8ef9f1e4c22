"""Typed error details (PROTOCOL §4.1): the body encoding on bytes alone
(marking, data beside details, DebugInfo withholding, truncation, lenient
reading), the error's builders and getters, and what a service sends on a
real nats-server (shed requests, malformed requests, re-raised errors,
uncoded failures, a reader that knows nothing of details)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Unpack

import nats_micro_runtime as rt
import pytest
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.rpc import error_details_pb2 as rpc
from google.rpc import status_pb2
from nats.aio.client import Client as NatsClient
from nats_micro_runtime._details import decode_error_body, encode_error_body, pack_detail
from nats_server_fixture import nc  # noqa: F401 (a fixture)

MARKED = {rt.ERROR_DETAILS_HEADER: rt.ERROR_DETAILS_MARKER}


def packed(*messages: Any) -> list[any_pb2.Any]:
    return [pack_detail(message) for message in messages]


def encode(data: bytes, details: list[any_pb2.Any], *, expose: bool = False, room: int | None = None) -> tuple[bytes, bool]:
    return encode_error_body("NOT_FOUND", "gone", data, details, expose_debug=expose, room=room)


def test_an_error_without_details_is_its_data_byte_for_byte() -> None:
    assert encode(b"\x00\xff{}", []) == (b"\x00\xff{}", False)
    assert encode(b"", []) == (b"", False)


def test_details_travel_as_a_status_with_the_grpc_code_and_the_data_beside_them() -> None:
    info = rpc.ErrorInfo(reason="STOCK_LOW", domain="shop.example")
    body, marked = encode(b"raw", packed(info))
    assert marked
    status = status_pb2.Status.FromString(body)
    assert (status.code, status.message) == (5, "gone")
    assert [d.type_url for d in status.details] == [
        "type.googleapis.com/natsmicro.ErrorData",
        "type.googleapis.com/google.rpc.ErrorInfo",
    ]
    assert wrappers_pb2.BytesValue.FromString(status.details[0].value).value == b"raw"
    read = decode_error_body(MARKED, body)
    assert read.data == b"raw" and read.details == packed(info), "the data is taken out of the details"


def test_grpc_numbers_of_canonical_custom_and_unknown_codes() -> None:
    assert [rt.grpc_code_number(c) for c in ("INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "CANCELLED")] == [3, 5, 16, 1]
    assert rt.grpc_code_number("QUOTA_GONE") == 2 and rt.grpc_code_number("418") == 2


def test_debug_info_is_withheld_unless_internal_errors_are_exposed() -> None:
    debug = rpc.DebugInfo(stack_entries=["frame 1"], detail="secret")
    info = rpc.ErrorInfo(reason="DEBUGGED")
    body, _ = encode(b"", packed(debug, info))
    assert decode_error_body(MARKED, body).details == packed(info)
    body, _ = encode(b"", packed(debug, info), expose=True)
    assert decode_error_body(MARKED, body).details == packed(debug, info)
    # Only a DebugInfo, withheld: nothing is left, so the reply is an error without details.
    assert encode(b"d", packed(debug)) == (b"d", False)


def test_an_oversized_set_is_cut_from_the_end_and_says_how_many_were_dropped() -> None:
    messages = [rpc.LocalizedMessage(locale="en", message=f"{i:04}" + "x" * 1000) for i in range(20)]
    body, marked = encode(b"data", packed(*messages), room=8000)
    assert marked and len(body) <= 8000
    read = decode_error_body(MARKED, body)
    *kept, marker = read.details
    assert read.data == b"data", "the data comes first, so it is dropped last"
    assert 0 < len(kept) < 20 and kept == packed(*messages[: len(kept)])
    dropped = str(20 - len(kept))
    assert marker == pack_detail(rpc.ErrorInfo(reason="DETAILS_TRUNCATED", domain="nats-micro", metadata={"dropped": dropped}))
    # One more kept detail would not have fitted.
    assert len(encode(b"data", packed(*messages[: len(kept) + 1]))[0]) > 8000 - len(marker.SerializeToString())
    # Fitting sets are untouched.
    body, _ = encode(b"", packed(*messages), room=len(encode(b"", packed(*messages))[0]))
    assert decode_error_body(MARKED, body).details == packed(*messages)


def test_reading_is_lenient() -> None:
    status = status_pb2.Status(code=5, message="m", details=packed(rpc.ErrorInfo(reason="R")))
    body = status.SerializeToString()
    assert decode_error_body({}, body).data == body, "without the marker a Status-looking body is data"
    assert decode_error_body({rt.ERROR_DETAILS_HEADER: "other"}, body).details == []
    malformed = decode_error_body(MARKED, b"\xff\xff\xff")
    assert (malformed.data, malformed.details) == (b"\xff\xff\xff", [])
    # Any type URL prefix, and unknown types kept verbatim.
    foreign = any_pb2.Any(type_url="example.com/types/google.rpc.ErrorInfo", value=rpc.ErrorInfo(reason="R").SerializeToString())
    unknown = any_pb2.Any(type_url="type.googleapis.com/x.Unlisted", value=b"\x08\x01")
    read = decode_error_body(MARKED, status_pb2.Status(details=[foreign, unknown]).SerializeToString())
    err = rt.ServiceError("NOT_FOUND", None, "m", read.data, details=read.details)
    assert err.error_info() == rpc.ErrorInfo(reason="R")
    assert err.details[1] == unknown


def test_builders_and_typed_getters() -> None:
    err = (
        rt.InvalidArgumentError("M", "bad")
        .with_field_violation("a", "too long")
        .with_retry_delay(0.25)
        .with_field_violation("b", "missing")
        .with_help_link("docs", "https://example.com")
        .with_details(wrappers_pb2.StringValue(value="mine"), wrappers_pb2.StringValue(value="again"))
    )
    bad_request = err.bad_request()
    assert bad_request is not None and [(v.field, v.description) for v in bad_request.field_violations] == [
        ("a", "too long"),
        ("b", "missing"),
    ], "violations gather in one BadRequest"
    assert err.retry_info() == rpc.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))
    assert err.retry_delay() == 0.25
    assert err.detail(wrappers_pb2.StringValue) == wrappers_pb2.StringValue(value="mine")
    assert [s.value for s in err.details_of(wrappers_pb2.StringValue)] == ["mine", "again"]
    assert err.quota_failure() is None and err.debug_info() is None
    assert err.help() is not None and err.localized_message() is None
    assert "google.rpc.BadRequest" in repr(err)
    generated_style = rt.NotFoundError("M", "gone", b"d", details=[rpc.ResourceInfo(resource_name="o-9")])
    resource = generated_style.resource_info()
    assert resource is not None and resource.resource_name == "o-9" and generated_style.data == b"d"


def test_foreign_coded_errors_keep_their_details() -> None:
    class Foreign(Exception):
        details = [rpc.ErrorInfo(reason="FOREIGN")]

        def nats_error_code(self) -> str:
            return "ABORTED"

    coded = rt.as_coded(Foreign("x"), "M")
    assert coded is not None and coded.error_info() == rpc.ErrorInfo(reason="FOREIGN")


SPEC = rt.ServiceSpec(
    proto_name="t.Echo", name="echo", version="1.0.0", description="", subject_prefix="echo",
    endpoints=(rt.EndpointSpec("Echo", "echo", pending_msg_limit=1),),
)  # fmt: skip


async def serve(nc: NatsClient, handler: Any, **overrides: Unpack[rt.ServiceOverrides]) -> rt.Service:
    return await rt.start_service(nc, SPEC, {"echo": rt.UnaryEndpoint(handler, wrappers_pb2.StringValue)}, overrides)


async def echo(client: rt.Client, value: str) -> rt.Response[wrappers_pb2.StringValue]:
    return await client.unary("echo", wrappers_pb2.StringValue(value=value), wrappers_pb2.StringValue)


async def failing(client: rt.Client, value: str) -> rt.NatsMicroError:
    with pytest.raises(rt.NatsMicroError) as caught:
        await client.unary("echo", wrappers_pb2.StringValue(value=value), wrappers_pb2.StringValue)
    return caught.value


async def test_shed_requests_carry_the_retry_hint_and_are_counted(nc: NatsClient) -> None:
    release = asyncio.Event()

    async def slow(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        await release.wait()
        return request

    service = await serve(nc, slow, max_concurrency=1, retry_after_hint=0.75)
    # No retries: the RetryInfo would make the client retry the shed call (PROTOCOL §10.1).
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, retry_policy=rt.RetryPolicy(max_attempts=1))
    calls = [asyncio.ensure_future(echo(client, str(i))) for i in range(3)]
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    (refused,) = done
    error = refused.exception()
    assert isinstance(error, rt.ServiceError) and error.code == rt.RESOURCE_EXHAUSTED
    assert error.message == "endpoint echo is overloaded" and error.retry_delay() == 0.75
    release.set()
    await asyncio.gather(*calls[:2])
    stats = json.loads((await nc.request("$SRV.STATS.echo", b"", timeout=5)).data)
    (endpoint,) = stats["endpoints"]
    assert endpoint["data"] == {"shed": 1} and endpoint["num_errors"] == 1
    await service.stop()
    with pytest.raises(rt.ConfigError):
        await serve(nc, slow, retry_after_hint=-1.0)


async def test_default_retry_hint_is_100_ms(nc: NatsClient) -> None:
    release = asyncio.Event()

    async def slow(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        await release.wait()
        return request

    service = await serve(nc, slow, max_concurrency=1)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    calls = [asyncio.ensure_future(echo(client, str(i))) for i in range(3)]
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    error = done.pop().exception()
    assert isinstance(error, rt.NatsMicroError) and error.retry_delay() == rt.DEFAULT_RETRY_AFTER_HINT == 0.1
    release.set()
    await asyncio.gather(*calls[:2])
    await service.stop()


async def test_a_malformed_request_is_answered_with_a_bad_request(nc: NatsClient) -> None:
    async def echo(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        return request

    service = await serve(nc, echo)
    reply = await nc.request("echo.echo", b"\xff\xff\xff", timeout=5)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    assert reply.headers[rt.ERROR_DETAILS_HEADER] == rt.ERROR_DETAILS_MARKER
    (detail,) = status_pb2.Status.FromString(reply.data).details
    (violation,) = rpc.BadRequest.FromString(detail.value).field_violations
    assert "google.protobuf.StringValue" in violation.description
    await service.stop()


async def test_a_json_service_names_the_field_that_did_not_decode(nc: NatsClient) -> None:
    async def check(request: rpc.BadRequest, ctx: rt.RequestContext) -> rpc.BadRequest:
        return request

    spec = rt.ServiceSpec(
        proto_name="t.Json", name="json", version="1.0.0", description="", subject_prefix="json", json=True,
        endpoints=(rt.EndpointSpec("Check", "check"),),
    )  # fmt: skip
    service = await rt.start_service(nc, spec, {"check": rt.UnaryEndpoint(check, rpc.BadRequest)}, {})
    reply = await nc.request("json.check", b'{"fieldViolations": [{"field": 3}]}', timeout=5)
    assert reply.headers is not None and reply.headers[rt.ERROR_DETAILS_HEADER] == rt.ERROR_DETAILS_MARKER
    (detail,) = status_pb2.Status.FromString(reply.data).details
    (violation,) = rpc.BadRequest.FromString(detail.value).field_violations
    assert violation.field == "fieldViolations.field" and violation.description
    await service.stop()


async def test_details_survive_a_hop_and_a_stale_marker_is_not_forwarded(nc: NatsClient) -> None:
    """A handler re-raising what it got from another service sends the details
    it cannot read verbatim; when none are left to send (DebugInfo withheld),
    the reply it re-raises carries no marker and its body is the data."""
    unlisted = any_pb2.Any(type_url="type.googleapis.com/x.Unlisted", value=b"\x08\x01")

    async def inner(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        if request.value == "debug":
            raise rt.InternalError(ctx.method, "inner", b"d").with_debug_info(["f"], "secret")
        raise rt.AbortedError(ctx.method, "inner").with_details(unlisted)

    inner_spec = rt.ServiceSpec(
        proto_name="t.Inner", name="inner", version="1.0.0", description="", subject_prefix="inner",
        endpoints=(rt.EndpointSpec("Echo", "echo"),),
    )  # fmt: skip
    inner_service = await rt.start_service(
        nc, inner_spec, {"echo": rt.UnaryEndpoint(inner, wrappers_pb2.StringValue)}, {"expose_internal_errors": True}
    )
    inner_client = rt.Client(nc, inner_spec, rt.ServiceError, timeout=5)

    async def outer(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        return (await inner_client.unary("echo", request, wrappers_pb2.StringValue)).message

    service = await serve(nc, outer)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    err = await failing(client, "unknown")
    assert err.code == rt.ABORTED and err.details == [unlisted]
    err = await failing(client, "debug")
    assert err.debug_info() is None and err.details == [] and err.data == b"d"
    assert rt.ERROR_DETAILS_HEADER not in err.headers
    await service.stop()
    await inner_service.stop()


async def test_uncoded_failures_send_debug_info_only_when_exposed(nc: NatsClient) -> None:
    async def broken(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        raise RuntimeError("disk on fire")

    for exposed in (False, True):
        service = await serve(nc, broken, expose_internal_errors=exposed)
        err = await failing(rt.Client(nc, SPEC, rt.ServiceError, timeout=5), "x")
        debug = err.debug_info()
        if exposed:
            assert debug is not None and debug.detail == "RuntimeError: disk on fire" and debug.stack_entries
        else:
            assert err.details == [] and err.message == rt.INTERNAL_MESSAGE
        await service.stop()


async def test_a_reader_without_details_sees_code_message_and_body(nc: NatsClient) -> None:
    async def failing_handler(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        if request.value == "plain":
            raise rt.NotFoundError(ctx.method, "plain", b"\x00\xff")
        raise rt.NotFoundError(ctx.method, "rich", b"\x00\xff").with_error_info("WHY", "here")

    service = await serve(nc, failing_handler)
    plain = await nc.request("echo.echo", wrappers_pb2.StringValue(value="plain").SerializeToString(), timeout=5)
    assert plain.headers == {"Nats-Service-Error-Code": "404", "Nats-Service-Error": "plain"}
    assert plain.data == b"\x00\xff"
    rich = await nc.request("echo.echo", wrappers_pb2.StringValue(value="rich").SerializeToString(), timeout=5)
    assert rich.headers is not None
    assert (rich.headers["Nats-Service-Error-Code"], rich.headers["Nats-Service-Error"]) == ("404", "rich")
    assert status_pb2.Status.FromString(rich.data).message == "rich"
    await service.stop()


async def test_a_stream_ends_with_the_details_of_its_error(nc: NatsClient) -> None:
    async def count_up(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.StringValue]:
        yield request
        raise rt.FailedPreconditionError(ctx.method, "stop", b"d").with_field_violation("value", "too many")

    spec = rt.ServiceSpec(
        proto_name="t.Counter", name="counter", version="1.0.0", description="", subject_prefix="counter",
        endpoints=(rt.EndpointSpec("CountUp", "count_up"),),
    )  # fmt: skip
    service = await rt.start_service(nc, spec, {"count_up": rt.ServerStreamEndpoint(count_up, wrappers_pb2.StringValue)}, {})
    client = rt.Client(nc, spec, rt.ServiceError, timeout=5)
    got: list[str] = []
    with pytest.raises(rt.ServiceError) as caught:
        stream = await client.server_stream("count_up", wrappers_pb2.StringValue(value="a"), wrappers_pb2.StringValue)
        async for message in stream:
            got.append(message.value)
    assert got == ["a"] and (caught.value.code, caught.value.data) == (rt.FAILED_PRECONDITION, b"d")
    bad_request = caught.value.bad_request()
    assert bad_request is not None and bad_request.field_violations[0].description == "too many"
    await service.stop(1)
