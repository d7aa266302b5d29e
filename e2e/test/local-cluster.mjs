// deploy/local-cluster.sh from the tests: starts the script's cluster (N
// nodes behind nginx with sticky sessions, Redis, PostgreSQL) on free ports
// in a temporary state directory, and offers the proxy as a "node" that
// harness.mjs's connect() / rawWs() accept.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { FILE_ACCESS_KEY, FILE_SECRET, NODE_BIN, freePort, token } from './harness.mjs';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/local-cluster.sh');

/** Whether this machine can run the script's cluster (nginx installed). */
export function nginxInstalled() {
  return spawnSync('sh', ['-c', 'command -v nginx']).status === 0;
}

function parseEnv(file) {
  const env = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

/** Whether process `pid` is gone (or a zombie nobody reaped yet). */
export function processGone(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

export class LocalCluster {
  constructor(dir, env) {
    this.dir = dir;
    this.env = env;
    this.secret = FILE_SECRET;
    this.accessKey = FILE_ACCESS_KEY;
    this.proxy = {
      name: 'nginx',
      baseUrl: env.PROXY_URL,
      get wsBase() {
        return env.PROXY_URL.replace(/^http/, 'ws');
      },
      hubUrl: (hub = 'diagnostics') => `${env.PROXY_URL}/hubs/${hub}`,
      token: (claims = {}) => token({ ...claims, secret: FILE_SECRET }),
      accessKey: FILE_ACCESS_KEY,
    };
    this.nodes = [];
    for (let i = 1; i <= Number(env.NODES); i++) {
      this.nodes.push({ id: `node-${i}`, baseUrl: env[`NODE_${i}_URL`], pid: Number(env[`NODE_${i}_PID`]), log: path.join(dir, `node-${i}.log`) });
    }
  }

  /** Runs `redis-cli` against the cluster's Redis; returns stdout lines. */
  redis(...args) {
    const r = spawnSync('redis-cli', ['-p', this.env.REDIS_PORT, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l !== '');
  }

  status() {
    return script('status', this.dir, {});
  }

  stop() {
    return script('stop', this.dir, {});
  }

  /** The script's state directory's logs, for a failed test. */
  dumpLogs() {
    for (const f of fs.readdirSync(this.dir).filter((f) => f.endsWith('.log'))) {
      process.stderr.write(`\n===== ${f} =====\n${fs.readFileSync(path.join(this.dir, f), 'utf8').slice(-20_000)}\n`);
    }
  }
}

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function script(command, dir, extra) {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HUBWIRE_')));
  return spawnSync('bash', [SCRIPT, command], {
    encoding: 'utf8',
    env: { ...inherited, HUBWIRE_CLUSTER_DIR: dir, ...extra },
    timeout: 180_000,
  });
}

/** `deploy/local-cluster.sh start` with free ports; `env` goes to every node. */
export async function startLocalCluster({ nodes = 3, env = {} } = {}) {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-e2e-lc-'));
  // PostgreSQL runs as another user when we are root: it must reach its directory.
  fs.chmodSync(parent, 0o755);
  const dir = path.join(parent, 'cluster');
  const proxyPort = await freePort();
  // Node i listens on NODE_BASE_PORT + i: a base with `nodes` free ports above it.
  let base;
  for (let tries = 0; tries < 50 && base === undefined; tries++) {
    const candidate = (await freePort()) - 1;
    const above = Array.from({ length: nodes }, (_, i) => candidate + 1 + i);
    if (!above.includes(proxyPort) && (await Promise.all(above.map(portFree))).every(Boolean)) base = candidate;
  }
  if (base === undefined) throw new Error('no run of free ports for the nodes');
  const started = script('start', dir, {
    NODES: String(nodes),
    PROXY_PORT: String(proxyPort),
    NODE_BASE_PORT: String(base),
    REDIS_PORT: String(await freePort()),
    POSTGRES_PORT: String(await freePort()),
    HUBWIRE_NODE_BIN: NODE_BIN,
    HUBWIRE_JWT_SECRET: FILE_SECRET,
    HUBWIRE_ACCESS_KEY: FILE_ACCESS_KEY,
    RUST_LOG: 'info',
    ...env,
  });
  if (started.status !== 0 || !fs.existsSync(path.join(dir, 'cluster.env'))) {
    script('stop', dir, {});
    throw new Error(`local-cluster.sh start failed (${started.status}):\n${started.stdout}\n${started.stderr}`);
  }
  return new LocalCluster(dir, parseEnv(path.join(dir, 'cluster.env')));
}
