#!/usr/bin/env bash
# The whole comparison of docs/benchmarks.md in one run: hubwire, Socket.IO 4
# (bench/socketio; @socket.io/redis-adapter on three nodes) and a
# protocol-less WebSocket server (raw_ws_server, the limit), driven by the same
# load generator with the same scenarios, parameters and topology.
#
#   scripts/bench-all.sh
#
# For each server: idle 1,000 / 10,000 / BIG_IDLE connections, each on a fresh
# node (memory per connection from its RSS; a fresh process, because memory a
# process has freed stays resident and would hide the next run's growth);
# then on one fresh node a discarded warm-up, echo, broadcast at RATE and at
# STRESS_RATE; then the same broadcasts on three nodes and one redis-server
# (hubwire, socketio; the limit is single-node only).
#
# Environment (defaults): SERVERS ("hubwire socketio raw"), CONNECTIONS (3000),
# GROUP_COUNT (10), RATE (34 msg/s = 10,200 deliveries/s), DURATION (15 s),
# STRESS_RATE (150), STRESS_DURATION (10 s), HOLD (5 s), BIG_IDLE (19000; 0 skips),
# REPEAT (3: each echo and broadcast runs this often; the tables take the median
# run, as one run on a shared 2-core virtual machine can catch a stall).
#
# Writes target/bench/all/<server>/<run>[.r<i>].json (the load generator's
# reports, with the CPU the servers and the load generator used), machine.json
# and results.md, and renders docs/bench/*.svg (scripts/bench-report.py).
# Everything listens on and connects to 127.0.0.x; every process started here
# is stopped on exit. Takes about fifteen minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
servers=${SERVERS:-hubwire socketio raw}
connections=${CONNECTIONS:-3000} group_count=${GROUP_COUNT:-10} rate=${RATE:-34} duration=${DURATION:-15}
stress_rate=${STRESS_RATE:-150} stress_duration=${STRESS_DURATION:-10} hold=${HOLD:-5} big_idle=${BIG_IDLE:-19000}
repeat=${REPEAT:-3}
out=target/bench/all
loadtest=target/release/loadtest

cargo build --release -q -p hubwire-node -p hubwire-loadtest
if [ ! -f bench/socketio/node_modules/.package-lock.json ] ||
  [ bench/socketio/package-lock.json -nt bench/socketio/node_modules/.package-lock.json ]; then
  (cd bench/socketio && npm ci --silent --no-audit --no-fund)
fi
rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d)
export HUBWIRE_DIAGNOSTICS_HUB=true HUBWIRE_ANONYMOUS_HUBS=diagnostics HUBWIRE_MAX_CONNECTIONS_PER_USER=0 HUBWIRE_MAX_HANDSHAKES_PER_IP=0 HUBWIRE_MAX_HANDSHAKES=0 RUST_LOG=warn

# Every process started here, stopped on exit (the cluster script stops its own children).
started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# wait_for FILE PATTERN: until the log FILE has a line matching PATTERN (30 s at most).
wait_for() {
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

# Each server gets ports of its own: no run meets the previous one's sockets.
port=18400
# start_one SERVER [REDIS_URL]: starts one node of SERVER on the next port; sets $pid and $url.
start_one() {
  port=$((port + 1))
  url="http://127.0.0.1:$port"
  local log="$work/$1-$port.log"
  case $1 in
    hubwire)
      HUBWIRE_LISTEN="127.0.0.1:$port" HUBWIRE_DATA_DIR="$work/data-$port" target/release/hubwire-node >"$log" 2>&1 &
      pid=$!
      started+=("$pid")
      until curl -sf "$url/readyz" >/dev/null; do sleep 0.1; done
      ;;
    socketio)
      PORT=$port REDIS_URL=${2:-} node bench/socketio/server.mjs >"$log" 2>&1 &
      pid=$!
      started+=("$pid")
      wait_for "$log" '^ready'
      ;;
    raw)
      target/release/raw_ws_server --listen "127.0.0.1:$port" >"$log" 2>&1 &
      pid=$!
      started+=("$pid")
      wait_for "$log" '^ready'
      ;;
  esac
}

# stop PID...: stops the processes and waits for them.
stop() {
  kill "$@" 2>/dev/null || true
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# measure SERVER NAME PIDS SCENARIO ARGS...: one reported run, the CPU of PIDS
# (comma-separated) counted; a failed run is said so and the others go on.
measure() {
  local server=$1 name=$2 pids=$3 scenario=$4
  shift 4
  mkdir -p "$out/$server"
  if "$loadtest" "$scenario" --server "$server" --cpu-pids "$pids" --json "$out/$server/$name.json" "$@" \
    >"$out/$server/$name.txt" 2>"$out/$server/$name.log"; then
    echo "  $(cat "$out/$server/$name.txt")"
  else
    echo "  $server $name FAILED: $(tail -n 3 "$out/$server/$name.log")"
  fi
}

# idle SERVER N [SOURCES]: N idle connections on a fresh node; with SOURCES,
# from two client processes (each under the open-file limit of a process).
idle() {
  start_one "$1"
  local spread=()
  [ $# -ge 3 ] && spread=(--processes 2 --sources "$3")
  measure "$1" "idle-$2" "$pid" idle --url "$url" --connections "$2" --hold "$hold" --node-pid "$pid" "${spread[@]}"
  stop "$pid"
}

# repeated SERVER NAME PIDS SCENARIO ARGS...: REPEAT measured runs, NAME.r1 ...
repeated() {
  local server=$1 name=$2
  shift 2
  for i in $(seq "$repeat"); do measure "$server" "$name.r$i" "$@"; done
}

# broadcasts SERVER TOPOLOGY URLS PIDS: a warm-up, (one node: echo,) the two broadcasts.
broadcasts() {
  local server=$1 topology=$2 urls=$3 pids=$4
  local load=(--url "$urls" --connections "$connections" --groups "$group_count")
  # Discarded: a fresh process pays for its first allocations and page faults.
  "$loadtest" broadcast --server "$server" "${load[@]}" --rate "$rate" --duration 3 >/dev/null 2>&1 || true
  if [ "$topology" = 1node ]; then
    repeated "$server" echo "$pids" echo --url "$urls" --connections 100 --duration 5
  fi
  repeated "$server" "broadcast-$topology" "$pids" broadcast "${load[@]}" --rate "$rate" --duration "$duration"
  repeated "$server" "broadcast-$topology-stress" "$pids" broadcast "${load[@]}" \
    --rate "$stress_rate" --duration "$stress_duration"
}

sources=2
for server in $servers; do
  echo "$server:"
  idle "$server" 1000
  idle "$server" 10000
  if [ "$big_idle" -gt 0 ]; then
    idle "$server" "$big_idle" "127.0.0.$sources,127.0.0.$((sources + 1))"
    sources=$((sources + 2))
  fi

  start_one "$server"
  broadcasts "$server" 1node "$url" "$pid"
  stop "$pid"

  case $server in
    hubwire)
      BASE_PORT=18500 REDIS_PORT=16500 deploy/local-cluster.sh 3 >"$work/cluster.log" 2>&1 &
      cluster=$!
      started+=("$cluster")
      wait_for "$work/cluster.log" '^redis:'
      # The cluster's processes: its redis-server and its three nodes.
      pids=$(ps -o pid= --ppid "$cluster" | xargs | tr ' ' ',')
      broadcasts hubwire 3nodes "http://127.0.0.1:18501,http://127.0.0.1:18502,http://127.0.0.1:18503" "$pids"
      stop "$cluster"
      ;;
    socketio)
      redis-server --port 16510 --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
        --logfile "$work/redis-socketio.log" &
      redis=$!
      started+=("$redis")
      until redis-cli -p 16510 ping >/dev/null 2>&1; do sleep 0.1; done
      pids=("$redis") urls=()
      for _ in 1 2 3; do
        start_one socketio redis://127.0.0.1:16510
        pids+=("$pid") urls+=("$url")
      done
      broadcasts socketio 3nodes "$(IFS=,; echo "${urls[*]}")" "$(IFS=,; echo "${pids[*]}")"
      stop "${pids[@]}"
      ;;
  esac
done

python3 scripts/bench-report.py machine >"$out/machine.json"
python3 scripts/bench-report.py report "$out" --table "$out/results.md" --charts docs/bench
echo "results: $out/results.md; charts: docs/bench/*.svg"
