"""The Python peer of the cross-language trace test (tests/peers/trace_server.py)
on its own: two hops of it, called with a W3C ``traceparent`` of our own,
record one trace whose parent links go caller → first server span → its
client span → second server span, printed as the proto's comments say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from conftest import REPO, generate

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PEER = REPO / "tests" / "peers" / "trace_server.py"


def start_hop(tree: Path, nats_url: str, name: str) -> subprocess.Popen[str]:
    path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "NATS_URL": nats_url, "HOP_NAME": name}
    hop = subprocess.Popen([sys.executable, str(PEER)], env=env, stdout=subprocess.PIPE, text=True)
    assert hop.stdout is not None and hop.stdout.readline().strip() == "ready", f"hop {name} did not start"
    return hop


def stop_hop(hop: subprocess.Popen[str]) -> list[dict[str, Any]]:
    hop.send_signal(signal.SIGTERM)
    out, _ = hop.communicate(timeout=30)
    assert hop.returncode == 0
    (line,) = [line for line in out.splitlines() if line.startswith("spans ")]
    spans: list[dict[str, Any]] = json.loads(line.removeprefix("spans "))
    return spans


async def test_two_python_hops_record_one_trace_with_the_right_parents(tmp_path: Path, nats_url: str, nc: Client) -> None:
    tree = generate(tmp_path, [REPO / "proto"], ["trace/v1/trace.proto", "natsmicro/options.proto"])
    first, second = start_hop(tree, nats_url, "one"), start_hop(tree, nats_url, "two")
    try:
        # HopRequest{route: ["two"]}, with a caller's span of our own as the parent.
        headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
        reply = await nc.request("trace.v1.one.hop", b"\x0a\x03two", timeout=10, headers=headers)
        assert reply.data == b"\x0a\x03one\x0a\x03two", "HopResponse{visited: [one, two]}"
    finally:
        one, two = stop_hop(first), stop_hop(second)
    (one_server,) = [span for span in one if span["kind"] == "server"]
    (one_client,) = [span for span in one if span["kind"] == "client"]
    (two_server,) = two
    assert {span["trace_id"] for span in (one_server, one_client, two_server)} == {TRACE_ID}
    assert one_server["parent_span_id"] == CALLER_SPAN
    assert one_client["parent_span_id"] == one_server["span_id"]
    assert two_server["parent_span_id"] == one_client["span_id"]
    assert one_server["name"] == one_client["name"] == two_server["name"] == "trace.v1.TraceService/Hop"
    assert one_server["attributes"] == {
        "rpc.system": "nats_micro",
        "rpc.service": "trace.v1.TraceService",
        "rpc.method": "Hop",
        "messaging.system": "nats",
        "messaging.destination.name": "trace.v1.one.hop",
        "nats_micro.endpoint": "hop",
    }
    assert one_client["attributes"]["messaging.destination.name"] == "trace.v1.two.hop"
