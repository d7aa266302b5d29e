#!/usr/bin/env bash
# Runs a local hubwire cluster without Docker: one redis-server and N nodes on
# 127.0.0.1, ports BASE_PORT+1 .. BASE_PORT+N, all in the foreground's process
# group; Ctrl-C (or `kill` of this script) stops everything.
#
#   deploy/local-cluster.sh [NODES=3]
#
# Environment: BASE_PORT (8080), REDIS_PORT (6390), HUBWIRE_NODE_BIN
# (target/release/hubwire-node), and any HUBWIRE_* variable, passed to every node.
# A development tool: the diagnostics hub (off by default) is on unless
# HUBWIRE_DIAGNOSTICS_HUB says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-3}
base=${BASE_PORT:-8080}
redis_port=${REDIS_PORT:-6390}
bin=${HUBWIRE_NODE_BIN:-target/release/hubwire-node}
dir=$(mktemp -d)
[ -x "$bin" ] || cargo build --release -p hubwire-node
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
export HUBWIRE_REDIS_URL="redis://127.0.0.1:$redis_port"
export HUBWIRE_DIAGNOSTICS_HUB=${HUBWIRE_DIAGNOSTICS_HUB:-true}
export HUBWIRE_JWT_SECRET=${HUBWIRE_JWT_SECRET:-local-cluster-secret-of-32-bytes-min}
for i in $(seq 1 "$nodes"); do
  HUBWIRE_LISTEN="127.0.0.1:$((base + i))" HUBWIRE_NODE_ID="node-$i" HUBWIRE_DATA_DIR="$dir/node-$i" \
    "$bin" > "$dir/node-$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 "$nodes"); do
  until curl -sf "http://127.0.0.1:$((base + i))/readyz" >/dev/null; do sleep 0.1; done
  echo "node-$i: http://127.0.0.1:$((base + i)) (pid ${pids[$i]}, log $dir/node-$i.log)"
done
echo "redis: redis://127.0.0.1:$redis_port; Ctrl-C stops the cluster"
wait
