// Raw WebSocket clients sending bad handshakes and bad messages. Every test
// asserts the exact records the server sends and that a well-behaved
// bystander connected to the same node beforehand is unaffected.

import assert from 'node:assert/strict';
import { before, describe } from 'node:test';

import { connect, delay, e2eTest, rawWs, startNode, stopAllNodesAfter, RS } from './harness.mjs';
import {
  CLOSE_CLIENT_TIMEOUT,
  CLOSE_WITH_ERROR,
  HANDSHAKE_CANCELED,
  HANDSHAKE_OK,
  HANDSHAKE_UNEXPECTED,
  PING,
  handshakeUnsupportedProtocol,
} from './expected.mjs';

stopAllNodesAfter();

/** Default timers except the handshake timeout (1 s): no keep-alive pings during these tests. */
let node;
/** Short keep-alive (1 s) and client timeout (3 s). */
let timersNode;
before(async () => {
  [node, timersNode] = await Promise.all([
    startNode({ name: 'badinput', env: { HUBWIRE_HANDSHAKE_TIMEOUT_SECS: '1' } }),
    startNode({
      name: 'badinput-timers',
      env: {
        HUBWIRE_HANDSHAKE_TIMEOUT_SECS: '1',
        HUBWIRE_KEEP_ALIVE_SECS: '1',
        HUBWIRE_CLIENT_TIMEOUT_SECS: '3',
      },
    }),
  ]);
});

/** Opens a raw JSON-protocol socket (skipNegotiation, bearer header). */
async function openRaw(target = node, user = 'raw') {
  return rawWs(target, '/hubs/diagnostics', {
    headers: { Authorization: `Bearer ${target.token({ sub: user })}` },
  });
}

/** Connects a well-behaved official client before the bad input. */
async function bystander(target = node) {
  // The official client pings every 15 s by default; keep it alive on the
  // node with a 3 s client timeout.
  const conn = await connect(target, { user: 'bystander', keepAliveMs: 500 });
  assert.equal(await conn.invoke('Echo', 'before'), 'before');
  return conn;
}

/** After the bad connection is gone the bystander still works and was never closed. */
async function assertBystanderUnaffected(conn) {
  assert.deepEqual(conn.closeEvents, [], 'bystander must not be closed');
  const value = { after: 'bad input', n: [1, 2, 3] };
  assert.deepEqual(await conn.invoke('Echo', value), value);
  assert.deepEqual(conn.closeEvents, [], 'bystander must not be closed');
}

/** Every record received on `raw`, parsed (property order is not significant for Completions). */
const parsed = (raw) => raw.records.map((r) => JSON.parse(r));

/** All text the server sent on `raw`, concatenated. */
const allText = (raw) => raw.frames.map((f) => f.text ?? `<binary ${f.binary.length}B>`).join('');

/** Waits for the socket to close and asserts that exactly `expected` records (plus pings if allowed) were sent. */
async function assertClosedAfter(raw, expectedRecords, { allowPings = false } = {}) {
  await raw.waitClosed(10_000);
  const recs = allowPings ? raw.records.filter((r) => r !== PING) : raw.records;
  assert.deepEqual(recs, expectedRecords, `server sent ${JSON.stringify(allText(raw))}`);
  if (!allowPings) assert.equal(allText(raw), expectedRecords.map((r) => r + RS).join(''));
}

describe('handshake errors', () => {
  e2eTest('successful handshake response is exactly {}\\x1e', async () => {
    const raw = await openRaw();
    raw.send(`{"protocol":"json","version":1}${RS}`);
    const rec = await raw.nextRecord({ what: 'handshake response' });
    assert.equal(rec, HANDSHAKE_OK);
    assert.equal(allText(raw), `{}${RS}`);
    assert.equal((await raw.echo('x')).result, 'x');
  });

  e2eTest('unknown protocol → error response, then close', async () => {
    const by = await bystander();
    const raw = await openRaw();
    raw.send(`{"protocol":"x","version":1}${RS}`);
    await assertClosedAfter(raw, [handshakeUnsupportedProtocol('x')]);
    assert.equal(handshakeUnsupportedProtocol('x'), `{"error":"The protocol 'x' is not supported."}`);
    await assertBystanderUnaffected(by);
  });

  e2eTest('garbage before the handshake → unexpected-error response, then close', async () => {
    const by = await bystander();
    const raw = await openRaw();
    raw.send(`this is not json at all${RS}`);
    await assertClosedAfter(raw, [HANDSHAKE_UNEXPECTED]);
    assert.equal(HANDSHAKE_UNEXPECTED, '{"error":"An unexpected error occurred during connection handshake."}');
    await assertBystanderUnaffected(by);
  });

  e2eTest('JSON that is not a handshake request → unexpected-error response, then close', async () => {
    const by = await bystander();
    const raw = await openRaw();
    raw.send(`{"type":1,"target":"Echo","arguments":["x"]}${RS}`);
    await assertClosedAfter(raw, [HANDSHAKE_UNEXPECTED]);
    await assertBystanderUnaffected(by);
  });

  e2eTest('no handshake within HUBWIRE_HANDSHAKE_TIMEOUT_SECS=1 → "Handshake was canceled.", then close', async () => {
    const by = await bystander();
    const raw = await openRaw();
    const started = Date.now();
    await assertClosedAfter(raw, [HANDSHAKE_CANCELED]);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 800, `closed after ${elapsed} ms, before the 1 s handshake timeout`);
    assert.ok(elapsed < 5_000, `closed after ${elapsed} ms, far beyond the 1 s handshake timeout`);
    assert.equal(HANDSHAKE_CANCELED, '{"error":"Handshake was canceled."}');
    await assertBystanderUnaffected(by);
  });

  e2eTest('a partial handshake (no record separator) also times out', async () => {
    const by = await bystander();
    const raw = await openRaw();
    raw.send('{"protocol":"json",');
    await assertClosedAfter(raw, [HANDSHAKE_CANCELED]);
    await assertBystanderUnaffected(by);
  });
});

describe('messages after the handshake', () => {
  const closingInputs = {
    'malformed JSON': `{"type":1,"invocationId":"1","target":"Echo","arguments":[${RS}`,
    'not an object': `[1,2,3]${RS}`,
    'missing type': `{"invocationId":"1","target":"Echo","arguments":["x"]}${RS}`,
    'type is a string': `{"type":"1","invocationId":"1","target":"Echo","arguments":["x"]}${RS}`,
    'invocation without target': `{"type":1,"invocationId":"1","arguments":["x"]}${RS}`,
    'invocation without arguments': `{"type":1,"invocationId":"1","target":"Echo"}${RS}`,
    'cancel without invocationId': `{"type":5}${RS}`,
  };

  for (const [kind, input] of Object.entries(closingInputs)) {
    e2eTest(`${kind} → Close with error, then the socket closes`, async () => {
      const by = await bystander();
      const raw = await openRaw();
      await raw.handshake();
      raw.send(input);
      await assertClosedAfter(raw, [HANDSHAKE_OK, CLOSE_WITH_ERROR]);
      assert.equal(raw.records.some((r) => r.includes('"type":3')), false, 'no Completion may be sent');
      await assertBystanderUnaffected(by);
    });
  }

  e2eTest('a 1 MiB record (over HUBWIRE_MAX_MESSAGE_SIZE) → Close with error', async () => {
    const by = await bystander();
    const raw = await openRaw();
    await raw.handshake();
    const big = 'x'.repeat(1024 * 1024);
    raw.send(JSON.stringify({ type: 1, invocationId: 'big', target: 'Echo', arguments: [big] }) + RS);
    await assertClosedAfter(raw, [HANDSHAKE_OK, CLOSE_WITH_ERROR]);
    await assertBystanderUnaffected(by);
  });

  e2eTest('a record just under the default 32 KiB limit is accepted', async () => {
    const by = await bystander();
    const raw = await openRaw();
    await raw.handshake();
    const overhead = JSON.stringify({ type: 1, invocationId: 'big', target: 'Echo', arguments: [''] }).length + 1;
    const value = 'y'.repeat(32 * 1024 - overhead - 64);
    const c = await raw.echo(value, 'big');
    assert.equal(c.result, value);
    assert.equal(raw.closed, false);
    await assertBystanderUnaffected(by);
  });

  e2eTest('unknown message type is ignored; the connection stays open', async () => {
    const by = await bystander();
    const raw = await openRaw();
    await raw.handshake();
    raw.send(`{"type":99}${RS}`);
    raw.send(`{"type":99,"invocationId":"zz","whatever":[1,{"a":2}]}${RS}`);
    const c = await raw.echo('still open', 'after-99');
    assert.equal(c.result, 'still open');
    assert.deepEqual(parsed(raw), [{}, { type: 3, invocationId: 'after-99', result: 'still open' }]);
    assert.equal(raw.closed, false);
    await assertBystanderUnaffected(by);
  });

  e2eTest('Completion for an unknown invocation id is ignored; the connection stays usable', async () => {
    const by = await bystander();
    const raw = await openRaw();
    await raw.handshake();
    raw.send(`{"type":3,"invocationId":"no-such-invocation","result":42}${RS}`);
    raw.send(`{"type":3,"invocationId":"no-such-invocation-2","error":"client side error"}${RS}`);
    const c = await raw.echo('usable', 'after-completion');
    assert.equal(c.result, 'usable');
    assert.equal(raw.closed, false);
    await assertBystanderUnaffected(by);
  });

  e2eTest('Ping from the client gets no reply', async () => {
    const by = await bystander();
    const raw = await openRaw();
    await raw.handshake();
    raw.send(`{"type":6}${RS}`);
    raw.send(`{"type":6}${RS}`);
    const c = await raw.echo('after ping', 'p');
    assert.equal(c.result, 'after ping');
    // Nothing but the handshake response and the Completion (messages are processed in order).
    assert.deepEqual(parsed(raw), [{}, { type: 3, invocationId: 'p', result: 'after ping' }]);
    await assertBystanderUnaffected(by);
  });

  e2eTest('several records in one frame and a record split across frames are parsed', async () => {
    const raw = await openRaw();
    await raw.handshake();
    raw.send(
      `{"type":1,"invocationId":"m1","target":"Echo","arguments":[1]}${RS}` +
        `{"type":1,"invocationId":"m2","target":"Echo","arguments":[2]}${RS}`,
    );
    const first = await raw.waitMessage((m) => m.invocationId === 'm1');
    const second = await raw.waitMessage((m) => m.invocationId === 'm2');
    assert.equal(first.result, 1);
    assert.equal(second.result, 2);
    raw.send('{"type":1,"invocationId":"m3",');
    await delay(50);
    raw.send(`"target":"Echo","arguments":[3]}${RS}`);
    const third = await raw.waitMessage((m) => m.invocationId === 'm3');
    assert.equal(third.result, 3);
    assert.equal(raw.closed, false);
  });

  e2eTest('an invocation without invocationId (send) gets no Completion', async () => {
    const raw = await openRaw();
    await raw.handshake();
    raw.send(`{"type":1,"target":"Echo","arguments":["fire and forget"]}${RS}`);
    const c = await raw.echo('next', 'n');
    assert.equal(c.result, 'next');
    assert.deepEqual(parsed(raw), [{}, { type: 3, invocationId: 'n', result: 'next' }]);
  });

  e2eTest('abruptly dropped sockets do not disturb other clients', async () => {
    const by = await bystander();
    const raws = await Promise.all([openRaw(), openRaw(), openRaw()]);
    await raws[0].handshake();
    raws[0].send(`{"type":4,"invocationId":"s","target":"Stream","arguments":[1000,10]}${RS}`);
    await raws[0].waitMessage((m) => m.type === 2);
    await raws[1].handshake();
    raws[2].send('{"protocol":"js');
    for (const r of raws) r.terminate();
    await Promise.all(raws.map((r) => r.waitClosed()));
    await assertBystanderUnaffected(by);
  });
});

describe('keep-alive and client timeout (HUBWIRE_KEEP_ALIVE_SECS=1, HUBWIRE_CLIENT_TIMEOUT_SECS=3)', () => {
  e2eTest('server sends {"type":6} pings', async () => {
    const raw = await openRaw(timersNode);
    await raw.handshake();
    // Keep the connection alive from our side (client timeout is 3 s).
    raw.send(`{"type":6}${RS}`);
    const timer = setInterval(() => raw.send(`{"type":6}${RS}`), 500);
    try {
      const rec = await raw.nextRecord({ timeout: 4_000, what: 'server Ping' });
      assert.equal(rec, PING);
      const rec2 = await raw.nextRecord({ timeout: 4_000, what: 'second server Ping' });
      assert.equal(rec2, PING);
    } finally {
      clearInterval(timer);
    }
  });

  e2eTest('a silent client is closed after the client timeout', async () => {
    const by = await bystander(timersNode);
    const raw = await openRaw(timersNode);
    await raw.handshake();
    // One Ping like the official client sends after its handshake (ASP.NET Core
    // arms the client timeout on the first Ping), then silence.
    raw.send(`{"type":6}${RS}`);
    const started = Date.now();
    await raw.waitClosed(12_000);
    const elapsed = Date.now() - started;
    const nonPing = raw.records.filter((r) => r !== PING);
    assert.deepEqual(nonPing, [HANDSHAKE_OK, CLOSE_CLIENT_TIMEOUT], `server sent ${JSON.stringify(allText(raw))}`);
    assert.equal(raw.records[raw.records.length - 1], CLOSE_CLIENT_TIMEOUT, 'the Close message must be the last record');
    assert.ok(elapsed >= 2_500, `closed after ${elapsed} ms, before the 3 s client timeout`);
    await assertBystanderUnaffected(by);
  });

  e2eTest('a client that keeps sending pings is not timed out', async () => {
    const raw = await openRaw(timersNode);
    await raw.handshake();
    const timer = setInterval(() => raw.send(`{"type":6}${RS}`), 500);
    try {
      await delay(4_500);
      assert.equal(raw.closed, false, 'client was timed out although it kept sending pings');
      const c = await raw.echo('alive');
      assert.equal(c.result, 'alive');
    } finally {
      clearInterval(timer);
    }
    assert.equal(raw.records.filter((r) => r !== PING && r !== HANDSHAKE_OK && !r.includes('"type":3')).length, 0);
  });

  e2eTest('the official client stays connected across several keep-alive periods', async () => {
    const conn = await connect(timersNode, { keepAliveMs: 1000, serverTimeoutMs: 5_000 });
    await delay(4_000);
    assert.deepEqual(conn.closeEvents, []);
    assert.equal(await conn.invoke('Echo', 'alive'), 'alive');
  });
});
