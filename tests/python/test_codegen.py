"""The generated code for the project's protos and for the whole corpus
imports cleanly (warnings are errors) and passes ``mypy --strict`` against
protoc's modules and mypy-protobuf's stubs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def generated_modules(tree: Path) -> list[str]:
    return sorted(".".join(p.relative_to(tree).with_suffix("").parts) for p in tree.rglob("*_nats_pb2.py"))


@pytest.mark.parametrize("tree_name", ["project_tree", "corpus_tree"])
def test_generated_code_passes_mypy_strict(tree_name: str, request: pytest.FixtureRequest) -> None:
    tree: Path = request.getfixturevalue(tree_name)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--explicit-package-bases", f"--cache-dir={os.devnull}", "."],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.parametrize("tree_name", ["project_tree", "corpus_tree"])
def test_generated_modules_import_cleanly(tree_name: str, request: pytest.FixtureRequest) -> None:
    tree: Path = request.getfixturevalue(tree_name)
    modules = generated_modules(tree)
    assert len(modules) >= 3, modules
    # A fresh interpreter per tree: the corpus and the project both define order.v1 messages.
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, *modules], cwd=tree, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_corpus_proto_with_services_has_a_module(corpus_tree: Path) -> None:
    assert generated_modules(corpus_tree) == [
        "demo.v1.encoding_nats_pb2",
        "example.v1.service_nats_pb2",
        "kvstore_demo.v1.service_nats_pb2",
        "order.v1.fulfillment_nats_pb2",
        "order.v1.service_nats_pb2",
        "order.v2.service_nats_pb2",
        "product.v1.service_nats_pb2",
        "streaming.v1.service_nats_pb2",
        "user.v1.service_nats_pb2",
    ]
    # The runtime is the installed package, not a copy per output.
    assert not list(corpus_tree.rglob("nats_micro_runtime*"))


def test_generated_codes_follow_the_runtime_table() -> None:
    """The generated ``ERROR_CODE_*`` constants list the canonical codes in
    the runtime's order (the Go plugin's), then the custom codes."""
    import nats_micro_runtime as rt
    from order.v1 import order_nats_pb2 as orders

    names = [name for name in vars(orders) if name.startswith("ERROR_CODE_")]
    values = [getattr(orders, name) for name in names]
    assert tuple(values[:16]) == rt.CANONICAL_CODES
    assert rt.CANONICAL_CODES == (
        "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "INTERNAL",
        "UNAVAILABLE", "CANCELLED", "UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "DATA_LOSS",
    )  # fmt: skip
    assert values[16:] == ["ORDER_EXPIRED", "PAYMENT_FAILED", "STOCK_UNAVAILABLE"]
