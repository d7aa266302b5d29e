// Admission before the 101 (issue 7, point 3): a node-wide cap derived from
// the open-file limit, caps on handshakes in progress (overall and per
// address), the per-user limit, and the handshake record cap. Refusals are
// HTTP statuses with a short text, counted in /metrics, while /healthz and
// existing connections keep working.

import assert from 'node:assert/strict';
import { afterEach } from 'node:test';

import { connect, e2eTest, startNode, stopAllNodesAfter, waitFor, withTimeout } from './harness.mjs';
import { clientFrame, destroyRawSockets, metric, openUpgrade, signalrHandshake } from './raw-upgrade.mjs';

stopAllNodesAfter();
afterEach(destroyRawSockets);

const DIAGNOSTICS = { HUBWIRE_DIAGNOSTICS_HUB: 'true' };

/** An upgrade of `user` that never sends its SignalR handshake. */
const holdHandshake = (node, user) => openUpgrade(node, { token: node.token({ sub: user }) });

/** The refusal body (the response is complete once the server closed the socket). */
async function refusalBody(upgrade) {
  await upgrade.waitClosed(5_000);
  return upgrade.received().toString('utf8');
}

async function healthz(node) {
  const res = await withTimeout(fetch(`${node.baseUrl}/healthz`), 5_000, 'GET /healthz');
  return res.status;
}

const refused = (node, reason) => metric(node, 'hubwire_connections_refused_total', `reason="${reason}"`);

e2eTest('with 256 open files, held handshakes fill the node up to its cap; later ones get 503 while /healthz and existing connections work', async () => {
  // Only the node-wide cap acts here: 256 open files - 64 reserved = 192 sockets.
  const node = await startNode({
    name: 'few-files',
    openFiles: 256,
    env: { ...DIAGNOSTICS, HUBWIRE_MAX_HANDSHAKES: '0', HUBWIRE_MAX_HANDSHAKES_PER_IP: '0' },
  });
  const resident = await connect(node, { user: 'resident' });

  const flood = [];
  for (let i = 0; i < 250; i++) flood.push(await holdHandshake(node, `flood-${i}`));
  const held = flood.filter((u) => u.status === 101);
  const refusedUpgrades = flood.filter((u) => u.status !== 101);
  assert.equal(await metric(node, 'hubwire_websocket_sockets'), 192, 'the cap is open files minus 64');
  assert.equal(held.length, 191, 'every place but the resident connection went to the flood');
  for (const upgrade of refusedUpgrades) {
    assert.equal(upgrade.status, 503, upgrade.head);
    assert.equal(await refusalBody(upgrade), 'The server is at its connection limit.');
  }
  assert.equal(await refused(node, 'node_full'), refusedUpgrades.length);

  // The node still answers: health, existing connections; a newcomer is refused cleanly.
  assert.equal(await healthz(node), 200);
  assert.equal(await resident.invoke('Echo', 'still here'), 'still here');
  const newcomer = await holdHandshake(node, 'newcomer');
  assert.equal(newcomer.status, 503);

  // Once the flood is gone, everyone else gets in again.
  for (const upgrade of held) upgrade.socket.destroy();
  await waitFor(async () => (await metric(node, 'hubwire_websocket_sockets')) === 1, {
    timeout: 10_000,
    what: 'the flood to leave',
  });
  const other = await connect(node, { user: 'other' });
  assert.equal(await other.invoke('Echo', 'in'), 'in');
  assert.equal(await healthz(node), 200);
});

e2eTest('handshakes in progress are capped per address (429) and overall (503), and a completed handshake frees its place', async () => {
  const perIp = await startNode({ name: 'per-ip', env: { ...DIAGNOSTICS, HUBWIRE_MAX_HANDSHAKES_PER_IP: '10' } });
  const resident = await connect(perIp, { user: 'resident' });
  const held = [];
  for (let i = 0; i < 10; i++) held.push(await holdHandshake(perIp, `user-${i}`));
  assert.deepEqual(
    held.map((u) => u.status),
    Array(10).fill(101),
  );
  const eleventh = await holdHandshake(perIp, 'user-10');
  assert.equal(eleventh.status, 429, eleventh.head);
  assert.equal(await refusalBody(eleventh), 'Too many handshakes from this address.');
  assert.equal(await refused(perIp, 'handshakes_per_ip'), 1);
  assert.equal(await metric(perIp, 'hubwire_handshakes_in_progress'), 10);
  assert.equal(await healthz(perIp), 200);
  assert.equal(await resident.invoke('Echo', 'ok'), 'ok');
  await signalrHandshake(held[0]);
  const next = await holdHandshake(perIp, 'user-11');
  assert.equal(next.status, 101, 'a completed handshake gave its place back');

  const overall = await startNode({
    name: 'overall',
    env: { ...DIAGNOSTICS, HUBWIRE_MAX_HANDSHAKES: '5', HUBWIRE_MAX_HANDSHAKES_PER_IP: '0' },
  });
  for (let i = 0; i < 5; i++) assert.equal((await holdHandshake(overall, `user-${i}`)).status, 101);
  const sixth = await holdHandshake(overall, 'user-5');
  assert.equal(sixth.status, 503, sixth.head);
  assert.equal(await refusalBody(sixth), 'Too many connections are being opened.');
  assert.equal(await refused(overall, 'handshakes'), 1);
  assert.equal(await healthz(overall), 200);
});

e2eTest('a user at its connection limit is refused with 429 before the 101, handshakes in progress counted', async () => {
  const node = await startNode({ name: 'user-limit', env: DIAGNOSTICS });
  const bystander = await connect(node, { user: 'bystander' });
  for (let i = 0; i < 5; i++) assert.equal((await holdHandshake(node, 'heavy')).status, 101);
  const sixth = await holdHandshake(node, 'heavy');
  assert.equal(sixth.status, 429, sixth.head);
  assert.equal(await refusalBody(sixth), 'The user already has the maximum number of connections.');
  assert.equal(await refused(node, 'user_limit'), 1);
  assert.equal(await bystander.invoke('Echo', 'fine'), 'fine');
  destroyRawSockets();
  // The places held by handshakes are given back when their sockets go.
  const heavy = await waitFor(
    async () => {
      const upgrade = await holdHandshake(node, 'heavy');
      return upgrade.status === 101 ? upgrade : null;
    },
    { timeout: 10_000, what: 'the places of the dropped handshakes' },
  );
  await signalrHandshake(heavy);
});

e2eTest('a handshake request over the handshake size cap ends the connection with a handshake error', async () => {
  const node = await startNode({ name: 'handshake-size', env: DIAGNOSTICS });
  const upgrade = await holdHandshake(node, 'chatty');
  assert.equal(upgrade.status, 101);
  // 5,000 bytes of a handshake that never ends (the cap is 4,096).
  upgrade.socket.write(clientFrame(0x1, `{"protocol":"json","version":1,"padding":"${'p'.repeat(5_000)}`));
  await upgrade.waitClosed(10_000);
  assert.match(upgrade.received().toString('latin1'), /An unexpected error occurred during connection handshake\./);
  assert.equal(await healthz(node), 200);
});
