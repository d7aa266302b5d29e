// Clients that stop reading (issue 7, point 2): they are closed as slow,
// counted in /metrics, their queued bytes and their per-user places are given
// back, and other clients' round trips go on meanwhile.

import assert from 'node:assert/strict';
import { afterEach } from 'node:test';

import { connect, delay, e2eTest, startNode, stopAllNodesAfter, waitFor } from './harness.mjs';
import {
  clientFrame,
  destroyRawSockets,
  metric,
  metricSum,
  openUpgrade,
  signalrHandshake,
  textRecord,
} from './raw-upgrade.mjs';

stopAllNodesAfter();
afterEach(destroyRawSockets);

const PAYLOAD = 'x'.repeat(30_000);
const sendToCaller = textRecord({ type: 1, target: 'SendToCaller', arguments: ['Big', PAYLOAD] });

/**
 * A connection of `user` that completes its handshake, then stops reading and
 * invokes SendToCaller with 30 KB payloads: `invocations` of them, then only
 * WebSocket pings, until the server closes the socket (a write to a socket
 * the server closed is reset, which is how a paused client notices).
 */
async function slowReader(node, user, invocations) {
  const upgrade = await openUpgrade(node, { token: node.token({ sub: user }) });
  assert.equal(upgrade.status, 101, upgrade.head);
  await signalrHandshake(upgrade);
  upgrade.socket.pause();
  (async () => {
    for (let i = 0; !upgrade.isClosed; i++) {
      upgrade.socket.write(i < invocations ? sendToCaller : clientFrame(0x9, 'still here'));
      // Yield to the event loop now and then, so that a reset is noticed.
      if (i % 10 === 0 || i >= invocations) await delay(i < invocations ? 5 : 200);
    }
  })();
  return upgrade;
}

const connections = (node) => metricSum(node, 'hubwire_connections', 'hub="diagnostics"');
const queuedBytes = (node) => metric(node, 'hubwire_outbound_queued_bytes');
const slowClosed = (node, reason) =>
  metric(node, 'hubwire_slow_connections_closed_total', `hub="diagnostics",reason="${reason}"`);

e2eTest('five slow readers of one user are closed, give back their memory and places, and a bystander keeps its round trips', async () => {
  // A write timeout far beyond the test's bounds: the sockets close only if
  // the queue's byte bound closes them and that close wins over the writes
  // blocked on their full sockets.
  const node = await startNode({
    name: 'slow-readers',
    env: { HUBWIRE_DIAGNOSTICS_HUB: 'true', HUBWIRE_WRITE_TIMEOUT_SECS: '600' },
  });
  const bystander = await connect(node, { user: 'bystander' });
  assert.equal(await bystander.invoke('Echo', 'before'), 'before');
  const baseline = await queuedBytes(node);

  const slow = [];
  for (let i = 0; i < 5; i++) slow.push(await slowReader(node, 'slowpoke', Number.POSITIVE_INFINITY));
  // The bystander's round trips are answered while the five flood the node.
  for (let i = 0; i < 20; i++) assert.equal(await bystander.invoke('Echo', `during ${i}`), `during ${i}`);

  await Promise.all(slow.map((s) => s.waitClosed(30_000)));
  await waitFor(async () => (await connections(node)) === 1, { timeout: 10_000, what: 'only the bystander left' });
  assert.equal(await metricSum(node, 'hubwire_slow_connections_closed_total'), 5, 'each counted once as slow');
  assert.equal(await slowClosed(node, 'queue_bytes'), 5, 'by the byte bound of the default configuration');
  await waitFor(async () => (await queuedBytes(node)) === baseline, {
    timeout: 10_000,
    what: `queued bytes back at the baseline (${baseline})`,
  });

  // The user's five places were given back: five new connections are accepted.
  const again = [];
  for (let i = 0; i < 5; i++) again.push(await connect(node, { user: 'slowpoke' }));
  assert.equal(await again[4].invoke('Echo', 'back'), 'back');
  assert.equal(await bystander.invoke('Echo', 'after'), 'after');
});

e2eTest('a client that stops reading is closed once a write makes no progress for the write timeout', async () => {
  // A queue that never fills: only the write timeout can notice this client.
  const node = await startNode({
    name: 'write-timeout',
    env: {
      HUBWIRE_DIAGNOSTICS_HUB: 'true',
      HUBWIRE_WRITE_TIMEOUT_SECS: '2',
      HUBWIRE_OUTBOUND_QUEUE_BYTES: String(1 << 30),
    },
  });
  const bystander = await connect(node, { user: 'bystander' });
  // 12 MB: more than the kernel buffers of both ends take, so the writer blocks.
  const stuck = await slowReader(node, 'stuck', 400);
  await stuck.waitClosed(30_000);
  assert.equal(await bystander.invoke('Echo', 'unaffected'), 'unaffected');
  await waitFor(async () => (await slowClosed(node, 'write_timeout')) === 1, {
    timeout: 10_000,
    what: 'the write timeout counted',
  });
  assert.equal(await slowClosed(node, 'queue_bytes'), 0);
  await waitFor(async () => (await connections(node)) === 1, { timeout: 10_000, what: 'only the bystander left' });
  assert.equal(await queuedBytes(node), 0, 'its queue was given back');
});
