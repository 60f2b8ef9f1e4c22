"""Fixtures for the Python output's tests.

- ``project_tree`` / ``corpus_tree``: code generated once per run by the
  built plugin (``target/debug/protoc-gen-nats-micro``, or ``$NATS_MICRO_PLUGIN``)
  through ``grpc_tools.protoc``, with protoc's ``_pb2`` modules and
  mypy-protobuf stubs. The project tree (``proto/`` plus the corpus's JSON
  demo) is generated as pytest starts and put on ``sys.path``, so test
  modules import the generated modules.
- ``nats_url``: a fresh nats-server on a free loopback port per test.
- ``nc``: a connection to it, closed after the test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
VENV_BIN = Path(sys.executable).parent
CORPUS = SHARED / "corpus" / "anchor-examples"
GOOGLEAPIS = SHARED / "corpus" / "googleapis"
SCHEMAS = SHARED / "schemas" / "micro" / "v1"
PROJECT_PROTOS = [
    "order/v1/order.proto",
    "product/v1/product.proto",
    "edge/nested/deep/v1/edge.proto",
    "streams/v1/streams.proto",
    "chaos/v1/chaos.proto",
    "details/v1/details.proto",
    "store/v1/store.proto",
]
# Imported by the protos generated here; their _pb2 modules must exist for imports to resolve.
SUPPORT_PROTOS = ["natsmicro/options.proto"]
# Imported by the corpus only.
GOOGLEAPIS_PROTOS = ["google/api/annotations.proto", "google/api/http.proto"]
HAS_CORPUS = CORPUS.is_dir()
HAS_SCHEMAS = SCHEMAS.is_dir()
NO_CORPUS = "skipped: no ../shared/corpus beside the repository"
NO_SCHEMAS = "skipped: no ../shared/schemas beside the repository"


def plugin_path() -> Path:
    """The plugin binary under test."""
    path = Path(os.environ.get("NATS_MICRO_PLUGIN", REPO / "target" / "debug" / "protoc-gen-nats-micro"))
    if not path.exists():
        pytest.exit(f"{path} is missing: run `cargo build -p protoc-gen-nats-micro` first", returncode=2)
    sources = REPO / "protoc-gen-nats-micro" / "src"
    newest = max(p.stat().st_mtime for p in sources.rglob("*") if p.is_file())
    if "NATS_MICRO_PLUGIN" not in os.environ and path.stat().st_mtime < newest:
        pytest.exit(f"{path} is older than its sources: run `cargo build -p protoc-gen-nats-micro` first", returncode=2)
    return path


def generate(out: Path, includes: list[Path], protos: list[str]) -> Path:
    """Runs protoc with --python_out, --mypy_out and --nats-micro_out (lang=python) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{include}" for include in includes),
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--plugin=protoc-gen-mypy={VENV_BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-nats-micro={plugin_path()}",
        f"--nats-micro_out={out}",
        "--nats-micro_opt=lang=python",
        *protos,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    return out


def corpus_protos() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.proto"))


_project_dir = tempfile.TemporaryDirectory(prefix="nats-micro-py-project-")
PROJECT_TREE = Path(_project_dir.name)
"""The project's protos and the corpus's JSON demo, generated when pytest
starts (test modules import them) and put on ``sys.path``."""


def pytest_configure(config: pytest.Config) -> None:
    generate(PROJECT_TREE, [REPO / "proto"], [*PROJECT_PROTOS, "jsondemo/v1/jsondemo.proto", *SUPPORT_PROTOS])
    sys.path.insert(0, str(PROJECT_TREE))


def pytest_unconfigure(config: pytest.Config) -> None:
    _project_dir.cleanup()


@pytest.fixture(scope="session")
def project_tree() -> Path:
    return PROJECT_TREE


@pytest.fixture(scope="session")
def corpus_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every corpus proto, generated (not importable in-process: the corpus
    redefines the project's ``order.v1`` messages). Skipped without ../shared."""
    if not HAS_CORPUS:
        pytest.skip(NO_CORPUS)
    protos = [*corpus_protos(), *SUPPORT_PROTOS, *GOOGLEAPIS_PROTOS]
    return generate(tmp_path_factory.mktemp("corpus"), [CORPUS, GOOGLEAPIS, REPO / "proto"], protos)


def nats_server_binary() -> str:
    return os.environ.get("NATS_SERVER", str(VENV_BIN / "nats-server"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_nats_server(*args: str) -> Iterator[int]:
    """A nats-server of its own on a free loopback port (with extra ``args``,
    e.g. ``-c FILE``) while the block runs; yields the port."""
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *args],
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
                assert time.monotonic() < deadline, f"nats-server did not start on port {port}"
                time.sleep(0.02)
        yield port
    finally:
        server.terminate()
        server.wait()


@pytest.fixture
def nats_url() -> Iterator[str]:
    """A nats-server of its own for one test."""
    with running_nats_server() as port:
        yield f"nats://127.0.0.1:{port}"


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()
