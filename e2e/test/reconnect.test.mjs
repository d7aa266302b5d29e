// withAutomaticReconnect across a node crash: the node is SIGKILLed and a new
// node is started on the same port with the same secret; the official client
// must go through onreconnecting → onreconnected and work again.

import assert from 'node:assert/strict';

import {
  connect,
  e2eTest,
  freePort,
  record,
  startNode,
  stopAllNodesAfter,
  waitFor,
  HubConnectionState,
} from './harness.mjs';

stopAllNodesAfter();

/** 0, 500 ms, then 1 s steps: ~20 s of retries before the client gives up. */
const RECONNECT_DELAYS = [0, 500, ...Array(20).fill(1000)];

for (const protocol of ['json', 'messagepack']) {
  e2eTest(`${protocol}: automatic reconnect after the node is killed and restarted on the same port`, async () => {
    const port = await freePort();
    const first = await startNode({ name: `reconnect-${protocol}-1`, port });
    assert.equal(first.port, port);

    // An admin: its SendToUser to bob below needs the role.
    const conn = await connect(first, { protocol, user: 'alice', roles: ['admin'], reconnectDelays: RECONNECT_DELAYS });
    const observer = await connect(first, { protocol: 'json', user: 'bob', reconnectDelays: RECONNECT_DELAYS });
    const before = await conn.invoke('WhoAmI');
    assert.equal(before.connectionId, conn.connectionId);
    assert.equal(await conn.invoke('Echo', 'before crash'), 'before crash');

    await first.kill();

    await waitFor(() => conn.reconnectingEvents.length > 0, { timeout: 10_000, what: 'onreconnecting' });
    assert.equal(conn.state, HubConnectionState.Reconnecting);
    assert.equal(conn.reconnectedEvents.length, 0, 'onreconnected must not fire before the node is back');

    // Same port, same secret (tokens minted for the first node stay valid), same data dir.
    const second = await startNode({
      name: `reconnect-${protocol}-2`,
      port,
      secret: first.secret,
      accessKey: first.accessKey,
      dataDir: first.dataDir,
    });
    assert.equal(second.port, port);

    await waitFor(() => conn.reconnectedEvents.length > 0, { timeout: 20_000, what: 'onreconnected' });
    await waitFor(() => observer.reconnectedEvents.length > 0, { timeout: 20_000, what: 'observer onreconnected' });
    assert.equal(conn.state, HubConnectionState.Connected);
    assert.equal(conn.reconnectingEvents.length, 1, 'exactly one onreconnecting');
    assert.equal(conn.reconnectedEvents.length, 1, 'exactly one onreconnected');
    assert.deepEqual(conn.closeEvents, [], 'onclose must not fire');

    // The connection id changes and Echo works again.
    const newId = conn.reconnectedEvents[0];
    assert.equal(typeof newId, 'string');
    assert.notEqual(newId, before.connectionId, 'the connection id must change after reconnecting');
    assert.equal(conn.connectionId, newId);
    assert.equal(await conn.invoke('Echo', 'after restart'), 'after restart');
    const after = await conn.invoke('WhoAmI');
    assert.equal(after.connectionId, newId);
    assert.equal(after.userId, 'alice');
    assert.equal(after.protocol, protocol);

    // Routing works on the new node for reconnected clients.
    const rec = record(observer, 'ping_after_restart');
    await conn.invoke('SendToUser', 'bob', 'ping_after_restart', { hello: 'bob' });
    const items = await rec.wait(1);
    assert.deepEqual(items[0], { hello: 'bob' });
  });
}
