/** Streams (PROTOCOL §9), the server's side: the handlers of streaming RPCs, and a stream's end to the caller. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/nats-core";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { StreamMethodSpec } from "./spec.js";
import type { RequestContext } from "./context.js";
import type { Respond } from "./endpoint.js";
import { STREAM_END_HEADER } from "./stream-wire.js";

/** A server-streaming handler: typically an `async function*` yielding the responses. */
export type ServerStreamHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: RequestContext,
) => AsyncIterable<MessageInitShape<O>>;
/** A client-streaming handler: reads the requests, returns the one response. */
export type ClientStreamHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  ctx: RequestContext,
) => Promise<MessageInitShape<O>>;
/** A bidirectional handler: reads the requests and yields the responses. */
export type BidiStreamHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  ctx: RequestContext,
) => AsyncIterable<MessageInitShape<O>>;

/** The handler a streaming RPC of the given kind needs. */
export type StreamHandler<M> =
  M extends StreamMethodSpec<infer I, infer O, "server">
    ? ServerStreamHandler<I, O>
    : M extends StreamMethodSpec<infer I, infer O, "client">
      ? ClientStreamHandler<I, O>
      : M extends StreamMethodSpec<infer I, infer O, "bidi">
        ? BidiStreamHandler<I, O>
        : never;

/** Publishes a stream's end (`Nats-Stream-End: true` over the given headers) to the caller's inbox. */
export function streamEnd(nc: NatsConnection, target: string): Respond {
  return (body, options) => {
    const headers = options.headers ?? createHeaders();
    headers.set(STREAM_END_HEADER, "true");
    nc.publish(target, body, { headers });
  };
}
