"""Shapes beyond the order service: ``json: true`` services speak proto3 JSON
on the wire (``proto/jsondemo/v1/jsondemo.proto``), and the edge protos'
keyword-named methods, well-known types and nested messages work end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats_micro_runtime as rt
import pytest
from jsondemo.v1 import jsondemo_nats_pb2 as demo
from jsondemo.v1 import jsondemo_pb2 as encoding_pb2
from edge.nested.deep.v1 import edge_nats_pb2 as edge
from edge.nested.deep.v1 import edge_pb2
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2
from nats.aio.client import Client
from order.v1 import order_pb2
from support import Echo


async def test_json_service_round_trips_and_speaks_proto3_json_on_the_wire(nc: Client) -> None:
    service = await demo.register_json_service(nc, Echo())
    client = demo.JSONServiceClient(nc)
    (reply, _) = await client.echo(encoding_pb2.EchoRequest(message='hi "there"', timestamp=1_700_000_000_123))
    assert (reply.message, reply.timestamp, reply.encoding) == ('hi "there"', 1_700_000_000_123, "json")
    (users, _) = await client.get_user(encoding_pb2.GetUserRequest(id="u1"))
    assert (users.user.name, list(users.user.roles)) == ("Ada", ["admin"])

    raw = await nc.request("demo.json.echo", b'{"message":"raw","timestamp":"42"}', timeout=5)
    body: dict[str, Any] = json.loads(raw.data)
    assert body == {"message": "raw", "timestamp": "42", "encoding": "json"}, "lowerCamelCase, 64-bit integers as strings"

    bad = await nc.request("demo.json.echo", b"{not json", timeout=5)
    assert bad.headers is not None and bad.headers[rt.ERROR_CODE_HEADER] == "400"
    with pytest.raises(demo.JSONServiceInvalidArgumentError):
        await client.get_user(encoding_pb2.GetUserRequest())
    await service.stop()


class Keywords:
    async def match_(self, request: empty_pb2.Empty, ctx: rt.RequestContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def self_(self, request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> timestamp_pb2.Timestamp:
        return timestamp_pb2.Timestamp(seconds=len(request.value))

    async def async_(self, request: edge_pb2.Outer.Inner, ctx: rt.RequestContext) -> order_pb2.Order:
        return order_pb2.Order(id=request.type)

    async def new(self, request: edge_pb2.Outer, ctx: rt.RequestContext) -> edge_pb2.Outer.Inner:
        return request.inner

    async def clone(self, request: edge_pb2.Outer, ctx: rt.RequestContext) -> edge_pb2.Outer:
        return request

    async def watch(self, request: edge_pb2.Outer, ctx: rt.RequestContext) -> AsyncIterator[edge_pb2.Outer]:
        for _ in range(2):
            yield request


async def test_keyword_named_methods_and_well_known_types_work_on_the_wire(nc: Client) -> None:
    service = await edge.register_type(nc, Keywords())
    assert [e.subject for e in service.endpoints] == [
        'edge."quoted".type.match',
        'edge."quoted".type.self',
        'edge."quoted".type.async',
        'edge."quoted".type.new',
        'edge."quoted".type.clone',
        'edge."quoted".type.watch',
    ]
    assert service.description == 'says "hi" \\ and {braces}'
    assert service.metadata == {'quote"key': "line\nbreak"}
    client = edge.TypeClient(nc)
    await client.match_(empty_pb2.Empty())
    assert (await client.self_(wrappers_pb2.StringValue(value="four"))).message.seconds == 4
    assert (await client.async_(edge_pb2.Outer.Inner(type="t"))).message.id == "t"
    assert (await client.new(edge_pb2.Outer(inner=edge_pb2.Outer.Inner(type="x")))).message.type == "x"
    watched = [o.inner.type async for o in await client.watch(edge_pb2.Outer(inner=edge_pb2.Outer.Inner(type="w")))]
    assert watched == ["w", "w"]
    with pytest.raises(edge.TypeHttp2FailError):
        raise edge.new_type_http2_fail_error("Match", "custom code with digits")
    await service.stop()


async def test_deprecated_services_and_methods_warn(nc: Client) -> None:
    with pytest.warns(DeprecationWarning, match="LegacyService is deprecated"):
        edge.LegacyServiceClient(nc)
    with pytest.warns(DeprecationWarning, match="TypeClient.Get is deprecated"), pytest.raises(rt.NoRespondersError):
        await edge.TypeClientClient(nc).get(edge_pb2.Outer())
