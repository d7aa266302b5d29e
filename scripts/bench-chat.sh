#!/usr/bin/env bash
# The seeds' chat mix on one node, for hubwire, Socket.IO 4 and the raw limit
# server in one run (docs/benchmarks.md, "Chat mix").
#
#   scripts/bench-chat.sh [USERS=10000] [MESSAGES_PER_USER_PER_MINUTE=6] [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-10000} rate=${2:-6} seconds=${3:-20}
cargo build --release -q -p hubwire-node -p hubwire-loadtest
(cd bench/socketio && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; })
out=target/bench/chat; mkdir -p "$out"; data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
run() { # server port pid
  target/release/loadtest chat --server "$1" --url "http://127.0.0.1:$2" --connections "$users" \
    --messages-per-minute "$rate" --duration "$seconds" --cpu-pids "$3" --json "$out/$1.json" 2>/dev/null
  kill "$3"; wait "$3" 2>/dev/null || true
}
wait_port() { until (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do sleep 0.1; done; }

HUBWIRE_LISTEN=127.0.0.1:18701 HUBWIRE_DIAGNOSTICS_HUB=true HUBWIRE_ANONYMOUS_HUBS=diagnostics HUBWIRE_MAX_CONNECTIONS_PER_USER=0 HUBWIRE_MAX_HANDSHAKES_PER_IP=0 HUBWIRE_MAX_HANDSHAKES=0 \
  HUBWIRE_DATA_DIR="$data" RUST_LOG=warn target/release/hubwire-node >/dev/null 2>&1 &
pids+=($!); wait_port 18701; run hubwire 18701 "${pids[-1]}"
PORT=18702 node bench/socketio/server.mjs >/dev/null 2>&1 &
pids+=($!); wait_port 18702; run socketio 18702 "${pids[-1]}"
target/release/raw_ws_server --listen 127.0.0.1:18703 >/dev/null 2>&1 &
pids+=($!); wait_port 18703; run raw 18703 "${pids[-1]}"
for s in hubwire socketio raw; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], 'server CPU s:', d['cpu']['server_seconds'])" "$out/$s.json" "$s"
done
