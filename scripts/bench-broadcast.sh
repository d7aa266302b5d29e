#!/usr/bin/env bash
# Group broadcast on one node against the same on three nodes joined by Redis,
# measured in one run with the same load (docs/benchmarks.md).
#
#   scripts/bench-broadcast.sh [CONNECTIONS=3000] [GROUPS=10] [RATE=40] [SECONDS=15]
#
# Writes target/bench/broadcast-{1node,3nodes}.json and prints one line each.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-3000} groups=${2:-10} rate=${3:-40} seconds=${4:-15}
cargo build --release -q -p hubwire-node -p hubwire-loadtest
out=target/bench; mkdir -p "$out"
export HUBWIRE_DIAGNOSTICS_HUB=true HUBWIRE_ANONYMOUS_HUBS=diagnostics HUBWIRE_MAX_CONNECTIONS_PER_USER=0 HUBWIRE_MAX_HANDSHAKES_PER_IP=0 HUBWIRE_MAX_HANDSHAKES=0 RUST_LOG=warn
load() { target/release/loadtest broadcast --url "$1" --connections "$connections" --groups "$groups" \
  --rate "$rate" --duration "$seconds" --json "$2" 2>/dev/null; }

data=$(mktemp -d)
HUBWIRE_LISTEN=127.0.0.1:18181 HUBWIRE_DATA_DIR="$data" target/release/hubwire-node >/dev/null 2>&1 &
single=$!
until curl -sf http://127.0.0.1:18181/readyz >/dev/null; do sleep 0.1; done
echo "one node (in-process backplane):"
load http://127.0.0.1:18181 "$out/broadcast-1node.json"
kill "$single"; wait "$single" 2>/dev/null || true

BASE_PORT=18190 REDIS_PORT=16390 deploy/local-cluster.sh 3 >/dev/null &
cluster=$!
for port in 18191 18192 18193; do until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done; done
echo "three nodes (Redis backplane):"
load http://127.0.0.1:18191,http://127.0.0.1:18192,http://127.0.0.1:18193 "$out/broadcast-3nodes.json"
kill "$cluster"; wait "$cluster" 2>/dev/null || true
rm -rf "$data"
