// Azure SignalR Service compatibility, both directions (issue 10):
//
// - Upstream: a receiver run by this test stands for the app's serverless
//   backend. It checks the X-ASRS-* headers and the signature, reads the
//   invocation in the client's protocol (JSON and MessagePack) and answers a
//   Completion that reaches the client; it hears connected / disconnected.
//   Stopped (or silent), the client gets an error Completion within the
//   timeout and its connection stays usable.
// - Client side: a negotiate response built exactly as the Management SDK's
//   NegotiateAsync builds it (a token for <endpoint>/client/?hub=<hub>, signed
//   with the access key, made here) → the official client connects through
//   /client/… and receives a REST send; :generateToken gives a token that works.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';

import { HubConnectionBuilder, HttpTransportType, LogLevel } from '@microsoft/signalr';
import { encode as mpEncode, decode as mpDecode } from '@msgpack/msgpack';

import { accessToken, connect, e2eTest, record, startNode, stopAllNodesAfter, waitFor } from './harness.mjs';
import { hookRequests } from './chat-helpers.mjs';

stopAllNodesAfter();

const RS = '\x1e';

/** Splits a varint-length-prefixed MessagePack record off `buf`. */
function unframe(buf) {
  let length = 0;
  let shift = 0;
  let i = 0;
  for (;;) {
    const b = buf[i++];
    length |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
  }
  return buf.subarray(i, i + length);
}

function frame(payload) {
  const prefix = [];
  let n = payload.length;
  do {
    let b = n & 0x7f;
    n >>= 7;
    if (n > 0) b |= 0x80;
    prefix.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from(prefix), Buffer.from(payload)]);
}

/**
 * The upstream receiver: records every request (headers, parsed body) and
 * answers invocations with a Completion in the request's protocol whose
 * result is `{ echoed: arguments, method }`. `mode: 'silent'` never answers.
 */
async function startReceiver({ mode = 'answer' } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const type = req.headers['content-type'];
      let body;
      if (type === 'application/x-msgpack') {
        const [kind, headers, invocationId, target, args] = mpDecode(unframe(raw));
        body = { type: kind, headers, invocationId, target, arguments: args };
      } else {
        const text = raw.toString('utf8');
        body = JSON.parse(text.endsWith(RS) ? text.slice(0, -1) : text);
        body.framed = text.endsWith(RS);
      }
      requests.push({ url: req.url, headers: req.headers, body, contentType: type });
      if (mode === 'silent') return; // never answers
      if (req.headers['x-asrs-category'] !== 'messages') {
        res.writeHead(200).end();
        return;
      }
      const result = { echoed: body.arguments, method: body.target };
      if (type === 'application/x-msgpack') {
        const payload = frame(mpEncode([3, {}, body.invocationId, 3, result]));
        res.writeHead(200, { 'content-type': 'application/x-msgpack' }).end(payload);
      } else {
        const completion = JSON.stringify({ type: 3, invocationId: body.invocationId, result }) + RS;
        res.writeHead(200, { 'content-type': 'application/json' }).end(completion);
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    requests,
    port,
    url: `http://127.0.0.1:${port}/upstream/{hub}/{category}/{event}`,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

const hex = (key, text) => 'sha256=' + crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(text).digest('hex');

e2eTest('upstream: events and invocations of unknown methods reach the receiver, signed; its answer reaches JSON and MessagePack clients', async () => {
  const receiver = await startReceiver();
  const node = await startNode({ name: 'upstream', env: { HUBWIRE_UPSTREAM_URL: receiver.url } });
  try {
    for (const protocol of ['json', 'messagepack']) {
      const user = `u-${protocol}`;
      const conn = await connect(node, { user, protocol });
      const id = conn.connectionId;
      const connected = await waitFor(
        () => receiver.requests.find((r) => r.headers['x-asrs-connection-id'] === id && r.headers['x-asrs-event'] === 'connected'),
        { what: `connected event of ${protocol}` },
      );
      assert.equal(connected.url, '/upstream/diagnostics/connections/connected');
      assert.equal(connected.headers['x-asrs-category'], 'connections');
      assert.equal(connected.headers['x-asrs-hub'], 'diagnostics');
      assert.equal(connected.headers['x-asrs-user-id'], user);
      assert.equal(connected.headers['x-asrs-signature'], hex(node.accessKey, id));
      assert.match(connected.headers['x-asrs-user-claims'], new RegExp(`(^|, )nameid: ${user}(,|$)`));
      assert.equal(connected.contentType, 'application/json');
      assert.equal(connected.body.Type, 10);

      // A method the diagnostics hub does not define goes upstream; the answer is its result.
      const result = await conn.invoke('PlaceOrder', 'pizza', 2);
      assert.deepEqual(result, { echoed: ['pizza', 2], method: 'PlaceOrder' });
      const invocation = receiver.requests.find((r) => r.headers['x-asrs-connection-id'] === id && r.headers['x-asrs-event'] === 'PlaceOrder');
      assert.ok(invocation, 'the invocation reached the receiver');
      assert.equal(invocation.url, '/upstream/diagnostics/messages/PlaceOrder');
      assert.equal(invocation.headers['x-asrs-category'], 'messages');
      assert.equal(invocation.headers['x-asrs-signature'], hex(node.accessKey, id));
      assert.equal(invocation.headers['x-asrs-user-id'], user);
      assert.equal(invocation.contentType, protocol === 'json' ? 'application/json' : 'application/x-msgpack');
      assert.equal(invocation.body.type, 1);
      assert.equal(invocation.body.target, 'PlaceOrder');
      assert.deepEqual(invocation.body.arguments, ['pizza', 2]);
      assert.ok(invocation.body.invocationId, 'a blocking invocation carries its id');
      if (protocol === 'json') assert.equal(invocation.body.framed, true, 'the JSON body is the framed record');

      // Built-in methods stay local.
      assert.equal(await conn.invoke('Echo', 'here'), 'here');
      assert.equal(receiver.requests.some((r) => r.headers['x-asrs-event'] === 'Echo'), false);

      await conn.stop();
      const disconnected = await waitFor(
        () => receiver.requests.find((r) => r.headers['x-asrs-connection-id'] === id && r.headers['x-asrs-event'] === 'disconnected'),
        { what: `disconnected event of ${protocol}` },
      );
      assert.equal(disconnected.url, '/upstream/diagnostics/connections/disconnected');
      assert.equal(disconnected.body.Type, 11);
      assert.equal(disconnected.headers['x-asrs-signature'], hex(node.accessKey, id));
    }
    // Each request counted: two invocations, a connected and a disconnected event per client.
    assert.equal(await hookRequests(node, 'diagnostics', 'upstream_messages', 'ok'), 2);
    await waitFor(async () => (await hookRequests(node, 'diagnostics', 'upstream_connections', 'ok')) === 4, {
      what: 'four connection events counted',
    });
  } finally {
    await node.stop();
    await receiver.stop();
  }
});

e2eTest('upstream: a stopped or silent receiver gives an error Completion within the timeout; the connection stays and can still invoke', async () => {
  const receiver = await startReceiver({ mode: 'silent' });
  const node = await startNode({
    name: 'upstream-down',
    env: { HUBWIRE_UPSTREAM_URL: receiver.url, HUBWIRE_UPSTREAM_TIMEOUT_MS: '1500' },
  });
  try {
    const conn = await connect(node, { user: 'dora' });
    // Silent: no answer within 1.5 s.
    await assert.rejects(conn.invoke('PlaceOrder', 1), (err) => {
      assert.match(err.message, /Invocation failed, the upstream did not answer within 1500 ms/);
      return true;
    });
    assert.equal(conn.state, 'Connected');
    assert.equal(await conn.invoke('Echo', 'still here'), 'still here');
    // Stopped: refused at once.
    await receiver.stop();
    await assert.rejects(conn.invoke('PlaceOrder', 2), (err) => {
      assert.match(err.message, /Invocation failed, the upstream could not be reached/);
      return true;
    });
    assert.equal(conn.state, 'Connected');
    assert.equal(await conn.invoke('Echo', 'again'), 'again');
    // A non-blocking send of an unknown method does not close it either.
    await conn.send('PlaceOrder', 3);
    assert.equal(await conn.invoke('Echo', 'after send'), 'after send');
    assert.equal(await hookRequests(node, 'diagnostics', 'upstream_messages', 'timeout'), 1);
    await waitFor(async () => (await hookRequests(node, 'diagnostics', 'upstream_messages', 'failed')) === 2, {
      what: 'the stopped receiver counted twice (the invocation and the send)',
    });
    assert.equal(await hookRequests(node, 'diagnostics', 'upstream_messages', 'ok'), 0);
  } finally {
    await node.stop();
  }
});

e2eTest('upstream off: an unknown method is refused as before', async () => {
  const node = await startNode({ name: 'no-upstream' });
  try {
    const conn = await connect(node, { user: 'erin' });
    await assert.rejects(conn.invoke('PlaceOrder', 1), /Unknown hub method 'PlaceOrder'/);
    assert.equal(await conn.invoke('Echo', 1), 1);
  } finally {
    await node.stop();
  }
});

/**
 * The client token the Management SDK's NegotiateAsync (and the Functions
 * connection-info binding) makes: HS256 with the access key, `aud` the client
 * URL, `nameid` the user id.
 */
function clientToken(key, aud, userId, { lifetime = 3600 } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const header = b64({ alg: 'HS256', typ: 'JWT' });
  const claims = { aud, exp: now + lifetime, iat: now, nbf: now };
  if (userId) claims.nameid = userId;
  const payload = b64(claims);
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

/** What NegotiateAsync returns for `hub` and `userId`. */
function sdkNegotiate(node, hub, userId) {
  const url = `${node.baseUrl}/client/?hub=${hub.toLowerCase()}`;
  return { url, accessToken: clientToken(node.accessKey, url, userId) };
}

async function restSend(node, path, body) {
  const url = `${node.baseUrl}${path}`;
  const res = await fetch(`${url}?api-version=2022-06-01`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken(node, url)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return res.status;
}

async function clientConnect({ url, accessToken: tok }, transport = HttpTransportType.WebSockets) {
  const conn = new HubConnectionBuilder()
    .withUrl(url, { accessTokenFactory: () => tok, transport })
    .configureLogging(LogLevel.Warning)
    .build();
  await conn.start();
  return conn;
}

e2eTest('Azure client flow: the SDK negotiate response → /client/ on every transport, a REST send to the user arrives', async () => {
  const node = await startNode({ name: 'azure-client' });
  try {
    const transports = [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling];
    for (const transport of transports) {
      const userId = `bob-${transport}`;
      const conn = await clientConnect(sdkNegotiate(node, 'Diagnostics', userId), transport);
      try {
        assert.equal(conn.state, 'Connected');
        const got = record(conn, 'notify');
        assert.equal(await restSend(node, `/api/hubs/diagnostics/users/${userId}/:send`, { target: 'notify', arguments: [{ n: transport }] }), 202);
        const items = await got.wait(1);
        assert.deepEqual(items[0], { n: transport });
        assert.equal(await conn.invoke('Echo', 'via /client/'), 'via /client/');
      } finally {
        await conn.stop();
      }
    }
    // A token for another hub, one signed with another key, or an expired one: refused.
    const wrongHub = { url: `${node.baseUrl}/client/?hub=diagnostics`, accessToken: clientToken(node.accessKey, `${node.baseUrl}/client/?hub=other`, 'mallory') };
    await assert.rejects(clientConnect(wrongHub), /401|Unauthorized/);
    const wrongKey = { url: `${node.baseUrl}/client/?hub=diagnostics`, accessToken: clientToken('x'.repeat(40), `${node.baseUrl}/client/?hub=diagnostics`, 'mallory') };
    await assert.rejects(clientConnect(wrongKey), /401|Unauthorized/);
    const expired = { url: `${node.baseUrl}/client/?hub=diagnostics`, accessToken: clientToken(node.accessKey, `${node.baseUrl}/client/?hub=diagnostics`, 'mallory', { lifetime: -600 }) };
    await assert.rejects(clientConnect(expired), /401|Unauthorized/);
    // An unknown hub at /client/: 404.
    const unknown = sdkNegotiate(node, 'nope', 'bob');
    await assert.rejects(clientConnect(unknown), /404/);
  } finally {
    await node.stop();
  }
});

e2eTest('Azure client flow: :generateToken (2024-12-01) gives a token that connects as its user', async () => {
  const node = await startNode({ name: 'generate-token' });
  try {
    const path = '/api/hubs/diagnostics/:generateToken';
    const url = `${node.baseUrl}${path}`;
    const res = await fetch(`${url}?api-version=2024-12-01&userId=carol&minutesToExpire=5&role=webpubsub.joinLeaveGroup`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken(node, url)}` },
    });
    assert.equal(res.status, 200);
    const { token } = await res.json();
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    assert.equal(claims.aud, `${node.baseUrl}/client/?hub=diagnostics`);
    assert.equal(claims.nameid, 'carol');
    const lifetime = claims.exp - claims.iat;
    assert.ok(lifetime === 300, `minutesToExpire=5 gives 300 s, got ${lifetime}`);

    const conn = await clientConnect({ url: claims.aud, accessToken: token });
    const got = record(conn, 'notify');
    assert.equal(await restSend(node, '/api/hubs/diagnostics/users/carol/:send', { target: 'notify', arguments: ['hi carol'] }), 202);
    assert.deepEqual(await got.wait(1), ['hi carol']);

    // Without a valid access token: 401; a bad minutesToExpire: 400.
    const anonymous = await fetch(`${url}?userId=carol`, { method: 'POST' });
    assert.equal(anonymous.status, 401);
    const bad = await fetch(`${url}?userId=carol&minutesToExpire=0`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken(node, url)}` },
    });
    assert.equal(bad.status, 400);
  } finally {
    await node.stop();
  }
});

e2eTest('Azure client flow: a :generateToken token with group=g1&group=g2 joins g1 and g2 on connect, on every transport (not g3)', async () => {
  const node = await startNode({ name: 'generate-token-groups' });
  try {
    const url = `${node.baseUrl}/api/hubs/diagnostics/:generateToken`;
    const transports = [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling];
    for (const transport of transports) {
      const user = `dora-${transport}`;
      const res = await fetch(`${url}?api-version=2024-12-01&userId=${user}&group=g1-${transport}&group=g2-${transport}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken(node, url)}` },
      });
      assert.equal(res.status, 200);
      const { token } = await res.json();
      const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
      assert.deepEqual(claims['asrs.s.gp'], [`g1-${transport}`, `g2-${transport}`]);

      const conn = await clientConnect({ url: `${node.baseUrl}/client/?hub=diagnostics`, accessToken: token }, transport);
      try {
        const got = record(conn, 'notify');
        // g3 first: a connection in g3 would receive it before the others.
        for (const group of ['g3', 'g1', 'g2']) {
          const status = await restSend(node, `/api/hubs/diagnostics/groups/${group}-${transport}/:send`, { target: 'notify', arguments: [group] });
          assert.equal(status, 202, group);
        }
        assert.equal(await restSend(node, `/api/hubs/diagnostics/users/${user}/:send`, { target: 'notify', arguments: ['end'] }), 202);
        assert.deepEqual(await got.wait(3), ['g1', 'g2', 'end'], transport);
      } finally {
        await conn.stop();
      }
    }
  } finally {
    await node.stop();
  }
});
