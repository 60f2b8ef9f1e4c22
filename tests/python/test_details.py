"""Typed error details (PROTOCOL §4.1) end to end with the generated code:
the Python details client (tests/peers/details_client.py) against the
Python details server (tests/peers/details_server.py) on a real
nats-server, every case of proto/details/v1 on both services; both programs
pass ``mypy --strict``; and the generated client reads a ``nats.micro``
service, which knows nothing of details, as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nats_micro_runtime as rt
from conftest import REPO
from details.v1 import details_nats_pb2 as details
from details.v1 import details_pb2
from google.rpc import error_details_pb2, status_pb2
from nats import micro
from nats.aio.client import Client
from nats.micro.request import Request

PEERS = REPO / "tests" / "peers"
RUNTIME = REPO / "runtime-py"
CASES = ["echo", "plain", "plain raw", "standard", "custom", "debug", "unknown", "oversized", "malformed"]


def test_the_details_client_passes_every_case_against_the_details_server(project_tree: Path, nats_url: str) -> None:
    # This checkout's runtime first, whatever the environment's install points at.
    path = os.pathsep.join([str(project_tree), str(RUNTIME / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "NATS_URL": nats_url}
    server = subprocess.Popen([sys.executable, str(PEERS / "details_server.py")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", "the server did not start"
        client = subprocess.run(
            [sys.executable, str(PEERS / "details_client.py")], env=env, capture_output=True, text=True, timeout=60
        )
        assert client.returncode == 0, client.stdout + client.stderr
        want = [f"ok {case}" for case in CASES] + [f"ok {case} open" for case in CASES]
        assert client.stdout.splitlines() == want
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
        assert server.returncode == 0
    finally:
        server.kill()
        server.wait()


def test_the_details_programs_pass_mypy_strict(project_tree: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", f"--cache-dir={os.devnull}"),
            f"--config-file={RUNTIME / 'pyproject.toml'}",  # reads google.rpc's stubs
            str(PEERS / "details_server.py"),
            str(PEERS / "details_client.py"),
        ],
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(project_tree), str(RUNTIME / "src")])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_status_looking_body_without_the_marker_is_data(nc: Client) -> None:
    """A ``nats.micro`` service (no details) whose error data happens to be a
    valid ``Status``: the generated client keeps it as data, byte for byte."""
    status = status_pb2.Status(code=5, message="looks like one")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="NOT_MINE"))
    body = status.SerializeToString()
    service = await micro.add_service(nc, name="elsewhere", version="1.0.0")

    async def fail(request: Request) -> None:
        await request.respond_error("404", "gone", data=body)

    await service.add_endpoint(name="explain", subject="details.v1.explain.explain", handler=fail)
    try:
        await details.ExplainServiceClient(nc).explain(details_pb2.ExplainRequest(case="x"))
        raise AssertionError("the call succeeded")
    except details.ExplainServiceNotFoundError as err:
        assert (err.message, err.data, err.details) == ("gone", body, [])
        assert err.error_info() is None and rt.ERROR_DETAILS_HEADER not in err.headers
    finally:
        await service.stop()
