"""A Python client for the Rust tests (``tests/tests/py_interop.rs``): calls the
Rust-served order service with the generated Python client and prints what it
got, one JSON object per line:

- per code asked for in ``X-Want-Code``: ``{"want", "exception", "code", "method", "message", "data"}``;
- ``{"case": "success", "customer", "echoed"}`` for a successful call;
- ``{"case": <customer>, "exception", "code", "message"}`` for customers ``uncoded`` and ``panic``;
- ``{"case": "not_found", "exception", "message"}`` for ``GetOrder`` with an empty id.

usage: call.py NATS_URL CODE [CODE ...]
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from support import WANT_CODE, order_request


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(url: str, codes: list[str]) -> None:
    nc = await nats.connect(url)
    client = orders.OrderServiceClient(nc, timeout=5.0)
    for want in codes:
        try:
            await client.create_order(order_request("c"), headers={WANT_CODE: want})
            emit(want=want, error=None)
        except orders.OrderServiceError as err:
            emit(
                want=want,
                exception=type(err).__name__,
                code=err.code,
                method=err.method,
                message=err.message,
                data=err.data.decode(),
            )
    created, headers = await client.create_order(order_request("ada"), headers={"X-Echo": "hello"})
    emit(case="success", customer=created.order.customer_id, echoed=headers.get("X-Echoed"))
    for customer in ["uncoded", "panic"]:
        try:
            await client.create_order(order_request(customer))
        except orders.OrderServiceError as err:
            emit(case=customer, exception=type(err).__name__, code=err.code, message=err.message)
    try:
        await client.get_order(order_pb2.GetOrderRequest())
    except orders.OrderServiceNotFoundError as err:
        emit(case="not_found", exception=type(err).__name__, message=err.message)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
