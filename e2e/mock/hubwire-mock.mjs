#!/usr/bin/env node
// A small stand-in for hubwire-node, written only to check the e2e suite
// itself (run: `npm run test:mock`). It implements the hubwire contract the
// tests assert — negotiate, JWT auth, the diagnostics hub, JSON and
// MessagePack hub protocols, keep-alive and timeouts — following ASP.NET Core
// where the two differ (see test/expected.mjs). It is not the product and
// takes no part in `npm test` against the real server.

import crypto from 'node:crypto';
import http from 'node:http';

import { decode, encode } from '@msgpack/msgpack';
import { WebSocketServer } from 'ws';

const env = process.env;
const [listenHost, listenPort] = (env.HUBWIRE_LISTEN ?? '127.0.0.1:0').split(':');
const SECRET = env.HUBWIRE_JWT_SECRET ?? '';
const ANON = new Set((env.HUBWIRE_ANONYMOUS_HUBS ?? '').split(',').map((s) => s.trim()).filter(Boolean));
const MAX = Number(env.HUBWIRE_MAX_MESSAGE_SIZE ?? 32768);
const HANDSHAKE_MS = Number(env.HUBWIRE_HANDSHAKE_TIMEOUT_SECS ?? 15) * 1000;
const KEEPALIVE_MS = Number(env.HUBWIRE_KEEP_ALIVE_SECS ?? 15) * 1000;
const CLIENT_TIMEOUT_MS = Number(env.HUBWIRE_CLIENT_TIMEOUT_SECS ?? 30) * 1000;
const RS = '\x1e';
const HUBS = new Set(['diagnostics']);

const log = (...a) => process.stderr.write(`${new Date().toISOString()} INFO mock: ${a.join(' ')}\n`);

// ---------------------------------------------------------------- auth
function verifyJwt(tok) {
  if (!tok) return null;
  const parts = tok.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    if (header.alg !== 'HS256') return null;
    const sig = crypto.createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest();
    const given = Buffer.from(parts[2], 'base64url');
    if (given.length !== sig.length || !crypto.timingSafeEqual(given, sig)) return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
    if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000 - 30) return null;
    return claims;
  } catch {
    return null;
  }
}

function authenticate(req, url, hub) {
  const h = req.headers.authorization;
  const tok = h && /^Bearer /i.test(h) ? h.slice(7).trim() : url.searchParams.get('access_token');
  const claims = verifyJwt(tok);
  if (claims) return { ok: true, claims };
  if (!tok && ANON.has(hub)) return { ok: true, claims: null };
  return { ok: false };
}

// ---------------------------------------------------------------- state
const pending = new Map(); // connect key -> { id, claims, hub, connected }
const conns = new Map(); // connectionId -> Conn
const groups = new Map(); // group -> Set<connectionId>
const newId = () => crypto.randomBytes(16).toString('base64url');

// ---------------------------------------------------------------- http
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/healthz') return res.writeHead(200).end('ok');
  const m = /^\/hubs\/([^/]+)\/negotiate$/.exec(url.pathname);
  if (req.method === 'POST' && m) {
    const hub = m[1];
    if (!HUBS.has(hub)) return res.writeHead(404).end();
    const auth = authenticate(req, url, hub);
    if (!auth.ok) return res.writeHead(401, { 'WWW-Authenticate': 'Bearer' }).end();
    const version = Number(url.searchParams.get('negotiateVersion') ?? 0) >= 1 ? 1 : 0;
    const id = newId();
    const token = version ? newId() : id;
    pending.set(token, { id, hub, connected: false });
    const body = {
      connectionId: id,
      ...(version ? { connectionToken: token } : {}),
      negotiateVersion: version,
      availableTransports: [{ transport: 'WebSockets', transferFormats: ['Text', 'Binary'] }],
    };
    return res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  }
  res.writeHead(404).end();
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const reject = (code, text) => {
    socket.end(`HTTP/1.1 ${code} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  };
  const m = /^\/hubs\/([^/]+)$/.exec(url.pathname);
  if (!m || !HUBS.has(m[1])) return reject(404, 'Not Found');
  const hub = m[1];
  const auth = authenticate(req, url, hub);
  if (!auth.ok) return reject(401, 'Unauthorized');
  const key = url.searchParams.get('id');
  let id;
  if (key !== null) {
    const p = pending.get(key);
    if (!p || p.hub !== hub) return reject(404, 'Not Found');
    if (p.connected) return reject(409, 'Conflict');
    p.connected = true;
    id = p.id;
  } else {
    id = newId();
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const c = new Conn(ws, id, hub, auth.claims);
    conns.set(id, c);
    ws.once('close', () => {
      c.dispose();
      if (key !== null) pending.delete(key);
    });
  });
});

// ---------------------------------------------------------------- protocols
const json = {
  name: 'json',
  binary: false,
  write(msg) {
    return JSON.stringify(msg) + RS;
  },
};

function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

const msgpack = {
  name: 'messagepack',
  binary: true,
  write(msg) {
    let arr;
    switch (msg.type) {
      case 1:
        arr = [1, {}, msg.invocationId ?? null, msg.target, msg.arguments];
        break;
      case 2:
        arr = [2, {}, msg.invocationId, msg.item];
        break;
      case 3:
        if (msg.error !== undefined) arr = [3, {}, msg.invocationId, 1, msg.error];
        else if ('result' in msg) arr = [3, {}, msg.invocationId, 3, msg.result];
        else arr = [3, {}, msg.invocationId, 2];
        break;
      case 6:
        arr = [6];
        break;
      case 7:
        arr = [7, msg.error ?? null, !!msg.allowReconnect];
        break;
      default:
        throw new Error(`cannot encode ${msg.type}`);
    }
    const body = Buffer.from(encode(arr));
    return Buffer.concat([varint(body.length), body]);
  },
  toMessage(a) {
    if (!Array.isArray(a) || a.length === 0) throw new Error('Invalid payload.');
    switch (a[0]) {
      case 1:
      case 4:
        return { type: a[0], invocationId: a[2] ?? undefined, target: a[3], arguments: a[4] };
      case 3:
        return { type: 3, invocationId: a[2] };
      case 5:
        return { type: 5, invocationId: a[2] };
      case 6:
        return { type: 6 };
      case 7:
        return { type: 7 };
      default:
        return { type: a[0] };
    }
  },
};

class ProtocolError extends Error {}

// ---------------------------------------------------------------- hub
const METHODS = {
  echo: { n: 1, fn: (c, [v]) => v },
  fail: {
    n: 1,
    fn: (c, [msg]) => {
      const e = new Error(msg);
      e.hub = true;
      throw e;
    },
  },
  whoami: {
    n: 0,
    fn: (c) => ({
      connectionId: c.id,
      userId: c.claims?.sub ?? null,
      userName: c.claims?.name ?? null,
      hub: c.hub,
      transport: 'WebSockets',
      protocol: c.protocol.name,
    }),
  },
  joingroup: {
    n: 1,
    fn: (c, [g]) => {
      if (!groups.has(g)) groups.set(g, new Set());
      groups.get(g).add(c.id);
      c.groups.add(g);
      return null;
    },
  },
  leavegroup: {
    n: 1,
    fn: (c, [g]) => {
      groups.get(g)?.delete(c.id);
      c.groups.delete(g);
      return null;
    },
  },
  sendtoall: { n: 2, fn: (c, [m, p]) => fanout([...conns.values()], m, p) },
  sendtoothers: { n: 2, fn: (c, [m, p]) => fanout([...conns.values()].filter((x) => x !== c), m, p) },
  sendtocaller: { n: 2, fn: (c, [m, p]) => fanout([c], m, p) },
  sendtogroup: { n: 3, fn: (c, [g, m, p]) => fanout(groupMembers(g), m, p) },
  sendtoothersingroup: { n: 3, fn: (c, [g, m, p]) => fanout(groupMembers(g).filter((x) => x !== c), m, p) },
  sendtouser: {
    n: 3,
    fn: (c, [u, m, p]) => fanout([...conns.values()].filter((x) => x.claims?.sub === u), m, p),
  },
  sendtoconnection: { n: 3, fn: (c, [id, m, p]) => fanout(conns.has(id) ? [conns.get(id)] : [], m, p) },
  stream: { n: 2, stream: true },
};

const groupMembers = (g) => [...(groups.get(g) ?? [])].map((id) => conns.get(id)).filter(Boolean);
function fanout(targets, method, payload) {
  for (const t of targets) t.send({ type: 1, target: method, arguments: [payload] });
  return null;
}

class Conn {
  constructor(ws, id, hub, claims) {
    Object.assign(this, { ws, id, hub, claims, protocol: null, groups: new Set(), streams: new Map() });
    this.textBuf = '';
    this.binBuf = Buffer.alloc(0);
    this.lastRecv = Date.now();
    this.lastSend = Date.now();
    this.closed = false;
    this.handshakeTimer = setTimeout(() => this.handshakeFail('Handshake was canceled.'), HANDSHAKE_MS);
    ws.on('message', (data, isBinary) => this.onData(data, isBinary));
    ws.on('error', () => {});
  }

  dispose() {
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    clearInterval(this.tick);
    for (const t of this.streams.values()) clearInterval(t);
    for (const g of this.groups) groups.get(g)?.delete(this.id);
    conns.delete(this.id);
  }

  rawSend(data) {
    if (this.closed) return;
    this.lastSend = Date.now();
    this.ws.send(data, { binary: this.protocol?.binary ?? false });
  }

  send(msg) {
    this.rawSend(this.protocol.write(msg));
  }

  handshakeFail(error) {
    if (this.closed) return;
    this.rawSend(JSON.stringify({ error }) + RS);
    this.closed = true;
    this.ws.close(1000);
  }

  closeWith(msg) {
    if (this.closed) return;
    this.send({ type: 7, ...msg });
    this.closed = true;
    this.ws.close(1000);
  }

  onData(data, isBinary) {
    if (this.closed) return;
    this.lastRecv = Date.now();
    if (!this.protocol) return this.onHandshakeData(data.toString('utf8'));
    try {
      if (this.protocol.binary) {
        this.binBuf = Buffer.concat([this.binBuf, isBinary ? data : Buffer.from(data)]);
        for (;;) {
          let size = 0;
          let i = 0;
          let b;
          do {
            if (i >= this.binBuf.length) return;
            b = this.binBuf[i];
            size |= (b & 0x7f) << (7 * i);
            i++;
          } while (b & 0x80 && i < 5);
          if (size > MAX) throw new ProtocolError('too big');
          if (this.binBuf.length < i + size) return;
          const body = this.binBuf.subarray(i, i + size);
          this.binBuf = this.binBuf.subarray(i + size);
          this.dispatch(msgpack.toMessage(decode(body)));
        }
      } else {
        this.textBuf += data.toString('utf8');
        let idx;
        while ((idx = this.textBuf.indexOf(RS)) >= 0) {
          const rec = this.textBuf.slice(0, idx);
          this.textBuf = this.textBuf.slice(idx + 1);
          if (Buffer.byteLength(rec) + 1 > MAX) throw new ProtocolError('too big');
          const msg = JSON.parse(rec);
          if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new ProtocolError('not an object');
          this.dispatch(msg);
        }
        if (Buffer.byteLength(this.textBuf) > MAX) throw new ProtocolError('too big');
      }
    } catch (err) {
      log(`closing ${this.id}: ${err.message}`);
      this.closeWith({ error: 'Connection closed with an error.', allowReconnect: true });
    }
  }

  onHandshakeData(text) {
    this.textBuf += text;
    const idx = this.textBuf.indexOf(RS);
    if (idx < 0) return;
    const rec = this.textBuf.slice(0, idx);
    const rest = this.textBuf.slice(idx + 1);
    this.textBuf = '';
    let req;
    try {
      req = JSON.parse(rec);
      if (typeof req?.protocol !== 'string' || typeof req?.version !== 'number') throw new Error('bad');
    } catch {
      return this.handshakeFail('An unexpected error occurred during connection handshake.');
    }
    const proto = { json, messagepack: msgpack }[req.protocol];
    if (!proto) return this.handshakeFail(`The protocol '${req.protocol}' is not supported.`);
    clearTimeout(this.handshakeTimer);
    this.protocol = proto;
    this.rawSend(proto.binary ? Buffer.from('{}' + RS) : '{}' + RS);
    this.tick = setInterval(() => {
      if (Date.now() - this.lastRecv >= CLIENT_TIMEOUT_MS)
        return this.closeWith({ error: 'Connection closed with an error.', allowReconnect: true });
      if (Date.now() - this.lastSend >= KEEPALIVE_MS) this.send({ type: 6 });
    }, Math.min(250, KEEPALIVE_MS));
    if (rest) this.onData(Buffer.from(rest), false);
  }

  dispatch(msg) {
    switch (msg.type) {
      case 1:
      case 4: {
        if (typeof msg.target !== 'string' || !msg.target) throw new ProtocolError("Missing required property 'target'.");
        if (!Array.isArray(msg.arguments)) throw new ProtocolError("Missing required property 'arguments'.");
        if (msg.type === 4 && !msg.invocationId) throw new ProtocolError("Missing required property 'invocationId'.");
        return this.invoke(msg);
      }
      case 3:
      case 5:
        if (typeof msg.invocationId !== 'string') throw new ProtocolError("Missing required property 'invocationId'.");
        if (msg.type === 5) {
          clearInterval(this.streams.get(msg.invocationId));
          if (this.streams.delete(msg.invocationId)) this.send({ type: 3, invocationId: msg.invocationId });
        }
        return;
      case 6:
      case 7:
        return;
      default:
        if (typeof msg.type !== 'number') throw new ProtocolError("Missing required property 'type'.");
    }
  }

  invoke({ type, invocationId, target, arguments: args }) {
    const reply = (m) => invocationId && this.send({ type: 3, invocationId, ...m });
    const desc = METHODS[target.toLowerCase()];
    if (!desc)
      return reply({ error: `Failed to invoke '${target}' due to an error on the server. HubException: Method does not exist.` });
    if (args.length !== desc.n) return reply({ error: `Failed to invoke '${target}' due to an error on the server.` });
    if (desc.stream && type !== 4)
      return reply({ error: `The client attempted to invoke the streaming '${target}' method with a non-streaming invocation.` });
    if (!desc.stream && type === 4)
      return reply({ error: `The client attempted to invoke the non-streaming '${target}' method with a streaming invocation.` });
    if (desc.stream) {
      const [count, interval] = args;
      let i = 0;
      const step = () => {
        if (i >= count) {
          clearInterval(this.streams.get(invocationId));
          this.streams.delete(invocationId);
          return this.send({ type: 3, invocationId });
        }
        this.send({ type: 2, invocationId, item: i++ });
      };
      if (count <= 0) return this.send({ type: 3, invocationId });
      this.streams.set(invocationId, setInterval(step, Math.max(1, interval)));
      return;
    }
    try {
      reply({ result: desc.fn(this, args) });
    } catch (err) {
      reply({
        error: err.hub
          ? `An unexpected error occurred invoking '${target}' on the server. HubException: ${err.message}`
          : `An unexpected error occurred invoking '${target}' on the server.`,
      });
    }
  }
}

server.listen(Number(listenPort), listenHost, () => {
  const { port } = server.address();
  process.stdout.write(`hubwire-node listening on http://${listenHost}:${port}\n`);
  log(`pid ${process.pid} ready`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of conns.values()) c.ws.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}
