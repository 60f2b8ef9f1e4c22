"""Resilience on real nats-servers (PROTOCOL §10) with the generated
``chaos.v1`` client: the attempt header and ``ctx.attempt``, idempotency
gating, the circuit breaker against a failing dependency, calls failing fast
when the connection is lost (and retried after reconnecting when safe), and
the chaos client of tests/peers against the chaos server there while the
nats-server is killed and restarted under load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats_micro_runtime as rt
import pytest
from chaos.v1 import chaos_nats_pb2 as chaos
from chaos.v1 import chaos_pb2
from conftest import PROJECT_TREE, REPO, free_port, nats_server_binary
from nats.aio.client import Client


class NatsServer:
    """A nats-server on a fixed loopback port that a test can kill and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"nats-server did not start on port {self.port}"
                time.sleep(0.01)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def restartable() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def connect(url: str) -> Client:
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)


class Chaos:
    """A ChaosService whose Get and Put can be made to fail or stall by attempt."""

    def __init__(self) -> None:
        self.down = False
        self.flaky_calls = 0
        self.attempts: list[int] = []
        self.attempt_headers: list[str | None] = []
        self.budgets: list[int] = []
        self.get_failures = 0
        """Get fails with UNAVAILABLE (message, data and a header by attempt) this many times."""
        self.stall_first = 0.0
        """Seconds the first attempt of a call sleeps."""
        self.puts: list[int] = []

    def _record(self, ctx: rt.RequestContext) -> None:
        self.attempts.append(ctx.attempt)
        self.attempt_headers.append(ctx.header(rt.ATTEMPT_HEADER))
        self.budgets.append(int(ctx.headers[rt.TIMEOUT_HEADER]))

    async def get(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        self._record(ctx)
        if ctx.attempt == 1 and self.stall_first:
            await asyncio.sleep(self.stall_first)
        if self.get_failures:
            self.get_failures -= 1
            ctx.set_response_header("X-Attempt", str(ctx.attempt))
            raise chaos.new_chaos_service_unavailable_error(ctx.method, f"down at {ctx.attempt}", f"{ctx.attempt}".encode())
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def put(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        self._record(ctx)
        self.puts.append(request.id)
        if ctx.attempt == 1 and self.stall_first:
            await asyncio.sleep(self.stall_first)
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def flaky(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        self.flaky_calls += 1
        if self.down:
            raise chaos.new_chaos_service_unavailable_error(ctx.method, "dependency down")
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def set_down(self, request: chaos_pb2.Down, ctx: rt.RequestContext) -> chaos_pb2.Calls:
        self.down = request.down
        return chaos_pb2.Calls(flaky_calls=self.flaky_calls)

    async def slow(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        await asyncio.sleep(request.sleep_ms / 1000)
        return chaos_pb2.Answer(id=request.id, text=request.text)


ASK = chaos_pb2.Ask(id=7, text="7")


async def test_retries_number_their_attempts_and_share_the_calls_deadline(nc: Client) -> None:
    handler = Chaos()
    handler.get_failures = 2
    service = await chaos.register_chaos_service(nc, handler)
    client = chaos.ChaosServiceClient(nc, timeout=5.0)
    answer, _ = await client.get(ASK)
    assert answer.id == 7
    assert handler.attempts == [1, 2, 3]
    assert handler.attempt_headers == [None, "2", "3"]
    assert handler.budgets[0] == 5_000_000 and handler.budgets[0] > handler.budgets[1] > handler.budgets[2]
    await service.stop()


async def test_the_final_error_is_the_last_replys_with_the_number_of_attempts(nc: Client) -> None:
    handler = Chaos()
    handler.get_failures = 10
    service = await chaos.register_chaos_service(nc, handler)
    client = chaos.ChaosServiceClient(nc, retry_policy=rt.RetryPolicy(max_attempts=4, initial_delay=0.01))
    with pytest.raises(chaos.ChaosServiceUnavailableError) as caught:
        await client.get(ASK)
    error = caught.value
    assert (error.attempts, error.message, error.data, error.headers.get("X-Attempt")) == (4, "down at 4", b"4", "4")
    with pytest.raises(chaos.ChaosServiceUnavailableError) as once:
        await client.get(ASK, retry=rt.RetryPolicy(max_attempts=1))  # the call's policy wins
    assert once.value.attempts == 1
    await service.stop()


async def test_a_put_is_never_sent_twice_after_a_timeout_unless_the_caller_says_it_is_safe(nc: Client) -> None:
    handler = Chaos()
    handler.stall_first = 0.5
    service = await chaos.register_chaos_service(nc, handler)
    policy = rt.RetryPolicy(attempt_timeout=0.2, initial_delay=0.01)
    client = chaos.ChaosServiceClient(nc, retry_policy=policy)
    with pytest.raises(rt.RequestTimeoutError) as caught:
        await client.put(ASK)
    assert caught.value.attempts == 1
    await asyncio.sleep(0.4)
    assert handler.puts == [7]
    # snippet: python-resilience-call
    answer, _ = await client.put(chaos_pb2.Ask(id=8, text="8"), idempotent=True)  # this call: safe to repeat
    # end snippet
    assert answer.id == 8 and handler.puts == [7, 8, 8]
    per_method = chaos.ChaosServiceClient(nc, retry_policy=policy, methods={"Put": rt.MethodOptions(idempotent=True)})
    await per_method.put(chaos_pb2.Ask(id=9, text="9"))
    assert handler.puts[-2:] == [9, 9]
    # Get is NO_SIDE_EFFECTS in the proto: retried after a timeout without being told.
    handler.attempts.clear()
    await client.get(ASK)
    assert handler.attempts == [1, 2]
    with pytest.raises(rt.ConfigError):
        chaos.ChaosServiceClient(nc, methods={"Nope": rt.MethodOptions()})
    await asyncio.sleep(0.4)
    await service.stop()


async def test_the_breaker_opens_keeps_calls_off_the_network_and_a_probe_closes_it(nc: Client) -> None:
    handler = Chaos()
    service = await chaos.register_chaos_service(nc, handler)
    changes: list[tuple[rt.CircuitState, rt.CircuitState]] = []
    # snippet: python-resilience-breaker
    breaker = rt.CircuitBreaker(failure_threshold=3, open_for=0.5, on_state_change=lambda old, new: changes.append((old, new)))
    client = chaos.ChaosServiceClient(
        nc,
        retry_policy=rt.RetryPolicy(max_attempts=1),  # no retries: each call is one attempt
        methods={"flaky": rt.MethodOptions(circuit_breaker=breaker)},  # only Flaky goes through the breaker
    )
    # end snippet
    calls, _ = await client.set_down(chaos_pb2.Down(down=True))
    for _ in range(3):
        with pytest.raises(chaos.ChaosServiceUnavailableError):
            await client.flaky(ASK)
    assert breaker.state is rt.CircuitState.OPEN
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(rt.CircuitOpenError) as caught:
            await client.flaky(ASK)
    assert time.monotonic() - started < 0.1, "an open breaker fails at once"
    assert caught.value.message == "circuit open for chaos.v1.ChaosService.Flaky"
    await client.get(ASK)  # other methods have no breaker
    calls, _ = await client.set_down(chaos_pb2.Down(down=False))
    assert calls.flaky_calls == 3, "no call reached the server while the breaker was open"
    await asyncio.sleep(0.5)
    await client.flaky(ASK)  # the half-open probe
    assert breaker.state is rt.CircuitState.CLOSED
    assert [new for _, new in changes] == [rt.CircuitState.OPEN, rt.CircuitState.HALF_OPEN, rt.CircuitState.CLOSED]
    await service.stop()


async def test_calls_in_flight_fail_fast_when_the_connection_is_lost_and_safe_ones_are_retried(
    restartable: NatsServer,
) -> None:
    server_nc = await connect(restartable.url)
    client_nc = await connect(restartable.url)
    handler = Chaos()
    handler.stall_first = 30.0
    service = await chaos.register_chaos_service(server_nc, handler)
    client = chaos.ChaosServiceClient(client_nc, timeout=15.0, retry_policy=rt.RetryPolicy(max_attempts=20, max_delay=0.3))
    put = asyncio.create_task(client.put(ASK))
    get = asyncio.create_task(client.get(chaos_pb2.Ask(id=8, text="8")))
    while len(handler.attempts) < 2:
        await asyncio.sleep(0.01)
    lost_at = time.monotonic()
    restartable.kill()
    with pytest.raises(rt.ConnectionLostError) as caught:
        await put
    assert time.monotonic() - lost_at < 1.0, "the call failed at once, not at its timeout"
    assert caught.value.code == rt.UNAVAILABLE and caught.value.attempts == 1
    assert not get.done()
    await asyncio.sleep(0.3)
    restartable.start()
    answer, _ = await asyncio.wait_for(get, 10)
    assert answer.id == 8
    assert handler.puts == [7], "a Put is not sent again after losing the connection"
    assert handler.attempts[0:2] == [1, 1] and handler.attempts[-1] > 1
    await service.stop()
    await client_nc.close()
    await server_nc.close()


def peer(name: str, url: str, **env: str) -> subprocess.Popen[str]:
    path = os.pathsep.join([str(PROJECT_TREE), str(REPO / "runtime-py" / "src")])
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "peers" / name)],
        env={**os.environ, "PYTHONPATH": path, "NATS_URL": url, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


async def test_the_chaos_client_rides_out_a_nats_server_restart(restartable: NatsServer) -> None:
    server = peer("chaos_server.py", restartable.url)
    client: subprocess.Popen[str] | None = None
    try:
        assert first_line(server) == "ready"
        client = peer("chaos_client.py", restartable.url, CHAOS_SECONDS="6", CHAOS_CONCURRENCY="32")
        assert first_line(client) == "ready"
        await asyncio.sleep(2.0)
        restartable.kill()
        await asyncio.sleep(1.0)
        restartable.start()
        out, _ = await asyncio.to_thread(client.communicate, timeout=40)
        assert client.returncode == 0
        report = json.loads(out.strip().splitlines()[-1])
        server.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.to_thread(server.communicate, timeout=10)
        put_line = rest.strip().splitlines()[-1]
        assert put_line.startswith("put-ids")
        executed = [int(id) for id in put_line.removeprefix("put-ids").strip().split(",") if id]
        figures = {key: value for key, value in report.items() if key != "put_ok_ids"}
        print(f"\nchaos (Python client x Python server, nats-server restarted): {json.dumps(figures)}")
        assert report["wrong"] == 0
        gets = report["get_ok"] + report["get_failed"]
        assert gets > 1000 and report["get_ok"] >= 0.999 * gets, report
        assert len(executed) == len(set(executed)), "a Put was executed twice"
        assert set(report["put_ok_ids"]) <= set(executed), "a Put the client counted as done was not executed"
        # A client holding every reply as the nats-server dies sends its next requests only after reconnecting:
        # then nothing fails, and the outage shows in the recovery time alone (counted from the disconnect).
        assert report["recovery_ms"] >= 500, "the outage was felt"
    finally:
        for process in (server, client):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


async def test_overload_is_shed_while_ping_answers_and_a_retrying_client_gets_through(nc: Client, nats_url: str) -> None:
    service_nc = await nats.connect(nats_url)
    service = await chaos.register_chaos_service(service_nc, Chaos(), max_concurrency=4)  # as the chaos servers
    # Slow serves 4 at once with 16 waiting: 200 calls of 200 ms are 10 times what it holds.
    once = chaos.ChaosServiceClient(nc, retry_policy=rt.RetryPolicy(max_attempts=1))
    slow = chaos_pb2.Ask(id=1, text="1", sleep_ms=200)
    burst = [asyncio.create_task(once.slow(slow)) for _ in range(200)]
    pings: list[float] = []
    while not all(task.done() for task in burst):
        started = time.monotonic()
        await nc.request("$SRV.PING.ChaosService", b"", timeout=1)
        pings.append(time.monotonic() - started)
        await asyncio.sleep(0.05)
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    shed = [error for error in outcomes if isinstance(error, rt.ResourceExhaustedError)]
    assert len(shed) >= 150 and len(shed) + sum(isinstance(o, rt.Response) for o in outcomes) == 200
    assert all(rt.retry_hint(error) is not None for error in shed), "shed replies say when to come back"
    assert max(pings) < 0.5, f"PING waited {max(pings):.3f}s under overload"
    assert service_nc.is_connected and nc.is_connected
    # The same load from a client that retries gets through as the backlog drains.
    patient = chaos.ChaosServiceClient(
        nc, timeout=30.0, retry_policy=rt.RetryPolicy(max_attempts=100, max_delay=0.5), retry_budget=None
    )
    answers = await asyncio.gather(*(patient.slow(chaos_pb2.Ask(id=i, text=str(i), sleep_ms=20)) for i in range(200)))
    assert [answer.id for answer, _ in answers] == list(range(200))
    await service.stop()
    await service_nc.close()
