#!/usr/bin/env bash
# The Python order example: generates code for proto/order/v1/order.proto
# (protoc's _pb2 modules and the plugin's lang=python output) into
# target/python-example, starts a nats-server, serves the order service with
# order_server.py, runs order_client.py against it, then stops the server
# gracefully (it prints its statistics), and runs traced.py (one call with
# OpenTelemetry on, its trace printed as a tree). With --build-only it stops after
# generating (examples/browser/run serves with order_server.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/setup
cargo build --quiet -p protoc-gen-nats-micro

out=target/python-example
rm -rf "$out"
mkdir -p "$out"
# The README's command, verbatim: the venv's python (with grpcio-tools and
# mypy-protobuf's protoc-gen-mypy) and our plugin found on PATH.
PATH="$root/.venv/bin:$root/target/debug:$PATH"
python -m grpc_tools.protoc -I proto \
  --python_out=target/python-example --mypy_out=target/python-example \
  --nats-micro_out=target/python-example --nats-micro_opt=lang=python \
  order/v1/order.proto natsmicro/options.proto
if [ "${1:-}" = "--build-only" ]; then exit 0; fi

port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$out/server.log"
.venv/bin/nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
nats_pid=$!
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  kill "$nats_pid" 2>/dev/null || true
}
trap cleanup EXIT
export NATS_URL="nats://127.0.0.1:$port" PYTHONPATH="$out"
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
echo "nats-server on $NATS_URL"

.venv/bin/python examples/python/order_server.py >"$log" 2>&1 &
server_pid=$!
until grep -q '^serving' "$log"; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.05
done
.venv/bin/python examples/python/order_client.py | sed 's/^/client: /'
kill -INT "$server_pid"
wait "$server_pid"
server_pid=""
sed 's/^/server: /' "$log"
.venv/bin/python examples/python/traced.py | sed 's/^/traced: /'
