#!/usr/bin/env bash
# A local hubwire cluster without Docker, the topology of deploy/compose.yaml:
# N nodes (processes) behind Debian's nginx with sticky sessions (the same
# deploy/nginx/hubwire.conf the compose file mounts), one redis-server, one
# PostgreSQL (own data directory, initdb + pg_ctl), all on 127.0.0.1.
#
#   deploy/local-cluster.sh start    start it in the background, print where everything is
#   deploy/local-cluster.sh status   what runs (exit 1 if anything is down)
#   deploy/local-cluster.sh stop     SIGTERM every node (graceful drain), stop the rest, remove the state
#   deploy/local-cluster.sh run      start, then stay in the foreground; Ctrl-C stops it
#   deploy/local-cluster.sh N        (the bench scripts') Redis and N nodes only, in the foreground
#
# Environment (all optional):
#   NODES (3)                    nodes
#   HUBWIRE_CLUSTER_DIR          state: logs, data, pid files, cluster.env
#                                (default /tmp/hubwire-local-cluster)
#   PROXY_PORT (8080)            nginx; node i on NODE_BASE_PORT+i (NODE_BASE_PORT 8080)
#   REDIS_PORT (6390), POSTGRES_PORT (5440)
#   POSTGRES (1)                 0: no PostgreSQL, each node keeps SQLite in its data dir
#   HUBWIRE_NODE_BIN             default target/release/hubwire-node, else target/debug, else built
#   NGINX_BIN (nginx)            nginx binary (apt-get install nginx)
#   NODE_CONFIG                  a hubwire.toml for every node (e.g. examples/pet-services/hubwire.toml)
#   any HUBWIRE_* variable       passed to every node (HUBWIRE_JWT_SECRET, HUBWIRE_ACCESS_KEY, ...)
# A development tool: the diagnostics hub (off by default) is on unless
# HUBWIRE_DIAGNOSTICS_HUB says otherwise.
#
# $HUBWIRE_CLUSTER_DIR/cluster.env holds PROXY_URL, REDIS_URL, DATABASE_URL,
# NODE_<i>_URL, NODE_<i>_PID, NGINX_PID (shell syntax, read by the e2e tests).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-run}
nodes=${NODES:-3}
dir=${HUBWIRE_CLUSTER_DIR:-/tmp/hubwire-local-cluster}
proxy_port=${PROXY_PORT:-8080}
node_base=${NODE_BASE_PORT:-8080}
redis_port=${REDIS_PORT:-6390}
pg_port=${POSTGRES_PORT:-5440}
with_pg=${POSTGRES:-1}
nginx_bin=${NGINX_BIN:-nginx}

log() { echo "local-cluster: $*" >&2; }
die() { log "$*"; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

node_bin() {
  if [ -n "${HUBWIRE_NODE_BIN:-}" ]; then echo "$HUBWIRE_NODE_BIN"
  elif [ -x "$repo/target/release/hubwire-node" ]; then echo "$repo/target/release/hubwire-node"
  elif [ -x "$repo/target/debug/hubwire-node" ]; then echo "$repo/target/debug/hubwire-node"
  else (cd "$repo" && cargo build --release -p hubwire-node >&2) && echo "$repo/target/release/hubwire-node"
  fi
}

pg_bin() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] || die "PostgreSQL's server binaries are missing (apt-get install postgresql)"
  echo "/usr/lib/postgresql/$v/bin"
}

# PostgreSQL refuses to run as root: as root, as `postgres` (or `nobody`).
pg_run() {
  if [ "$(id -u)" -eq 0 ]; then
    local user=postgres
    id postgres >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

pg_owner() {
  [ "$(id -u)" -eq 0 ] || return 0
  if id postgres >/dev/null 2>&1; then chown -R postgres "$1"; else chown -R nobody "$1"; fi
}

wait_until() { # what, tries (x0.1 s), command...
  local what=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up (logs in $dir)"
}

start() {
  [ -f "$dir/cluster.env" ] && die "a cluster is already there ($dir/cluster.env); stop it first"
  command -v "$nginx_bin" >/dev/null || die "nginx is missing (apt-get install nginx)"
  command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
  local bin; bin=$(node_bin)
  mkdir -p "$dir"
  chmod 755 "$dir" # PostgreSQL may run as another user (pg_run)
  local env="$dir/cluster.env"
  : > "$env.tmp"

  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --daemonize yes --pidfile "$dir/redis.pid"
  wait_until "redis" 100 redis-cli -p "$redis_port" ping
  echo "REDIS_URL=redis://127.0.0.1:$redis_port" >> "$env.tmp"
  echo "REDIS_PORT=$redis_port" >> "$env.tmp"

  local database_url=""
  if [ "$with_pg" = 1 ]; then
    local pgb; pgb=$(pg_bin)
    mkdir -p "$dir/postgres"; pg_owner "$dir/postgres"
    pg_run "$pgb/initdb" -D "$dir/postgres/data" -U postgres --auth=trust --no-sync -E UTF8 > "$dir/postgres-init.log" 2>&1 \
      || die "initdb failed: $(cat "$dir/postgres-init.log")"
    pg_run "$pgb/pg_ctl" -D "$dir/postgres/data" -l "$dir/postgres/postgres.log" -w \
      -o "-p $pg_port -k $dir/postgres -c listen_addresses=127.0.0.1 -c fsync=off" start > /dev/null \
      || die "PostgreSQL did not start: $(cat "$dir/postgres/postgres.log")"
    database_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
    echo "DATABASE_URL=$database_url" >> "$env.tmp"
    echo "POSTGRES_DATA=$dir/postgres/data" >> "$env.tmp"
  fi

  export HUBWIRE_REDIS_URL="redis://127.0.0.1:$redis_port"
  export HUBWIRE_DIAGNOSTICS_HUB=${HUBWIRE_DIAGNOSTICS_HUB:-true}
  export HUBWIRE_JWT_SECRET=${HUBWIRE_JWT_SECRET:-local-cluster-secret-of-32-bytes-min}
  [ -n "$database_url" ] && export HUBWIRE_DATABASE_URL="$database_url"
  local servers="$dir/hubwire-servers.conf"
  : > "$servers"
  for i in $(seq 1 "$nodes"); do
    local port=$((node_base + i))
    HUBWIRE_LISTEN="127.0.0.1:$port" HUBWIRE_NODE_ID="node-$i" HUBWIRE_DATA_DIR="$dir/node-$i" \
      setsid "$bin" "${NODE_ARGS[@]}" > "$dir/node-$i.log" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$dir/node-$i.pid"
    echo "NODE_${i}_URL=http://127.0.0.1:$port" >> "$env.tmp"
    echo "NODE_${i}_PID=$pid" >> "$env.tmp"
    echo "server 127.0.0.1:$port max_fails=1 fail_timeout=5s;" >> "$servers"
    # The first node migrates the database alone.
    [ "$i" -eq 1 ] && wait_until "node-1" 600 curl -sf "http://127.0.0.1:$port/readyz"
  done
  for i in $(seq 1 "$nodes"); do
    wait_until "node-$i" 600 curl -sf "http://127.0.0.1:$((node_base + i))/readyz"
  done

  echo "listen 127.0.0.1:$proxy_port;" > "$dir/hubwire-listen.conf"
  mkdir -p "$dir/nginx"
  cat > "$dir/nginx.conf" <<CONF
# Written by deploy/local-cluster.sh: the shared hubwire.conf, with this run's paths.
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log $dir/nginx-access.log;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    include $repo/deploy/nginx/hubwire.conf;
}
CONF
  "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -t > "$dir/nginx-test.log" 2>&1 || die "nginx rejects its configuration: $(cat "$dir/nginx-test.log")"
  "$nginx_bin" -p "$dir" -c "$dir/nginx.conf"
  wait_until "nginx" 100 curl -sf "http://127.0.0.1:$proxy_port/healthz"
  echo "PROXY_URL=http://127.0.0.1:$proxy_port" >> "$env.tmp"
  echo "NGINX_PID=$(cat "$dir/nginx.pid")" >> "$env.tmp"
  echo "NODES=$nodes" >> "$env.tmp"
  mv "$env.tmp" "$env"
  status
}

status() {
  [ -f "$dir/cluster.env" ] || { echo "no cluster in $dir"; return 1; }
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  local down=0 i url pid ready
  for i in $(seq 1 "$NODES"); do
    url=$(eval echo "\$NODE_${i}_URL"); pid=$(eval echo "\$NODE_${i}_PID")
    if ! alive "$pid"; then echo "node-$i  $url  pid $pid  stopped"; down=1; continue; fi
    ready=$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz" || true)
    [ "$ready" = 200 ] && ready=ready || { ready="not ready ($ready)"; down=1; }
    echo "node-$i  $url  pid $pid  $ready  (log $dir/node-$i.log)"
  done
  if alive "$NGINX_PID"; then echo "nginx   $PROXY_URL  pid $NGINX_PID  (sticky: cookie hubwire_affinity)"; else echo "nginx   stopped"; down=1; fi
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then echo "redis   $REDIS_URL"; else echo "redis   not answering"; down=1; fi
  if [ -n "${DATABASE_URL:-}" ]; then
    if pg_run "$(pg_bin)/pg_ctl" -D "$POSTGRES_DATA" status >/dev/null 2>&1; then echo "postgres $DATABASE_URL"; else echo "postgres stopped"; down=1; fi
  fi
  return $down
}

stop() {
  [ -f "$dir/cluster.env" ] || { log "no cluster in $dir"; return 0; }
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  local i pid pids=()
  for i in $(seq 1 "$NODES"); do
    pid=$(eval echo "\$NODE_${i}_PID")
    if alive "$pid"; then kill -TERM "$pid"; pids+=("$pid"); fi
  done
  # The drain ends by itself; SIGKILL after 30 s.
  for _ in $(seq 300); do
    local any=0
    for pid in "${pids[@]}"; do alive "$pid" && any=1; done
    [ $any -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do alive "$pid" && kill -KILL "$pid"; done
  alive "${NGINX_PID:-}" && "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -s quit 2>/dev/null
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ -n "${DATABASE_URL:-}" ]; then pg_run "$(pg_bin)/pg_ctl" -D "$POSTGRES_DATA" -m fast -w stop >/dev/null 2>&1 || true; fi
  for _ in $(seq 50); do alive "${NGINX_PID:-}" || break; sleep 0.1; done
  [ "${KEEP_STATE:-0}" = 1 ] || rm -rf "$dir"
  log "stopped"
}

# The bench scripts' form, kept as it was: `local-cluster.sh N` runs one
# redis-server and N nodes (no proxy, no PostgreSQL) as children in the
# foreground, nodes on BASE_PORT+i, and prints "redis: ..." once ready.
legacy() {
  local n=$1 base=${BASE_PORT:-8080} tmp bin pids=()
  tmp=$(mktemp -d); bin=$(node_bin)
  trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" &
  pids+=($!)
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
  export HUBWIRE_REDIS_URL="redis://127.0.0.1:$redis_port"
  export HUBWIRE_DIAGNOSTICS_HUB=${HUBWIRE_DIAGNOSTICS_HUB:-true}
  export HUBWIRE_JWT_SECRET=${HUBWIRE_JWT_SECRET:-local-cluster-secret-of-32-bytes-min}
  for i in $(seq 1 "$n"); do
    HUBWIRE_LISTEN="127.0.0.1:$((base + i))" HUBWIRE_NODE_ID="node-$i" HUBWIRE_DATA_DIR="$tmp/node-$i" \
      "$bin" > "$tmp/node-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    until curl -sf "http://127.0.0.1:$((base + i))/readyz" >/dev/null; do sleep 0.1; done
    echo "node-$i: http://127.0.0.1:$((base + i)) (pid ${pids[$i]}, log $tmp/node-$i.log)"
  done
  echo "redis: redis://127.0.0.1:$redis_port; Ctrl-C stops the cluster"
  wait
}

NODE_ARGS=()
[ -n "${NODE_CONFIG:-}" ] && NODE_ARGS=(--config "$(cd "$(dirname "$NODE_CONFIG")" && pwd)/$(basename "$NODE_CONFIG")")
case "$cmd" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  run)
    start
    trap stop EXIT INT TERM
    log "Ctrl-C stops the cluster"
    while sleep 3600; do :; done
    ;;
  [0-9]*) legacy "$cmd" ;;
  *) die "unknown command '$cmd' (start | status | stop | run)" ;;
esac
