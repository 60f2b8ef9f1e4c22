"""Typed error details (PROTOCOL §4.1) end to end with the generated code:
the Python details client (tests/peers/details_client.py) against the
Python details server (tests/peers/details_server.py) on a real
nats-server, every case of proto/details/v1 on both services; and both
programs pass ``mypy --strict``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import REPO

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
