/** Messages: binary protobuf, or the proto3 JSON mapping for `json: true` services. */

import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

/** Encodes and decodes the messages of one RPC side. */
export interface Codec<Desc extends DescMessage> {
  encode(message: MessageInitShape<Desc>): Uint8Array;
  decode(data: Uint8Array): MessageShape<Desc>;
}

export const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** Binary protobuf, or the proto3 JSON mapping for `json: true` services. */
export function codec<Desc extends DescMessage>(schema: Desc, json: boolean): Codec<Desc> {
  if (!json) {
    return {
      encode: (message) => toBinary(schema, create(schema, message)),
      decode: (data) => fromBinary(schema, data),
    };
  }
  return {
    encode: (message) => utf8Encoder.encode(toJsonString(schema, create(schema, message))),
    // An empty body is the empty message, as in binary protobuf.
    decode: (data) => fromJsonString(schema, data.length === 0 ? "{}" : utf8Decoder.decode(data), { ignoreUnknownFields: true }),
  };
}
