"""Loads ``chaos.v1.ChaosService`` through faults (PROTOCOL §10.3; the twin of
tests/src/bin/chaos_client.rs and tests/ts/chaos_client.ts): CHAOS_CONCURRENCY
workers (default 32) call for CHAOS_SECONDS (default 10), every 10th call a
``Put`` and the others ``Get``, each with a fresh id, under a retry policy
that outlasts a 1-2 s outage (20 attempts, 50 ms doubling up to 500 ms, 10 s
per call, a budget that does not throttle; ``Put`` keeps the default
non-idempotent gating), and check every reply against its request.

usage: NATS_URL=nats://a,nats://b python chaos_client.py
(CHAOS_ATTEMPT_TIMEOUT_MS, optional, bounds each attempt; none by default)
(with the generated ``chaos.v1`` modules and the runtime on PYTHONPATH).
Prints ``ready`` once connected, then one line of JSON:
``{"get_ok", "get_failed", "put_ok", "put_failed", "wrong", "put_ok_ids",
"recovery_ms", "retries"}``; ``recovery_ms`` is the longest time from a
failure (of any attempt, or of the connection) to the next successful reply.
Exits 0 whatever the calls did; the harness judges.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time

import nats
import nats_micro_runtime as rt
from chaos.v1 import chaos_nats_pb2 as chaos
from chaos.v1 import chaos_pb2

PUT_EVERY = 10
CALL_TIMEOUT = 10.0


class Tally:
    """What the workers saw."""

    def __init__(self) -> None:
        self.get_ok = self.get_failed = self.put_ok = self.put_failed = self.wrong = 0
        self.put_ok_ids: list[int] = []
        self.retries = 0
        self.recovery = 0.0
        self._failing_since: float | None = None
        """When the first failure since the last success happened."""

    def failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def succeeded(self) -> None:
        if self._failing_since is not None:
            self.recovery = max(self.recovery, time.monotonic() - self._failing_since)
            self._failing_since = None

    async def disconnected(self) -> None:
        # A client that had read every reply before the connection went down sends its next requests
        # after reconnecting: nothing fails, but the outage still counts towards the recovery time.
        self.failed()

    def on_retry(self, error: rt.NatsMicroError, attempt: int, delay: float) -> None:
        self.retries += 1
        self.failed()

    def report(self) -> str:
        return json.dumps(
            {
                "get_ok": self.get_ok,
                "get_failed": self.get_failed,
                "put_ok": self.put_ok,
                "put_failed": self.put_failed,
                "wrong": self.wrong,
                "put_ok_ids": self.put_ok_ids,
                "recovery_ms": round(self.recovery * 1000),
                "retries": self.retries,
            },
            separators=(",", ":"),
        )


async def worker(client: chaos.ChaosServiceClient, ids: itertools.count[int], until: float, tally: Tally) -> None:
    for call in itertools.count(1):
        if time.monotonic() >= until:
            return
        id = next(ids)
        ask = chaos_pb2.Ask(id=id, text=str(id))
        put = call % PUT_EVERY == 0
        try:
            if put:
                answer, _ = await client.put(ask)
            else:
                answer, _ = await client.get(ask)
        except rt.NatsMicroError:
            tally.failed()
            if put:
                tally.put_failed += 1
            else:
                tally.get_failed += 1
            continue
        tally.succeeded()
        if answer.id != id or answer.text != str(id):
            tally.wrong += 1
        elif put:
            tally.put_ok += 1
            tally.put_ok_ids.append(id)
        else:
            tally.get_ok += 1


async def report_error(error: Exception) -> None:
    """One line per connection error (nats-py would log a traceback for each failed reconnect)."""
    print(f"nats: {type(error).__name__}: {error}", file=sys.stderr, flush=True)


async def main() -> None:
    servers = [url.strip() for url in os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",") if url.strip()]
    seconds = float(os.environ.get("CHAOS_SECONDS", "10"))
    concurrency = int(os.environ.get("CHAOS_CONCURRENCY", "32"))
    # Optional: a request lost with a cluster node gets no reply and no error; this bounds each attempt.
    attempt_ms = os.environ.get("CHAOS_ATTEMPT_TIMEOUT_MS")
    attempt_timeout = int(attempt_ms) / 1000 if attempt_ms else None
    tally = Tally()
    nc = await nats.connect(
        servers=servers,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        error_cb=report_error,
        disconnected_cb=tally.disconnected,
    )
    # snippet: python-resilience-client
    client = chaos.ChaosServiceClient(
        nc,
        timeout=CALL_TIMEOUT,  # shared by all attempts of a call
        retry_policy=rt.RetryPolicy(
            max_attempts=20,
            initial_delay=0.05,
            multiplier=2.0,
            max_delay=0.5,
            attempt_timeout=attempt_timeout,
            on_retry=tally.on_retry,
        ),
        retry_budget=rt.RetryBudget(max_tokens=1000, token_ratio=1.0),
    )
    # end snippet
    print("ready", flush=True)
    ids = itertools.count(1)
    until = time.monotonic() + seconds
    await asyncio.gather(*(worker(client, ids, until, tally) for _ in range(concurrency)))
    print(tally.report(), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
