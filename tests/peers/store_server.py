"""Serves ``store.v1.ProfileService`` (proto/store/v1/store.proto) with the
generated Python code and its persistence (PROTOCOL §12), for the
cross-language store tests (the twin of tests/src/bin/store_server.rs and
tests/ts/store_server.ts):

- Save/Create/Update/TouchProfile return the request's profile with
  ``version`` = how many calls with that id this process has seen (the four
  share the counter); name ``reject`` fails with PROFILE_REJECTED (nothing
  is persisted);
- OpenSession returns the key the service writes under and a 1 s lifetime;
- Annotate echoes the note; GenerateReport returns ``size`` bytes of pattern(0);
- Upload hashes what it receives as it streams, through the upload helper;
- Download streams ``size`` bytes of pattern(seed), made on the fly, through
  the download helper, and fails with UNAVAILABLE "cut" once ``fail_after``
  bytes (when set) were sent.

pattern(seed): byte i is (i * 31 + seed) mod 251.

usage: NATS_URL=nats://... python store_server.py
(with the generated ``store.v1`` modules and the runtime on PYTHONPATH).
Prints ``ready`` once serving; stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import nats
import nats_micro_runtime as rt
from serving import serve_until_signalled
from google.protobuf import duration_pb2
from store.v1 import store_nats_pb2 as store
from store.v1 import store_pb2

PERIOD = 251


def pattern(seed: int, offset: int, length: int) -> bytes:
    """``length`` bytes of pattern(seed) from ``offset``: byte i is (i * 31 + seed) mod 251,
    which repeats every 251 bytes."""
    period = bytes((i * 31 + seed) % PERIOD for i in range(PERIOD))
    start = offset % PERIOD
    return (period * ((start + length) // PERIOD + 1))[start : start + length]


def pattern_pieces(seed: int, size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """pattern(seed) of ``size`` bytes, ``piece`` bytes at a time."""
    for offset in range(0, size, piece):
        yield pattern(seed, offset, min(piece, size - offset))


class ProfileService:
    """The ProfileService as the proto documents it."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def _profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        if request.name == "reject":
            raise store.ProfileServiceProfileRejectedError(ctx.method, f"profile {request.id} is rejected")
        self.seen[request.id] += 1
        return store_pb2.Profile(id=request.id, name=request.name, email=request.email, version=self.seen[request.id])

    async def save_profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        return self._profile(request, ctx)

    async def create_profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        return self._profile(request, ctx)

    async def update_profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        return self._profile(request, ctx)

    async def touch_profile(self, request: store_pb2.Profile, ctx: rt.RequestContext) -> store_pb2.Profile:
        return self._profile(request, ctx)

    async def open_session(self, request: store_pb2.SessionRequest, ctx: rt.RequestContext) -> store_pb2.Session:
        return store_pb2.Session(key=ctx.store_key(request), lifetime=duration_pb2.Duration(seconds=1))

    async def annotate(self, request: store_pb2.Note, ctx: rt.RequestContext) -> store_pb2.Note:
        return request

    async def generate_report(self, request: store_pb2.ReportRequest, ctx: rt.RequestContext) -> store_pb2.Report:
        return store_pb2.Report(id=request.id, body=pattern(0, 0, request.size))

    # snippet: python-chunked-server
    async def upload(self, requests: AsyncIterator[store_pb2.Chunk], ctx: rt.RequestContext) -> store_pb2.UploadResult:
        reader = rt.ChunkReader(requests)  # checks the caller's size and digest at the end
        digest = hashlib.sha256()
        async for data in reader:
            digest.update(data)
        assert reader.result is not None
        return store_pb2.UploadResult(size=reader.result.size, sha256=digest.hexdigest())

    def download(self, request: store_pb2.DownloadRequest, ctx: rt.RequestContext) -> AsyncIterator[store_pb2.Chunk]:
        return rt.chunk_stream(ctx, self._generate(request), store_pb2.Chunk)  # size and digest go on the end

    # end snippet

    async def _generate(self, request: store_pb2.DownloadRequest) -> AsyncIterator[bytes]:
        sent = 0
        for piece in pattern_pieces(request.seed, request.size):
            if request.fail_after > 0 and sent >= request.fail_after:
                raise rt.UnavailableError("Download", "cut")
            yield piece
            sent += len(piece)


async def main() -> None:
    # Failures the scenario provokes on purpose are not worth a log line here.
    logging.getLogger("nats_micro_runtime").setLevel(logging.CRITICAL)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    service = await store.register_profile_service(nc, ProfileService())
    await serve_until_signalled(service)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
