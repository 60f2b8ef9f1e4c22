"""One operation on ``store.v1.ProfileService``'s persistence (PROTOCOL §12)
with the generated Python client, for the cross-language store tests (the
twin of tests/src/bin/store_client.rs and tests/ts/store_client.ts). Prints
one JSON line and exits 0, also on a typed error (``{"error": "<CODE>", ...}``):

- ``kv-get KEY``: SaveProfile's typed handle (bucket ``profiles``):
  ``{"found": true, "revision": n, "id": .., "name": .., "version": n}`` or ``{"found": false}``
- ``kv-put KEY ID NAME``: puts Profile{id, name, version: 7}: ``{"revision": n}``
- ``obj-get NAME``: GenerateReport's object store: ``{"id": .., "size": n, "sha256": "<hex of body>"}``
- ``upload SIZE SEED``: uploads pattern(SEED) made on the fly (never a buffer):
  ``{"size": n, "sha256": "<hex, the server's>", "peak_rss_kib": n}``
- ``download SIZE SEED FAIL_AFTER PATH``: downloads to the file PATH:
  ``{"size": n, "sha256": "<hex of the file>", "peak_rss_kib": n}``, or
  ``{"error": "<CODE>", "file_exists": <whether PATH exists>}``

``peak_rss_kib`` is VmHWM from /proc/self/status. pattern(seed): byte i is (i * 31 + seed) mod 251.

usage: NATS_URL=nats://... python store_client.py COMMAND [ARGS]
(with the generated ``store.v1`` modules and the runtime on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator

import nats
import nats_micro_runtime as rt
from store.v1 import store_nats_pb2 as store
from store.v1 import store_pb2

PERIOD = 251


def pattern(seed: int, offset: int, length: int) -> bytes:
    """``length`` bytes of pattern(seed) from ``offset`` (it repeats every 251 bytes)."""
    period = bytes((i * 31 + seed) % PERIOD for i in range(PERIOD))
    start = offset % PERIOD
    return (period * ((start + length) // PERIOD + 1))[start : start + length]


def peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while data := file.read(1 << 16):
            digest.update(data)
    return digest.hexdigest()


async def generated(seed: int, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, size, 1 << 16):
        yield pattern(seed, offset, min(1 << 16, size - offset))


async def run(client: store.ProfileServiceClient, command: str, args: list[str]) -> dict[str, object]:
    if command == "kv-get":
        # snippet: python-kv-client
        kv = await client.save_profile_kv()  # a typed handle on bucket "profiles"
        entry = await kv.get(args[0])  # KvEntry[Profile] (value, revision, created) or None
        # end snippet
        if entry is None:
            return {"found": False}
        profile = entry.value
        return {"found": True, "revision": entry.revision, "id": profile.id, "name": profile.name, "version": profile.version}
    if command == "kv-put":
        kv = await client.save_profile_kv()
        revision = await kv.put(args[0], store_pb2.Profile(id=args[1], name=args[2], version=7))
        return {"revision": revision}
    if command == "obj-get":
        reports = await client.generate_report_objects()
        report = await reports.get(args[0])
        if report is None:
            return {"error": rt.NOT_FOUND, "message": f"no object {args[0]!r}"}
        return {"id": report.id, "size": len(report.body), "sha256": hashlib.sha256(report.body).hexdigest()}
    if command == "upload":
        size, seed = int(args[0]), int(args[1])
        # snippet: python-chunked-client
        result, _ = await client.upload_send_reader(generated(seed, size))
        # end snippet
        return {"size": result.size, "sha256": result.sha256, "peak_rss_kib": peak_rss_kib()}
    if command == "download":
        size, seed, fail_after, path = int(args[0]), int(args[1]), int(args[2]), args[3]
        request = store_pb2.DownloadRequest(size=size, seed=seed, fail_after=fail_after)
        try:
            done = await client.download_receive_to_file(request, path)
        except rt.NatsMicroError as err:
            return {"error": err.code, "message": err.message, "file_exists": os.path.exists(path)}
        return {"size": done.size, "sha256": file_sha256(path), "peak_rss_kib": peak_rss_kib()}
    raise SystemExit(f"unknown command {command!r}")


async def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    try:
        try:
            out = await run(store.ProfileServiceClient(nc), sys.argv[1], sys.argv[2:])
        except rt.NatsMicroError as err:
            out = {"error": err.code, "message": err.message}
        print(json.dumps(out), flush=True)
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
