"""The generated Python contender's load generator (``bench/src/external.rs``):
the generated ``EchoServiceClient`` driven the way ``bench/src/measure.rs``
drives the Rust contenders. A warm-up at concurrency 16, then per concurrency
REQUESTS calls shared by that many concurrent workers, each checking the
payload came back whole; latencies are kept at concurrency 1.

usage: load.py NATS_URL PAYLOAD_BYTES CONCURRENCY[,CONCURRENCY...] REQUESTS WARMUP
(the generated code must be on PYTHONPATH)

Prints one JSON line per concurrency: ``{"concurrency": C, "throughput": REQ_PER_S}``,
with ``"p50_us"`` and ``"p99_us"`` too at concurrency 1.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass

import nats
from bench.v1 import echo_nats_pb2, echo_pb2

WARMUP_CONCURRENCY = 16
"""Concurrency of the warm-up, as in measure.rs."""


@dataclass
class Run:
    """One measured run: requests per second, and the sorted latencies (µs) at concurrency 1."""

    throughput: float
    latencies: list[float]

    def quantile(self, q: float) -> float:
        """The latency at quantile ``q`` (0..=1), by measure.rs's rule: index round((n - 1) * q), halves up."""
        return self.latencies[math.floor((len(self.latencies) - 1) * q + 0.5)]


async def run(client: echo_nats_pb2.EchoServiceClient, request: echo_pb2.EchoRequest, concurrency: int, total: int) -> Run:
    """Sends ``total`` requests (rounded up to a multiple of ``concurrency``) from ``concurrency`` tasks and times them."""
    per_worker = -(-total // concurrency)
    record = concurrency == 1
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            sent = time.perf_counter_ns()
            response, _headers = await client.echo(request)
            if record:
                latencies.append((time.perf_counter_ns() - sent) / 1e3)
            if len(response.payload) != len(request.payload):
                raise RuntimeError("the echo lost bytes")

    started = time.perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = (time.perf_counter_ns() - started) / 1e9
    latencies.sort()
    return Run(per_worker * concurrency / seconds, latencies)


async def main(url: str, size: int, concurrencies: list[int], requests: int, warmup: int) -> None:
    nc = await nats.connect(url)
    # A generous timeout: at high concurrency a slow contender's queue must not fail calls.
    client = echo_nats_pb2.EchoServiceClient(nc, timeout=30.0)
    request = echo_pb2.EchoRequest(payload=b"\x5a" * size)
    await run(client, request, WARMUP_CONCURRENCY, warmup)
    for concurrency in concurrencies:
        measured = await run(client, request, concurrency, requests)
        line: dict[str, float] = {"concurrency": concurrency, "throughput": measured.throughput}
        if concurrency == 1:
            line |= {"p50_us": measured.quantile(0.50), "p99_us": measured.quantile(0.99)}
        print(json.dumps(line), flush=True)
    await nc.close()


if __name__ == "__main__":
    url, size, concurrencies, requests, warmup = sys.argv[1:]
    asyncio.run(main(url, int(size), [int(c) for c in concurrencies.split(",")], int(requests), int(warmup)))
