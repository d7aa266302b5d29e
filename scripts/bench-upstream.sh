#!/usr/bin/env bash
# Round trips/s of a method forwarded to an Azure-style upstream against the
# built-in `Echo` of the diagnostics hub, on one node (docs/benchmarks.md).
#
#   scripts/bench-upstream.sh [CONNECTIONS=20] [SECONDS=5] [PROFILE=debug]
#
# HUBWIRE_NODE_BIN runs another node binary (a before/after comparison).
# The upstream is a small Node.js HTTP server (e2e/node_modules not needed)
# answering every invocation with a JSON Completion echoing its first
# argument. Writes target/bench/upstream-{builtin,forwarded}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-20} seconds=${2:-5} profile=${3:-debug}
if [ "$profile" = release ]; then cargo build --release -q -p hubwire-node -p hubwire-loadtest; bin=target/release
else cargo build -q -p hubwire-node -p hubwire-loadtest; bin=target/debug; fi
out=target/bench; mkdir -p "$out"

node -e '
const http = require("http");
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.headers["x-asrs-category"] !== "messages") return res.writeHead(200).end();
    const text = Buffer.concat(chunks).toString().replace(/\x1e$/, "");
    const inv = JSON.parse(text);
    const body = JSON.stringify({ type: 3, invocationId: inv.invocationId, result: inv.arguments[0] }) + "\x1e";
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
  });
}).listen(18281, "127.0.0.1");
' &
upstream=$!
data=$(mktemp -d)
HUBWIRE_DIAGNOSTICS_HUB=true HUBWIRE_ANONYMOUS_HUBS=diagnostics HUBWIRE_MAX_CONNECTIONS_PER_USER=0 \
  HUBWIRE_ACCESS_KEY=bench-access-key-bench-access-key-0123 RUST_LOG=warn \
  HUBWIRE_UPSTREAM_URL='http://127.0.0.1:18281/api/{hub}/{category}/{event}' \
  HUBWIRE_LISTEN=127.0.0.1:18280 HUBWIRE_DATA_DIR="$data" "${HUBWIRE_NODE_BIN:-$bin/hubwire-node}" >/dev/null 2>&1 &
hub=$!
trap 'kill $hub $upstream 2>/dev/null || true; rm -rf "$data"' EXIT
until curl -sf http://127.0.0.1:18280/readyz >/dev/null; do sleep 0.1; done
for method in Echo EchoUpstream; do
  name=$([ "$method" = Echo ] && echo builtin || echo forwarded)
  "$bin/loadtest" echo --url http://127.0.0.1:18280 --connections "$connections" --duration "$seconds" \
    --method "$method" --cpu-pids "$hub" --json "$out/upstream-$name.json" 2>/dev/null >/dev/null
  python3 - "$out/upstream-$name.json" "$method" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print(f'{sys.argv[2]:>13}: {r["round_trips_per_second"]:,.0f} round trips/s, p50 {l.get("p50_ms", l.get("p50"))}, p99 {l.get("p99_ms", l.get("p99"))}, errors {r["errors"]}')
PY
done
