"""The runtime package on its own (no generated code): version rule, codes
across runtime copies, the deadline header table, the reply-subject policy,
typing, and a service on a real nats-server built from a hand-written spec."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client as NatsClient
import nats_micro_runtime as rt
from nats_server_fixture import nc  # noqa: F401 (a fixture)
import pytest
from google.protobuf import wrappers_pb2

HERE = Path(__file__).parent
CASES = json.loads((HERE.parents[1] / "tests" / "deadline_header_cases.json").read_text(encoding="utf-8"))


def test_generated_code_of_the_same_minor_version_is_accepted() -> None:
    rt.require_compatible(rt.__version__, "m")
    rt.require_compatible("0.1.7", "m")
    for other in ["0.2.0", "1.1.0", "0.0.9"]:
        with pytest.raises(ImportError, match=rf"protoc-gen-nats-micro {other}.*nats-micro-runtime {rt.__version__} is installed"):
            rt.require_compatible(other, "m")


def test_the_canonical_codes_are_in_the_go_plugins_order() -> None:
    assert rt.CANONICAL_CODES[:7] == tuple(rt.BUILTIN_NUMBERS)
    assert rt.CANONICAL_CODES[:3] == ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS")
    assert rt.CANONICAL_CODES[-1] == "DATA_LOSS" and len(set(rt.CANONICAL_CODES)) == 16


def test_codes_are_read_by_duck_typing() -> None:
    class Foreign(Exception):
        data = b"d"

        def nats_error_code(self) -> str:
            return "ORDER_EXPIRED"

    assert rt.error_code(rt.NotFoundError("M", "x")) == "NOT_FOUND"
    assert rt.error_code(Foreign("gone")) == "ORDER_EXPIRED"
    assert rt.error_code(ValueError("x")) is None and rt.error_code(None) is None
    coded = rt.as_coded(Foreign("gone"), "M")
    assert coded is not None and (coded.code, coded.message, coded.data, coded.method) == ("ORDER_EXPIRED", "gone", b"d", "M")
    assert isinstance(rt.NotFoundError("M", "x"), rt.CodedError)


@pytest.mark.parametrize(("value", "micros"), CASES["values"], ids=repr)
def test_the_deadline_header_table(value: str, micros: int | None) -> None:
    assert rt.decode_timeout(value) == (None if micros is None else micros / 1_000_000)


def test_subject_patterns() -> None:
    assert rt.subject_matches("admin.>", "admin.shutdown.now")
    assert not rt.subject_matches("admin.>", "admin")
    assert rt.subject_matches("a.*.c", "a.b.c") and not rt.subject_matches("a.*.c", "a.b.c.d")


def test_the_runtime_passes_mypy_strict() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", f"--cache-dir={os.devnull}"),
            f"--config-file={HERE.parent / 'pyproject.toml'}",  # reads google.rpc's stubs
            str(HERE.parent / "src"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_hand_written_service_answers_and_keeps_foreign_codes(nc: NatsClient) -> None:
    class Quota(Exception):
        def nats_error_code(self) -> str:
            return "RESOURCE_EXHAUSTED"

    async def echo(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        if request.value == "quota":
            raise Quota("over quota")
        return wrappers_pb2.StringValue(value=request.value.upper())

    spec = rt.ServiceSpec(
        proto_name="t.Echo", name="echo", version="1.0.0", description="", subject_prefix="echo",
        endpoints=(rt.EndpointSpec("Echo", "echo"),),
    )  # fmt: skip
    service = await rt.start_service(nc, spec, {"echo": rt.UnaryEndpoint(echo, wrappers_pb2.StringValue)}, {})
    client = rt.Client(nc, spec, rt.ServiceError, timeout=5)
    reply = await client.unary("echo", wrappers_pb2.StringValue(value="hi"), wrappers_pb2.StringValue)
    assert reply.message.value == "HI"
    with pytest.raises(rt.ServiceError) as caught:
        await client.unary("echo", wrappers_pb2.StringValue(value="quota"), wrappers_pb2.StringValue)
    assert (caught.value.code, caught.value.message) == ("RESOURCE_EXHAUSTED", "over quota")
    await asyncio.wait_for(service.stop(), 5)
