// Message routing through the diagnostics hub: all / others / caller / group /
// others-in-group / user / connection, across several users and a mix of JSON
// and MessagePack clients (so the server's per-protocol encoding is covered).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { before } from 'node:test';

import { connect, delay, e2eTest, record, startNode, stopAllNodesAfter } from './harness.mjs';

stopAllNodesAfter();

let node;
before(async () => {
  node = await startNode({ name: 'routing' });
});

/** Grace period used only for negative assertions ("did NOT receive"). */
const GRACE_MS = 300;

/** A payload that exercises both protocols' encoders. */
const payload = (tag) => ({
  tag,
  text: 'grüße ✓',
  n: 7,
  f: 0.5,
  neg: -3,
  ok: true,
  none: null,
  list: [1, [2, 3], { four: 4 }],
  nested: { a: { b: ['c'] } },
});

/**
 * Five connections across three users, mixed protocols:
 *   a1 alice json, a2 alice messagepack,
 *   b1 bob messagepack, b2 bob json,
 *   c1 carol json
 * Every connection records client method `method`.
 */
async function setupClients(method) {
  const specs = [
    ['a1', 'alice', 'json'],
    ['a2', 'alice', 'messagepack'],
    ['b1', 'bob', 'messagepack'],
    ['b2', 'bob', 'json'],
    ['c1', 'carol', 'json'],
  ];
  const clients = {};
  await Promise.all(
    specs.map(async ([label, user, protocol]) => {
      // Admins: SendToAll / SendToOthers and sends to other users need the role.
      const conn = await connect(node, { user, protocol, roles: ['admin'] });
      conn.label = label;
      const me = await conn.invoke('WhoAmI');
      clients[label] = { label, user, protocol, conn, id: me.connectionId, rec: record(conn, method) };
    }),
  );
  return clients;
}

/**
 * Asserts that exactly the `expected` labels receive `value` once each and that
 * every other client receives nothing within the grace period.
 */
async function assertDelivery(clients, expected, value) {
  const all = Object.keys(clients);
  for (const label of expected) {
    const items = await clients[label].rec.wait(1);
    assert.deepEqual(items[0], value, `${label} received a different payload`);
  }
  await delay(GRACE_MS);
  for (const label of all) {
    const got = clients[label].rec.items.length;
    if (expected.includes(label)) {
      assert.equal(got, 1, `${label} must receive the message exactly once, got ${got}`);
    } else {
      assert.equal(got, 0, `${label} must NOT receive the message, got ${JSON.stringify(clients[label].rec.items)}`);
    }
  }
  for (const label of all) clients[label].rec.items.length = 0;
}

/** Void hub methods complete with no result (ASP.NET Core sends `"result":null`). */
const assertVoid = (result) => assert.ok(result === null || result === undefined, `expected no result, got ${JSON.stringify(result)}`);

const uniqueMethod = (base) => `${base}_${crypto.randomBytes(3).toString('hex')}`;
const uniqueGroup = (base) => `${base}-${crypto.randomBytes(3).toString('hex')}`;

async function noCloses(clients) {
  for (const c of Object.values(clients)) {
    assert.equal(c.conn.closeEvents.length, 0, `${c.label} was closed unexpectedly`);
  }
}

e2eTest('SendToAll reaches every connection including the caller', async () => {
  const method = uniqueMethod('all');
  const clients = await setupClients(method);
  const value = payload('all');
  assertVoid(await clients.a2.conn.invoke('SendToAll', method, value));
  await assertDelivery(clients, ['a1', 'a2', 'b1', 'b2', 'c1'], value);
  await noCloses(clients);
});

e2eTest('SendToOthers excludes only the caller', async () => {
  const method = uniqueMethod('others');
  const clients = await setupClients(method);
  const value = payload('others');
  await clients.c1.conn.invoke('SendToOthers', method, value);
  await assertDelivery(clients, ['a1', 'a2', 'b1', 'b2'], value);
  // Same from a MessagePack caller.
  const value2 = payload('others-mp');
  await clients.b1.conn.invoke('SendToOthers', method, value2);
  await assertDelivery(clients, ['a1', 'a2', 'b2', 'c1'], value2);
});

e2eTest('SendToCaller reaches only the calling connection', async () => {
  const method = uniqueMethod('caller');
  const clients = await setupClients(method);
  const value = payload('caller');
  await clients.b1.conn.invoke('SendToCaller', method, value);
  await assertDelivery(clients, ['b1'], value);
  await clients.b2.conn.invoke('SendToCaller', method, value);
  await assertDelivery(clients, ['b2'], value);
});

e2eTest('SendToGroup reaches exactly the members (mixed json/messagepack), including from a non-member', async () => {
  const method = uniqueMethod('group');
  const group = uniqueGroup('g');
  const clients = await setupClients(method);
  for (const label of ['a1', 'b1', 'c1']) {
    assertVoid(await clients[label].conn.invoke('JoinGroup', group));
  }
  // Sender b2 is not a member.
  const value = payload('group');
  await clients.b2.conn.invoke('SendToGroup', group, method, value);
  await assertDelivery(clients, ['a1', 'b1', 'c1'], value);
  // A member sending to its own group also receives it.
  const value2 = payload('group-member');
  await clients.b1.conn.invoke('SendToGroup', group, method, value2);
  await assertDelivery(clients, ['a1', 'b1', 'c1'], value2);
  // Joining twice does not duplicate delivery.
  await clients.a1.conn.invoke('JoinGroup', group);
  const value3 = payload('group-twice');
  await clients.c1.conn.invoke('SendToGroup', group, method, value3);
  await assertDelivery(clients, ['a1', 'b1', 'c1'], value3);
  // A group nobody joined delivers nothing.
  await clients.c1.conn.invoke('SendToGroup', uniqueGroup('empty'), method, payload('nobody'));
  await assertDelivery(clients, [], null);
  await noCloses(clients);
});

e2eTest('groups are independent of each other', async () => {
  const method = uniqueMethod('groups');
  const g1 = uniqueGroup('g1');
  const g2 = uniqueGroup('g2');
  const clients = await setupClients(method);
  await clients.a1.conn.invoke('JoinGroup', g1);
  await clients.a2.conn.invoke('JoinGroup', g2);
  await clients.b1.conn.invoke('JoinGroup', g1);
  await clients.b1.conn.invoke('JoinGroup', g2);
  const v1 = payload('g1');
  await clients.c1.conn.invoke('SendToGroup', g1, method, v1);
  await assertDelivery(clients, ['a1', 'b1'], v1);
  const v2 = payload('g2');
  await clients.c1.conn.invoke('SendToGroup', g2, method, v2);
  await assertDelivery(clients, ['a2', 'b1'], v2);
});

e2eTest('SendToOthersInGroup excludes the caller and non-members', async () => {
  const method = uniqueMethod('othersInGroup');
  const group = uniqueGroup('oig');
  const clients = await setupClients(method);
  for (const label of ['a1', 'a2', 'b1', 'c1']) await clients[label].conn.invoke('JoinGroup', group);
  const value = payload('oig');
  await clients.a1.conn.invoke('SendToOthersInGroup', group, method, value);
  // a2 is the same user as the caller but a different connection: it receives it.
  await assertDelivery(clients, ['a2', 'b1', 'c1'], value);
  const value2 = payload('oig-mp');
  await clients.b1.conn.invoke('SendToOthersInGroup', group, method, value2);
  await assertDelivery(clients, ['a1', 'a2', 'c1'], value2);
});

e2eTest('LeaveGroup stops delivery to that connection only', async () => {
  const method = uniqueMethod('leave');
  const group = uniqueGroup('leave');
  const clients = await setupClients(method);
  for (const label of ['a1', 'b1', 'b2', 'c1']) await clients[label].conn.invoke('JoinGroup', group);
  const before = payload('before-leave');
  await clients.a2.conn.invoke('SendToGroup', group, method, before);
  await assertDelivery(clients, ['a1', 'b1', 'b2', 'c1'], before);

  assertVoid(await clients.b1.conn.invoke('LeaveGroup', group));
  const after = payload('after-leave');
  await clients.a2.conn.invoke('SendToGroup', group, method, after);
  await assertDelivery(clients, ['a1', 'b2', 'c1'], after);

  // Leaving a group one is not in is harmless.
  await clients.a2.conn.invoke('LeaveGroup', group);
  await clients.a2.conn.invoke('LeaveGroup', uniqueGroup('never-joined'));
  const again = payload('after-noop-leave');
  await clients.c1.conn.invoke('SendToGroup', group, method, again);
  await assertDelivery(clients, ['a1', 'b2', 'c1'], again);
  await noCloses(clients);
});

e2eTest('a stopped connection is removed from its groups', async () => {
  const method = uniqueMethod('stopped');
  const group = uniqueGroup('stopped');
  const clients = await setupClients(method);
  await clients.a1.conn.invoke('JoinGroup', group);
  await clients.c1.conn.invoke('JoinGroup', group);
  await clients.a1.conn.stop();
  const value = payload('after-stop');
  await clients.b2.conn.invoke('SendToGroup', group, method, value);
  const rest = Object.fromEntries(Object.entries(clients).filter(([k]) => k !== 'a1'));
  await assertDelivery(rest, ['c1'], value);
});

e2eTest('SendToUser reaches all connections of that user and only them', async () => {
  const method = uniqueMethod('user');
  const clients = await setupClients(method);
  const value = payload('to-bob');
  await clients.a1.conn.invoke('SendToUser', 'bob', method, value);
  await assertDelivery(clients, ['b1', 'b2'], value);
  // A user may message itself: all of its connections, including the caller.
  const value2 = payload('to-alice');
  await clients.a2.conn.invoke('SendToUser', 'alice', method, value2);
  await assertDelivery(clients, ['a1', 'a2'], value2);
  // Unknown user: nobody.
  await clients.c1.conn.invoke('SendToUser', 'nobody-with-this-id', method, payload('nobody'));
  await assertDelivery(clients, [], null);
});

e2eTest('SendToConnection reaches only that connection', async () => {
  const method = uniqueMethod('conn');
  const clients = await setupClients(method);
  const value = payload('to-a2');
  await clients.c1.conn.invoke('SendToConnection', clients.a2.id, method, value);
  await assertDelivery(clients, ['a2'], value);
  const value2 = payload('to-b2');
  await clients.b1.conn.invoke('SendToConnection', clients.b2.id, method, value2);
  await assertDelivery(clients, ['b2'], value2);
  // Unknown connection id: nobody, and the invocation still completes.
  assertVoid(await clients.b1.conn.invoke('SendToConnection', 'no-such-connection', method, value2));
  await assertDelivery(clients, [], null);
  await noCloses(clients);
});

e2eTest('many messages to a group arrive complete and in order for every protocol', async () => {
  const method = uniqueMethod('order');
  const group = uniqueGroup('order');
  const clients = await setupClients(method);
  const members = ['a1', 'a2', 'b1', 'c1'];
  for (const label of members) await clients[label].conn.invoke('JoinGroup', group);
  const N = 50;
  for (let i = 0; i < N; i++) {
    await clients.b2.conn.invoke('SendToGroup', group, method, { i, tag: 'seq' });
  }
  for (const label of members) {
    const items = await clients[label].rec.wait(N);
    assert.deepEqual(
      items.map((x) => x.i),
      Array.from({ length: N }, (_, i) => i),
      `${label} received messages out of order`,
    );
  }
  await delay(GRACE_MS);
  assert.equal(clients.b2.rec.items.length, 0);
  for (const label of members) assert.equal(clients[label].rec.items.length, N);
});
