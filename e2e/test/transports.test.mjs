// Server-Sent Events and Long Polling with the official client forced onto
// each transport (JSON, and MessagePack where the transport carries binary),
// the transport spec's status codes and headers on raw requests, the same
// admission limit as WebSockets, a long poller that stops polling, automatic
// reconnect, and the wrong-node 404 of a two-node cluster (sticky sessions).

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe } from 'node:test';

import {
  accessToken,
  connect,
  deferred,
  e2eTest,
  freePort,
  negotiate,
  startCluster,
  startNode,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
  HttpTransportType,
  RS,
} from './harness.mjs';

stopAllNodesAfter();

const EXAMPLES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');

const COMBOS = [
  ['ServerSentEvents', HttpTransportType.ServerSentEvents, 'json'],
  ['LongPolling', HttpTransportType.LongPolling, 'json'],
  ['LongPolling', HttpTransportType.LongPolling, 'messagepack'],
];

let node;
before(async () => {
  node = await startNode({ name: 'transports', env: { HUBWIRE_LONG_POLL_TIMEOUT_SECS: '2' } });
});

const hubUrl = (n, token, hub = 'diagnostics') => `${n.baseUrl}/hubs/${hub}?id=${encodeURIComponent(token)}`;
const auth = (n, user = 'alice') => ({ Authorization: `Bearer ${n.token({ sub: user })}` });
const req = (url, init = {}) => withTimeout(fetch(url, init), 10_000, `${init.method ?? 'GET'} ${url}`);

/** Negotiates as `user` and returns the connection token. */
async function negotiated(n, user = 'alice') {
  const res = await negotiate(n, { token: n.token({ sub: user }) });
  assert.equal(res.status, 200, res.text);
  return res.body.connectionToken;
}

/** Opens a long-polling connection by hand and completes the JSON handshake. */
async function rawLongPoll(n, user = 'alice') {
  const token = await negotiated(n, user);
  const first = await req(hubUrl(n, token), { headers: auth(n, user) });
  assert.equal(first.status, 200);
  assert.equal(await first.text(), '', 'the first poll is answered at once, empty');
  const posted = await req(hubUrl(n, token), {
    method: 'POST',
    headers: auth(n, user),
    body: `{"protocol":"json","version":1}${RS}`,
  });
  assert.equal(posted.status, 200);
  const answer = await req(hubUrl(n, token), { headers: auth(n, user) });
  assert.equal(answer.status, 200);
  assert.equal(await answer.text(), `{}${RS}`, 'the handshake answer comes with the next poll');
  return token;
}

describe('official client on each transport', () => {
  for (const [name, transport, protocol] of COMBOS) {
    e2eTest(`${name} / ${protocol}: invoke, group sends, server-to-client stream`, async () => {
      const conn = await connect(node, { transport, protocol, user: 'alice' });
      const me = await conn.invoke('WhoAmI');
      assert.equal(me.transport, name);
      assert.equal(me.protocol, protocol);
      const value = { text: 'héllo ✓ 日本', list: [1, 'two', [3]], nested: { yes: true, none: null }, big: 2 ** 40 };
      assert.deepEqual(await conn.invoke('Echo', value), value);

      const group = `g-${name}-${protocol}`;
      const received = [];
      const got = deferred();
      conn.on('Receive', (...args) => {
        received.push(args);
        if (received.length === 3) got.resolve();
      });
      await conn.invoke('JoinGroup', group);
      const sender = await connect(node, { user: 'bob' });
      for (let i = 0; i < 3; i++) await sender.invoke('SendToGroup', group, 'Receive', { i, text: `m${i}` });
      await withTimeout(got.promise, 10_000, 'three group sends');
      assert.deepEqual(received, [0, 1, 2].map((i) => [{ i, text: `m${i}` }]));

      const items = [];
      const done = deferred();
      conn.stream('Stream', 5, 20).subscribe({
        next: (item) => items.push(item),
        complete: () => done.resolve(),
        error: (e) => done.reject(e),
      });
      await withTimeout(done.promise, 10_000, 'the stream to complete');
      assert.equal(items.length, 5);
      await conn.stop();
      assert.equal(conn.state, 'Disconnected');
    });
  }

  e2eTest('ServerSentEvents refuses MessagePack: the official client itself does not offer it', async () => {
    await assert.rejects(connect(node, { transport: HttpTransportType.ServerSentEvents, protocol: 'messagepack' }));
  });

  for (const [name, transport] of [
    ['ServerSentEvents', HttpTransportType.ServerSentEvents],
    ['LongPolling', HttpTransportType.LongPolling],
  ]) {
    e2eTest(`${name}: automatic reconnect after the node is killed and restarted on the same port`, async () => {
      const port = await freePort();
      const first = await startNode({ name: `reconnect-${name}-1`, port });
      const conn = await connect(first, { transport, reconnectDelays: [0, 500, 1000, 1000, 1000, 1000, 1000] });
      const before = await conn.invoke('WhoAmI');
      assert.equal(before.transport, name);
      await first.kill();
      await waitFor(() => conn.reconnectingEvents.length > 0, { timeout: 15_000, what: 'onreconnecting' });
      await startNode({ name: `reconnect-${name}-2`, port });
      await waitFor(() => conn.reconnectedEvents.length > 0, { timeout: 20_000, what: 'onreconnected' });
      const after = await conn.invoke('WhoAmI');
      assert.equal(after.transport, name);
      assert.notEqual(after.connectionId, before.connectionId, 'a new connection on the restarted node');
      assert.deepEqual(await conn.invoke('Echo', 'again'), 'again');
    });
  }
});

describe('every hub: the built-in chat hub and hub definitions at their own paths', () => {
  e2eTest('SSE and long polling on /hubs/chat, on a definition under /hubs/ and on one at /chathub', async () => {
    const chat = await startNode({ name: 'transports-chat' });
    const social = await startNode({ name: 'transports-social', args: ['--config', path.join(EXAMPLES, 'social-chat', 'hubwire.toml')] });
    const delivery = await startNode({
      name: 'transports-delivery',
      args: ['--config', path.join(EXAMPLES, 'delivery-messaging', 'hubwire.toml')],
    });
    for (const [name, transport] of [
      ['ServerSentEvents', HttpTransportType.ServerSentEvents],
      ['LongPolling', HttpTransportType.LongPolling],
    ]) {
      const onChat = await connect(chat, { hub: 'chat', transport });
      assert.equal(await onChat.invoke('Ping'), 'pong', `${name} on /hubs/chat`);
      const onMessaging = await connect(delivery, { url: `${delivery.baseUrl}/hubs/messaging`, transport });
      assert.equal(await onMessaging.invoke('Ping'), 'pong', `${name} on /hubs/messaging`);
      const onChathub = await connect(social, { url: `${social.baseUrl}/chathub`, transport });
      assert.ok(Array.isArray(await onChathub.invoke('GetConversations')), `${name} on /chathub`);
      await Promise.all([onChat.stop(), onMessaging.stop(), onChathub.stop()]);
    }
  });
});

describe('the transport spec on raw requests', () => {
  e2eTest('negotiate lists the three transports with their transfer formats', async () => {
    const res = await negotiate(node, { token: node.token() });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.availableTransports, [
      { transport: 'WebSockets', transferFormats: ['Text', 'Binary'] },
      { transport: 'ServerSentEvents', transferFormats: ['Text'] },
      { transport: 'LongPolling', transferFormats: ['Text', 'Binary'] },
    ]);
  });

  e2eTest('status codes: 400 without id, 404 unknown id, 401 without token, 403 another user', async () => {
    const plain = await req(`${node.baseUrl}/hubs/diagnostics`, { headers: auth(node) });
    assert.equal(plain.status, 400);
    assert.equal(await plain.text(), 'Connection ID required');
    assert.equal((await req(hubUrl(node, 'nope'), { headers: auth(node) })).status, 404);
    const sse404 = await req(hubUrl(node, 'nope'), { headers: { ...auth(node), Accept: 'text/event-stream' } });
    assert.equal(sse404.status, 404);
    assert.equal((await req(hubUrl(node, 'nope'), { method: 'POST', headers: auth(node), body: 'x' })).status, 404);
    assert.equal((await req(hubUrl(node, 'nope'), { method: 'DELETE', headers: auth(node) })).status, 404);

    const token = await rawLongPoll(node, 'alice');
    assert.equal((await req(hubUrl(node, token))).status, 401, 'a poll needs the token too');
    assert.equal((await req(hubUrl(node, token), { headers: auth(node, 'mallory') })).status, 403);
    const post = await req(hubUrl(node, token), { method: 'POST', headers: auth(node, 'mallory'), body: 'x' });
    assert.equal(post.status, 403);
    const sseOnPolling = await req(hubUrl(node, token), { headers: { ...auth(node), Accept: 'text/event-stream' } });
    assert.equal(sseOnPolling.status, 400, 'cannot change transports mid-connection');
    assert.equal((await req(hubUrl(node, token), { method: 'DELETE', headers: auth(node) })).status, 202);
  });

  e2eTest('long polling: no-cache headers, 200 empty on timeout, a newer poll supersedes (204), DELETE ends with 204', async () => {
    const token = await rawLongPoll(node, 'alice');
    const timedOut = await req(hubUrl(node, token), { headers: auth(node) });
    assert.equal(timedOut.status, 200, 'the poll timeout (2 s here) answers 200');
    assert.equal(await timedOut.text(), '');
    assert.equal(timedOut.headers.get('cache-control'), 'no-cache, no-store');
    assert.equal(timedOut.headers.get('pragma'), 'no-cache');
    assert.equal(timedOut.headers.get('expires'), 'Thu, 01 Jan 1970 00:00:00 GMT');

    const older = req(hubUrl(node, token), { headers: auth(node) });
    await new Promise((r) => setTimeout(r, 300));
    const newer = req(hubUrl(node, token), { headers: auth(node) });
    assert.equal((await older).status, 204, 'the waiting poll is answered 204 when a newer one arrives');

    // An invocation: its Completion comes with the newer poll.
    const posted = await req(hubUrl(node, token), {
      method: 'POST',
      headers: auth(node),
      body: `{"type":1,"invocationId":"1","target":"Echo","arguments":["hi"]}${RS}`,
    });
    assert.equal(posted.status, 200);
    const answered = await newer;
    assert.equal(answered.status, 200);
    assert.equal(answered.headers.get('content-type'), 'application/octet-stream');
    assert.deepEqual(JSON.parse((await answered.text()).split(RS)[0]), { type: 3, invocationId: '1', result: 'hi' });

    const waiting = req(hubUrl(node, token), { headers: auth(node) });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await req(hubUrl(node, token), { method: 'DELETE', headers: auth(node) })).status, 202);
    assert.equal((await waiting).status, 204, 'DELETE completes the waiting poll with 204');
    await waitFor(async () => (await req(hubUrl(node, token), { headers: auth(node) })).status === 404, {
      what: 'the ended connection to be forgotten',
    });
  });

  e2eTest('server-sent events: headers, the handshake over the stream, a second stream is 409, DELETE is 400, MessagePack is refused', async () => {
    const token = await negotiated(node);
    const abort = new AbortController();
    const res = await req(hubUrl(node, token), {
      headers: { ...auth(node), Accept: 'text/event-stream' },
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    assert.equal(res.headers.get('cache-control'), 'no-cache, no-store');
    const reader = res.body.getReader();
    let text = '';
    const readUntil = async (pattern) => {
      while (!pattern.test(text)) {
        const { value, done } = await withTimeout(reader.read(), 10_000, 'SSE data');
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return text;
    };
    const second = await req(hubUrl(node, token), { headers: { ...auth(node), Accept: 'text/event-stream' } });
    assert.equal(second.status, 409);
    assert.equal((await req(hubUrl(node, token), { method: 'DELETE', headers: auth(node) })).status, 400);
    const posted = await req(hubUrl(node, token), {
      method: 'POST',
      headers: auth(node),
      body: `{"protocol":"json","version":1}${RS}{"type":1,"invocationId":"7","target":"Echo","arguments":[42]}${RS}`,
    });
    assert.equal(posted.status, 200);
    await readUntil(/"invocationId":"7"/);
    assert.match(text, /^:\r\n/, 'a comment first');
    assert.match(text, new RegExp(`data: \\{\\}${RS}\r\n\r\n`), 'the handshake answer is an event of its own');
    assert.match(text, /data: \{"type":3,"invocationId":"7","result":42\}/);
    abort.abort();

    const binary = await negotiated(node);
    const stream = await req(hubUrl(node, binary), { headers: { ...auth(node), Accept: 'text/event-stream' } });
    const binaryReader = stream.body.getReader();
    await req(hubUrl(node, binary), { method: 'POST', headers: auth(node), body: `{"protocol":"messagepack","version":1}${RS}` });
    let refused = '';
    while (!refused.includes('error')) {
      const { value, done } = await withTimeout(binaryReader.read(), 10_000, 'the handshake refusal');
      if (done) break;
      refused += new TextDecoder().decode(value);
    }
    assert.match(refused, /Cannot use the 'messagepack' protocol on the current transport/);
  });
});

describe('limits and cleanup', () => {
  e2eTest('the admission limit refuses an SSE or long-polling connection as it refuses a WebSocket (503)', async () => {
    const small = await startNode({ name: 'transports-full', env: { HUBWIRE_MAX_CONNECTIONS: '1' } });
    const held = await connect(small, { transport: HttpTransportType.LongPolling });
    assert.equal((await held.invoke('WhoAmI')).transport, 'LongPolling');
    const token = await negotiated(small, 'bob');
    const refused = await req(hubUrl(small, token), { headers: auth(small, 'bob') });
    assert.equal(refused.status, 503);
    assert.equal(await refused.text(), 'The server is at its connection limit.');
    await assert.rejects(connect(small, { transport: HttpTransportType.ServerSentEvents, user: 'carol' }));
    await assert.rejects(connect(small, { user: 'dave' }), 'a WebSocket is refused too');
    await held.stop();
    const next = await connect(small, { transport: HttpTransportType.ServerSentEvents, user: 'erin' });
    assert.equal((await next.invoke('WhoAmI')).transport, 'ServerSentEvents', 'the place was given back');
  });

  e2eTest('a long poller that stops polling is closed and leaves the cluster', async () => {
    const quick = await startNode({ name: 'transports-gone', env: { HUBWIRE_LONG_POLL_DISCONNECT_SECS: '1' } });
    const token = await rawLongPoll(quick, 'frank');
    const userUrl = `${quick.baseUrl}/api/hubs/diagnostics/users/frank`;
    const exists = async () =>
      (await req(userUrl, { headers: { Authorization: `Bearer ${accessToken(quick, userUrl)}` } })).status;
    assert.equal(await exists(), 200, 'frank is connected');
    // No more polls: after long_poll_disconnect_secs the connection is closed.
    await waitFor(async () => (await exists()) === 404, { timeout: 15_000, what: 'frank to leave' });
    const late = await req(hubUrl(quick, token), { headers: auth(quick, 'frank') });
    assert.ok([204, 404].includes(late.status), `a late poll learns the end (${late.status})`);
  });
});

describe('graceful shutdown', () => {
  e2eTest('SSE and long-polling clients are told to reconnect and the drain completes', async () => {
    const draining = await startNode({ name: 'transports-drain' });
    const sse = await connect(draining, { transport: HttpTransportType.ServerSentEvents, reconnectDelays: [60_000] });
    const lp = await connect(draining, { transport: HttpTransportType.LongPolling, reconnectDelays: [60_000] });
    await draining.stop();
    assert.equal(draining.exitCode, 0);
    assert.ok(!draining.logs.some((l) => l.includes('shutdown timeout')), 'the drain did not time out');
    await waitFor(() => sse.reconnectingEvents.length > 0 && lp.reconnectingEvents.length > 0, {
      what: 'both clients to start reconnecting (Close with allowReconnect)',
    });
  });
});

describe('slow clients', () => {
  e2eTest('a long poller that does not poll while messages arrive is closed by the bounded queue', async () => {
    const small = await startNode({ name: 'transports-slow', env: { HUBWIRE_OUTBOUND_QUEUE: '8' } });
    const token = await rawLongPoll(small, 'gina');
    const joined = await req(hubUrl(small, token), {
      method: 'POST',
      headers: auth(small, 'gina'),
      body: `{"type":1,"invocationId":"1","target":"JoinGroup","arguments":["slow"]}${RS}`,
    });
    assert.equal(joined.status, 200);
    const sender = await connect(small, { user: 'henry' });
    const big = 'x'.repeat(4000);
    // 40 × 4 KB: more than the 64 KiB a poll takes plus the 8 records the queue holds.
    for (let i = 0; i < 40; i++) await sender.invoke('SendToGroup', 'slow', 'Big', big);
    const userUrl = `${small.baseUrl}/api/hubs/diagnostics/users/gina`;
    const exists = async () =>
      (await req(userUrl, { headers: { Authorization: `Bearer ${accessToken(small, userUrl)}` } })).status;
    await waitFor(async () => (await exists()) === 404, { timeout: 10_000, what: 'gina to be closed as slow' });
    const metrics = await (await req(`${small.baseUrl}/metrics`)).text();
    assert.match(metrics, /hubwire_slow_connections_closed_total\{[^}]*reason="queue_records"[^}]*\} [1-9]/);
    // What was taken before the close, then the Close message, then 204.
    let body = '';
    for (let i = 0; i < 5 && !body.includes('"type":7'); i++) {
      const res = await req(hubUrl(small, token), { headers: auth(small, 'gina') });
      if (res.status !== 200) break;
      body += await res.text();
    }
    assert.match(body, /\{"type":7,"error":"Connection closed with an error.","allowReconnect":true\}/);
  });
});

describe('cluster: these transports need sticky sessions', () => {
  e2eTest('a poll, a send or an event stream on the wrong node is answered 404 at once', async () => {
    const redis = await startRedis({ name: 'transports-redis' });
    const {
      nodes: [a, b],
    } = await startCluster(redis, { size: 2, name: 'sticky' });
    const token = await rawLongPoll(a, 'alice');
    for (const init of [
      { headers: auth(b) },
      { method: 'POST', headers: auth(b), body: `{"type":6}${RS}` },
      { method: 'DELETE', headers: auth(b) },
      { headers: { ...auth(b), Accept: 'text/event-stream' } },
    ]) {
      const res = await req(hubUrl(b, token), init);
      assert.equal(res.status, 404, `${init.method ?? 'GET'} on the other node`);
    }
    const fresh = await negotiated(a, 'bob');
    assert.equal((await req(hubUrl(b, fresh), { headers: auth(b, 'bob') })).status, 404, 'a first poll too');
    // The connection on its own node is untouched.
    const posted = await req(hubUrl(a, token), {
      method: 'POST',
      headers: auth(a),
      body: `{"type":1,"invocationId":"1","target":"Echo","arguments":["still here"]}${RS}`,
    });
    assert.equal(posted.status, 200);
    const answer = await req(hubUrl(a, token), { headers: auth(a) });
    assert.match(await answer.text(), /still here/);
  });
});
