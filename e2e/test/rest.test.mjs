// The server REST API, called exactly as Microsoft's Management SDK
// (Microsoft.Azure.SignalR.Management, Transient mode) calls Azure SignalR
// Service: 2022-06-01 paths built like RestApiProvider, PascalCase JSON bodies
// sent chunked as `application/json; charset=utf-8`, and HS256 access-key tokens
// whose `aud` is the URL without the port (2022-06-01 SDKs) or the URL up to
// its path with the port (later SDKs). Official clients on the diagnostics hub
// are the recipients. hubwire's extensions (listings, counts) are covered too.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import os from 'node:os';
import { before } from 'node:test';

import { JsonHubProtocol, MessageType } from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

import { connect, delay, e2eTest, record, startNode, stopAllNodesAfter, waitFor } from './harness.mjs';

stopAllNodesAfter();

let node;
before(async () => {
  node = await startNode({ name: 'rest' });
});

/** Grace period used only for negative assertions ("did NOT receive"). */
const GRACE_MS = 300;
const API_VERSION = '2022-06-01';
/** What the SDK puts in `nameid` (AccessTokenHttpMessageHandler.ServerName). */
const SERVER_NAME = `${os.hostname()}_${crypto.randomUUID().replaceAll('-', '')}`;

/** .NET's Uri.EscapeDataString (RFC 3986 unreserved characters stay). */
const escape = (s) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** A suffix that keeps users and groups of different tests apart. */
const unique = (name) => `${name}-${crypto.randomBytes(3).toString('hex')}`;

// ---------------------------------------------------------------------------
// The Management SDK, as far as the wire is concerned
// ---------------------------------------------------------------------------

/**
 * A JWT as the SDK's AuthUtility.GenerateAccessToken writes it with
 * JwtSecurityTokenHandler: HS256 over the access key's UTF-8 bytes, a `kid`
 * header, claims nameid / nbf / exp / iat / aud.
 */
function accessToken(aud, { key = node.accessKey, lifetime = 3600, now = Math.floor(Date.now() / 1000) } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = b64({ alg: 'HS256', kid: '-1428397243', typ: 'JWT' });
  const payload = b64({ nameid: SERVER_NAME, nbf: now, exp: now + lifetime, iat: now, aud });
  const signature = crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/**
 * The request URL and token audience RestApiProvider (2022-06-01) builds for
 * `pathAfterHub`: `?application=..&api-version=..` in both, extra query
 * parameters (excluded, reason, ttl, ...) only in the URL, no port in `aud`.
 */
function endpoint(pathAfterHub, { hub = 'diagnostics', application, query = {}, version = API_VERSION } = {}) {
  const path = `api/hubs/${escape(hub.toLowerCase())}${pathAfterHub}`;
  const fixed = application
    ? `?application=${escape(application.toLowerCase())}&api-version=${version}`
    : `?api-version=${version}`;
  let url = `${node.baseUrl}/${path}${fixed}`;
  for (const [k, values] of Object.entries(query)) {
    for (const v of [values].flat()) url += `&${escape(k)}=${escape(String(v))}`;
  }
  const audience = `http://${new URL(node.baseUrl).hostname}/${path}${fixed}`;
  return { url, audience };
}

/** Later SDKs: `aud` = Uri.GetLeftPart(UriPartial.Path) of the request URL (port kept). */
const leftPartPath = (url) => {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
};

/** A body sent in two chunks (the SDK streams it: no Content-Length). */
function chunked(text) {
  const bytes = Buffer.from(text, 'utf8');
  const half = Math.floor(bytes.length / 2);
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes.subarray(0, half));
      controller.enqueue(bytes.subarray(half));
      controller.close();
    },
  });
}

/** Performs one HTTP request; returns { status, code (x-ms-error-code), body, headers }. */
async function request(method, url, { token, headers = {}, body } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const init = { method, headers: h };
  if (body !== undefined) {
    init.body = body;
    if (body instanceof ReadableStream) init.duplex = 'half';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, code: res.headers.get('x-ms-error-code'), body: json, text, headers: res.headers };
}

/**
 * One SDK call: `method` on `pathAfterHub`. `message` ({ target, arguments })
 * becomes the SDK's PascalCase JSON body. `aud`: '2022' (default), 'latest',
 * or an explicit audience string; `token` overrides the whole token.
 */
async function sdk(method, pathAfterHub, { message, aud = '2022', token, ...where } = {}) {
  const { url, audience } = endpoint(pathAfterHub, where);
  const tokenAud = aud === '2022' ? audience : aud === 'latest' ? leftPartPath(url) : aud;
  const opts = { token: token ?? accessToken(tokenAud) };
  if (message) {
    opts.headers = { 'Content-Type': 'application/json; charset=utf-8' };
    opts.body = chunked(JSON.stringify({ Target: message.target, Arguments: message.arguments ?? null }));
  }
  return request(method, url, opts);
}

// ---------------------------------------------------------------------------
// Recipients
// ---------------------------------------------------------------------------

/**
 * Connects one official client per [label, user, protocol]; each records
 * client method `news`. Returns { label: { conn, id, user, rec } }.
 */
async function clients(specs) {
  const out = {};
  await Promise.all(
    specs.map(async ([label, user, protocol = 'json']) => {
      const conn = await connect(node, { user, protocol });
      conn.label = label;
      const me = await conn.invoke('WhoAmI');
      out[label] = { conn, id: me.connectionId, user, rec: record(conn, 'news') };
    }),
  );
  return out;
}

const receivedTag = (c, tag) => c.rec.items.filter((item) => item?.tag === tag).length;

/** Asserts that exactly the clients `expected` got one `news({tag})` each. */
async function assertDelivered(all, tag, expected) {
  await waitFor(() => expected.every((l) => receivedTag(all[l], tag) >= 1), {
    what: `'${tag}' at ${expected.join(', ')}`,
  });
  await delay(GRACE_MS);
  const got = Object.keys(all).filter((l) => receivedTag(all[l], tag) > 0);
  assert.deepEqual(got.sort(), [...expected].sort(), `recipients of '${tag}'`);
  for (const l of expected) assert.equal(receivedTag(all[l], tag), 1, `'${tag}' delivered once to ${l}`);
}

const news = (tag) => ({ target: 'news', arguments: [{ tag, text: 'grüße ✓', n: 7 }] });

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

e2eTest('health answers 200 without a token', async () => {
  for (const path of [`/api/health?api-version=${API_VERSION}`, '/api/health?api-version=2024-12-01', '/api/v1/health']) {
    assert.equal((await request('HEAD', `${node.baseUrl}${path}`)).status, 200, `HEAD ${path}`);
    assert.equal((await request('GET', `${node.baseUrl}${path}`)).status, 200, `GET ${path}`);
  }
});

e2eTest('a valid token bound to the request URL is required', async () => {
  const { url, audience } = endpoint('/:send');
  const body = () => JSON.stringify({ Target: 'news', Arguments: [] });
  const json = { 'Content-Type': 'application/json; charset=utf-8' };
  const post = (token) => request('POST', url, { token, headers: json, body: body() });

  const none = await post(undefined);
  assert.equal(none.status, 401);
  assert.equal(none.code, 'Error.Request.Unauthorized');
  assert.equal(none.body.code, 'Error.Request.Unauthorized');
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');

  const refused = {
    'another key': accessToken(audience, { key: crypto.randomBytes(16).toString('hex') }),
    expired: accessToken(audience, { now: Math.floor(Date.now() / 1000) - 7200 }),
    'another path': accessToken(endpoint('/:closeConnections').audience),
    'another api-version': accessToken(endpoint('/:send', { version: '2021-01-01' }).audience),
    'another port': accessToken(`http://127.0.0.1:${node.port + 1}/api/hubs/diagnostics/:send`),
    'another host': accessToken(`http://example.com/api/hubs/diagnostics/:send?api-version=${API_VERSION}`),
    'a user token without the admin role': node.token({ sub: 'alice' }),
    garbage: 'not-a-jwt',
  };
  for (const [kind, token] of Object.entries(refused)) {
    const res = await post(token);
    assert.equal(res.status, 401, `${kind}: expected 401, got ${res.status} ${res.text}`);
    assert.equal(res.code, 'Error.Request.Unauthorized', kind);
  }

  const accepted = {
    '2022-06-01 SDK audience (no port, with query)': accessToken(audience),
    'later SDK audience (port, no query)': accessToken(leftPartPath(url)),
    'trailing slash': accessToken(`${leftPartPath(url)}/`),
    'admin user token': node.token({ sub: 'ops', roles: ['admin'] }),
  };
  for (const [kind, token] of Object.entries(accepted)) {
    assert.equal((await post(token)).status, 202, kind);
  }
});

e2eTest('without an access key configured only admin user tokens are accepted', async () => {
  const keyless = await startNode({ name: 'rest-keyless', env: { HUBWIRE_ACCESS_KEY: '' } });
  const url = `${keyless.baseUrl}/api/hubs/diagnostics/count`;
  const sdkToken = accessToken(leftPartPath(url), { key: '' });
  const refused = await request('GET', url, { token: sdkToken });
  assert.equal(refused.status, 401);
  // The 401 names neither the configuration nor the caller (the reason is logged at debug).
  assert.equal(refused.body.message, 'Unauthorized.');
  assert.equal(refused.headers.get('x-ms-error-code'), 'Error.Request.Unauthorized');
  const plainUser = await request('GET', url, { token: keyless.token({ sub: 'not-an-admin' }) });
  assert.equal(plainUser.status, 401);
  assert.doesNotMatch(plainUser.text, /not-an-admin|admin|access key/);
  const admin = await request('GET', url, { token: keyless.token({ sub: 'ops', roles: ['admin'] }) });
  assert.equal(admin.status, 200);
  assert.deepEqual(admin.body, { connections: 0 });
  await keyless.stop();
});

e2eTest('sends reach exactly their recipients: all, all-except, group, group-except, user, connection', async () => {
  const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
  const group = unique('room');
  const all = await clients([
    ['a1', alice, 'json'],
    ['a2', alice, 'messagepack'],
    ['b1', bob, 'messagepack'],
    ['b2', bob, 'json'],
    ['c1', carol, 'json'],
  ]);
  for (const l of ['a1', 'b1', 'c1']) {
    assert.equal((await sdk('PUT', `/groups/${escape(group)}/connections/${escape(all[l].id)}`)).status, 200);
  }

  assert.equal((await sdk('POST', '/:send', { message: news('all') })).status, 202);
  await assertDelivered(all, 'all', ['a1', 'a2', 'b1', 'b2', 'c1']);

  const excluded = [all.a1.id, all.b2.id];
  assert.equal((await sdk('POST', '/:send', { message: news('except'), query: { excluded } })).status, 202);
  await assertDelivered(all, 'except', ['a2', 'b1', 'c1']);

  assert.equal((await sdk('POST', `/groups/${escape(group)}/:send`, { message: news('group') })).status, 202);
  await assertDelivered(all, 'group', ['a1', 'b1', 'c1']);

  const groupExcept = { message: news('group-except'), query: { excluded: [all.c1.id] } };
  assert.equal((await sdk('POST', `/groups/${escape(group)}/:send`, groupExcept)).status, 202);
  await assertDelivered(all, 'group-except', ['a1', 'b1']);

  assert.equal((await sdk('POST', `/users/${escape(bob)}/:send`, { message: news('user') })).status, 202);
  await assertDelivered(all, 'user', ['b1', 'b2']);

  assert.equal((await sdk('POST', `/connections/${escape(all.a2.id)}/:send`, { message: news('one') })).status, 202);
  await assertDelivered(all, 'one', ['a2']);

  assert.equal((await sdk('POST', `/users/${escape(unique('nobody'))}/:send`, { message: news('nobody') })).status, 202);
});

e2eTest('bodies: any property casing, null arguments, and the SDK MessagePack envelope', async () => {
  const user = unique('dora');
  const all = await clients([
    ['json', user, 'json'],
    ['msgpack', user, 'messagepack'],
  ]);
  const pings = { json: [], msgpack: [] };
  for (const l of Object.keys(pings)) all[l].conn.on('ping', (...args) => pings[l].push(args));

  const nullArgs = await sdk('POST', `/users/${escape(user)}/:send`, { message: { target: 'ping', arguments: null } });
  assert.equal(nullArgs.status, 202);
  await waitFor(() => pings.json.length === 1 && pings.msgpack.length === 1, { what: 'ping without arguments' });
  assert.deepEqual(pings.json[0], []);
  assert.deepEqual(pings.msgpack[0], []);

  const { url, audience } = endpoint(`/users/${escape(user)}/:send`);
  const lower = await request('POST', url, {
    token: accessToken(audience),
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ target: 'news', arguments: [{ tag: 'lower' }] }),
  });
  assert.equal(lower.status, 202);
  await assertDelivered(all, 'lower', ['json', 'msgpack']);

  // BinaryPayloadMessageContent: a MessagePack map, protocol name → that
  // protocol's framed Invocation (str keys, bin values).
  const invocation = { type: MessageType.Invocation, target: 'news', arguments: [{ tag: 'envelope' }], headers: {} };
  const records = {
    json: Buffer.from(new JsonHubProtocol().writeMessage(invocation), 'utf8'),
    messagepack: Buffer.from(new MessagePackHubProtocol().writeMessage(invocation)),
  };
  const envelope = (names) => {
    const parts = [Buffer.from([0x80 | names.length])];
    for (const name of names) {
      parts.push(Buffer.from([0xa0 | name.length]), Buffer.from(name));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(records[name].length);
      parts.push(Buffer.from([0xc5]), len, records[name]);
    }
    return Buffer.concat(parts);
  };
  for (const [tag, names] of [
    ['envelope', ['json', 'messagepack']],
    ['envelope', ['messagepack']],
  ]) {
    const before = receivedTag(all.json, tag);
    const res = await request('POST', url, {
      token: accessToken(audience),
      headers: { 'Content-Type': 'application/octet-stream' },
      body: envelope(names),
    });
    assert.equal(res.status, 202, res.text);
    await waitFor(() => receivedTag(all.json, tag) > before && receivedTag(all.msgpack, tag) > before, {
      what: `envelope with ${names}`,
    });
  }
});

e2eTest('bad requests: 400 without a target, 415 for other content types, 413 over 1 MB', async () => {
  const { url, audience } = endpoint('/:send');
  const send = (headers, body) => request('POST', url, { token: accessToken(audience), headers, body });
  const json = { 'Content-Type': 'application/json; charset=utf-8' };

  const noTarget = await send(json, JSON.stringify({ Arguments: [1] }));
  assert.equal(noTarget.status, 400);
  assert.equal(noTarget.code, 'Error.Request.Invalid');
  assert.match(noTarget.body.message, /target/);
  assert.equal((await send(json, '{"Target": "news", "Arguments": {}}')).status, 400);
  assert.equal((await send(json, 'not json')).status, 400);

  const text = await send({ 'Content-Type': 'text/plain' }, 'news');
  assert.equal(text.status, 415);
  assert.equal(text.code, 'Error.Request.UnsupportedMediaType');

  const big = JSON.stringify({ Target: 'news', Arguments: ['x'.repeat(1024 * 1024)] });
  const tooLarge = await send(json, big);
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.code, 'Error.Request.TooLarge');
  const tooLargeChunked = await send(json, chunked(big));
  assert.equal(tooLargeChunked.status, 413);
});

e2eTest('hubs: unknown → 404 Error.Hub.NotExisted, names case-insensitive, application accepted', async () => {
  const unknown = await sdk('POST', '/:send', { hub: 'nosuchhub', message: news('x') });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.code, 'Error.Hub.NotExisted');
  assert.match(unknown.body.message, /nosuchhub/);

  const user = unique('erin');
  const all = await clients([['e1', user]]);
  const { url, audience } = endpoint(`/users/${escape(user)}/:send`);
  const upper = await request('POST', url.replace('/hubs/diagnostics/', '/hubs/Diagnostics/'), {
    token: accessToken(audience.replace('/hubs/diagnostics/', '/hubs/Diagnostics/')),
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ Target: 'news', Arguments: [{ tag: 'upper' }] }),
  });
  assert.equal(upper.status, 202);
  await assertDelivered(all, 'upper', ['e1']);

  const app = await sdk('POST', `/users/${escape(user)}/:send`, { application: 'Shop', message: news('app') });
  assert.equal(app.status, 202);
  await assertDelivered(all, 'app', ['e1']);
});

e2eTest('existence checks answer 200 / 404 with the codes the SDK expects', async () => {
  const user = unique('fay');
  const group = unique('exists');
  const all = await clients([['f1', user]]);
  const check = async (path, code) => {
    for (const method of ['HEAD', 'GET']) {
      const res = await sdk(method, path);
      assert.equal(res.status, code ? 404 : 200, `${method} ${path}`);
      assert.equal(res.code, code, `${method} ${path}`);
    }
  };
  await check(`/connections/${escape(all.f1.id)}`, null);
  await check(`/connections/${escape('no-such-connection')}`, 'Warning.Connection.NotExisted');
  await check(`/users/${escape(user)}`, null);
  await check(`/users/${escape(unique('ghost'))}`, 'Warning.User.NotExisted');
  await check(`/groups/${escape(group)}`, 'Warning.Group.NotExisted');
  assert.equal((await sdk('PUT', `/groups/${escape(group)}/connections/${escape(all.f1.id)}`)).status, 200);
  await check(`/groups/${escape(group)}`, null);
  const missing = await sdk('GET', `/connections/${escape('no-such-connection')}`);
  assert.deepEqual(
    { code: missing.body.code, level: missing.body.level, scope: missing.body.scope, errorKind: missing.body.errorKind },
    { code: 'Warning.Connection.NotExisted', level: 'Warning', scope: 'Connection', errorKind: 'NotExisted' },
  );
});

e2eTest('connections join and leave groups', async () => {
  const [g1, g2] = [unique('g1'), unique('g2')];
  const all = await clients([
    ['x', unique('gus')],
    ['y', unique('hal')],
  ]);
  const membership = (group, id) => `/groups/${escape(group)}/connections/${escape(id)}`;

  assert.equal((await sdk('PUT', membership(g1, all.x.id))).status, 200);
  assert.equal((await sdk('PUT', membership(g2, all.x.id))).status, 200);
  assert.equal((await sdk('PUT', membership(g1, all.y.id))).status, 200);
  await sdk('POST', `/groups/${escape(g1)}/:send`, { message: news('g1-both') });
  await assertDelivered(all, 'g1-both', ['x', 'y']);

  assert.equal((await sdk('DELETE', membership(g1, all.y.id))).status, 200);
  assert.equal((await sdk('DELETE', membership(g1, all.y.id))).status, 200, 'removing a non-member is fine');
  await sdk('POST', `/groups/${escape(g1)}/:send`, { message: news('g1-x') });
  await assertDelivered(all, 'g1-x', ['x']);

  const unknown = await sdk('PUT', membership(g1, 'no-such-connection'));
  assert.equal(unknown.status, 404);
  assert.equal(unknown.code, 'Error.Connection.NotExisted');

  assert.equal((await sdk('DELETE', `/connections/${escape(all.x.id)}/groups`)).status, 200);
  await sdk('POST', `/groups/${escape(g1)}/:send`, { message: news('g1-none') });
  await sdk('POST', `/groups/${escape(g2)}/:send`, { message: news('g2-none') });
  await sdk('POST', '/:send', { message: news('after') });
  await assertDelivered(all, 'after', ['x', 'y']);
  assert.equal(receivedTag(all.x, 'g1-none') + receivedTag(all.x, 'g2-none'), 0, 'left every group');
});

e2eTest('users join groups with their current and future connections', async () => {
  const [ivy, jon] = [unique('ivy'), unique('jon')];
  const group = unique('crew');
  const all = await clients([
    ['i1', ivy, 'json'],
    ['i2', ivy, 'messagepack'],
    ['j1', jon, 'json'],
  ]);
  const membership = `/users/${escape(ivy)}/groups/${escape(group)}`;

  assert.equal((await sdk('GET', membership)).code, 'Info.User.NotInGroup');
  assert.equal((await sdk('PUT', membership)).status, 200);
  for (const method of ['GET', 'HEAD']) assert.equal((await sdk(method, membership)).status, 200, method);
  await sdk('POST', `/groups/${escape(group)}/:send`, { message: news('current') });
  await assertDelivered(all, 'current', ['i1', 'i2']);

  Object.assign(all, await clients([['i3', ivy]]));
  await sdk('POST', `/groups/${escape(group)}/:send`, { message: news('future') });
  await assertDelivered(all, 'future', ['i1', 'i2', 'i3']);

  assert.equal((await sdk('DELETE', membership)).status, 204);
  const notIn = await sdk('GET', membership);
  assert.equal(notIn.status, 404);
  assert.equal(notIn.code, 'Info.User.NotInGroup');
  assert.equal((await sdk('HEAD', membership)).code, 'Info.User.NotInGroup');
  await sdk('POST', `/groups/${escape(group)}/:send`, { message: news('removed') });
  await sdk('POST', `/users/${escape(jon)}/:send`, { message: news('marker') });
  await assertDelivered(all, 'marker', ['j1']);
  assert.equal(Object.values(all).reduce((n, c) => n + receivedTag(c, 'removed'), 0), 0);

  const [g2, g3] = [unique('a'), unique('b')];
  for (const g of [g2, g3]) assert.equal((await sdk('PUT', `/users/${escape(jon)}/groups/${escape(g)}`)).status, 200);
  assert.equal((await sdk('DELETE', `/users/${escape(jon)}/groups`)).status, 204);
  for (const g of [g2, g3]) {
    assert.equal((await sdk('GET', `/users/${escape(jon)}/groups/${escape(g)}`)).code, 'Info.User.NotInGroup');
  }
});

e2eTest('ttl=0 adds only the current connections; a ttl in seconds expires', async () => {
  const [kim, lee] = [unique('kim'), unique('lee')];
  const [now, timed] = [unique('now'), unique('timed')];
  const all = await clients([
    ['k1', kim],
    ['l1', lee],
  ]);
  assert.equal((await sdk('PUT', `/users/${escape(kim)}/groups/${escape(now)}`, { query: { ttl: 0 } })).status, 200);
  Object.assign(all, await clients([['k2', kim]]));
  await sdk('POST', `/groups/${escape(now)}/:send`, { message: news('ttl0') });
  await assertDelivered(all, 'ttl0', ['k1']);

  assert.equal((await sdk('PUT', `/users/${escape(lee)}/groups/${escape(timed)}`, { query: { ttl: 1 } })).status, 200);
  assert.equal((await sdk('GET', `/users/${escape(lee)}/groups/${escape(timed)}`)).status, 200);
  await delay(1_200);
  Object.assign(all, await clients([['l2', lee]]));
  await sdk('POST', `/groups/${escape(timed)}/:send`, { message: news('expired') });
  await assertDelivered(all, 'expired', ['l1']);

  assert.equal((await sdk('PUT', `/users/${escape(lee)}/groups/${escape(timed)}`, { query: { ttl: -1 } })).status, 400);
});

e2eTest('closing a connection closes the client with the reason', async () => {
  const all = await clients([
    ['m1', unique('mia')],
    ['m2', unique('max')],
  ]);
  const res = await sdk('DELETE', `/connections/${escape(all.m1.id)}`, { query: { reason: 'kicked by admin' } });
  assert.equal(res.status, 200);
  await waitFor(() => all.m1.conn.closeEvents.length > 0, { what: 'onclose of m1' });
  assert.match(String(all.m1.conn.closeEvents[0]?.message), /kicked by admin/);
  await waitFor(async () => (await sdk('HEAD', `/connections/${escape(all.m1.id)}`)).status === 404, {
    what: 'm1 to leave the keyspace',
  });
  const again = await sdk('DELETE', `/connections/${escape(all.m1.id)}`);
  assert.equal(again.status, 404);
  assert.equal(again.code, 'Warning.Connection.NotExisted');
  assert.equal(all.m2.conn.closeEvents.length, 0);
  assert.equal(await all.m2.conn.invoke('Echo', 'still here'), 'still here');
});

e2eTest(':closeConnections closes a group, a user, or the hub except some', async () => {
  const [ned, ola] = [unique('ned'), unique('ola')];
  const group = unique('doomed');
  const all = await clients([
    ['n1', ned],
    ['n2', ned],
    ['o1', ola],
    ['o2', ola],
    ['o3', ola],
  ]);
  const closed = () => Object.keys(all).filter((l) => all[l].conn.closeEvents.length > 0).sort();
  const settle = async (expected) => {
    await waitFor(() => expected.every((l) => all[l].conn.closeEvents.length > 0), { what: `close of ${expected}` });
    await delay(GRACE_MS);
    assert.deepEqual(closed(), expected.sort());
  };

  await sdk('PUT', `/groups/${escape(group)}/connections/${escape(all.o1.id)}`);
  const g = await sdk('POST', `/groups/${escape(group)}/:closeConnections`, { query: { reason: 'group closed' } });
  assert.equal(g.status, 204);
  await settle(['o1']);

  const u = await sdk('POST', `/users/${escape(ned)}/:closeConnections`, { query: { excluded: [all.n2.id] } });
  assert.equal(u.status, 204);
  await settle(['n1', 'o1']);

  const h = await sdk('POST', '/:closeConnections', { query: { excluded: [all.o3.id], reason: 'maintenance' } });
  assert.equal(h.status, 204);
  await settle(['n1', 'n2', 'o1', 'o2']);
  assert.match(String(all.o2.conn.closeEvents[0]?.message), /maintenance/);
  assert.equal(await all.o3.conn.invoke('Echo', 1), 1);
});

e2eTest("a group's connections are listed page by page (2024-12-01, followed as the SDK follows nextLink)", async () => {
  const group = unique('listed');
  const [pat, quinn] = [unique('pat'), unique('quinn')];
  const all = await clients([
    ['p1', pat],
    ['p2', pat],
    ['q1', quinn],
    ['q2', quinn],
    ['q3', quinn],
  ]);
  for (const c of Object.values(all)) await sdk('PUT', `/groups/${escape(group)}/connections/${escape(c.id)}`);
  const expected = Object.values(all)
    .map((c) => ({ connectionId: c.id, userId: c.user }))
    .sort((a, b) => a.connectionId.localeCompare(b.connectionId));

  const first = endpoint(`/groups/${escape(group)}/connections`, { version: '2024-12-01', query: { maxPageSize: 2 } });
  let url = first.url;
  const seen = [];
  let pages = 0;
  while (url) {
    const res = await request('GET', url, { token: accessToken(leftPartPath(url)) });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.body.value.length <= 2);
    seen.push(...res.body.value);
    pages += 1;
    url = res.body.nextLink;
    if (url) assert.ok(url.startsWith(`${node.baseUrl}/api/hubs/diagnostics/groups/`), url);
  }
  assert.equal(pages, 3);
  assert.deepEqual(
    [...seen].sort((a, b) => a.connectionId.localeCompare(b.connectionId)),
    expected,
  );

  const top = endpoint(`/groups/${escape(group)}/connections`, { version: '2024-12-01', query: { top: 3, maxpagesize: 2 } });
  url = top.url;
  let total = 0;
  while (url) {
    const res = await request('GET', url, { token: accessToken(leftPartPath(url)) });
    total += res.body.value.length;
    url = res.body.nextLink;
  }
  assert.equal(total, 3);

  const bad = await sdk('GET', `/groups/${escape(group)}/connections`, { query: { maxpagesize: 201 } });
  assert.equal(bad.status, 400);
});

e2eTest('hubwire extensions: group users and counts, user connections and count, hub count', async () => {
  const group = unique('counted');
  const [ray, sue] = [unique('ray'), unique('sue')];
  const admin = node.token({ sub: 'ops', roles: ['admin'] });
  const get = (path) => request('GET', `${node.baseUrl}/api/hubs/diagnostics${path}`, { token: admin });
  // Earlier tests' clients have stopped; wait until the server saw them go.
  await waitFor(async () => (await get('/count')).body.connections === 0, { what: 'an empty hub' });

  const all = await clients([
    ['r1', ray, 'json'],
    ['r2', ray, 'messagepack'],
    ['s1', sue],
  ]);
  for (const c of Object.values(all)) await sdk('PUT', `/groups/${escape(group)}/connections/${escape(c.id)}`);

  assert.deepEqual((await get(`/groups/${escape(group)}/count`)).body, { connections: 3, users: 2 });
  assert.deepEqual((await get(`/groups/${escape(group)}/users`)).body, {
    value: [
      { userId: ray, connectionCount: 2 },
      { userId: sue, connectionCount: 1 },
    ].sort((a, b) => a.userId.localeCompare(b.userId)),
  });
  assert.deepEqual((await get(`/groups/${escape(unique('empty'))}/count`)).body, { connections: 0, users: 0 });

  const rays = (await get(`/users/${escape(ray)}/connections`)).body.value;
  assert.deepEqual(rays.map((c) => c.connectionId).sort(), [all.r1.id, all.r2.id].sort());
  for (const c of rays) {
    assert.equal(c.userId, ray);
    assert.equal(c.transport, 'WebSockets');
    assert.equal(typeof c.node, 'string');
    assert.ok(Math.abs(c.connectedAtMs - Date.now()) < 60_000);
  }
  assert.deepEqual((await get(`/users/${escape(ray)}/count`)).body, { connections: 2 });
  assert.deepEqual((await get(`/users/${escape(unique('nobody'))}/connections`)).body, { value: [] });
  assert.deepEqual((await get('/count')).body, { connections: 3 });

  await all.r2.conn.stop();
  await waitFor(async () => (await get(`/groups/${escape(group)}/count`)).body.connections === 2, {
    what: 'group count after a disconnect',
  });
  assert.deepEqual((await get(`/users/${escape(ray)}/count`)).body, { connections: 1 });
  assert.equal((await request('GET', `${node.baseUrl}/api/hubs/diagnostics/count`)).status, 401);
});

e2eTest('v1 paths, as the v1 SDK called them (application as hub prefix, aud without port)', async () => {
  const [tia, uma] = [unique('tia'), unique('uma')];
  const group = unique('v1group');
  const all = await clients([
    ['t1', tia],
    ['u1', uma],
  ]);
  const host = new URL(node.baseUrl).hostname;
  const v1 = async (method, path, message) => {
    const url = `${node.baseUrl}/api/v1/hubs/${path}`;
    const opts = { token: accessToken(`http://${host}/api/v1/hubs/${path}`) };
    if (message) {
      opts.headers = { 'Content-Type': 'application/json; charset=utf-8' };
      opts.body = JSON.stringify({ Target: message.target, Arguments: message.arguments });
    }
    return request(method, url, opts);
  };

  assert.equal((await v1('POST', 'diagnostics', news('v1-all'))).status, 202);
  await assertDelivered(all, 'v1-all', ['t1', 'u1']);
  assert.equal((await v1('POST', `shop_diagnostics/users/${escape(tia)}`, news('v1-user'))).status, 202);
  await assertDelivered(all, 'v1-user', ['t1']);

  assert.equal((await v1('PUT', `shop_diagnostics/groups/${escape(group)}/users/${escape(uma)}`)).status, 202);
  assert.equal((await v1('GET', `shop_diagnostics/groups/${escape(group)}/users/${escape(uma)}`)).status, 200);
  assert.equal((await v1('PUT', `diagnostics/connections/${escape(all.t1.id)}/groups/${escape(group)}`)).status, 202);
  assert.equal((await v1('POST', `diagnostics/groups/${escape(group)}`, news('v1-group'))).status, 202);
  await assertDelivered(all, 'v1-group', ['t1', 'u1']);

  assert.equal((await v1('DELETE', `diagnostics/users/${escape(uma)}/groups/${escape(group)}`)).status, 202);
  assert.equal((await v1('DELETE', `diagnostics/groups/${escape(group)}/connections/${escape(all.t1.id)}`)).status, 202);
  assert.equal((await v1('GET', `diagnostics/users/${escape(uma)}/groups/${escape(group)}`)).code, 'Info.User.NotInGroup');
  assert.equal((await v1('POST', `diagnostics/connections/${escape(all.u1.id)}`, news('v1-conn'))).status, 202);
  await assertDelivered(all, 'v1-conn', ['u1']);
  assert.equal((await v1('DELETE', `diagnostics/connections/${escape(all.u1.id)}`)).status, 202);
  await waitFor(() => all.u1.conn.closeEvents.length > 0, { what: 'v1 close' });
});

e2eTest('user ids and group names are escaped as the SDK escapes them', async () => {
  const user = `${unique('vic')}@example.com`;
  const group = `${unique('room')} 1/a+b`;
  const all = await clients([
    ['v', user],
    ['w', unique('wes')],
  ]);
  assert.equal((await sdk('PUT', `/users/${escape(user)}/groups/${escape(group)}`)).status, 200);
  assert.equal((await sdk('POST', `/groups/${escape(group)}/:send`, { message: news('escaped-group') })).status, 202);
  await assertDelivered(all, 'escaped-group', ['v']);
  assert.equal((await sdk('POST', `/users/${escape(user)}/:send`, { message: news('escaped-user') })).status, 202);
  await assertDelivered(all, 'escaped-user', ['v']);
  assert.equal((await sdk('HEAD', `/users/${escape(user)}`)).status, 200);
});
