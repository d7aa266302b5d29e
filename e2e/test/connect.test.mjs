// Connection lifecycle, hub invocations, streams and the HTTP/WebSocket
// endpoints, driven through the official @microsoft/signalr client.

import assert from 'node:assert/strict';
import { before, describe } from 'node:test';

import {
  connect,
  deferred,
  delay,
  e2eTest,
  negotiate,
  rawWs,
  rejectionOf,
  startNode,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
  wsUpgradeStatus,
  HubConnectionState,
} from './harness.mjs';
import {
  bindingError,
  failError,
  nonStreamingWithStreamError,
  streamingWithInvokeError,
  unknownMethodError,
} from './expected.mjs';

stopAllNodesAfter();

let node;
before(async () => {
  node = await startNode({ name: 'connect' });
});

const PROTOCOLS = ['json', 'messagepack'];

/** A value exercising nested objects/arrays, ints, floats, strings, booleans and null. */
const NESTED = {
  text: 'héllo wörld ✓ 日本',
  empty: '',
  int: 42,
  negative: -7,
  big: 2 ** 40,
  float: 2.5,
  yes: true,
  no: false,
  nothing: null,
  list: [1, 'two', [3, [4]], { five: 5 }],
  nested: { deeper: { deepest: ['x', { y: 'z' }] } },
};

/** Collects a stream into { items, done } with promise helpers. */
function collectStream(conn, method, ...args) {
  const items = [];
  const done = deferred();
  const subscription = conn.stream(method, ...args).subscribe({
    next: (item) => items.push(item),
    complete: () => done.resolve(),
    error: (err) => done.reject(err),
  });
  return { items, done: done.promise, subscription };
}

describe('connect and invoke', () => {
  for (const protocol of PROTOCOLS) {
    e2eTest(`${protocol}: connects and Echo returns scalar values`, async () => {
      const conn = await connect(node, { protocol });
      assert.equal(conn.state, HubConnectionState.Connected);
      assert.equal(await conn.invoke('Echo', 'hello'), 'hello');
      assert.equal(await conn.invoke('Echo', 12345), 12345);
      assert.equal(await conn.invoke('Echo', -1.25), -1.25);
      assert.equal(await conn.invoke('Echo', true), true);
      assert.equal(await conn.invoke('Echo', null), null);
      assert.equal(await conn.invoke('Echo', ''), '');
    });

    e2eTest(`${protocol}: Echo round-trips nested objects and arrays`, async () => {
      const conn = await connect(node, { protocol });
      assert.deepEqual(await conn.invoke('Echo', NESTED), NESTED);
      assert.deepEqual(await conn.invoke('Echo', [NESTED, [], {}]), [NESTED, [], {}]);
    });

    e2eTest(`${protocol}: WhoAmI reports connection, user, hub, transport and protocol`, async () => {
      const conn = await connect(node, { protocol, user: 'alice', name: 'Alice Liddell' });
      const me = await conn.invoke('WhoAmI');
      assert.equal(typeof me.connectionId, 'string');
      assert.ok(me.connectionId.length > 0, 'connectionId must not be empty');
      assert.equal(me.connectionId, conn.connectionId, 'WhoAmI.connectionId must equal the negotiated connectionId');
      assert.equal(me.userId, 'alice');
      assert.equal(me.userName, 'Alice Liddell');
      assert.equal(me.hub, 'diagnostics');
      assert.equal(me.transport, 'WebSockets');
      assert.equal(me.protocol, protocol);
    });

    e2eTest(`${protocol}: Fail rejects with the HubException message`, async () => {
      const conn = await connect(node, { protocol });
      const err = await rejectionOf(conn.invoke('Fail', 'boom: something broke'), 5_000, 'Fail rejection');
      assert.equal(err.message, failError('boom: something broke'));
      // The connection stays usable after a hub error.
      assert.equal(await conn.invoke('Echo', 'still alive'), 'still alive');
      assert.equal(conn.closeEvents.length, 0);
    });

    e2eTest(`${protocol}: unknown hub method rejects and the connection stays open`, async () => {
      const conn = await connect(node, { protocol });
      const err = await rejectionOf(conn.invoke('NoSuchMethod', 1), 5_000, 'unknown method rejection');
      assert.equal(err.message, unknownMethodError('NoSuchMethod'));
      const err2 = await rejectionOf(conn.invoke('NoSuchMethod'), 5_000, 'unknown method (no args) rejection');
      assert.equal(err2.message, unknownMethodError('NoSuchMethod'));
      assert.equal(await conn.invoke('Echo', 1), 1);
      assert.equal(conn.closeEvents.length, 0);
    });

    e2eTest(`${protocol}: wrong argument count rejects with a binding error`, async () => {
      const conn = await connect(node, { protocol });
      const tooMany = await rejectionOf(conn.invoke('Echo', 1, 2), 5_000, 'Echo(1, 2) rejection');
      assert.equal(tooMany.message, bindingError('Echo'));
      const tooFew = await rejectionOf(conn.invoke('Echo'), 5_000, 'Echo() rejection');
      assert.equal(tooFew.message, bindingError('Echo'));
      assert.equal(await conn.invoke('Echo', 'ok'), 'ok');
      assert.equal(conn.closeEvents.length, 0);
    });

    e2eTest(`${protocol}: hub method names match case-insensitively`, async () => {
      const conn = await connect(node, { protocol });
      assert.equal(await conn.invoke('echo', 'lower'), 'lower');
      assert.equal(await conn.invoke('ECHO', 'upper'), 'upper');
      assert.equal(await conn.invoke('eChO', 'mixed'), 'mixed');
      const me = await conn.invoke('whoami');
      assert.equal(me.userId, 'alice');
      const { items, done } = collectStream(conn, 'stream', 3, 1);
      await withTimeout(done, 5_000, 'stream("stream") to complete');
      assert.deepEqual(items, [0, 1, 2]);
    });

    e2eTest(`${protocol}: Stream delivers N items in order and completes`, async () => {
      const conn = await connect(node, { protocol });
      const { items, done } = collectStream(conn, 'Stream', 25, 5);
      await withTimeout(done, 10_000, 'Stream(25, 5) to complete');
      assert.deepEqual(
        items,
        Array.from({ length: 25 }, (_, i) => i),
      );
      // An empty stream completes immediately without items.
      const empty = collectStream(conn, 'Stream', 0, 5);
      await withTimeout(empty.done, 5_000, 'Stream(0, 5) to complete');
      assert.deepEqual(empty.items, []);
    });

    e2eTest(`${protocol}: concurrent streams and invocations are multiplexed`, async () => {
      const conn = await connect(node, { protocol });
      const a = collectStream(conn, 'Stream', 10, 10);
      const b = collectStream(conn, 'Stream', 5, 15);
      const echoes = await Promise.all([conn.invoke('Echo', 'a'), conn.invoke('Echo', 'b'), conn.invoke('Echo', 'c')]);
      assert.deepEqual(echoes, ['a', 'b', 'c']);
      await withTimeout(Promise.all([a.done, b.done]), 10_000, 'both streams to complete');
      assert.deepEqual(a.items, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(b.items, [0, 1, 2, 3, 4]);
    });

    e2eTest(`${protocol}: disposing a stream subscription cancels it; the connection stays usable`, async () => {
      const conn = await connect(node, { protocol });
      const items = [];
      let completed = false;
      let errored = null;
      const subscription = conn.stream('Stream', 1000, 20).subscribe({
        next: (i) => items.push(i),
        complete: () => (completed = true),
        error: (e) => (errored = e),
      });
      await waitFor(() => items.length >= 3, { timeout: 5_000, what: '3 stream items' });
      subscription.dispose();
      const countAtCancel = items.length;
      assert.deepEqual(
        items,
        Array.from({ length: countAtCancel }, (_, i) => i),
      );
      // The connection keeps working after the CancelInvocation.
      assert.equal(await conn.invoke('Echo', 'after cancel'), 'after cancel');
      await delay(200);
      assert.equal(items.length, countAtCancel, 'no items may be delivered after dispose()');
      assert.equal(completed, false);
      assert.equal(errored, null);
      // A new stream on the same connection works.
      const again = collectStream(conn, 'Stream', 3, 1);
      await withTimeout(again.done, 5_000, 'second stream to complete');
      assert.deepEqual(again.items, [0, 1, 2]);
      assert.equal(conn.closeEvents.length, 0);
    });

    e2eTest(`${protocol}: streaming-mode mismatches are rejected`, async () => {
      const conn = await connect(node, { protocol });
      const e1 = await rejectionOf(conn.invoke('Stream', 3, 10), 5_000, "invoke('Stream') rejection");
      assert.equal(e1.message, streamingWithInvokeError('Stream'));
      const { done } = collectStream(conn, 'Echo', 'x');
      const e2 = await rejectionOf(done, 5_000, "stream('Echo') error");
      assert.equal(e2.message, nonStreamingWithStreamError('Echo'));
      assert.equal(await conn.invoke('Echo', 'fine'), 'fine');
    });
  }

  e2eTest('raw: CancelInvocation stops the server-side stream', async () => {
    const raw = await rawWs(node, '/hubs/diagnostics', {
      headers: { Authorization: `Bearer ${node.token({ sub: 'raw-user' })}` },
    });
    await raw.handshake();
    raw.sendMessage({ type: 4, invocationId: 's1', target: 'Stream', arguments: [100000, 100] });
    const received = [];
    while (received.length < 3) {
      const m = await raw.nextMessage({ what: 'StreamItem' });
      assert.equal(m.type, 2, `expected StreamItem, got ${JSON.stringify(m)}`);
      assert.equal(m.invocationId, 's1');
      received.push(m.item);
    }
    assert.deepEqual(received, [0, 1, 2]);
    raw.sendMessage({ type: 5, invocationId: 's1' });
    // Confirm the connection processed the cancel (messages are handled in order) ...
    const c = await raw.echo('after-cancel', 'e1');
    assert.equal(c.result, 'after-cancel');
    // ... then watch for 4 more stream intervals: at most one item that was already in flight.
    await delay(400);
    const late = raw.records.map((r) => JSON.parse(r)).filter((m) => m.type === 2);
    assert.ok(late.length <= 4, `stream kept producing after CancelInvocation: ${late.length - 3} extra item(s)`);
    assert.equal(raw.closed, false);
  });
});

describe('negotiate and transport endpoints', () => {
  e2eTest('GET /healthz returns 200', async () => {
    const res = await fetch(`${node.baseUrl}/healthz`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  e2eTest('negotiateVersion=1 returns connectionId, connectionToken and WebSockets', async () => {
    const { status, body } = await negotiate(node, { token: node.token(), query: 'negotiateVersion=1' });
    assert.equal(status, 200);
    assert.equal(body.negotiateVersion, 1);
    assert.equal(typeof body.connectionId, 'string');
    assert.equal(typeof body.connectionToken, 'string');
    assert.ok(body.connectionId.length > 0 && body.connectionToken.length > 0);
    assert.notEqual(body.connectionToken, body.connectionId, 'connectionToken must differ from connectionId');
    assert.ok(Array.isArray(body.availableTransports));
    const ws = body.availableTransports.find((t) => t.transport === 'WebSockets');
    assert.ok(ws, `WebSockets missing from ${JSON.stringify(body.availableTransports)}`);
    assert.deepEqual(ws.transferFormats, ['Text', 'Binary']);

    // Two negotiations yield distinct ids.
    const second = await negotiate(node, { token: node.token(), query: 'negotiateVersion=1' });
    assert.notEqual(second.body.connectionId, body.connectionId);
    assert.notEqual(second.body.connectionToken, body.connectionToken);

    // The token (not the id) is what the WebSocket connects with.
    const raw = await rawWs(node, `/hubs/diagnostics?id=${encodeURIComponent(body.connectionToken)}`, {
      headers: { Authorization: `Bearer ${node.token()}` },
    });
    await raw.handshake();
    const c = await raw.echo('v1');
    assert.equal(c.result, 'v1');
  });

  e2eTest('negotiateVersion=0 (and no version) returns no connectionToken; connectionId is the id', async () => {
    for (const query of ['negotiateVersion=0', '']) {
      const { status, body } = await negotiate(node, { token: node.token(), query });
      assert.equal(status, 200, `negotiate ?${query}`);
      assert.equal(typeof body.connectionId, 'string');
      assert.ok(body.connectionId.length > 0);
      assert.equal('connectionToken' in body, false, `v0 response must not contain connectionToken (?${query})`);
      assert.ok(
        body.negotiateVersion === undefined || body.negotiateVersion === 0,
        `negotiateVersion must be 0 or absent, got ${body.negotiateVersion}`,
      );
      const ws = body.availableTransports.find((t) => t.transport === 'WebSockets');
      assert.deepEqual(ws.transferFormats, ['Text', 'Binary']);

      const raw = await rawWs(node, `/hubs/diagnostics?id=${encodeURIComponent(body.connectionId)}`, {
        headers: { Authorization: `Bearer ${node.token()}` },
      });
      await raw.handshake();
      const c = await raw.echo('v0');
      assert.equal(c.result, 'v0');
      raw.close();
    }
  });

  e2eTest('WebSocket with an unknown id is rejected with 404', async () => {
    const headers = { Authorization: `Bearer ${node.token()}` };
    assert.equal(await wsUpgradeStatus(node, '/hubs/diagnostics?id=does-not-exist', { headers }), 404);
    // The connectionId of a v1 negotiation is public (other users see it);
    // only the connectionToken may be used to connect.
    const { body } = await negotiate(node, { token: node.token(), query: 'negotiateVersion=1' });
    assert.equal(
      await wsUpgradeStatus(node, `/hubs/diagnostics?id=${encodeURIComponent(body.connectionId)}`, { headers }),
      404,
    );
  });

  e2eTest('a second WebSocket on an already connected id is rejected with 409', async () => {
    const headers = { Authorization: `Bearer ${node.token()}` };
    const { body } = await negotiate(node, { token: node.token(), query: 'negotiateVersion=1' });
    const path = `/hubs/diagnostics?id=${encodeURIComponent(body.connectionToken)}`;
    const first = await rawWs(node, path, { headers });
    await first.handshake();
    assert.equal(await wsUpgradeStatus(node, path, { headers }), 409);
    // The first socket is unaffected.
    const c = await first.echo('first still works');
    assert.equal(c.result, 'first still works');
    assert.equal(first.closed, false);
  });

  for (const protocol of PROTOCOLS) {
    e2eTest(`${protocol}: skipNegotiation connects straight to the WebSocket`, async () => {
      const conn = await connect(node, { protocol, skipNegotiation: true, user: 'skipper' });
      assert.equal(conn.state, HubConnectionState.Connected);
      const me = await conn.invoke('WhoAmI');
      assert.equal(me.userId, 'skipper');
      assert.equal(me.transport, 'WebSockets');
      assert.equal(me.protocol, protocol);
      assert.equal(typeof me.connectionId, 'string');
      assert.ok(me.connectionId.length > 0);
      assert.deepEqual(await conn.invoke('Echo', NESTED), NESTED);
    });
  }

  e2eTest('stop() closes cleanly and the client reports no error', async () => {
    const conn = await connect(node);
    await conn.stop();
    assert.equal(conn.state, HubConnectionState.Disconnected);
    assert.deepEqual(conn.closeEvents, [null]);
  });
});
