"""Client-streaming and bidirectional calls on a real nats-server with a
hand-written spec (PROTOCOL §9): results, typed errors at the open and
midway, cancellation reaching the handler, protocol errors (malformed
message, sequence gap, excess), handler exceptions, flow control in the
caller's direction, and a Go-plugin-style caller without credit."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Unpack

import nats_micro_runtime as rt
from nats_server_fixture import nc  # noqa: F401 (a fixture)
import pytest
from google.protobuf import wrappers_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

Int = wrappers_pb2.Int64Value
Text = wrappers_pb2.StringValue
SPEC = rt.ServiceSpec(
    proto_name="t.Calc", name="calc", version="1.0.0", description="", subject_prefix="calc",
    endpoints=(
        rt.EndpointSpec("Sum", "sum", max_inflight=4),
        rt.EndpointSpec("Chat", "chat"),
        rt.EndpointSpec("Ping", "ping"),
    ),
)  # fmt: skip
SUM, CHAT = "calc.sum", "calc.chat"


class Probe:
    """What the handlers did, for the tests to look at."""

    def __init__(self) -> None:
        self.received = 0
        self.yielded = 0
        self.cancelled = asyncio.Event()
        self.errors: list[BaseException] = []
        self.read_delay = 0.0


async def serve(nc: NatsClient, probe: Probe, **overrides: Unpack[rt.ServiceOverrides]) -> rt.Service:
    """Sum adds numbers (-1: INVALID_ARGUMENT with data; 666: an uncoded
    exception), ``probe.read_delay`` apart. Chat echoes texts; ``fail``
    ends with FAILED_PRECONDITION, ``boom`` raises an uncoded exception,
    ``wait`` makes it wait until cancelled, ``flood`` yields without end."""

    async def sum_(requests: AsyncIterator[Int], ctx: rt.RequestContext) -> Int:
        total = 0
        try:
            async for number in requests:
                probe.received += 1
                if number.value < 0:
                    raise rt.InvalidArgumentError("Sum", f"{number.value} is negative", data=str(number.value).encode())
                if number.value == 666:
                    raise RuntimeError("secret text")
                total += number.value
                await asyncio.sleep(probe.read_delay)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        except rt.NatsMicroError as err:
            probe.errors.append(err)
            raise
        ctx.set_response_header("X-Count", str(probe.received))
        return Int(value=total)

    async def chat(requests: AsyncIterator[Text], ctx: rt.RequestContext) -> AsyncIterator[Text]:
        try:
            async for text in requests:
                if text.value == "fail":
                    raise rt.FailedPreconditionError("Chat", "asked to fail", data=b"midway")
                if text.value == "boom":
                    raise RuntimeError("secret text")
                if text.value == "wait":
                    await asyncio.sleep(60)
                if text.value == "flood":  # yields without ever waiting itself
                    for i in range(10**6):
                        probe.yielded += 1
                        yield Text(value=str(i))
                yield Text(value=f"echo: {text.value}")
            yield Text(value="bye")
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise

    async def ping(request: Text, ctx: rt.RequestContext) -> Text:
        return request

    handlers: dict[str, rt.ServedEndpoint] = {
        "sum": rt.ClientStreamEndpoint(sum_, Int),
        "chat": rt.BidiStreamEndpoint(chat, Text),
        "ping": rt.UnaryEndpoint(ping, Text),
    }
    return await rt.start_service(nc, SPEC, handlers, overrides)


def client(nc: NatsClient, **options: Unpack[rt.ClientOptions]) -> rt.Client:
    return rt.Client(nc, SPEC, rt.ServiceError, **options)


async def numbers(*values: int, delay: float = 0.0) -> AsyncIterator[Int]:
    for value in values:
        yield Int(value=value)
        await asyncio.sleep(delay)


async def test_client_streaming_sums_what_it_is_sent(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    calc = client(nc)
    total, headers = await calc.client_stream("sum", numbers(*range(1, 11)), Int)
    assert total.value == 55 and headers["X-Count"] == "10" and headers[rt.END_HEADER] == "true"
    # A plain iterable works as well, and an empty stream is a stream.
    assert (await calc.client_stream("sum", [Int(value=2), Int(value=3)], Int)).message.value == 5
    assert (await calc.client_stream("sum", [], Int)).message.value == 0
    kinds = [(e["name"], e["metadata"].get(rt.STREAM_METADATA_KEY)) for e in service.info_json()["endpoints"]]
    assert kinds == [("sum", "client"), ("chat", "bidirectional"), ("ping", None)]
    assert [(s.num_requests, s.num_errors) for s in service.stats()] == [(3, 0), (0, 0), (0, 0)]
    await service.stop(1)


async def test_bidi_echoes_then_says_bye(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    texts = [Text(value=v) for v in ("hi", "there")]
    async with await client(nc).bidi_stream("chat", texts, Text) as replies:
        assert [r.value async for r in replies] == ["echo: hi", "echo: there", "bye"]
    assert replies.trailers[rt.END_HEADER] == "true"
    await service.stop(1)


async def test_bidi_interleaves_requests_and_responses(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def said() -> AsyncIterator[Text]:
        while (text := await queue.get()) is not None:
            yield Text(value=text)

    replies = await client(nc).bidi_stream("chat", said(), Text)
    for word in ("a", "b", "c"):
        await queue.put(word)  # each answer comes back before the next request is sent
        assert (await replies.__anext__()).value == f"echo: {word}"
    await queue.put(None)
    assert [r.value async for r in replies] == ["bye"]
    await service.stop(1)


async def test_a_typed_error_midway_ends_the_stream_with_code_message_and_data(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    with pytest.raises(rt.ServiceError) as caught:
        await client(nc).client_stream("sum", numbers(4, -1, 5), Int)
    assert (caught.value.code, caught.value.message, caught.value.data) == ("INVALID_ARGUMENT", "-1 is negative", b"-1")

    got: list[str] = []
    texts = [Text(value=v) for v in ("one", "fail", "two")]
    with pytest.raises(rt.ServiceError) as caught:
        async for reply in await client(nc).bidi_stream("chat", texts, Text):
            got.append(reply.value)
    assert got == ["echo: one"]
    assert (caught.value.code, caught.value.message, caught.value.data) == ("FAILED_PRECONDITION", "asked to fail", b"midway")
    assert [(s.num_requests, s.num_errors) for s in service.stats()][:2] == [(1, 1), (1, 1)]
    await service.stop(1)


async def test_an_error_at_the_open_is_raised_by_the_call(nc: NatsClient) -> None:
    async def refuse(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
        raise rt.PermissionDeniedError(ctx.method, "not you", data=b"who")

    service = await serve(nc, Probe(), interceptors=[refuse])
    with pytest.raises(rt.ServiceError) as caught:
        await client(nc).client_stream("sum", numbers(1, 2), Int)
    assert (caught.value.code, caught.value.data) == ("PERMISSION_DENIED", b"who")
    with pytest.raises(rt.ServiceError) as caught:
        async for _ in await client(nc).bidi_stream("chat", [Text(value="hi")], Text):
            pytest.fail("no reply comes before the error")
    assert caught.value.code == "PERMISSION_DENIED"
    await service.stop(1)


async def test_a_handler_exception_is_internal_without_its_text_and_the_service_keeps_serving(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    calc = client(nc)
    with pytest.raises(rt.ServiceError) as caught:
        await calc.client_stream("sum", numbers(1, 666), Int)
    assert (caught.value.code, caught.value.message) == ("INTERNAL", rt.INTERNAL_MESSAGE)
    with pytest.raises(rt.ServiceError) as caught:
        async for _ in await calc.bidi_stream("chat", [Text(value="boom")], Text):
            pass
    assert (caught.value.code, caught.value.message) == ("INTERNAL", rt.INTERNAL_MESSAGE)
    assert (await calc.client_stream("sum", numbers(1, 2), Int)).message.value == 3
    await service.stop(1)

    service = await serve(nc, Probe(), expose_internal_errors=True)
    with pytest.raises(rt.ServiceError) as caught:
        await calc.client_stream("sum", numbers(666), Int)
    assert caught.value.message == "RuntimeError: secret text"
    await service.stop(1)


async def test_cancelling_the_caller_reaches_the_handler_promptly(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    calc = client(nc)
    # Client-streaming: the awaiting task is cancelled while it still sends.
    call = asyncio.get_running_loop().create_task(calc.client_stream("sum", numbers(*range(100), delay=0.05), Int))
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await asyncio.sleep(0.05)
    assert service.stats()[0].last_error.startswith("CANCELLED")

    # Bidirectional: leaving the response stream early.
    probe.cancelled.clear()
    async with await calc.bidi_stream("chat", [Text(value="hi"), Text(value="wait")], Text) as replies:
        assert (await replies.__anext__()).value == "echo: hi"
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await asyncio.sleep(0.05)
    assert service.stats()[1].last_error.startswith("CANCELLED")
    await service.stop(1)


async def test_a_cancel_reaches_a_handler_that_waits_for_credit_at_its_yield(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    async with await client(nc).bidi_stream("chat", [Text(value="flood")], Text, window=2) as replies:
        assert (await replies.__anext__()).value == "0"
        await asyncio.sleep(0.1)  # the handler now waits for credit inside its `yield`
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await service.stop(1)


async def test_a_slow_reader_of_a_bidi_stream_holds_the_handler_to_its_window(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    consumed, ahead = 0, 0
    async with await client(nc).bidi_stream("chat", [Text(value="flood")], Text, window=6) as replies:
        async for _ in replies:
            consumed += 1
            await asyncio.sleep(0.01)
            ahead = max(ahead, probe.yielded - consumed)
            if consumed == 40:
                break
    # The generator runs one item ahead of the credit it waits for.
    assert 3 <= ahead <= 6 + 1
    await service.stop(1)


async def test_a_response_stream_dropped_without_closing_is_cancelled(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    replies = await client(nc).bidi_stream("chat", [Text(value="hi"), Text(value="wait")], Text)
    assert (await replies.__anext__()).value == "echo: hi"
    del replies
    gc.collect()
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await service.stop(1)


async def test_the_deadline_ends_a_client_stream_on_both_sides(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    with pytest.raises(rt.ServiceError) as caught:
        await client(nc).client_stream("sum", numbers(*range(100), delay=0.05), Int, timeout=0.3)
    assert caught.value.code == "DEADLINE_EXCEEDED"
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await service.stop(1)


async def test_a_slow_handler_holds_the_caller_to_the_window(nc: NatsClient) -> None:
    probe = Probe()
    probe.read_delay = 0.02
    service = await serve(nc, probe)
    sent = 0

    async def counted() -> AsyncIterator[Int]:
        nonlocal sent
        for value in range(40):
            # What the caller may have sent but the handler not read yet: never beyond the window.
            assert sent - probe.received <= 4 + 1, (sent, probe.received)
            sent += 1
            yield Int(value=value)

    assert (await client(nc).client_stream("sum", counted(), Int)).message.value == sum(range(40))
    assert sent == 40
    await service.stop(1)


async def open_raw(nc: NatsClient, subject: str, credit: str | None = "4") -> tuple[Subscription, str, Msg]:
    """Opens a stream by hand; returns the caller inbox, the server inbox and the ack."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    headers = {rt.REPLY_TO_HEADER: inbox} | ({} if credit is None else {rt.CREDIT_HEADER: credit})
    await nc.publish(subject, b"", reply=inbox, headers=headers)
    ack = await sub.next_msg(timeout=2)
    return sub, (ack.headers or {})[rt.INBOX_HEADER], ack


async def end_of(sub: Subscription) -> dict[str, str]:
    while True:
        msg = await sub.next_msg(timeout=2)
        headers = dict(msg.headers or {})
        if headers.get(rt.END_HEADER) == "true":
            return headers


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(b"\xff\xff", "1")], "INVALID_ARGUMENT"),  # does not decode
        ([(Int(value=1).SerializeToString(), "1"), (Int(value=2).SerializeToString(), "3")], "DATA_LOSS"),
        ([(Int(value=1).SerializeToString(), "one")], "INVALID_ARGUMENT"),
        ([(Int(value=v).SerializeToString(), str(v)) for v in range(1, 7)], "RESOURCE_EXHAUSTED"),  # window 4
    ],
)
async def test_protocol_errors_in_the_callers_direction_end_the_stream(
    nc: NatsClient, frames: list[tuple[bytes, str]], code: str
) -> None:
    probe = Probe()
    probe.read_delay = 0.5  # the handler does not grant credit back in time
    service = await serve(nc, probe)
    sub, server_inbox, ack = await open_raw(nc, SUM)
    assert (ack.headers or {})[rt.CREDIT_HEADER] == "4", "the endpoint's max_inflight"
    for body, seq in frames:
        await nc.publish(server_inbox, body, headers={rt.SEQ_HEADER: seq})
    end = await end_of(sub)
    assert rt.code_from_wire(end[rt.ERROR_CODE_HEADER]) == code
    await asyncio.sleep(0.05)
    assert service.stats()[0].last_error.startswith(code)
    assert (await client(nc).client_stream("sum", numbers(1, 2), Int)).message.value == 3, "the service keeps serving"
    await service.stop(1)


async def test_a_go_plugin_caller_without_credit_streams_without_flow_control(nc: NatsClient) -> None:
    probe = Probe()
    probe.read_delay = 0.001
    service = await serve(nc, probe)
    sub, server_inbox, ack = await open_raw(nc, SUM, credit=None)
    assert (ack.headers or {})[rt.CREDIT_HEADER] == "4"
    # Far beyond the window and the reader's buffer: a caller without credit is not held
    # to the window, and what the slow handler has not read yet waits in NATS's buffers.
    count = rt.UNCONTROLLED_BUFFER * 3
    for seq in range(1, count + 1):
        await nc.publish(server_inbox, Int(value=2).SerializeToString(), headers={rt.SEQ_HEADER: str(seq)})
    await nc.publish(server_inbox, b"", headers={rt.END_HEADER: "true"})
    result = await sub.next_msg(timeout=10)
    assert Int.FromString(result.data).value == 2 * count and (result.headers or {})[rt.END_HEADER] == "true"
    await service.stop(1)


async def test_a_client_stream_open_without_reply_subject_is_refused(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(SUM, b"", headers={rt.REPLY_TO_HEADER: inbox, rt.CREDIT_HEADER: "4"})
    end = await end_of(sub)
    assert rt.code_from_wire(end[rt.ERROR_CODE_HEADER]) == "INVALID_ARGUMENT"
    await service.stop(1)


FAST = rt.StreamTimings(keepalive_interval=0.1, peer_timeout=0.5)


async def test_a_silent_caller_is_given_up_and_a_live_one_is_not(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe, stream_timings=FAST)
    await open_raw(nc, CHAT)  # and then nothing
    for _ in range(100):
        await asyncio.sleep(0.05)
        if service.stats()[1].last_error:
            break
    assert service.stats()[1].last_error.startswith("UNAVAILABLE")

    async def slowly() -> AsyncIterator[Text]:
        for word in ("a", "b"):
            await asyncio.sleep(0.7)  # longer than the peer timeout: keepalives carry the stream
            yield Text(value=word)

    # The client's keepalives come every 0.1 s, well within the server's 0.5 s even on a busy machine.
    replies = await client(nc, stream_timings=rt.StreamTimings(keepalive_interval=0.1, peer_timeout=2)).bidi_stream(
        "chat", slowly(), Text
    )
    assert [r.value async for r in replies] == ["echo: a", "echo: b", "bye"]
    await service.stop(1)


async def test_a_silent_server_fails_the_caller_with_unavailable(nc: NatsClient) -> None:
    async def ack_then_silence(msg: Msg) -> None:
        await nc.publish(msg.reply, b"", headers={rt.INBOX_HEADER: nc.new_inbox(), rt.CREDIT_HEADER: "4"})

    await nc.subscribe(SUM, cb=ack_then_silence)
    with pytest.raises(rt.ServiceError) as caught:
        await client(nc, stream_timings=FAST).client_stream("sum", numbers(1), Int)
    assert caught.value.code == "UNAVAILABLE"


async def test_a_go_plugin_server_result_without_end_is_the_result(nc: NatsClient) -> None:
    async def go_server(msg: Msg) -> None:
        inbox = nc.new_inbox()
        target = (msg.headers or {})[rt.REPLY_TO_HEADER]
        total = 0

        async def on_data(data: Msg) -> None:
            nonlocal total
            if (data.headers or {}).get(rt.END_HEADER) == "true":
                await nc.publish(target, Int(value=total).SerializeToString())
            else:
                total += Int.FromString(data.data).value

        await nc.subscribe(inbox, cb=on_data)
        await nc.publish(msg.reply, b"", headers={rt.INBOX_HEADER: inbox})

    await nc.subscribe(SUM, cb=go_server)
    assert (await client(nc).client_stream("sum", numbers(1, 2, 3), Int)).message.value == 6


async def test_a_request_iterable_that_raises_fails_the_call_and_cancels_the_stream(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)

    async def broken() -> AsyncIterator[Int]:
        yield Int(value=1)
        await asyncio.sleep(0.1)
        raise KeyError("no more")

    with pytest.raises(KeyError):
        await client(nc).client_stream("sum", broken(), Int)
    await asyncio.wait_for(probe.cancelled.wait(), 1)
    await service.stop(1)


async def test_no_responders_fails_the_open(nc: NatsClient) -> None:
    with pytest.raises(rt.NoRespondersError):
        await client(nc).client_stream("sum", numbers(1), Int)


async def test_client_and_server_interceptors_see_the_open_and_the_outcome(nc: NatsClient) -> None:
    outcomes: list[str] = []

    async def server_side(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
        try:
            return await call_next(ctx, payload)
        except rt.NatsMicroError as err:
            outcomes.append(f"{ctx.method} {ctx.header('X-Who')} {err.code}")
            raise

    seen: list[tuple[str, float]] = []
    client_outcomes: list[str] = []

    async def client_side(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        call.headers["X-Who"] = "tester"
        seen.append((call.subject, call.timeout))
        try:
            end = await call_next(call)  # the stream's end, not its ack (§9.7)
        except rt.NatsMicroError as err:
            client_outcomes.append(err.code)
            raise
        client_outcomes.append(f"ok {end.headers.get('X-Count')} {Int.FromString(end.payload).value}")
        return end

    service = await serve(nc, Probe(), interceptors=[server_side])
    calc = client(nc, interceptors=[client_side])
    with pytest.raises(rt.ServiceError):
        await calc.client_stream("sum", numbers(-1), Int)
    assert (await calc.client_stream("sum", numbers(1), Int, timeout=3)).message.value == 1
    assert outcomes == ["Sum tester INVALID_ARGUMENT"]
    assert seen == [(SUM, float("inf")), (SUM, 3)]
    assert client_outcomes == ["INVALID_ARGUMENT", "ok 2 1"]
    await service.stop(1)


async def test_client_interceptors_settle_what_the_caller_sees_at_the_end(nc: NatsClient) -> None:
    """The chain's result is the caller's: an interceptor relabels an error,
    sees a caller leave as CANCELLED, and refusing before ``call_next``
    opens nothing."""
    probe = Probe()
    outcomes: list[str] = []

    async def relabel(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        if call.headers.get("X-Refuse"):
            raise rt.PermissionDeniedError(call.method, "refused here")
        try:
            end = await call_next(call)
        except rt.NatsMicroError as err:
            outcomes.append(err.code)
            if err.code == "FAILED_PRECONDITION":
                raise rt.UnavailableError(call.method, "relabelled") from err
            raise
        outcomes.append("ok")
        return end

    service = await serve(nc, probe)
    calc = client(nc, interceptors=[relabel])
    with pytest.raises(rt.ServiceError) as refused:
        await calc.client_stream("sum", numbers(1), Int, headers={"X-Refuse": "yes"})
    assert refused.value.code == "PERMISSION_DENIED"
    await asyncio.sleep(0.1)
    assert sum(s.num_requests for s in service.stats()) == 0, "a refused call opens nothing"
    got = [t.value async for t in await calc.bidi_stream("chat", [Text(value="hi")], Text)]
    assert got == ["echo: hi", "bye"]
    with pytest.raises(rt.ServiceError) as failed:
        async for _ in await calc.bidi_stream("chat", [Text(value="fail")], Text):
            pass
    assert (failed.value.code, failed.value.message) == ("UNAVAILABLE", "relabelled")
    async with await calc.bidi_stream("chat", [Text(value="wait")], Text):
        pass  # leaves before the end
    await asyncio.wait_for(probe.cancelled.wait(), 2)
    for _ in range(100):
        if len(outcomes) == 3:
            break
        await asyncio.sleep(0.01)
    assert outcomes == ["ok", "FAILED_PRECONDITION", "CANCELLED"]
    await service.stop(1)


async def test_a_go_plugin_open_takes_the_ack_on_its_reply_subject_and_the_result_on_reply_to(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    results = await nc.subscribe(nc.new_inbox())
    ack = await nc.request(SUM, b"", timeout=2, headers={rt.REPLY_TO_HEADER: results.subject})
    server_inbox = (ack.headers or {})[rt.INBOX_HEADER]
    for seq, value in ((1, 1), (2, 2), (3, 3)):
        await nc.publish(server_inbox, Int(value=value).SerializeToString(), headers={rt.SEQ_HEADER: str(seq)})
    await nc.publish(server_inbox, b"", headers={rt.END_HEADER: "true"})
    result = await results.next_msg(timeout=2)
    assert Int.FromString(result.data).value == 6 and (result.headers or {})[rt.END_HEADER] == "true"
    await service.stop(1)
