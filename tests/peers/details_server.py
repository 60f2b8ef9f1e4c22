"""Serves ``details.v1.ExplainService`` (internal errors withheld) and
``details.v1.ExplainOpenService`` (exposed) of proto/details/v1/details.proto
with the generated Python code, failing per case exactly as the proto's
comments fix it, for the cross-language error-details tests (the twin of
tests/src/bin/details_server.rs and tests/ts/details_server.ts).

usage: NATS_URL=nats://... python details_server.py
(with the generated ``details.v1`` modules and the runtime on PYTHONPATH).
Prints ``ready`` once serving; stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os

import nats
import nats_micro_runtime as rt
from serving import serve_until_signalled
from details.v1 import details_nats_pb2 as details
from details.v1 import details_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2 as rpc

PLAIN_DATA = b'\x00\xff{"id":42}\n'
"""The `plain` case's error data (12 bytes)."""


class Explainer:
    """``Explain`` as the proto documents it, raising the errors of one
    generated service (``ExplainServiceError`` or ``ExplainOpenServiceError``)."""

    def __init__(self, errors: type[rt.ServiceError]) -> None:
        self._errors = errors

    async def explain(self, request: details_pb2.ExplainRequest, ctx: rt.RequestContext) -> details_pb2.ExplainResponse:
        case = request.case

        def error(code: str, data: bytes = b"") -> rt.ServiceError:
            return self._errors(code, ctx.method, case, data)

        if case == "plain":
            raise error(rt.NOT_FOUND, PLAIN_DATA)
        if case == "standard":
            # snippet: python-error-details-server
            raise (
                error(rt.FAILED_PRECONDITION, b"d")
                .with_error_info("STOCK_LOW", "shop.example", {"sku": "A-1"})
                .with_retry_delay(1.5)
                .with_quota_violation("user:7", "daily")
                .with_precondition_violation("TOS", "user:7", "terms")
                .with_field_violation("items[0].qty", "must be positive")
                .with_request_info("r-1", "s")
                .with_resource_info("order", "o-9", "u-7", "locked")
                .with_help_link("docs", "https://example.com/h")
                .with_localized_message("fr-FR", "échec")
            )
            # end snippet
        if case == "custom":
            raise error(details.ERROR_CODE_QUOTA_GONE).with_details(details_pb2.Hint(text="hint", level=7)).with_retry_delay(0.25)
        if case == "debug":
            debugged = rpc.DebugInfo(stack_entries=["frame 1", "frame 2"], detail="secret")
            raise error(rt.INTERNAL).with_details(debugged).with_error_info("DEBUGGED", "shop.example")
        if case == "unknown":
            unlisted = any_pb2.Any(type_url="type.googleapis.com/details.v1.Unlisted", value=b"\x08\x01")
            raise error(rt.ABORTED).with_details(unlisted)
        if case == "oversized":
            many = (rpc.LocalizedMessage(locale="en", message="x" * 8192) for _ in range(200))
            raise error(rt.INVALID_ARGUMENT).with_details(*many)
        return details_pb2.ExplainResponse(case=case)


async def main() -> None:
    # Failures the scenario provokes on purpose are not worth a log line here.
    logging.getLogger("nats_micro_runtime").setLevel(logging.CRITICAL)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    withheld = await details.register_explain_service(nc, Explainer(details.ExplainServiceError))
    exposed = await details.register_explain_open_service(
        nc, Explainer(details.ExplainOpenServiceError), expose_internal_errors=True
    )
    await serve_until_signalled(withheld, exposed)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
