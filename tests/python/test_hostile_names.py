"""Names and text protoc accepts that used to break the Python output
(issue 9.3–9.5): a message named like a keyword (``def``, nested ``class``),
an RPC named like a soft keyword (``Match``) beside ``Matches``, RPCs
``Match`` and ``Match_`` (refused, naming both: they would share a handler),
comments with a
non-breaking space, line and paragraph separators, bidi controls and triple
quotes, and a proto file name with U+2028. The output must import, pass
``mypy --strict`` and serve every endpoint on a real nats-server."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import nats_micro_runtime as rt
import pytest
from conftest import REPO, generate
from nats.aio.client import Client

PROTO = '''syntax = "proto3";
package hostile.v1;

import "natsmicro/options.proto";

// A message named like a keyword. NBSP:\u00a0here; separators:\u2028and\u2029;
// bidi:\u202e\u2066 and triple quotes: """ and a backslash \\ at the end\\
message def {
  string x = 1;
  message class { int32 y = 1; }
}
message None { string z = 1; }

//   Service comment\u00a0with\u2028a separator """ and '\'\'' quotes.
//\u00a0\u00a0indented by non-breaking spaces (cutting 3 bytes off this line split a character).
service Weird {
  option (natsmicro.service) = { subject_prefix: "weird" };
  // Method comment with\u00a0NBSP\u0085and NEL.
  rpc Match(def) returns (def.class);
  rpc Matches(None) returns (None);
}
'''

FILE_NAME = "hostile/v1/weird.proto"

# proto2, several services per file, a streaming-only service and one using
# only well-known types.
SHAPES_FILE_NAME = "hostile/v1/shapes.proto"
SHAPES_PROTO = '''syntax = "proto2";
package hostile.v1.deeper;
import "google/protobuf/empty.proto";
import "google/protobuf/wrappers.proto";
message Tick { optional int32 n = 1; }
service OnlyStreams { rpc Watch(Tick) returns (stream Tick); rpc Feed(stream Tick) returns (Tick); }
service WellKnown { rpc Ping(google.protobuf.Empty) returns (google.protobuf.StringValue); }
service Proto2 { rpc Next(Tick) returns (Tick); }
'''

# A file name with U+2028 (protoc accepts it): its module cannot be named by
# an import statement, so its header must not break and it imports by importlib.
ODD_FILE_NAME = "hostile/v1/se\u2028p.proto"
ODD_PROTO = '''syntax = "proto3";
package hostile.v1;
import "google/protobuf/empty.proto";
service Odd { rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty); }
'''


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    protos = tmp_path_factory.mktemp("hostile-protos")
    (protos / "hostile/v1").mkdir(parents=True)
    (protos / FILE_NAME).write_text(PROTO, encoding="utf-8")
    (protos / ODD_FILE_NAME).write_text(ODD_PROTO, encoding="utf-8")
    (protos / SHAPES_FILE_NAME).write_text(SHAPES_PROTO, encoding="utf-8")
    files = [FILE_NAME, ODD_FILE_NAME, SHAPES_FILE_NAME, "natsmicro/options.proto"]
    out = generate(tmp_path_factory.mktemp("hostile-out"), [protos, REPO / "proto"], files)
    return out


def module_name(file_name: str = FILE_NAME) -> str:
    return file_name.removesuffix(".proto").replace("/", ".") + "_nats_pb2"


def test_the_output_passes_mypy_strict(hostile_tree: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--explicit-package-bases", f"--cache-dir={os.devnull}", "."],
        cwd=hostile_tree,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (hostile_tree / "hostile/v1/shapes_nats_pb2.py").is_file()


def test_no_text_escapes_its_comment_or_docstring(hostile_tree: Path) -> None:
    for module in hostile_tree.rglob("*_nats_pb2.py"):
        source = module.read_text(encoding="utf-8")
        for raw in ["\u2028", "\u2029", "\u202e", "\u2066", "\u0085"]:
            assert raw not in source, f"{raw!r} written raw in {module.name}"
    odd = (hostile_tree / ODD_FILE_NAME.replace(".proto", "_nats_pb2.py")).read_text(encoding="utf-8")
    assert odd.splitlines()[1] == "# source: hostile/v1/se\\u2028p.proto"
    # Importable (its own _pb2 module by importlib) and lists its endpoint.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import importlib; importlib.import_module({module_name(ODD_FILE_NAME)!r})"],
        cwd=hostile_tree,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


async def test_keyword_messages_and_a_keyword_method_each_get_their_handler(hostile_tree: Path, nc: Client) -> None:
    sys.path.insert(0, str(hostile_tree))
    try:
        weird = importlib.import_module(module_name())
        pb2 = importlib.import_module(module_name().replace("_nats_pb2", "_pb2"))
    finally:
        sys.path.remove(str(hostile_tree))
    message_def = getattr(pb2, "def")
    message_none = getattr(pb2, "None")

    class Handler:
        async def match_(self, request: object, ctx: rt.RequestContext) -> object:
            return getattr(message_def, "class")(y=1)

        async def matches(self, request: object, ctx: rt.RequestContext) -> object:
            return message_none(z="second")

    service = await weird.register_weird(nc, Handler())
    client = weird.WeirdClient(nc)
    first, _ = await client.match_(message_def(x="a"))
    second, _ = await client.matches(message_none(z="b"))
    assert (first.y, second.z) == (1, "second")
    assert [e.subject for e in service.endpoints] == ["weird.match", "weird.matches"]
    await service.stop()


def test_methods_that_collide_after_conversion_are_refused_naming_both(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    (protos / "hostile/v1").mkdir(parents=True)
    clash = PROTO.replace("rpc Matches(None)", "rpc Match_(None)")
    (protos / FILE_NAME).write_text(clash, encoding="utf-8")
    with pytest.raises(AssertionError) as refused:
        generate(tmp_path / "out", [protos, REPO / "proto"], [FILE_NAME, "natsmicro/options.proto"])
    message = str(refused.value)
    assert "hostile/v1/weird.proto" in message and "Match and Match_ collide" in message, message
