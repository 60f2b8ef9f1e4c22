"""The runnable example in ``examples/python``: it type-checks with
``mypy --strict`` against the generated code (as do the tests' own handlers
and interop peers), and its server and client work together over a real
nats-server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from conftest import REPO

EXAMPLE = REPO / "examples" / "python"


def test_code_written_against_the_generated_api_passes_mypy_strict(project_tree: Path) -> None:
    """The example, and the handlers and clients the tests use across languages."""
    tests = Path(__file__).parent
    examples = [EXAMPLE / "order_server.py", EXAMPLE / "order_client.py", EXAMPLE / "traced.py"]
    files = [*examples, tests / "support.py", *sorted((tests / "interop").glob("*.py"))]
    files += [REPO / "tests" / "peers" / "chaos_server.py", REPO / "tests" / "peers" / "chaos_client.py"]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", f"--cache-dir={os.devnull}", *map(str, files)],
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(project_tree), str(tests), str(REPO / "runtime-py" / "src")])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_server_and_client_handle_every_typed_error(project_tree: Path, nats_url: str) -> None:
    # This checkout's runtime, not whichever copy is installed.
    path = os.pathsep.join([str(project_tree), str(REPO / "runtime-py" / "src")])
    env = {**os.environ, "PYTHONPATH": path, "NATS_URL": nats_url}
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "order_server.py")], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("serving order_service"), "the server did not start"
        client = subprocess.run(
            [sys.executable, str(EXAMPLE / "order_client.py")], env=env, capture_output=True, text=True, timeout=60
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == [
            "placed ord-1 for 3998 cents (trace demo-1)",
            "found ord-1 with 1 item(s)",
            "expired cart: ORDER_EXPIRED, ask the customer to refresh the cart (order expired after 30 minutes)",
            "declined card: PAYMENT_FAILED, ask for another card (the card was declined)",
            "sold out: STOCK_UNAVAILABLE, drop item sold-out (an item is out of stock)",
            "empty order: INVALID_ARGUMENT, fix the request (an order needs at least one item)",
            "lookup: NOT_FOUND (no order ord-404)",
            "elsewhere: NoRespondersError (no responders on nobody.home.get_order)",
        ]
        server.send_signal(signal.SIGINT)
        rest, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert "stats: create_order requests=5 errors=4" in rest
        assert "stats: get_order requests=2 errors=1" in rest
    finally:
        server.kill()
        server.wait()


def test_the_traced_example_prints_one_trace_from_caller_to_service(project_tree: Path, nats_url: str) -> None:
    # The runtime under test comes first if the caller put it on PYTHONPATH (as the suite does).
    path = os.pathsep.join(filter(None, [str(project_tree), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "NATS_URL": nats_url}
    run = subprocess.run([sys.executable, str(EXAMPLE / "traced.py")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    first, *tree = run.stdout.splitlines()
    assert re.fullmatch(r"trace [0-9a-f]{32}", first), "one trace id for every span"
    assert tree == [
        "INTERNAL checkout",
        "  CLIENT order.v1.OrderService/CreateOrder on api.v1.create_order",
        "    SERVER order.v1.OrderService/CreateOrder on api.v1.create_order",
    ]
