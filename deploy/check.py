#!/usr/bin/env python3
"""Checks of the deployment files that need no Docker engine and no cluster.

  deploy/check.py docker               Dockerfile, its .dockerignore, compose.yaml, the nginx files
  deploy/check.py chart VALUES RENDERED  cross-references inside `helm/render`'s output for VALUES

Prints one line per failed check and a closing `N passed, N failed` line;
exits 1 when a check failed. What it cannot catch: docs/deployment.md.
Needs PyYAML (kubernetes-validate's venv has it).
"""

import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
passed, failed = 0, []


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failed.append(what)


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        cur += " " + stripped.rstrip("\\").strip() if cur else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = cur.partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def check_dockerfile():
    ins = dockerfile_instructions(read("deploy/Dockerfile"))
    known = {"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD",
             "LABEL", "STOPSIGNAL", "HEALTHCHECK", "VOLUME", "SHELL", "ONBUILD"}
    check(all(i in known for i, _ in ins), f"Dockerfile: unknown instructions {[i for i, _ in ins if i not in known]}")
    stages, cur = [], None
    for i, args in ins:
        if i == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            check(m is not None, f"Dockerfile: FROM {args}")
            cur = {"image": m.group(1), "name": (m.group(2) or "").lower(), "ins": []}
            stages.append(cur)
        else:
            check(cur is not None, f"Dockerfile: {i} before FROM")
            cur["ins"].append((i, args))
    check(len(stages) >= 2, "Dockerfile: multi-stage (a build stage and a runtime stage)")
    build, runtime = stages[0], stages[-1]
    names = {s["name"] for s in stages}
    # The builder: Rust at least the workspace's rust-version.
    m = re.match(r"rust:(\d+)\.(\d+)", build["image"])
    want = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)"', read("Cargo.toml"))
    check(m is not None, f"Dockerfile: the build stage is a rust image ({build['image']})")
    if m and want:
        check((int(m[1]), int(m[2])) >= (int(want[1]), int(want[2])), "Dockerfile: rust image >= workspace rust-version")
    # Every workspace member (and the lock file, for --locked) is copied in.
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", read("Cargo.toml"))[1]
    members = re.findall(r'"([^"]+)"', members)
    copied = set()
    for i, args in build["ins"]:
        if i == "COPY" and "--from" not in args:
            parts = args.split()
            for src in parts[:-1]:
                copied.add(src.rstrip("/"))
                check(os.path.exists(os.path.join(ROOT, src)), f"Dockerfile: COPY source {src} exists")
    for member in members + ["Cargo.toml", "Cargo.lock"]:
        check(member in copied, f"Dockerfile: workspace member {member} copied into the build stage")
    runs = " ".join(a for i, a in build["ins"] if i == "RUN")
    check("--locked" in runs and "--release" in runs and "-p hubwire-node" in runs, "Dockerfile: cargo build --release --locked -p hubwire-node")
    # The runtime: small base, non-root, the binary and nothing else.
    check(re.match(r"(gcr\.io/distroless/|debian:[\w.-]*slim|scratch$)", runtime["image"]) is not None,
          f"Dockerfile: small runtime image ({runtime['image']})")
    users = [a for i, a in runtime["ins"] if i == "USER"]
    check(bool(users) or runtime["image"].endswith(":nonroot"), "Dockerfile: runtime user set")
    check(all(u.split(":")[0] not in ("root", "0") for u in users), "Dockerfile: runtime user is not root")
    copies = [a for i, a in runtime["ins"] if i in ("COPY", "ADD")]
    check(len(copies) == 1 and copies[0].startswith("--from="), f"Dockerfile: the runtime copies one thing, from a stage: {copies}")
    if copies:
        stage = re.match(r"--from=(\S+)", copies[0])[1].lower()
        check(stage in names, f"Dockerfile: COPY --from={stage} names a stage")
    check(not any(i == "RUN" for i, _ in runtime["ins"]), "Dockerfile: nothing run in the runtime stage")
    entry = [a for i, a in runtime["ins"] if i == "ENTRYPOINT"]
    check(len(entry) == 1 and json.loads(entry[0])[0].startswith("/"), "Dockerfile: ENTRYPOINT in exec form")
    health = [a for i, a in runtime["ins"] if i == "HEALTHCHECK"]
    check(len(health) == 1 and '["/hubwire-node", "probe"' in health[0], "Dockerfile: HEALTHCHECK with hubwire-node probe (exec form: no shell)")
    env = " ".join(a for i, a in runtime["ins"] if i == "ENV")
    check("HUBWIRE_LISTEN=0.0.0.0:8080" in env, "Dockerfile: listens on 0.0.0.0:8080")
    check(any(i == "EXPOSE" and a == "8080" for i, a in runtime["ins"]), "Dockerfile: EXPOSE 8080")
    # The .dockerignore lets in what the build copies.
    ignore = [l.strip() for l in read("deploy/Dockerfile.dockerignore").splitlines() if l.strip() and not l.startswith("#")]
    for src in copied:
        check(any(l in ("!" + src, "!" + src + "/**") for l in ignore), f"Dockerfile.dockerignore: lets {src} in")


# --------------------------------------------------------------------------- compose + nginx


def check_compose():
    compose = yaml.safe_load(read("deploy/compose.yaml"))
    services = compose["services"]
    nodes = sorted(s for s in services if s.startswith("hubwire-"))
    check(len(nodes) == 3, f"compose: three hubwire nodes ({nodes})")
    check({"redis", "postgres", "nginx"} <= set(services), "compose: redis, postgres and nginx services")
    ids = set()
    for name in nodes:
        svc = services[name]
        env = svc.get("environment", {})
        check(svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile", f"compose: {name} builds deploy/Dockerfile")
        check(os.path.realpath(os.path.join(ROOT, "deploy", svc["build"]["context"])) == ROOT, f"compose: {name}'s build context is the repository")
        check(env.get("HUBWIRE_LISTEN") == "0.0.0.0:8080", f"compose: {name} listens on 8080")
        check(str(env.get("HUBWIRE_REDIS_URL", "")).startswith("redis://redis:"), f"compose: {name} uses the redis service")
        check(str(env.get("HUBWIRE_DATABASE_URL", "")).startswith("postgres://") and "@postgres:" in env["HUBWIRE_DATABASE_URL"],
              f"compose: {name} uses the postgres service")
        check(bool(env.get("HUBWIRE_JWT_SECRET")) and bool(env.get("HUBWIRE_ACCESS_KEY")), f"compose: {name} has a JWT secret and an access key")
        ids.add(env.get("HUBWIRE_NODE_ID"))
        check(svc.get("healthcheck", {}).get("test", [])[:3] == ["CMD", "/hubwire-node", "probe"], f"compose: {name} health-checked by hubwire-node probe")
        for dep in svc.get("depends_on", {}):
            check(dep in services, f"compose: {name} depends on an existing service {dep}")
        grace = re.match(r"(\d+)s$", str(svc.get("stop_grace_period", "10s")))
        drain = int(env.get("HUBWIRE_SHUTDOWN_TIMEOUT_SECS", 10)) + int(env.get("HUBWIRE_SHUTDOWN_DELAY_SECS", 0))
        check(grace is not None and int(grace[1]) > drain, f"compose: {name}'s stop_grace_period exceeds its drain ({drain} s)")
    check(len(ids) == 3 and None not in ids, "compose: distinct HUBWIRE_NODE_IDs")
    # The nginx service mounts the one shared configuration and what it includes.
    mounts = {}
    for v in services["nginx"].get("volumes", []):
        src, dst = v.split(":")[:2]
        mounts[dst] = os.path.realpath(os.path.join(ROOT, "deploy", src))
    shared = os.path.join(ROOT, "deploy", "nginx", "hubwire.conf")
    check(shared in mounts.values(), "compose: nginx mounts deploy/nginx/hubwire.conf")
    check(mounts.get("/etc/nginx/conf.d/default.conf") == shared, "compose: ... in place of the image's default server")
    check("$repo/deploy/nginx/hubwire.conf" in read("deploy/local-cluster.sh"), "local-cluster.sh includes the same deploy/nginx/hubwire.conf")
    conf = read("deploy/nginx/hubwire.conf")
    for inc in re.findall(r"^\s*include\s+(\S+);", conf, re.M):
        check(f"/etc/nginx/{inc}" in mounts and os.path.exists(mounts[f"/etc/nginx/{inc}"]), f"compose: nginx gets {inc}")
    check(re.search(r"^\s*hash \$hubwire_affinity consistent;", conf, re.M) is not None, "nginx: hashes on the affinity key, consistently")
    check("ip_hash" not in re.sub(r"#.*", "", conf), "nginx: no ip_hash")
    servers = re.findall(r"^server\s+([\w.-]+):(\d+)", read("deploy/nginx/compose-servers.conf"), re.M)
    check(sorted(h for h, _ in servers) == nodes and all(p == "8080" for _, p in servers), f"nginx: compose upstream = the node services ({servers})")
    deps = services["nginx"].get("depends_on", {})
    check(all(deps.get(n, {}).get("condition") == "service_healthy" for n in nodes), "compose: nginx waits for healthy nodes")
    ports = services["nginx"].get("ports", [])
    check(any(str(p).endswith(":80") for p in ports), "compose: nginx published")
    check("listen 80" in read("deploy/nginx/compose-listen.conf"), "nginx: compose listens on 80")


# --------------------------------------------------------------------------- chart


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_chart(values_file, rendered):
    values = yaml.safe_load(open(values_file)) if values_file != "-" else {}
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    external = {v for v in [values.get("auth", {}).get("existingSecret"), values.get("redis", {}).get("existingSecret"),
                            values.get("database", {}).get("existingSecret")] if v}
    (deploy,) = by_kind["Deployment"]
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    check(labels_match(deploy["spec"]["selector"]["matchLabels"], labels), "Deployment: selector matches its pods")
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e for e in container.get("env", [])}
    check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "Deployment: liveness /healthz")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "Deployment: readiness /readyz")
    drain = int(env["HUBWIRE_SHUTDOWN_TIMEOUT_SECS"]["value"])
    pre = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    check(pod["spec"]["terminationGracePeriodSeconds"] == pre + drain + 5,
          "Deployment: terminationGracePeriodSeconds = preStop + drain + 5")
    check(env["HUBWIRE_LISTEN"]["value"].endswith(":%d" % ports["http"]), "Deployment: listens on the container port")
    check(pod["spec"]["securityContext"].get("runAsNonRoot") is True, "Deployment: runAsNonRoot")
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(("Secret", ref["name"]) in names or ref["name"] in external, f"Deployment: Secret {ref['name']} of {e['name']} exists")
            for s in by_kind.get("Secret", []):
                if s["metadata"]["name"] == ref["name"] and not ref.get("optional"):
                    check(ref["key"] in s.get("data", {}), f"Deployment: key {ref['key']} in Secret {ref['name']}")
    for vol in pod["spec"].get("volumes", []):
        if "configMap" in vol:
            check(("ConfigMap", vol["configMap"]["name"]) in names, f"Deployment: ConfigMap {vol['configMap']['name']} exists")
        if "secret" in vol:
            check(("Secret", vol["secret"]["secretName"]) in names or vol["secret"]["secretName"] in external,
                  f"Deployment: Secret {vol['secret']['secretName']} exists")
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    check(mounted <= {v["name"] for v in pod["spec"].get("volumes", [])}, "Deployment: every mount has a volume")
    if "--config" in container.get("args", []):
        path = container["args"][container["args"].index("--config") + 1]
        check(any(m["mountPath"] == path for m in container["volumeMounts"]), "Deployment: --config file is mounted")
    for svc in by_kind["Service"]:
        check(labels_match(svc["spec"]["selector"], labels), f"Service {svc['metadata']['name']}: selects the pods")
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in ports, f"Service: targetPort {p['targetPort']} is a container port")
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    for ing in by_kind.get("Ingress", []):
        ann = ing["metadata"].get("annotations", {})
        check(ann.get("nginx.ingress.kubernetes.io/affinity") == "cookie", "Ingress: cookie affinity")
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                check(b["name"] in services, f"Ingress: backend Service {b['name']} exists")
                check(b["port"].get("name") in {x["name"] for x in services.get(b["name"], {"spec": {"ports": []}})["spec"]["ports"]},
                      "Ingress: backend port exists")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        check(ref["kind"] == "Deployment" and ref["name"] == deploy["metadata"]["name"], "HPA: scales the Deployment")
        check("replicas" not in deploy["spec"], "HPA: the Deployment leaves replicas to it")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(labels_match(pdb["spec"]["selector"]["matchLabels"], labels), "PDB: selects the pods")
    for sm in by_kind.get("ServiceMonitor", []):
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor: monitoring.coreos.com/v1")
        svc_ok = [s for s in by_kind["Service"] if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        check(bool(svc_ok), "ServiceMonitor: selects the Service")
        for ep in sm["spec"]["endpoints"]:
            check(ep.get("path") == "/metrics", "ServiceMonitor: /metrics")
            check(any(ep["port"] == p["name"] for s in svc_ok for p in s["spec"]["ports"]), "ServiceMonitor: port is the Service's")
    for cm in by_kind.get("ConfigMap", []):
        if "hubwire.toml" in cm.get("data", {}):
            check("[[hub]]" in cm["data"]["hubwire.toml"] or values_file == "-", "ConfigMap: the hub definitions are in it")
    sa = pod["spec"].get("serviceAccountName")
    check(("ServiceAccount", sa) in names or not values.get("serviceAccount", {}).get("create", True), "ServiceAccount exists")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "docker":
        check_dockerfile()
        check_compose()
    elif len(sys.argv) == 4 and sys.argv[1] == "chart":
        check_chart(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        return 2
    for f in failed:
        print("FAILED:", f)
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
