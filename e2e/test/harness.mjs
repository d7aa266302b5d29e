// End-to-end test harness for hubwire-node.
//
// Starts real `hubwire-node` processes, mints HS256 JWTs with node:crypto,
// connects the official @microsoft/signalr client (JSON or MessagePack) and
// offers small raw-WebSocket helpers for protocol-level tests.
//
// Every process started here is killed when the test file's process exits, and
// every client connection created through `connect()` / `rawWs()` is closed
// after each test that uses the `e2eTest()` wrapper.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, after } from 'node:test';

import {
  HubConnectionBuilder,
  HttpTransportType,
  LogLevel,
  HubConnectionState,
} from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import WebSocket from 'ws';

export { HubConnectionState, HttpTransportType, LogLevel };

const HERE = path.dirname(fileURLToPath(import.meta.url));
const E2E_ROOT = path.resolve(HERE, '..');

/** Path of the hubwire-node binary under test. */
export const NODE_BIN = process.env.HUBWIRE_NODE_BIN
  ? path.resolve(process.env.HUBWIRE_NODE_BIN)
  : path.resolve(E2E_ROOT, '../target/debug/hubwire-node');

export const VERBOSE = process.env.HUBWIRE_E2E_VERBOSE === '1';

/** ASCII record separator that terminates every JSON hub protocol record. */
export const RS = '\x1e';

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

// ---------------------------------------------------------------------------
// Small async utilities
// ---------------------------------------------------------------------------

export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with a descriptive error when `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** Polls `predicate` every 20 ms until it returns a truthy value. */
export async function waitFor(predicate, { timeout = 5_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    await delay(20);
  }
}

/** Resolves with the rejection error of `promise`; fails if it resolves instead. */
export async function rejectionOf(promise, ms = 10_000, what = 'rejection') {
  let value;
  try {
    value = await withTimeout(promise, ms, what);
  } catch (err) {
    return err;
  }
  throw new Error(`Expected ${what} but the promise resolved with ${JSON.stringify(value)}`);
}

/** A promise with its resolve/reject functions exposed. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const randomHex = (bytes = 16) => crypto.randomBytes(bytes).toString('hex');

/**
 * JWT secret and access key shared by the nodes of one test file (node --test
 * runs each file in its own process, so every file gets fresh values).
 */
export const FILE_SECRET = randomHex(32);
export const FILE_ACCESS_KEY = randomHex(16);

/**
 * A small JSON backend on 127.0.0.1 (the app's backend in the hook tests):
 * each request's body is parsed as JSON and handed to
 * `handler({ path, body, raw, headers }, json)`, where `json(status, value?)`
 * answers it (a handler may answer later, or never). Resolves with
 * `{ url, close() }`; `close` also cuts the node's kept-alive connections.
 */
export function startJsonBackend(handler) {
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
      const json = (status, value) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(value === undefined ? '' : JSON.stringify(value));
      handler({ path: req.url, body, raw, headers: req.headers }, json);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** Returns a TCP port that was free a moment ago (bind to :0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------
// Node process management
// ---------------------------------------------------------------------------

const liveNodes = new Set();

function killAllSync() {
  for (const node of liveNodes) {
    try {
      node.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveNodes.clear();
}

process.on('exit', () => {
  killAllSync();
  killAllRedisSync();
  removeDataDirs();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAllSync();
    killAllRedisSync();
    process.exit(130);
  });
}

/** A running (or stopped) hubwire-node process. */
export class HubNode {
  constructor({ child, secret, accessKey, dataDir, env, port, name }) {
    this.child = child;
    this.secret = secret;
    this.accessKey = accessKey;
    this.dataDir = dataDir;
    this.env = env;
    this.port = port;
    this.name = name;
    this.baseUrl = null;
    this.logs = [];
    /** Total number of log lines ever recorded (`logs` keeps only the last 20 000). */
    this.logCount = 0;
    this.exited = false;
    this.exitCode = null;
    this.exitSignal = null;
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        liveNodes.delete(this);
        this._log('harness', `process exited (code=${code}, signal=${signal})`);
        resolve();
      });
    });
  }

  _log(stream, line) {
    const entry = `[${new Date().toISOString()}] [${this.name} ${stream}] ${line}`;
    this.logs.push(entry);
    this.logCount++;
    if (this.logs.length > 20_000) this.logs.splice(0, this.logs.length - 20_000);
    if (VERBOSE) process.stderr.write(entry + '\n');
  }

  /** ws:// base URL, e.g. ws://127.0.0.1:1234 */
  get wsBase() {
    return this.baseUrl.replace(/^http/, 'ws');
  }

  hubUrl(hub = 'diagnostics') {
    return `${this.baseUrl}/hubs/${hub}`;
  }

  /** Mints a JWT signed with this node's secret. */
  token(claims = {}) {
    return token({ ...claims, secret: claims.secret ?? this.secret });
  }

  /** Writes the log to stderr; `sinceCount` limits it to lines recorded after that logCount. */
  dumpLogs(reason = 'test failure', sinceCount = 0) {
    const n = Math.min(this.logs.length, Math.max(0, this.logCount - sinceCount));
    const lines = this.logs.slice(this.logs.length - n);
    const skipped = this.logCount - n;
    process.stderr.write(
      `\n===== hubwire-node log (${this.name}, ${reason}; ${lines.length} lines` +
        (skipped ? `, ${skipped} earlier lines omitted` : '') +
        `) =====\n` +
        lines.join('\n') +
        `\n===== end of log (${this.name}) =====\n`,
    );
  }

  /** SIGTERM, then SIGKILL after 5 s. */
  async stop() {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (!this.exited) {
        this._log('harness', `did not exit ${STOP_GRACE_MS} ms after SIGTERM; sending SIGKILL`);
        this.child.kill('SIGKILL');
      }
    }, STOP_GRACE_MS);
    await this.exitPromise;
    clearTimeout(timer);
  }

  /** Immediate SIGKILL (simulates a crash). */
  async kill() {
    if (this.exited) return;
    this.child.kill('SIGKILL');
    await this.exitPromise;
  }
}

const startedNodes = [];
/** Temp data dirs made by startNode(); removed after the file's nodes stopped. */
const createdDataDirs = [];

function removeDataDirs() {
  if (process.env.HUBWIRE_E2E_KEEP_DATA === '1') return;
  for (const dir of createdDataDirs.splice(0)) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}
let nodeCounter = 0;

/**
 * Starts a hubwire-node and waits until it prints
 * `hubwire-node listening on http://127.0.0.1:PORT`.
 *
 * Options:
 *   port       fixed port (default: 0 = let the node choose)
 *   secret     JWT secret (default: FILE_SECRET, random per test file)
 *   accessKey  HUBWIRE_ACCESS_KEY (default: FILE_ACCESS_KEY, random per test file)
 *   dataDir    HUBWIRE_DATA_DIR (default: fresh temp dir)
 *   env        extra environment variables (override the defaults, among them
 *              HUBWIRE_DIAGNOSTICS_HUB=true; a null value unsets one)
 *   name       label used in logs
 *   openFiles  open-file limit of the process (`ulimit -n`; default: inherited)
 *   args       command-line arguments of the node (e.g. ['--config', file])
 */
export async function startNode(opts = {}) {
  if (!fs.existsSync(NODE_BIN)) {
    throw new Error(
      `hubwire-node binary not found at ${NODE_BIN}. Build it with \`cargo build -p hubwire-node\` ` +
        'or point HUBWIRE_NODE_BIN at it.',
    );
  }
  const secret = opts.secret ?? FILE_SECRET;
  const accessKey = opts.accessKey ?? FILE_ACCESS_KEY;
  let dataDir = opts.dataDir;
  if (!dataDir) {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-e2e-'));
    createdDataDirs.push(dataDir);
  }
  const port = opts.port ?? 0;
  const name = opts.name ?? `node${++nodeCounter}`;
  // Inherit the environment minus any HUBWIRE_* setting, so tests are hermetic.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HUBWIRE_')));
  const env = {
    ...inherited,
    HUBWIRE_LISTEN: `127.0.0.1:${port}`,
    HUBWIRE_JWT_SECRET: secret,
    HUBWIRE_ACCESS_KEY: accessKey,
    HUBWIRE_DATA_DIR: dataDir,
    // Off by default in the node; the tests drive it.
    HUBWIRE_DIAGNOSTICS_HUB: 'true',
    RUST_LOG: 'info',
    ...(opts.env ?? {}),
  };
  // `null` in opts.env unsets a variable (e.g. to see a default).
  for (const [k, v] of Object.entries(env)) if (v === null) delete env[k];

  // With `openFiles`, through a shell that lowers the limit and then becomes the node.
  const [command, args] = opts.openFiles
    ? ['sh', ['-c', `ulimit -n ${Number(opts.openFiles)} && exec "$0"`, NODE_BIN]]
    : [NODE_BIN, opts.args ?? []];
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const node = new HubNode({ child, secret, accessKey, dataDir, env, port, name });
  liveNodes.add(node);
  startedNodes.push(node);
  node._log('harness', `spawned ${NODE_BIN} (pid ${child.pid}) with HUBWIRE_LISTEN=${env.HUBWIRE_LISTEN}`);

  const listening = deferred();
  let stdoutBuf = '';
  let stderrBuf = '';
  const onLine = (stream, line) => {
    node._log(stream, line);
    const m = /hubwire-node listening on (http:\/\/[^\s]+)/.exec(line);
    if (stream === 'stdout' && m && !node.baseUrl) {
      node.baseUrl = m[1].replace(/\/+$/, '');
      node.port = Number(new URL(node.baseUrl).port);
      listening.resolve();
    }
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    stdoutBuf += chunk;
    let i;
    while ((i = stdoutBuf.indexOf('\n')) >= 0) {
      onLine('stdout', stdoutBuf.slice(0, i).replace(/\r$/, ''));
      stdoutBuf = stdoutBuf.slice(i + 1);
    }
  });
  child.stderr.on('data', (chunk) => {
    stderrBuf += chunk;
    let i;
    while ((i = stderrBuf.indexOf('\n')) >= 0) {
      onLine('stderr', stderrBuf.slice(0, i).replace(/\r$/, ''));
      stderrBuf = stderrBuf.slice(i + 1);
    }
  });
  child.once('error', (err) => {
    node._log('harness', `spawn error: ${err.message}`);
    listening.reject(err);
  });
  node.exitPromise.then(() =>
    listening.reject(
      new Error(`hubwire-node exited before listening (code=${node.exitCode}, signal=${node.exitSignal})`),
    ),
  );

  try {
    await withTimeout(listening.promise, STARTUP_TIMEOUT_MS, 'hubwire-node to print its listening line');
  } catch (err) {
    if (stdoutBuf) node._log('stdout', stdoutBuf);
    if (stderrBuf) node._log('stderr', stderrBuf);
    await node.kill();
    const captured = node.logs.join('\n');
    throw new Error(`Failed to start hubwire-node: ${err.message}\n--- captured output ---\n${captured}`);
  }
  return node;
}

/**
 * Registers an `after` hook (call once at the top of a test file) that closes
 * all clients and stops every node the file started.
 */
export function stopAllNodesAfter() {
  after(async () => {
    await closeAllClients();
    await Promise.all(startedNodes.map((n) => n.stop()));
    await Promise.all(startedRedis.map((r) => r.stop()));
    removeDataDirs();
  });
}

// ---------------------------------------------------------------------------
// Redis (for clusters of nodes)
// ---------------------------------------------------------------------------

/** The redis-server binary (default: `redis-server` on PATH). */
export const REDIS_BIN = process.env.HUBWIRE_E2E_REDIS_SERVER ?? 'redis-server';

const REDIS_STARTUP_TIMEOUT_MS = 10_000;
const liveRedis = new Set();
const startedRedis = [];

function killAllRedisSync() {
  for (const r of liveRedis) {
    try {
      r.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveRedis.clear();
}

/** Resolves true when a Redis at 127.0.0.1:port answers `PING` with `+PONG`. */
export function redisPing(port, timeout = 500) {
  return new Promise((resolve) => {
    let buf = '';
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeout);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (chunk) => {
      buf += chunk;
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.once('error', () => done(false));
    sock.once('close', () => done(false));
  });
}

/**
 * A redis-server on a fixed port with an empty, non-persistent dataset
 * (`--save "" --appendonly no`), logging to `<dir>/redis.log`. `stop()` and
 * `start()` again reuse the same port (simulating an outage); the restarted
 * server starts empty.
 */
export class RedisServer {
  constructor({ port, dir, name }) {
    this.port = port;
    this.dir = dir;
    this.name = name;
    this.logFile = path.join(dir, 'redis.log');
    this.child = null;
    this.exitPromise = Promise.resolve();
  }

  /** redis://127.0.0.1:PORT */
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running() {
    return this.child !== null;
  }

  /** Spawns redis-server and waits until it answers PING. */
  async start() {
    if (this.child) throw new Error(`${this.name} is already running`);
    const args = [
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', this.dir,
      '--logfile', this.logFile,
    ];
    const child = spawn(REDIS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    liveRedis.add(this);
    let output = '';
    const collect = (chunk) => {
      output += chunk;
      if (VERBOSE) process.stderr.write(`[${this.name}] ${chunk}`);
    };
    child.stdout.setEncoding('utf8').on('data', collect);
    child.stderr.setEncoding('utf8').on('data', collect);
    let exited = false;
    let spawnError = null;
    child.once('error', (err) => {
      spawnError = err;
    });
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', () => {
        exited = true;
        liveRedis.delete(this);
        if (this.child === child) this.child = null;
        resolve();
      });
      child.once('error', () => {
        liveRedis.delete(this);
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    const deadline = Date.now() + REDIS_STARTUP_TIMEOUT_MS;
    for (;;) {
      if (spawnError || exited) {
        const why = spawnError ? `could not run ${REDIS_BIN}: ${spawnError.message}` : 'redis-server exited';
        throw new Error(`Failed to start ${this.name} on port ${this.port}: ${why}\n${output}\n${this.readLog()}`);
      }
      if (await redisPing(this.port)) return this;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `${this.name} did not answer PING on port ${this.port} within ${REDIS_STARTUP_TIMEOUT_MS} ms\n${output}\n${this.readLog()}`,
        );
      }
      await delay(50);
    }
  }

  /** Stops the server (SIGTERM, SIGKILL after 5 s); a no-op when it is not running. */
  async stop({ signal = 'SIGTERM' } = {}) {
    const child = this.child;
    if (!child) return;
    const exited = this.exitPromise;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL (Redis vanishes without closing anything gracefully). */
  kill() {
    return this.stop({ signal: 'SIGKILL' });
  }

  /** Size of the log file so far (a mark for dumpLogs). */
  logSize() {
    try {
      return fs.statSync(this.logFile).size;
    } catch {
      return 0;
    }
  }

  /** The log file's contents from byte `since` on. */
  readLog(since = 0) {
    try {
      return fs.readFileSync(this.logFile).subarray(since).toString('utf8');
    } catch {
      return '(no redis log)';
    }
  }

  /** Writes the log (from byte `since`) to stderr. */
  dumpLogs(reason = 'test failure', since = 0) {
    process.stderr.write(
      `\n===== redis-server log (${this.name}, port ${this.port}, ${reason}) =====\n` +
        this.readLog(since) +
        `===== end of log (${this.name}) =====\n`,
    );
  }
}

let redisCounter = 0;

/**
 * Starts a redis-server on a free port with a fresh temporary directory and
 * waits until it answers PING. It is killed when the test file's process
 * exits (and stopped by `stopAllNodesAfter()`); call `stop()` / `start()` to
 * take it down and bring it back on the same port.
 */
export async function startRedis({ name } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-e2e-redis-'));
  createdDataDirs.push(dir);
  const server = new RedisServer({ port: await freePort(), dir, name: name ?? `redis${++redisCounter}` });
  startedRedis.push(server);
  try {
    await server.start();
  } catch (err) {
    server.dumpLogs('startup failure');
    throw err;
  }
  return server;
}

/**
 * Starts `size` hubwire-nodes joined through `redis` (one Redis keyspace
 * under a unique HUBWIRE_REDIS_PREFIX), all with the same JWT secret and
 * access key. `env` is added to every node's environment.
 * Returns { redis, prefix, nodes }.
 */
export async function startCluster(redis, { size = 3, name = 'cluster', prefix, env = {}, secret, accessKey, args } = {}) {
  const clusterPrefix = prefix ?? `e2e-${randomHex(4)}`;
  const nodes = [];
  // Sequentially, so that node i is `${name}-${i + 1}` and startup logs stay readable.
  for (let i = 0; i < size; i++) {
    nodes.push(
      await startNode({
        name: `${name}-${i + 1}`,
        secret,
        accessKey,
        args,
        env: {
          HUBWIRE_REDIS_URL: redis.url,
          HUBWIRE_REDIS_PREFIX: clusterPrefix,
          ...env,
        },
      }),
    );
  }
  return { redis, prefix: clusterPrefix, nodes };
}

// ---------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * HS256 JWT signed with `secret`.
 * Claims: sub, name, exp (default now+3600), iat, optional tenant/roles/channels.
 */
export function token({ sub = 'alice', name, tenant, roles, channels, expSeconds, iat, secret, extra } = {}) {
  if (!secret) throw new Error('token(): secret is required (use node.token())');
  const now = Math.floor(Date.now() / 1000);
  const exp = now + (expSeconds ?? 3600);
  const claims = {
    sub,
    name: name ?? sub,
    iat: iat ?? Math.min(now, exp - 60),
    exp,
  };
  if (tenant !== undefined) claims.tenant = tenant;
  if (roles !== undefined) claims.roles = roles;
  if (channels !== undefined) claims.channels = channels;
  Object.assign(claims, extra ?? {});
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = b64url(crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest());
  return `${header}.${payload}.${sig}`;
}

// ---------------------------------------------------------------------------
// Official client connections
// ---------------------------------------------------------------------------

const openClients = new Set();

/** Records events of a HubConnection for later assertions. */
function instrument(conn) {
  conn.closeEvents = [];
  conn.reconnectingEvents = [];
  conn.reconnectedEvents = [];
  conn.onclose((err) => conn.closeEvents.push(err ?? null));
  conn.onreconnecting((err) => conn.reconnectingEvents.push(err ?? null));
  conn.onreconnected((id) => conn.reconnectedEvents.push(id ?? null));
  return conn;
}

/**
 * Builds a HubConnection to `node` (not started).
 *
 * Options: hub ('diagnostics'), user ('alice'), name, roles (claim of the default token),
 * protocol ('json' | 'messagepack'),
 * token (string; `null` = send no token; default: a fresh token for `user`),
 * transport (default WebSockets), skipNegotiation, reconnectDelays (array => withAutomaticReconnect),
 * keepAliveMs (client keep-alive interval), serverTimeoutMs, url (override).
 */
export function buildConnection(node, opts = {}) {
  const {
    hub = 'diagnostics',
    user = 'alice',
    name,
    roles,
    protocol = 'json',
    transport = HttpTransportType.WebSockets,
    skipNegotiation,
    reconnectDelays,
    keepAliveMs,
    serverTimeoutMs,
    url,
    logLevel = LogLevel.Warning,
  } = opts;
  const tok = opts.token === undefined ? node.token({ sub: user, name, roles }) : opts.token;
  const httpOptions = { transport };
  if (tok !== null) httpOptions.accessTokenFactory = () => tok;
  if (skipNegotiation !== undefined) httpOptions.skipNegotiation = skipNegotiation;

  let builder = new HubConnectionBuilder()
    .withUrl(url ?? node.hubUrl(hub), httpOptions)
    .configureLogging(logLevel);
  if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  else if (protocol !== 'json') throw new Error(`unknown protocol ${protocol}`);
  if (reconnectDelays) builder = builder.withAutomaticReconnect(reconnectDelays);
  const conn = instrument(builder.build());
  if (keepAliveMs !== undefined) conn.keepAliveIntervalInMilliseconds = keepAliveMs;
  if (serverTimeoutMs !== undefined) conn.serverTimeoutInMilliseconds = serverTimeoutMs;
  conn.protocolName = protocol;
  conn.userId = user;
  openClients.add(conn);
  return conn;
}

/** Builds and starts a HubConnection (see buildConnection for options). */
export async function connect(node, opts = {}) {
  const conn = buildConnection(node, opts);
  await withTimeout(conn.start(), opts.startTimeoutMs ?? 10_000, `HubConnection.start() to ${node.hubUrl(opts.hub)}`);
  return conn;
}

/**
 * Subscribes to client method `method` on `conn` and returns a recorder:
 *   rec.items        received payloads (first argument of each call)
 *   rec.wait(n)      resolves once at least n calls arrived (timeout 5 s)
 */
export function record(conn, method) {
  const rec = {
    items: [],
    waiters: [],
    async wait(n = 1, timeout = 5_000) {
      return waitFor(() => rec.items.length >= n && rec.items, {
        timeout,
        what: `${n} '${method}' message(s) on ${conn.label ?? conn.connectionId}`,
      });
    },
  };
  conn.on(method, (...args) => {
    rec.items.push(args.length === 1 ? args[0] : args);
  });
  return rec;
}

// ---------------------------------------------------------------------------
// Raw WebSocket helpers (JSON hub protocol)
// ---------------------------------------------------------------------------

const openSockets = new Set();

/**
 * Opens a raw WebSocket to `${node.wsBase}${pathAndQuery}`.
 * Resolves with a RawSocket once open; rejects with an Error carrying
 * `statusCode` if the server answers the upgrade with a non-101 status.
 */
export function rawWs(node, pathAndQuery, { headers = {}, timeout = 5_000 } = {}) {
  const url = `${node.wsBase}${pathAndQuery}`;
  return withTimeout(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, maxPayload: 64 * 1024 * 1024 });
      const raw = new RawSocket(ws);
      openSockets.add(raw);
      ws.once('unexpected-response', (req, res) => {
        const err = new Error(`WebSocket upgrade to ${url} rejected with HTTP ${res.statusCode}`);
        err.statusCode = res.statusCode;
        res.resume();
        req.destroy();
        reject(err);
      });
      ws.once('open', () => resolve(raw));
      ws.once('error', (err) => reject(err));
    }),
    timeout,
    `WebSocket connect to ${url}`,
  );
}

/** Expects the WebSocket upgrade to fail and returns the HTTP status code. */
export async function wsUpgradeStatus(node, pathAndQuery, opts) {
  try {
    const raw = await rawWs(node, pathAndQuery, opts);
    raw.terminate();
  } catch (err) {
    if (err.statusCode) return err.statusCode;
    throw err;
  }
  throw new Error(`WebSocket upgrade to ${pathAndQuery} unexpectedly succeeded`);
}

/**
 * A raw WebSocket that splits text frames into JSON hub protocol records.
 *   frames   every received frame as { text, binary }
 *   records  every received record, without the trailing \x1e
 */
export class RawSocket {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.records = [];
    this.closed = false;
    this.closeCode = null;
    this.closeReason = null;
    this._cursor = 0;
    this._pending = '';
    this.closedPromise = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        this.closed = true;
        this.closeCode = code;
        this.closeReason = reason?.toString();
        openSockets.delete(this);
        resolve({ code, reason: this.closeReason });
      });
    });
    ws.on('error', () => {
      /* surfaced through close */
    });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString('utf8');
      this.frames.push({ text, binary: isBinary ? Buffer.from(data) : null });
      if (text !== null) {
        this._pending += text;
        let i;
        while ((i = this._pending.indexOf(RS)) >= 0) {
          this.records.push(this._pending.slice(0, i));
          this._pending = this._pending.slice(i + 1);
        }
      }
    });
  }

  send(text) {
    this.ws.send(text);
  }

  /** Sends a JSON hub message followed by the record separator. */
  sendMessage(obj) {
    this.ws.send(JSON.stringify(obj) + RS);
  }

  /** Sends the JSON protocol handshake and waits for `{}` (returns the raw response record). */
  async handshake() {
    this.send(`{"protocol":"json","version":1}${RS}`);
    const rec = await this.nextRecord({ what: 'handshake response' });
    if (rec !== '{}') throw new Error(`Unexpected handshake response ${JSON.stringify(rec)}`);
    return rec;
  }

  /**
   * Waits for the next record not yet consumed. With skipPings, Ping
   * records ({"type":6}) are skipped.
   */
  async nextRecord({ timeout = 5_000, skipPings = false, what = 'next record' } = {}) {
    return waitFor(
      () => {
        while (this._cursor < this.records.length) {
          const rec = this.records[this._cursor++];
          if (skipPings && isPing(rec)) continue;
          return { rec };
        }
        if (this.closed) throw new Error(`socket closed (code ${this.closeCode}) while waiting for ${what}`);
        return null;
      },
      { timeout, what },
    ).then((r) => r.rec);
  }

  /** Waits for the next (non-ping) record and parses it as JSON. */
  async nextMessage(opts = {}) {
    const rec = await this.nextRecord({ skipPings: true, ...opts });
    return JSON.parse(rec);
  }

  /** Waits until a non-ping message satisfying `pred` arrives; returns it. */
  async waitMessage(pred, { timeout = 5_000, what = 'matching message' } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const msg = await this.nextMessage({ timeout: Math.max(1, deadline - Date.now()), what });
      if (pred(msg)) return msg;
    }
  }

  /** Echo round trip over the raw socket; returns the Completion message. */
  async echo(value, invocationId = `echo-${randomHex(4)}`) {
    this.sendMessage({ type: 1, invocationId, target: 'Echo', arguments: [value] });
    return this.waitMessage((m) => m.type === 3 && m.invocationId === invocationId, {
      what: `Completion for ${invocationId}`,
    });
  }

  async waitClosed(timeout = 5_000) {
    return withTimeout(this.closedPromise, timeout, 'WebSocket close');
  }

  close() {
    if (!this.closed) this.ws.close();
  }

  terminate() {
    if (!this.closed) this.ws.terminate();
  }
}

export const isPing = (rec) => {
  try {
    return JSON.parse(rec)?.type === 6;
  } catch {
    return false;
  }
};

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

/** POST /hubs/{hub}/negotiate[?query]; returns { status, body, text }. */
export async function negotiate(node, { hub = 'diagnostics', query = 'negotiateVersion=1', token, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const url = `${node.baseUrl}/hubs/${hub}/negotiate${query ? `?${query}` : ''}`;
  const res = await withTimeout(fetch(url, { method: 'POST', headers: h }), 5_000, `POST ${url}`);
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body, text, headers: res.headers };
}

// ---------------------------------------------------------------------------
// Cleanup and test wrapper
// ---------------------------------------------------------------------------

/** Stops every HubConnection and raw socket opened through this harness. */
export async function closeAllClients() {
  const conns = [...openClients];
  openClients.clear();
  await Promise.all(
    conns.map((c) =>
      withTimeout(c.stop(), 5_000, 'HubConnection.stop()').catch(() => {
        /* best effort */
      }),
    ),
  );
  for (const s of [...openSockets]) s.terminate();
  openSockets.clear();
}

/**
 * `test()` wrapper: closes all clients after the test and dumps the logs of
 * every node started by this file when the test fails (or always when
 * HUBWIRE_E2E_VERBOSE=1 already streamed them).
 */
export function e2eTest(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  return test(name, { timeout: 60_000, ...options }, async (t) => {
    const marks = new Map(startedNodes.map((n) => [n, n.logCount]));
    const redisMarks = new Map(startedRedis.map((r) => [r, r.logSize()]));
    try {
      await fn(t);
    } catch (err) {
      if (!VERBOSE) {
        // Lines logged during this test (plus 20 lines of context before it).
        for (const n of startedNodes) n.dumpLogs(`failure in "${name}"`, Math.max(0, (marks.get(n) ?? 0) - 20));
      }
      for (const r of startedRedis) {
        const mark = redisMarks.get(r) ?? 0;
        if (r.running || r.logSize() > mark) r.dumpLogs(`failure in "${name}"`, mark);
      }
      throw err;
    } finally {
      await closeAllClients();
    }
  });
}

/**
 * An HS256 access-key token for audience `aud` (the REST URL without query), signed with
 * the node's access key, as Microsoft's Management SDK makes it (`nameid` names the caller).
 */
export function accessToken(node, aud, nameid = 'e2e-backend') {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const header = b64({ alg: 'HS256', typ: 'JWT' });
  const payload = b64({ nameid, nbf: now, exp: now + 3600, iat: now, aud });
  const sig = crypto
    .createHmac('sha256', Buffer.from(node.accessKey, 'utf8'))
    .update(`${header}.${payload}`)
    .digest('base64url');
  return `${header}.${payload}.${sig}`;
}
