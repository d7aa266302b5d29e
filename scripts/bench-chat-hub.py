#!/usr/bin/env python3
"""`loadtest chat-hub` against one release node (docs/benchmarks.md, "The real chat hub").

    scripts/bench-chat-hub.py sqlite|postgres USERS MSG_PER_USER_PER_MINUTE SECONDS [--messages-only] [--nodes N]

Starts target/release/hubwire-node (SQLite in a temp dir, or a fresh database on the
PostgreSQL at 127.0.0.1:5432, trust auth, user postgres), with the chat hub's rate limits
off, runs the scenario and prints its summary and the CPU seconds, over the chatting window
(from the loadtest's "chatting" marker to its end, drain included), of the node, of the
PostgreSQL backends serving the node's database, and of the load generator.

`--nodes N` (postgres only) starts N nodes on ports 18081.. joined by a redis-server of
their own (port 18379, in the temp dir); the clients are spread over them round-robin, so
most conversations span nodes; the node CPU is the nodes' and Redis's together.
`BENCH_METRICS=a,b` prints the first node's /metrics lines containing a or b at the end.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

store, users, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
extra = sys.argv[5:]
nodes_wanted = 1
if "--nodes" in extra:
    i = extra.index("--nodes")
    nodes_wanted = int(extra[i + 1])
    del extra[i:i + 2]
if nodes_wanted > 1 and store != "postgres":
    sys.exit("--nodes needs postgres (SQLite is one node's store)")
port = 18080 if nodes_wanted == 1 else 18081
secret = "benchsecret-benchsecret-benchsecret"
run_id = f"r{int(time.time())}"
data = tempfile.mkdtemp(prefix="hubwire-bench-")
env = dict(os.environ, HUBWIRE_LISTEN=f"127.0.0.1:{port}", HUBWIRE_JWT_SECRET=secret,
           HUBWIRE_MAX_CONNECTIONS_PER_USER="0", HUBWIRE_MAX_HANDSHAKES_PER_IP="0",
           HUBWIRE_MAX_HANDSHAKES="0", HUBWIRE_DATA_DIR=data, RUST_LOG="warn",
           HUBWIRE_HUB=json.dumps([{"kind": "chat", "path": "/hubs/chat",
                                     "limits": {"messages_per_minute": 0, "typing_per_minute": 0}}]))
db = None
if store == "postgres":
    db = f"bench_{run_id}"
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"create database {db}"], check=True)
    env["HUBWIRE_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"

def cpu(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / 100.0

def backends():
    if db is None:
        return []
    out = subprocess.run(["psql", "-At", "-h", "127.0.0.1", "-U", "postgres", "-c",
                          f"select pid from pg_stat_activity where datname = '{db}'"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]

def wait_port(p):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {p}")

redis = None
if nodes_wanted > 1:
    redis = subprocess.Popen(["redis-server", "--port", "18379", "--save", "", "--appendonly", "no",
                              "--dir", data], stdout=subprocess.DEVNULL)
    wait_port(18379)
    env["HUBWIRE_REDIS_URL"] = "redis://127.0.0.1:18379"
ports = [port + i for i in range(nodes_wanted)]
procs = []
for i, p in enumerate(ports):
    node_env = dict(env, HUBWIRE_LISTEN=f"127.0.0.1:{p}")
    if nodes_wanted > 1:
        node_env["HUBWIRE_NODE_ID"] = f"bench-{i + 1}"
    procs.append(subprocess.Popen([os.environ.get("HUBWIRE_NODE_BIN", "target/release/hubwire-node")], env=node_env,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, f"node{i}.log"), "w")))
node = procs[0]
try:
    for p in ports:
        wait_port(p)
    report = os.path.join(data, "report.json")
    server_pids = [n.pid for n in procs] + ([redis.pid] if redis else [])
    cmd = ["target/release/loadtest", "chat-hub", "--url", ",".join(f"http://127.0.0.1:{p}" for p in ports),
           "--hub", "chat", "--token-secret", secret, "--connections", users, "--messages-per-minute", rate,
           "--duration", seconds, "--run-id", run_id, "--cpu-pids", ",".join(map(str, server_pids)),
           "--json", report] + extra
    print("$", " ".join(cmd), flush=True)
    lt = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    start = {}
    for line in lt.stderr:
        if "[chat-hub] chatting" in line:
            start = {pid: cpu(pid) for pid in server_pids + backends()}
        elif "lost" in line or "error" in line.lower():
            sys.stderr.write(line)
    pg_end = {pid: cpu(pid) for pid in backends()}
    node_end = {pid: cpu(pid) for pid in server_pids}
    lt.wait()
    r = json.load(open(report))
    node_s = sum(node_end[p] - start[p] for p in server_pids)
    pg_s = sum(v - (start.get(p) or 0.0) for p, v in pg_end.items() if v is not None)
    persisted = r["messages_persisted"]
    print(json.dumps({k: r[k] for k in ["messages_sent", "messages_persisted", "persisted_per_second",
                                         "unacknowledged", "messages_expected", "messages_lost",
                                         "typing_received", "receipts_received", "message_latency", "seconds"]}))
    server = node_s + pg_s
    print(f"CPU s: node{'s + redis' if redis else ''} {node_s:.2f}, postgres {pg_s:.2f}, server {server:.2f}, "
          f"loadtest {r['cpu']['loadtest_seconds']:.2f}; server CPU per persisted message "
          f"{1e6 * server / max(persisted, 1):.0f} us")
    if os.environ.get("BENCH_METRICS"):
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        wanted = os.environ["BENCH_METRICS"].split(",")
        for line in text.splitlines():
            if not line.startswith("#") and any(w in line for w in wanted):
                print(line)
finally:
    for n in procs:
        n.terminate()
    for n in procs:
        n.wait()
    if redis:
        redis.terminate()
        redis.wait()
    if db:
        time.sleep(0.5)
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"drop database if exists {db}"])
    shutil.rmtree(data, ignore_errors=True)
