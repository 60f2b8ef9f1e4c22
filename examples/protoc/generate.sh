#!/usr/bin/env bash
# The README's protoc recipes for Rust, verbatim. Run by
# protoc-gen-nats-micro/tests/prost_plugins.rs with protoc, protoc-gen-prost,
# protoc-gen-prost-serde and protoc-gen-nats-micro on PATH, which then
# compiles the result.
#
# usage: generate.sh WORK_DIR   (WORK_DIR/plain and WORK_DIR/json each hold
#                                a proto/ directory, e.g. a link to the repo's)
set -euo pipefail
work=$1

# Binary services: messages by protoc-gen-prost, services by us, side by side.
cd "$work/plain"
# snippet: plain
mkdir -p gen
protoc -I proto --prost_out=gen --nats-micro_out=gen \
  order/v1/order.proto product/v1/product.proto
# end snippet

# A `json: true` service: prost-serde adds proto3-JSON serde impls; the
# well-known types then come from pbjson-types, for prost and for us.
cd "$work/json"
# snippet: json
mkdir -p gen
protoc -I proto \
  --prost_out=gen --prost_opt=compile_well_known_types,extern_path=.google.protobuf=::pbjson_types \
  --prost-serde_out=gen \
  --nats-micro_out=gen --nats-micro_opt=extern_path=.google.protobuf=::pbjson_types \
  jsondemo/v1/jsondemo.proto
# end snippet
