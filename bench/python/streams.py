"""Stream throughput of the generated Python (``bench/src/streams.rs`` runs
it): the generated server-streaming ``Flood`` of ``proto/bench/v1/stream.proto``
(credit flow control, a window of 1,024) against raw nats-py
publish/subscribe of the same payloads, plain and with the per-message
``Nats-Stream-Seq`` header a stream message carries. Everything runs in this
process, each side on a connection of its own.

usage: streams.py NATS_URL SIZE:MESSAGES[,SIZE:MESSAGES...]   (the generated
code must be on PYTHONPATH)

Prints one JSON line per size, as bench/ts/streams.ts does: size, messages,
raw_rate, raw_lost, raw_seq_rate, raw_seq_lost (with the sequence header),
codec_rate (the message encoded and decoded, no NATS), generated (messages
per second)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import nats
import nats_micro_runtime
from bench.v1 import echo_pb2, stream_nats_pb2, stream_pb2

# Seconds without a message after which a raw run counts the rest as lost.
QUIET = 1.0


class Flood:
    """Sends ``count`` payloads of ``size`` bytes."""

    async def flood(
        self, request: stream_pb2.FloodRequest, ctx: nats_micro_runtime.RequestContext
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        response = echo_pb2.EchoResponse(payload=b"\x5a" * request.size)
        for _ in range(request.count):
            yield response


async def raw_rate(url: str, size: int, count: int, with_seq: bool) -> tuple[float, int]:
    """Messages per second of those that arrived, and how many were lost."""
    subscriber = await nats.connect(url, pending_size=-1)
    publisher = await nats.connect(url)
    subject = subscriber.new_inbox()
    received = 0
    last = time.perf_counter()
    done = asyncio.Event()

    async def count_one(_: object) -> None:
        nonlocal received, last
        received += 1
        last = time.perf_counter()
        if received == count:
            done.set()

    await subscriber.subscribe(subject, cb=count_one, pending_msgs_limit=count * 2, pending_bytes_limit=-1)
    await subscriber.flush()
    payload = b"\x5a" * size
    started = time.perf_counter()
    for seq in range(1, count + 1):
        headers = {"Nats-Stream-Seq": str(seq)} if with_seq else None
        await publisher.publish(subject, payload, headers=headers)
    await publisher.flush()
    while not done.is_set():
        seen = received
        try:
            await asyncio.wait_for(done.wait(), QUIET)
        except TimeoutError:
            if received == seen:
                break
    await publisher.close()
    await subscriber.close()
    return received / (last - started), count - received


async def generated_rate(client: stream_nats_pb2.StreamBenchClient, size: int, count: int) -> float:
    started = time.perf_counter()
    received = 0
    async with await client.flood(stream_pb2.FloodRequest(count=count, size=size)) as responses:
        async for _ in responses:
            received += 1
    if received != count:
        raise RuntimeError(f"the generated stream delivered {received} of {count}")
    return count / (time.perf_counter() - started)


def codec_rate(size: int, count: int) -> float:
    """Messages per second of encoding and decoding the stream's message
    alone, as every generated stream must: the codec's share of the budget."""
    payload = b"\x5a" * size
    started = time.perf_counter()
    for _ in range(count):
        data = echo_pb2.EchoResponse(payload=payload).SerializeToString()
        if len(echo_pb2.EchoResponse.FromString(data).payload) != size:
            raise RuntimeError("the codec lost bytes")
    return count / (time.perf_counter() - started)


async def main(url: str, cells: list[tuple[int, int]]) -> None:
    server_connection = await nats.connect(url)
    service = await stream_nats_pb2.register_stream_bench(server_connection, Flood())
    client_connection = await nats.connect(url)
    client = stream_nats_pb2.StreamBenchClient(client_connection)
    for size, count in cells:
        raw, raw_lost = await raw_rate(url, size, count, with_seq=False)
        raw_with_seq, seq_lost = await raw_rate(url, size, count, with_seq=True)
        generated = await generated_rate(client, size, count)
        line = {
            "codec_rate": codec_rate(size, count),
            "size": size,
            "messages": count,
            "raw_rate": raw,
            "raw_lost": raw_lost,
            "raw_seq_rate": raw_with_seq,
            "raw_seq_lost": seq_lost,
            "generated": generated,
        }
        print(json.dumps(line), flush=True)
    await service.stop()
    await client_connection.close()
    await server_connection.close()


if __name__ == "__main__":
    plan = [cell.split(":") for cell in sys.argv[2].split(",")]
    asyncio.run(main(sys.argv[1], [(int(size), int(count)) for size, count in plan]))
