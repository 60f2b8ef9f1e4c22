"""The generated Python contender's load generator (``bench/src/external.rs``):
the generated ``EchoServiceClient`` driven the way ``bench/src/measure.rs``
drives the Rust contenders. A warm-up at concurrency 16, then per concurrency
REQUESTS calls shared by that many concurrent workers, each checking the
payload came back whole; latencies are kept at concurrency 1.

usage: load.py NATS_URL PAYLOAD_BYTES CONCURRENCY[,CONCURRENCY...] REQUESTS WARMUP [raw]
(the generated code must be on PYTHONPATH)

With ``raw``, the same loop drives plain nats-py requests of the payload bytes
to the raw responder (``server.py NATS_URL raw``): the floor.

Prints one JSON line per concurrency: ``{"concurrency": C, "throughput": REQ_PER_S}``,
with ``"p50_us"`` and ``"p99_us"`` too at concurrency 1.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from bench.v1 import echo_nats_pb2, echo_pb2

WARMUP_CONCURRENCY = 16
"""Concurrency of the warm-up, as in measure.rs."""

RAW_SUBJECT = "bench.raw_py.echo"
"""The raw responder's subject (server.py)."""

Call = Callable[[], Awaitable[int]]
"""One call: the length of the payload that came back."""


@dataclass
class Run:
    """One measured run: requests per second, and the sorted latencies (µs) at concurrency 1."""

    throughput: float
    latencies: list[float]

    def quantile(self, q: float) -> float:
        """The latency at quantile ``q`` (0..=1), by measure.rs's rule: index round((n - 1) * q), halves up."""
        return self.latencies[math.floor((len(self.latencies) - 1) * q + 0.5)]


async def run(call: Call, size: int, concurrency: int, total: int) -> Run:
    """Sends ``total`` requests (rounded up to a multiple of ``concurrency``) from ``concurrency`` tasks and times them."""
    per_worker = -(-total // concurrency)
    record = concurrency == 1
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            sent = time.perf_counter_ns()
            length = await call()
            if record:
                latencies.append((time.perf_counter_ns() - sent) / 1e3)
            if length != size:
                raise RuntimeError("the echo lost bytes")

    started = time.perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = (time.perf_counter_ns() - started) / 1e9
    latencies.sort()
    return Run(per_worker * concurrency / seconds, latencies)


async def main(url: str, size: int, concurrencies: list[int], requests: int, warmup: int, raw: bool) -> None:
    nc = await nats.connect(url)
    payload = b"\x5a" * size
    if raw:

        async def call() -> int:
            return len((await nc.request(RAW_SUBJECT, payload, timeout=30.0)).data)

    else:
        # A generous timeout: at high concurrency a slow contender's queue must not fail calls.
        client = echo_nats_pb2.EchoServiceClient(nc, timeout=30.0)
        request = echo_pb2.EchoRequest(payload=payload)

        async def call() -> int:
            response, _headers = await client.echo(request)
            return len(response.payload)

    await run(call, size, WARMUP_CONCURRENCY, warmup)
    for concurrency in concurrencies:
        measured = await run(call, size, concurrency, requests)
        line: dict[str, float] = {"concurrency": concurrency, "throughput": measured.throughput}
        if concurrency == 1:
            line |= {"p50_us": measured.quantile(0.50), "p99_us": measured.quantile(0.99)}
        print(json.dumps(line), flush=True)
    await nc.close()


if __name__ == "__main__":
    url, size, concurrencies, requests, warmup, *mode = sys.argv[1:]
    asyncio.run(main(url, int(size), [int(c) for c in concurrencies.split(",")], int(requests), int(warmup), mode == ["raw"]))
