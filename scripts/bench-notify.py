#!/usr/bin/env python3
"""`loadtest notify` against three release nodes, Redis and PostgreSQL (issue 10, Show 6).

    scripts/bench-notify.py CONNECTIONS RATE SECONDS [NODES]

Starts a redis-server of its own (port 18379, in a temp dir), a fresh database on the
PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) and NODES (default 3) nodes of
target/release/hubwire-node on 18081.. (HUBWIRE_NODE_BIN overrides), then runs the
`notify` scenario: CONNECTIONS clients of one tenant spread round-robin over the nodes,
RATE tenant-wide notifications per second through REST for SECONDS. Prints the scenario's
summary and the CPU seconds of the nodes + Redis, of PostgreSQL and of the generator.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

connections, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
nodes = int(sys.argv[4]) if len(sys.argv) > 4 else 3
secret = "benchsecret-benchsecret-benchsecret"
run_id = f"n{int(time.time())}"
data = tempfile.mkdtemp(prefix="hubwire-bench-")
db = f"bench_{run_id}"
subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"create database {db}"], check=True)
env = dict(os.environ, HUBWIRE_JWT_SECRET=secret, HUBWIRE_MAX_CONNECTIONS_PER_USER="0",
           HUBWIRE_MAX_HANDSHAKES_PER_IP="0", HUBWIRE_MAX_HANDSHAKES="0", RUST_LOG="warn",
           HUBWIRE_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
           HUBWIRE_REDIS_URL="redis://127.0.0.1:18379")

def cpu(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / 100.0

def backends():
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

redis = subprocess.Popen(["redis-server", "--port", "18379", "--save", "", "--appendonly", "no", "--dir", data],
                         stdout=subprocess.DEVNULL)
procs = []
try:
    wait_port(18379)
    ports = [18081 + i for i in range(nodes)]
    for i, p in enumerate(ports):
        procs.append(subprocess.Popen([os.environ.get("HUBWIRE_NODE_BIN", "target/release/hubwire-node")],
                                      env=dict(env, HUBWIRE_LISTEN=f"127.0.0.1:{p}", HUBWIRE_NODE_ID=f"bench-{i + 1}"),
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, f"node{i}.log"), "w")))
    for p in ports:
        wait_port(p)
    server = [n.pid for n in procs] + [redis.pid]
    report = os.path.join(data, "report.json")
    cmd = ["target/release/loadtest", "notify", "--url", ",".join(f"http://127.0.0.1:{p}" for p in ports),
           "--hub", "notifications", "--token-secret", secret, "--tenant", "acme", "--connections", connections,
           "--rate", rate, "--duration", seconds, "--cpu-pids", ",".join(map(str, server)), "--json", report]
    print("$", " ".join(cmd), flush=True)
    lt = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    start = None
    for line in lt.stderr:
        if start is None and line.startswith("[notify] t="):
            start = {pid: cpu(pid) for pid in server + backends()}
        if "lost" in line or "error" in line.lower() or "failed" in line:
            sys.stderr.write(line)
    end = {pid: cpu(pid) for pid in server + backends()}
    lt.wait()
    r = json.load(open(report))
    print(json.dumps({k: r[k] for k in ["connections", "connect_failures", "sent", "expected_deliveries", "received",
                                         "lost", "deliveries_per_second", "latency", "seconds"]}))
    start = start or {}
    nodes_s = sum(end[p] - start.get(p, 0.0) for p in server)
    pg_s = sum(v - start.get(p, 0.0) for p, v in end.items() if p not in server)
    print(f"CPU s (from the first notification to the end): nodes + redis {nodes_s:.2f}, postgres {pg_s:.2f}, "
          f"loadtest {r['sending_cpu']['loadtest_seconds'] or 0:.2f}")
finally:
    for n in procs:
        n.terminate()
    for n in procs:
        n.wait()
    redis.terminate()
    redis.wait()
    time.sleep(0.5)
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"drop database if exists {db}"])
    shutil.rmtree(data, ignore_errors=True)
