"""Persistence and chunked transfer (PROTOCOL §12) through generated code:
proto/store/v1's ProfileService served by tests/peers/store_server.py's
handler on a real nats-server with JetStream (``-js -sd <tmp>``).

Key-value writes in every mode and under both failure policies (failures
made on purpose: a create-only conflict, a compare-and-set conflict, keys
that cannot be rendered), TTL expiry, history, watch, keys by parts, the
client-only bucket, a server without JetStream, the object store with its
digest, and chunked uploads and downloads (50 MiB, interrupted, corrupted,
over max_payload). The programs the cross-language test runs
(store_server.py, store_client.py) are run here too, Python against Python.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats_micro_runtime as rt
import pytest
from conftest import REPO, running_nats_server
from nats.aio.client import Client
from store.v1 import store_nats_pb2 as store
from store.v1 import store_pb2

PEERS = REPO / "tests" / "peers"
RUNTIME = REPO / "runtime-py"
sys.path.insert(0, str(PEERS))

from store_server import ProfileService, pattern, pattern_pieces  # noqa: E402

MIB = 1024 * 1024


@pytest.fixture
def js_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server with JetStream, storing in a temporary directory."""
    with running_nats_server("-js", "-sd", str(tmp_path / "js")) as port:
        yield f"nats://127.0.0.1:{port}"


@pytest.fixture
async def js(js_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(js_url)
    yield connection
    await connection.close()


@pytest.fixture
async def served(js: Client) -> AsyncIterator[tuple[rt.Service, store.ProfileServiceClient]]:
    service = await store.register_profile_service(js, ProfileService())
    yield service, store.ProfileServiceClient(js)
    await service.stop()


def stats(service: rt.Service, endpoint: str) -> rt.EndpointStats:
    return next(s for s in service.stats() if s.name == endpoint)


async def eventually(check: object, what: str, within: float = 15.0) -> None:
    """Polls ``check()`` (a coroutine function) until it is true; bounded."""
    give_up = time.monotonic() + within
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < give_up, what
        await asyncio.sleep(0.05)


# Buckets ---------------------------------------------------------------------


async def test_registration_creates_the_buckets_with_the_proto_settings(served: tuple[rt.Service, store.ProfileServiceClient], js: Client) -> None:
    manager = js.jetstream()
    profiles = (await manager.stream_info("KV_profiles")).config
    assert profiles.description == 'Profiles by id "quoted" \\ and escaped'
    assert profiles.max_msgs_per_subject == 5
    assert profiles.compression == "s2" and profiles.allow_direct and profiles.deny_delete
    assert (profiles.metadata or {}).get("owner") == "store-scenario"
    sessions = (await manager.stream_info("KV_sessions")).config
    assert (sessions.max_age, sessions.subject_delete_marker_ttl, sessions.allow_msg_ttl) == (3600, 1, True)
    assert sessions.max_msgs_per_subject == 3
    reports = (await manager.stream_info("OBJ_reports")).config
    assert (reports.description, reports.max_age, reports.compression) == ("Generated reports", 3600, "s2")
    with pytest.raises(Exception):
        await manager.stream_info("KV_notes")  # client_only: no server creates it


async def test_registration_updates_an_existing_bucket_to_the_proto_settings(js: Client) -> None:
    manager = js.jetstream()
    await manager.add_stream(name="KV_profiles", subjects=["$KV.profiles.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True)
    service = await store.register_profile_service(js, ProfileService())
    try:
        assert (await manager.stream_info("KV_profiles")).config.max_msgs_per_subject == 5
    finally:
        await service.stop()


async def test_without_jetstream_registration_fails_at_once_naming_jetstream(nc: Client) -> None:
    async with asyncio.timeout(30):  # a hang fails here, not in CI's global timeout
        with pytest.raises(rt.FailedPreconditionError) as failed:
            await store.register_profile_service(nc, ProfileService())
    assert "JetStream" in failed.value.message and "profiles" in failed.value.message
    assert not [s async for s in _subscribed(nc)], "nothing is served"
    with pytest.raises(store.ProfileServiceFailedPreconditionError) as opened:
        await store.ProfileServiceClient(nc).save_profile_kv()
    assert "JetStream" in opened.value.message


async def _subscribed(nc: Client) -> AsyncIterator[str]:
    """Whether anything answers the service's PING (nothing should)."""
    try:
        await nc.request("$SRV.PING.profiles", b"", timeout=0.5)
        yield "profiles"
    except nats.errors.Error:
        return


# Key-value writes --------------------------------------------------------------


async def test_last_write_wins_writes_the_reply_body_with_its_revision(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    revisions = []
    for name in ("Ada", "Ada L.", "Ada Lovelace"):
        reply, headers = await client.save_profile(store_pb2.Profile(id="ada", name=name))
        revisions.append(int(headers[rt.KV_REVISION_HEADER]))
    assert revisions == sorted(revisions) and len(set(revisions)) == 3
    kv = await client.save_profile_kv()
    entry = await kv.get(kv.key(store_pb2.Profile(id="ada")))
    assert entry is not None and entry.key == "user.ada"
    assert (entry.value.name, entry.value.version, entry.revision) == ("Ada Lovelace", 3, revisions[-1])
    assert entry.value.SerializeToString() == reply.SerializeToString(), "the stored value is the reply body"
    assert entry.created is not None
    history = await kv.history("user.ada")
    assert [c.value.name for c in history if c.value is not None] == ["Ada", "Ada L.", "Ada Lovelace"]
    older = await kv.get("user.ada", revision=revisions[0])
    assert older is not None and older.value.name == "Ada"


async def test_a_rejected_call_persists_nothing(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    with pytest.raises(store.ProfileServiceProfileRejectedError):
        await client.save_profile(store_pb2.Profile(id="rex", name="reject"))
    assert await (await client.save_profile_kv()).get("user.rex") is None


@pytest.mark.parametrize(
    ("profile_id", "why"),
    [("", "missing"), ("a b", "' '"), ("a.", "empty token"), ("x..y", "empty token"), ("ü", "'ü'")],
)
async def test_a_key_that_cannot_be_rendered_is_invalid_argument_with_a_bad_request(
    served: tuple[rt.Service, store.ProfileServiceClient], profile_id: str, why: str
) -> None:
    service, client = served
    with pytest.raises(store.ProfileServiceInvalidArgumentError) as failed:
        await client.save_profile(store_pb2.Profile(id=profile_id, name="n"))
    assert why in failed.value.message
    bad_request = failed.value.bad_request()
    assert bad_request is not None and [v.field for v in bad_request.field_violations] == ["id"]
    assert stats(service, "save_profile").data == {"shed": 0, "persist_failures": 1}


async def test_create_only_refuses_a_second_write_with_already_exists(
    served: tuple[rt.Service, store.ProfileServiceClient], caplog: pytest.LogCaptureFixture
) -> None:
    service, client = served
    first, headers = await client.create_profile(store_pb2.Profile(id="cy", name="first"))
    assert headers[rt.KV_REVISION_HEADER] == "1"
    with caplog.at_level(logging.WARNING, logger="nats_micro_runtime"):
        with pytest.raises(store.ProfileServiceAlreadyExistsError):
            await client.create_profile(store_pb2.Profile(id="cy", name="second"))
    entry = await (await client.create_profile_kv()).get("user.cy")
    assert entry is not None and (entry.value.name, entry.value.version) == ("first", 1)
    [event] = [r for r in caplog.records if getattr(r, "event", None) == "persist_failed"]
    assert event.levelno == logging.ERROR, "REQUIRED failures are errors"
    assert (getattr(event, "bucket"), getattr(event, "key")) == ("profiles_created", "user.cy")
    assert stats(service, "create_profile").num_errors == 1


async def test_create_only_writes_again_after_a_delete(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    await client.create_profile(store_pb2.Profile(id="del", name="one"))
    kv = await client.create_profile_kv()
    await kv.delete("user.del")
    assert await kv.get("user.del") is None
    await client.create_profile(store_pb2.Profile(id="del", name="two"))
    entry = await kv.get("user.del")
    assert entry is not None and entry.value.name == "two"


async def test_best_effort_keeps_the_reply_logs_and_counts_the_failure(
    served: tuple[rt.Service, store.ProfileServiceClient], caplog: pytest.LogCaptureFixture
) -> None:
    service, client = served
    await client.touch_profile(store_pb2.Profile(id="t", name="first"))
    with caplog.at_level(logging.WARNING, logger="nats_micro_runtime"):
        reply, headers = await client.touch_profile(store_pb2.Profile(id="t", name="second"))
    assert (reply.name, reply.version) == ("second", 2), "the reply stands"
    assert rt.KV_REVISION_HEADER not in headers, "nothing was written"
    [event] = [r for r in caplog.records if getattr(r, "event", None) == "persist_failed"]
    assert event.levelno == logging.WARNING
    assert (getattr(event, "bucket"), getattr(event, "key"), getattr(event, "endpoint")) == ("profiles_touched", "user.t", "touch_profile")
    assert "wrong last sequence" in getattr(event, "error").lower()
    touched = stats(service, "touch_profile")
    assert (touched.data, touched.num_errors) == ({"shed": 0, "persist_failures": 1}, 0)
    document = next(e for e in service.stats_json()["endpoints"] if e["name"] == "touch_profile")
    assert document["data"] == {"shed": 0, "persist_failures": 1}
    unkeyed, headers = await client.touch_profile(store_pb2.Profile(id="", name="no key"))
    assert unkeyed.name == "no key" and rt.KV_REVISION_HEADER not in headers, "an unrenderable key does not fail a best-effort call"
    assert stats(service, "touch_profile").data == {"shed": 0, "persist_failures": 2}
    assert stats(service, "save_profile").data == {"shed": 0, "persist_failures": 0}
    assert next(s for s in service.stats() if s.name == "upload").data == {"shed": 0}, "only persisting endpoints count writes"


class HeldUpdates(ProfileService):
    """UpdateProfile waits for ``release`` after telling ``entered``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def update_profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        if request.name == "hold":
            self.entered.set()
            await self.release.wait()
        return await super().update_profile(request, ctx)


async def test_compare_and_set_with_and_without_the_revision_header(js: Client) -> None:
    handler = HeldUpdates()
    service = await store.register_profile_service(js, handler)
    client = store.ProfileServiceClient(js)
    kv = await client.update_profile_kv()
    try:
        # Without the header: the revision read before the handler (none: create).
        _, headers = await client.update_profile(store_pb2.Profile(id="c", name="one"))
        first = int(headers[rt.KV_REVISION_HEADER])
        _, headers = await client.update_profile(store_pb2.Profile(id="c", name="two"))
        second = int(headers[rt.KV_REVISION_HEADER])
        assert second > first
        # With the header: at that revision, or ABORTED.
        _, headers = await client.update_profile(store_pb2.Profile(id="c", name="three"), headers={rt.KV_REVISION_HEADER: str(second)})
        third = int(headers[rt.KV_REVISION_HEADER])
        with pytest.raises(store.ProfileServiceAbortedError):
            await client.update_profile(store_pb2.Profile(id="c", name="stale"), headers={rt.KV_REVISION_HEADER: str(second)})
        with pytest.raises(store.ProfileServiceAbortedError):
            await client.update_profile(store_pb2.Profile(id="c", name="must not exist"), headers={rt.KV_REVISION_HEADER: "0"})
        _, headers = await client.update_profile(store_pb2.Profile(id="new", name="n"), headers={rt.KV_REVISION_HEADER: "0"})
        assert int(headers[rt.KV_REVISION_HEADER]) > third
        # A malformed header is refused before the handler runs.
        seen = handler.seen["c"]
        for bad in ("abc", "-1", "1.5", "1e3", "+2", "99999999999999999999999"):
            with pytest.raises(store.ProfileServiceInvalidArgumentError):
                await client.update_profile(store_pb2.Profile(id="c", name="x"), headers={rt.KV_REVISION_HEADER: bad})
        assert handler.seen["c"] == seen
        # A write by anyone between the handler's start and the service's write is a conflict.
        call = asyncio.create_task(client.update_profile(store_pb2.Profile(id="c", name="hold")))
        await handler.entered.wait()
        await kv.put("user.c", store_pb2.Profile(id="c", name="meanwhile"))
        handler.release.set()
        with pytest.raises(store.ProfileServiceAbortedError):
            await call
        entry = await kv.get("user.c")
        assert entry is not None and entry.value.name == "meanwhile"
    finally:
        await service.stop()


# Sessions: nested keys, every scalar, TTLs ------------------------------------


def session_request(**overrides: object) -> store_pb2.SessionRequest:
    request = store_pb2.SessionRequest(
        tenant=store_pb2.Tenant(region="eu-west", id=-7),
        number=2**64 - 1,
        serial=4_000_000_000,
        delta=-3,
        slot=0,
        active=True,
        kind=store_pb2.SESSION_KIND_WEB,
        label="l1",
    )
    for name, value in overrides.items():
        if isinstance(value, store_pb2.Tenant):
            request.tenant.CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


async def test_session_keys_render_nested_fields_and_every_scalar_kind(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    session, _ = await client.open_session(session_request())
    assert session.key == "eu-west.-7.n18446744073709551615.u4000000000.s-3.f0.true.SESSION_KIND_WEB.l1"
    session, _ = await client.open_session(session_request(kind=9, active=False))
    assert session.key == "eu-west.-7.n18446744073709551615.u4000000000.s-3.f0.false.9.l1", "an undeclared enum number is decimal"
    kv = await client.open_session_kv()
    assert kv.key(session_request()) == "eu-west.-7.n18446744073709551615.u4000000000.s-3.f0.true.SESSION_KIND_WEB.l1"
    parts = {"tenant.region": "eu", "tenant.id": 1, "number": 2, "serial": 3, "delta": 4, "slot": 5, "active": False, "kind": 2, "label": "x"}
    assert kv.key_from(parts) == "eu.1.n2.u3.s4.f5.false.SESSION_KIND_CLI.x"
    assert kv.template.filter({"tenant.region": "eu", "kind": 1}) == "eu.*.*.*.*.*.*.SESSION_KIND_WEB.*"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (store_pb2.SessionRequest(label="l"), "tenant.region"),
        (session_request(tenant=store_pb2.Tenant(id=1)), "tenant.region"),
        (store_pb2.SessionRequest(tenant=store_pb2.Tenant(region="eu"), label="l"), None),
        (store_pb2.SessionRequest(tenant=store_pb2.Tenant(region="eu", id=1)), "label"),
        (store_pb2.SessionRequest(tenant=store_pb2.Tenant(region="e u", id=1), label="l"), "tenant.region"),
    ],
)
async def test_missing_or_invalid_key_parts_name_the_placeholder(
    served: tuple[rt.Service, store.ProfileServiceClient], request_: store_pb2.SessionRequest, field: str | None
) -> None:
    _, client = served
    if field is None:  # an unset int64 without presence renders as 0: a key
        session, _ = await client.open_session(request_)
        assert session.key == "eu.0.n0.u0.s0.f0.false.SESSION_KIND_UNSPECIFIED.l"
        return
    with pytest.raises(store.ProfileServiceInvalidArgumentError) as failed:
        await client.open_session(request_)
    bad_request = failed.value.bad_request()
    assert bad_request is not None and [v.field for v in bad_request.field_violations] == [field]


async def test_keys_expire_with_their_ttl_and_purges_leave_a_marker(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    session, headers = await client.open_session(session_request())
    assert session.lifetime.seconds == 1 and rt.KV_REVISION_HEADER in headers
    kv = await client.open_session_kv()
    assert await kv.get(session.key) is not None

    async def gone() -> bool:
        return await kv.get(session.key) is None

    await eventually(gone, "the session key outlived its 1 s TTL")
    await client.open_session(session_request())
    await kv.purge(session.key)
    assert await kv.get(session.key) is None
    await kv.create(session.key, store_pb2.Session(key="again"))  # a key whose newest message is a marker holds no value


async def test_watch_sees_puts_deletes_and_purges(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    kv = await client.save_profile_kv()
    await kv.put("user.w", store_pb2.Profile(id="w", name="before"))
    changes: list[rt.KvChange[store_pb2.Profile]] = []
    async with asyncio.timeout(20), kv.watch("user.w") as watch:
        iterator = aiter(watch)
        changes.append(await anext(iterator))  # the current value first
        await client.save_profile(store_pb2.Profile(id="w", name="served"))
        changes.append(await anext(iterator))
        await kv.delete("user.w")
        changes.append(await anext(iterator))
        await kv.put("user.w", store_pb2.Profile(id="w", name="again"))
        changes.append(await anext(iterator))
        await kv.purge("user.w")
        changes.append(await anext(iterator))
    operations = [(c.operation, c.value.name if c.value is not None else None) for c in changes]
    assert operations == [
        (rt.KvOperation.PUT, "before"),
        (rt.KvOperation.PUT, "served"),
        (rt.KvOperation.DELETE, None),
        (rt.KvOperation.PUT, "again"),
        (rt.KvOperation.PURGE, None),
    ]
    assert [c.revision for c in changes] == sorted(c.revision for c in changes)


async def test_keys_by_template_parts(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    _, client = served
    for profile_id in ("a", "b", "c"):
        await client.save_profile(store_pb2.Profile(id=profile_id, name="n"))
    kv = await client.save_profile_kv()
    await kv.delete("user.c")
    assert sorted(await kv.keys()) == ["user.a", "user.b"]
    assert await kv.keys({"id": "b"}) == ["user.b"]
    assert await kv.keys({"id": "zzz"}) == []


async def test_handle_operations_and_their_typed_errors(served: tuple[rt.Service, store.ProfileServiceClient], js: Client) -> None:
    _, client = served
    kv = await client.save_profile_kv()
    revision = await kv.create("user.h", store_pb2.Profile(id="h"))
    with pytest.raises(store.ProfileServiceAlreadyExistsError):
        await kv.create("user.h", store_pb2.Profile(id="h"))
    updated = await kv.update("user.h", store_pb2.Profile(id="h", name="u"), revision)
    with pytest.raises(store.ProfileServiceAbortedError):
        await kv.update("user.h", store_pb2.Profile(id="h", name="late"), revision)
    with pytest.raises(store.ProfileServiceAbortedError):
        await kv.delete("user.h", revision=revision)
    await kv.delete("user.h", revision=updated)
    with pytest.raises(store.ProfileServiceInvalidArgumentError):
        await kv.get("user..h")
    await js.jetstream().publish("$KV.profiles.user.junk", b"\xff\xff not a profile")
    with pytest.raises(store.ProfileServiceDataLossError):
        await kv.get("user.junk")
    await js.jetstream().delete_stream("KV_profiles_cas")
    with pytest.raises(store.ProfileServiceNotFoundError) as missing:
        await client.update_profile_kv()
    assert "profiles_cas" in missing.value.message


async def test_a_client_only_bucket_is_created_by_the_handle_and_never_written_by_the_service(
    served: tuple[rt.Service, store.ProfileServiceClient], js: Client
) -> None:
    _, client = served
    note, headers = await client.annotate(store_pb2.Note(id="n1", text="hello"))
    assert note.text == "hello" and rt.KV_REVISION_HEADER not in headers
    notes = await client.annotate_kv()
    info = await js.jetstream().stream_info("KV_notes")
    assert info.state.messages == 0
    assert notes.key(store_pb2.Note(id="n1")) == "note.n1"
    revision = await notes.put("note.n1", note)
    entry = await notes.get("note.n1")
    assert entry is not None and (entry.value.text, entry.revision) == ("hello", revision)


# Object store ------------------------------------------------------------------


@pytest.fixture
def big_payload_url(tmp_path: Path) -> Iterator[str]:
    """JetStream with a max_payload that lets a 10 MiB report travel as one reply."""
    config = tmp_path / "big.conf"
    config.write_text("max_payload: 16MB\n")
    with running_nats_server("-js", "-sd", str(tmp_path / "js"), "-c", str(config)) as port:
        yield f"nats://127.0.0.1:{port}"


async def test_a_10_mib_report_round_trips_through_the_object_store_with_its_digest(big_payload_url: str) -> None:
    nc = await nats.connect(big_payload_url)
    service = await store.register_profile_service(nc, ProfileService())
    try:
        client = store.ProfileServiceClient(nc)
        started = time.perf_counter()
        report, _ = await client.generate_report(store_pb2.ReportRequest(id="big", size=10 * MIB))
        reports = await client.generate_report_objects()
        name = reports.name(store_pb2.ReportRequest(id="big"))
        stored = await reports.get(name)
        elapsed = time.perf_counter() - started
        print(f"10 MiB object round trip (call, put, get, verify): {elapsed:.2f} s")
        assert name == "report big.bin"
        assert stored is not None and stored.body == pattern(0, 0, 10 * MIB) == report.body
        info = await reports.info(name)
        digest = base64.urlsafe_b64encode(hashlib.sha256(stored.SerializeToString()).digest()).decode()
        assert info is not None and info.digest == f"SHA-256={digest}" and info.size == len(stored.SerializeToString())
        assert await reports.get("report nothing.bin") is None

        # A stored digest that does not match the chunks: DATA_LOSS.
        manager = nc.jetstream()
        subject = f"$O.reports.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        meta = json.loads((await manager.get_last_msg("OBJ_reports", subject)).data or b"{}")
        meta["digest"] = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(b"other").digest()).decode()
        await manager.publish(subject, json.dumps(meta).encode(), headers={"Nats-Rollup": "sub"})
        with pytest.raises(store.ProfileServiceDataLossError):
            await reports.get(name)

        # A chunk too many: DATA_LOSS too.
        await reports.put("extra", store_pb2.Report(id="extra", body=b"x" * 1000))
        extra = json.loads((await manager.get_last_msg("OBJ_reports", "$O.reports.M." + base64.urlsafe_b64encode(b"extra").decode())).data or b"{}")
        await manager.publish(f"$O.reports.C.{extra['nuid']}", b"injected")
        with pytest.raises(store.ProfileServiceDataLossError):
            await reports.get("extra")
        await reports.delete("extra")
        assert await reports.info("extra") is None
    finally:
        await service.stop()
        await nc.close()


# Chunked transfer --------------------------------------------------------------


class Recorder(ProfileService):
    """Keeps what the upload helper says of each upload."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[rt.ChunkedTransfer] = []
        self.uploads = 0

    async def upload(self, requests: AsyncIterator[store_pb2.Chunk], ctx: rt.RequestContext) -> store_pb2.UploadResult:
        self.uploads += 1
        reader = rt.ChunkReader(requests)
        digest = hashlib.sha256()
        while data := await reader.read(10_000):
            digest.update(data)
        assert reader.result is not None
        self.results.append(reader.result)
        return store_pb2.UploadResult(size=reader.result.size, sha256=digest.hexdigest())


async def test_chunked_50_mib_upload_and_download_with_their_checksums(js: Client, tmp_path: Path) -> None:
    handler = Recorder()
    service = await store.register_profile_service(js, handler)
    client = store.ProfileServiceClient(js)
    size = 50 * MIB
    want = hashlib.sha256()
    for piece in pattern_pieces(9, size):
        want.update(piece)
    try:
        source = tmp_path / "source.bin"
        with source.open("wb") as file:
            for piece in pattern_pieces(9, size):
                file.write(piece)
        started = time.perf_counter()
        result, _ = await client.upload_send_file(source)
        up = time.perf_counter() - started
        assert (result.size, result.sha256) == (size, want.hexdigest())
        assert handler.results[-1].digest_verified

        target = tmp_path / "down" / "copy.bin"
        target.parent.mkdir()
        started = time.perf_counter()
        done = await client.download_receive_to_file(store_pb2.DownloadRequest(size=size, seed=9), target)
        down = time.perf_counter() - started
        print(f"50 MiB Py->Py: upload {size / MIB / up:.0f} MiB/s, download {size / MIB / down:.0f} MiB/s")
        assert (done.size, done.sha256, done.digest_verified) == (size, want.hexdigest(), True)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == want.hexdigest()
        assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin"], "no temporary file left"
    finally:
        await service.stop()


async def test_small_transfers_in_every_helper_and_chunk_size(js: Client) -> None:
    handler = Recorder()
    service = await store.register_profile_service(js, handler)
    client = store.ProfileServiceClient(js)
    try:
        data = pattern(1, 0, 200_001)
        for sent in (
            await client.upload_send_bytes(data, chunk_size=1000),
            await client.upload_send_reader(iter([data[:5], data[5:]])),
            await client.upload_send_reader(_StreamReaderLike(data)),
        ):
            assert (sent.message.size, sent.message.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        empty, _ = await client.upload_send_bytes(b"")
        assert (empty.size, handler.results[-1].digest_verified) == (0, True)

        received = await client.download_receive_bytes(store_pb2.DownloadRequest(size=100_000, seed=4))
        assert received.data == pattern(4, 0, 100_000) and received.digest_verified
        chunks: list[bytes] = []

        class Writer:
            async def write(self, data: bytes) -> None:
                chunks.append(data)

        done = await client.download_receive_to_writer(store_pb2.DownloadRequest(size=70_000, seed=2), Writer())
        assert b"".join(chunks) == pattern(2, 0, 70_000) and [len(c) for c in chunks] == [65536, 70_000 - 65536]
        assert done.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
        nothing = await client.download_receive_bytes(store_pb2.DownloadRequest(size=0))
        assert (nothing.data, nothing.size, nothing.digest_verified) == (b"", 0, True)
    finally:
        await service.stop()


class _StreamReaderLike:
    """An ``asyncio.StreamReader``-like source: ``await read(n)``, short reads included."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        n = min(n, 777) if n > 0 else len(self._data)
        data, self._data = self._data[:n], self._data[n:]
        return data


async def test_an_interrupted_download_fails_and_leaves_no_file(served: tuple[rt.Service, store.ProfileServiceClient], tmp_path: Path) -> None:
    _, client = served
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "partial.bin"
    with pytest.raises(store.ProfileServiceUnavailableError) as failed:
        await client.download_receive_to_file(store_pb2.DownloadRequest(size=5 * MIB, seed=1, fail_after=MIB), target)
    assert failed.value.message == "cut"
    assert list((tmp_path / "out").iterdir()) == [], "neither the file nor its temporary file"
    with pytest.raises(store.ProfileServiceUnavailableError):
        await client.download_receive_bytes(store_pb2.DownloadRequest(size=5 * MIB, seed=1, fail_after=MIB))


class Corrupting(Recorder):
    """Downloads whose end carries a wrong digest (or a wrong size)."""

    def download(self, request: store_pb2.DownloadRequest, ctx: rt.RequestContext) -> AsyncIterator[store_pb2.Chunk]:
        return self._corrupted(request, ctx)

    async def _corrupted(self, request: store_pb2.DownloadRequest, ctx: rt.RequestContext) -> AsyncIterator[store_pb2.Chunk]:
        chunk_size = 2 * MIB if request.fail_after == 3 else None  # over the default max_payload
        async for chunk in rt.chunk_stream(ctx, pattern(request.seed, 0, request.size), store_pb2.Chunk, chunk_size=chunk_size):
            yield chunk
        if request.fail_after == 1:
            ctx.response_headers[rt.CHUNKED_DIGEST_HEADER] = "sha-256=" + base64.b64encode(hashlib.sha256(b"no").digest()).decode()
        elif request.fail_after == 2:
            ctx.response_headers[rt.CHUNKED_SIZE_HEADER] = str(request.size + 1)
        else:  # a Go-plugin server: no size, no digest
            del ctx.response_headers[rt.CHUNKED_SIZE_HEADER], ctx.response_headers[rt.CHUNKED_DIGEST_HEADER]


async def test_a_corrupted_transfer_is_data_loss_in_both_directions(js: Client, tmp_path: Path) -> None:
    handler = Corrupting()
    service = await store.register_profile_service(js, handler)
    client = store.ProfileServiceClient(js)
    try:
        for corruption in (1, 2):
            target = tmp_path / f"c{corruption}.bin"
            with pytest.raises(store.ProfileServiceDataLossError):
                await client.download_receive_to_file(store_pb2.DownloadRequest(size=300_000, seed=3, fail_after=corruption), target)
            assert not target.exists()
        with pytest.raises(store.ProfileServiceInvalidArgumentError) as oversized:
            await client.download_receive_bytes(store_pb2.DownloadRequest(size=1000, seed=3, fail_after=3))
        assert "max_payload" in oversized.value.message
        unverified = await client.download_receive_bytes(store_pb2.DownloadRequest(size=1000, seed=3))
        assert (unverified.data, unverified.digest_verified) == (pattern(3, 0, 1000), False)

        chunks = [store_pb2.Chunk(data=b"abc"), store_pb2.Chunk(data=b"def")]
        wrong = {rt.CHUNKED_SIZE_HEADER: "6", rt.CHUNKED_DIGEST_HEADER: "sha-256=" + base64.b64encode(hashlib.sha256(b"abcdeX").digest()).decode()}
        with pytest.raises(store.ProfileServiceDataLossError):
            await client._client.client_stream("upload", chunks, store_pb2.UploadResult, trailers=lambda: wrong)
        with pytest.raises(store.ProfileServiceDataLossError):
            await client._client.client_stream("upload", chunks, store_pb2.UploadResult, trailers=lambda: {rt.CHUNKED_DIGEST_HEADER: "sha-256=!!"})
        result, _ = await client._client.client_stream("upload", chunks, store_pb2.UploadResult)  # a Go-plugin caller
        assert result.size == 6 and not handler.results[-1].digest_verified
    finally:
        await service.stop()


async def test_a_chunk_over_max_payload_fails_before_anything_is_sent(js: Client) -> None:
    handler = Recorder()
    service = await store.register_profile_service(js, handler)
    client = store.ProfileServiceClient(js)
    try:
        with pytest.raises(store.ProfileServiceInvalidArgumentError) as failed:
            await client.upload_send_bytes(b"x" * 10, chunk_size=js.max_payload)
        assert "max_payload" in failed.value.message
        with pytest.raises(rt.InvalidArgumentError) as zero:
            await client.upload_send_bytes(b"x", chunk_size=0)
        assert "chunk size" in zero.value.message
        assert handler.uploads == 0 and stats(service, "upload").num_requests == 0, "nothing was sent"
        await client.upload_send_bytes(b"x" * 10, chunk_size=js.max_payload - 100)
    finally:
        await service.stop()


async def test_a_source_that_fails_cancels_the_upload(served: tuple[rt.Service, store.ProfileServiceClient]) -> None:
    service, client = served

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await client.upload_send_reader(broken())

    async def cancelled() -> bool:
        upload = stats(service, "upload")
        return upload.num_requests == 1 and upload.num_errors == 1

    await eventually(cancelled, "the server never saw the upload end")


# The cross-language programs, Python against Python -----------------------------


def peer_env(project_tree: Path, url: str) -> dict[str, str]:
    path = os.pathsep.join([str(project_tree), str(RUNTIME / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "NATS_URL": url}


def run_client(env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(PEERS / "store_client.py"), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def test_the_store_programs_python_against_python(project_tree: Path, js_url: str, tmp_path: Path) -> None:
    env = peer_env(project_tree, js_url)
    server = subprocess.Popen([sys.executable, str(PEERS / "store_server.py")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", "the server did not start"
        assert run_client(env, "kv-get", "user.p") == {"found": False}
        put = run_client(env, "kv-put", "user.p", "p", "Pat")
        assert run_client(env, "kv-get", "user.p") == {"found": True, "revision": put["revision"], "id": "p", "name": "Pat", "version": 7}
        assert run_client(env, "obj-get", "report none.bin")["error"] == "NOT_FOUND"
        size = 50 * MIB
        want = hashlib.sha256()
        for piece in pattern_pieces(5, size):
            want.update(piece)
        upload = run_client(env, "upload", str(size), "5")
        assert (upload["size"], upload["sha256"]) == (size, want.hexdigest())
        target = tmp_path / "download.bin"
        download = run_client(env, "download", str(size), "5", "0", str(target))
        assert (download["size"], download["sha256"]) == (size, want.hexdigest())
        print(f"peak RSS: upload {upload['peak_rss_kib']} KiB, download {download['peak_rss_kib']} KiB")
        assert isinstance(upload["peak_rss_kib"], int) and upload["peak_rss_kib"] < 200 * 1024, "bounded memory"
        assert isinstance(download["peak_rss_kib"], int) and download["peak_rss_kib"] < 200 * 1024, "bounded memory"
        cut = run_client(env, "download", str(size), "5", str(MIB), str(tmp_path / "cut.bin"))
        assert cut["error"] == "UNAVAILABLE" and cut["file_exists"] is False
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
        assert server.returncode == 0
    finally:
        server.kill()
        server.wait()


def test_the_store_programs_pass_mypy_strict(project_tree: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", f"--cache-dir={os.devnull}"),
            f"--config-file={RUNTIME / 'pyproject.toml'}",
            str(PEERS / "store_server.py"),
            str(PEERS / "store_client.py"),
        ],
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(project_tree), str(RUNTIME / "src")])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
