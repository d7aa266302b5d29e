// Graceful shutdown (SIGTERM), in the order node/src/web/http.rs writes down:
// refuse new connections, tell every client to reconnect (Close with
// allowReconnect: true) — also one whose handshake completes during the drain —
// wait for them to leave, leave the cluster, exit.

import assert from 'node:assert/strict';
import { after, describe } from 'node:test';

import {
  connect,
  e2eTest,
  rawWs,
  startCluster,
  startNode,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
} from './harness.mjs';

stopAllNodesAfter();

describe('graceful shutdown', () => {
  e2eTest('SIGTERM closes every client with allowReconnect, then the node exits cleanly', async () => {
    const node = await startNode({ name: 'shutdown' });
    const raw = await rawWs(node, `/hubs/diagnostics?access_token=${node.token({ sub: 'raw' })}`);
    await raw.handshake();
    const client = await connect(node, { user: 'official' });
    const closed = new Promise((resolve) => client.onclose((error) => resolve(error)));

    const stopping = node.stop();
    const close = await raw.waitMessage((m) => m.type === 7, { what: 'Close message' });
    assert.deepEqual(close, { type: 7, error: 'Server is shutting down.', allowReconnect: true });
    // The official client without automatic reconnect reports the server's error.
    const error = await closed;
    assert.match(String(error), /Server is shutting down\./);
    await stopping;
    assert.equal(node.exitCode, 0, 'exits with status 0');
    assert.equal(node.exitSignal ?? null, null, 'exits by itself, not killed');
  });

  e2eTest('a handshake completed during the drain is answered, then closed with allowReconnect', async () => {
    // A long drain: only the late connection's own departure can end it early.
    const node = await startNode({ name: 'shutdown-late', env: { HUBWIRE_SHUTDOWN_TIMEOUT_SECS: '30' } });
    const lingerer = await connect(node, { user: 'lingerer' });
    // Upgraded (101) before the signal, SignalR handshake not sent yet.
    const late = await rawWs(node, `/hubs/diagnostics?access_token=${node.token({ sub: 'late' })}`);
    lingerer.onclose(() => {});
    const stopping = node.stop();
    await waitFor(async () => (await fetch(`${node.baseUrl}/readyz`)).status === 503, {
      what: '/readyz says the node is draining',
    });
    assert.equal(
      (await fetch(`${node.baseUrl}/hubs/diagnostics/negotiate?negotiateVersion=1`, { method: 'POST' })).status,
      503,
      'negotiate is refused during the drain',
    );
    await late.handshake();
    const close = await late.waitMessage((m) => m.type === 7, { what: 'Close message for the late handshake' });
    assert.deepEqual(close, { type: 7, error: 'Server is shutting down.', allowReconnect: true });
    await late.waitClosed();
    // Every connection gone: the drain ends by itself, long before its 30 s.
    await withTimeout(stopping, 10_000, 'the node exits once the late connection left');
    assert.equal(node.exitCode, 0, 'exits with status 0');
  });

  describe('in a cluster', () => {
    let redis;
    after(async () => redis?.stop());

    e2eTest('a stopped node leaves the keyspace at once (no dead-node sweep needed)', async () => {
      redis = await startRedis({ name: 'shutdown' });
      // A long dead-node timeout: only the node's own leaving can explain a fast cleanup.
      const { nodes: [n1, n2] } = await startCluster(redis, {
        size: 2,
        name: 'shutdown',
        env: { HUBWIRE_NODE_DEAD_AFTER_MS: '600000' },
      });
      await connect(n2, { user: 'leaver' });
      const count = async () => {
        const res = await fetch(`${n1.baseUrl}/api/hubs/diagnostics/count`, {
          headers: { Authorization: `Bearer ${n1.token({ sub: 'ops', roles: ['admin'] })}` },
        });
        return (await res.json()).connections;
      };
      await waitFor(async () => (await count()) === 1, { what: 'the connection on node 2 is listed' });
      await n2.stop();
      await waitFor(async () => (await count()) === 0, { timeout: 5_000, what: 'node 2 left the keyspace' });
      await n1.stop();
    });
  });
});
