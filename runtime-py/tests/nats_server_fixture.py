"""A real nats-server per test for the runtime package's own tests (imported
by the test modules: a conftest.py here would clash with tests/python's when
both run in one pytest)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.aio.client
import pytest


@pytest.fixture
async def nc() -> AsyncIterator[nats.aio.client.Client]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "nats-server"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        connection = await nats.connect(f"nats://127.0.0.1:{port}")
        yield connection
        await connection.close()
    finally:
        server.terminate()
        server.wait()
