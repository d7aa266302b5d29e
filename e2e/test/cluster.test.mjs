// A cluster of three hubwire-nodes joined by one Redis (a unique key prefix
// per cluster, the same JWT secret and access key on every node), driven by
// official @microsoft/signalr clients (JSON and MessagePack) spread over the
// three nodes: hub-method and REST sends reach exactly their recipients on
// every node, group membership made through any node holds everywhere,
// listings and counts agree on every node, `UserOffline` is announced once
// cluster-wide, and a Redis outage leaves local delivery working, turns
// `/readyz` to 503 and heals on its own once Redis is back.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe } from 'node:test';

import {
  closeAllClients,
  connect,
  delay,
  e2eTest,
  record,
  startCluster,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
  accessToken,
} from './harness.mjs';

stopAllNodesAfter();

/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 400;
const API_VERSION = '2022-06-01';
/** Short liveness settings so that outages and dead nodes are noticed quickly. */
const LIVENESS = { HUBWIRE_NODE_HEARTBEAT_MS: '300', HUBWIRE_NODE_DEAD_AFTER_MS: '2000' };

const unique = (name) => `${name}-${crypto.randomBytes(3).toString('hex')}`;
/** .NET's Uri.EscapeDataString, as the Management SDK escapes path segments. */
const escape = (s) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * One Redis and three nodes for the enclosing describe block; stopped after it.
 * Returns an object filled in by `before`: { redis, prefix, nodes }.
 */
function useCluster(name) {
  const cluster = {};
  before(async () => {
    cluster.redis = await startRedis({ name: `${name}-redis` });
    Object.assign(cluster, await startCluster(cluster.redis, { name, env: LIVENESS }));
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
  });
  return cluster;
}

// ---------------------------------------------------------------------------
// REST API (Azure 2022-06-01 paths, access-key tokens as the Management SDK makes them)
// ---------------------------------------------------------------------------


/**
 * `method` on `/api/hubs/diagnostics{pathAfterHub}` of `node`. `message`
 * ({ target, arguments }) becomes the SDK's JSON body; `query` adds parameters
 * (arrays repeat) that are not part of the token's audience, as the SDK does.
 */
async function rest(node, method, pathAfterHub, { message, query = {} } = {}) {
  const path = `/api/hubs/diagnostics${pathAfterHub}`;
  const fixed = `?api-version=${API_VERSION}`;
  let url = `${node.baseUrl}${path}${fixed}`;
  for (const [k, values] of Object.entries(query)) {
    for (const v of [values].flat()) url += `&${escape(k)}=${escape(String(v))}`;
  }
  const headers = { Authorization: `Bearer ${accessToken(node, `http://127.0.0.1${path}${fixed}`)}` };
  const init = { method, headers };
  if (message) {
    headers['Content-Type'] = 'application/json; charset=utf-8';
    init.body = JSON.stringify({ Target: message.target, Arguments: message.arguments ?? null });
  }
  const res = await withTimeout(fetch(url, init), 5_000, `${method} ${url} on ${node.name}`);
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, code: res.headers.get('x-ms-error-code'), body, text };
}

/** Like `rest`, but asserts the status and returns the body. */
async function restOk(node, method, pathAfterHub, status, opts) {
  const res = await rest(node, method, pathAfterHub, opts);
  assert.equal(res.status, status, `${method} ${pathAfterHub} on ${node.name}: ${res.status} ${res.text}`);
  return res.body;
}

const readyz = async (node) => {
  try {
    const res = await withTimeout(fetch(`${node.baseUrl}/readyz`), 2_000, `/readyz of ${node.name}`);
    await res.text();
    return res.status;
  } catch (err) {
    return `error: ${err.message}`;
  }
};

// ---------------------------------------------------------------------------
// Clients spread over the nodes
// ---------------------------------------------------------------------------

/**
 * Connects one official client per [label, node number (1-3), user, protocol].
 * Each records client method `news` (rec) and `UserOffline` (offline).
 * Returns { label: { label, conn, id, user, node, rec, offline } }.
 */
async function clients(cluster, specs) {
  const out = {};
  await Promise.all(
    specs.map(async ([label, nodeNo, user, protocol = 'json']) => {
      const node = cluster.nodes[nodeNo - 1];
      // Admins: SendToAll / SendToOthers and sends to other users need the role.
      const conn = await connect(node, { user, protocol, roles: ['admin'] });
      conn.label = `${label}@${node.name}`;
      const rec = record(conn, 'news');
      const offline = record(conn, 'UserOffline');
      const me = await conn.invoke('WhoAmI');
      out[label] = { label, conn, id: me.connectionId, user, node, nodeNo, rec, offline };
    }),
  );
  return out;
}

const news = (tag) => ({ tag, text: 'grüße ✓', n: 7, list: [1, { two: 2 }] });
const restNews = (tag) => ({ target: 'news', arguments: [news(tag)] });
const receivedTag = (c, tag) => c.rec.items.filter((item) => item?.tag === tag).length;

/**
 * Waits until every client in `expected` received `news({tag})`, lets a grace
 * period pass, then asserts that exactly those clients received it, once each.
 */
async function assertDelivered(all, tag, expected, { timeout = 5_000 } = {}) {
  await waitFor(() => expected.every((l) => receivedTag(all[l], tag) >= 1), {
    timeout,
    what: `'${tag}' at ${expected.join(', ')} (so far: ${Object.keys(all)
      .filter((l) => receivedTag(all[l], tag) > 0)
      .join(', ')})`,
  });
  await delay(GRACE_MS);
  const got = Object.keys(all).filter((l) => receivedTag(all[l], tag) > 0);
  assert.deepEqual(got.sort(), [...expected].sort(), `recipients of '${tag}'`);
  for (const l of expected) {
    assert.equal(receivedTag(all[l], tag), 1, `'${tag}' must reach ${all[l].conn.label} exactly once`);
    assert.deepEqual(
      all[l].rec.items.find((item) => item?.tag === tag),
      news(tag),
      `payload of '${tag}' at ${all[l].conn.label}`,
    );
  }
}

/**
 * Seven clients, mixed protocols:
 *   node 1: s (sam, the sender, json), a1 (alice, messagepack)
 *   node 2: a2 (alice, json), b1 (bob, messagepack)
 *   node 3: a3 (alice, messagepack), b2 (bob, json), c1 (carol, json)
 */
async function spread(cluster) {
  const [sam, alice, bob, carol] = ['sam', 'alice', 'bob', 'carol'].map(unique);
  const all = await clients(cluster, [
    ['s', 1, sam, 'json'],
    ['a1', 1, alice, 'messagepack'],
    ['a2', 2, alice, 'json'],
    ['b1', 2, bob, 'messagepack'],
    ['a3', 3, alice, 'messagepack'],
    ['b2', 3, bob, 'json'],
    ['c1', 3, carol, 'json'],
  ]);
  return { all, sam, alice, bob, carol };
}

const EVERYONE = ['s', 'a1', 'a2', 'b1', 'a3', 'b2', 'c1'];

const assertVoid = (result) =>
  assert.ok(result === null || result === undefined, `expected no result, got ${JSON.stringify(result)}`);

/** Asserts that no client was closed. */
function noCloses(all) {
  for (const c of Object.values(all)) assert.equal(c.conn.closeEvents.length, 0, `${c.conn.label} was closed`);
}

// ---------------------------------------------------------------------------
// Hub-method sends from node 1
// ---------------------------------------------------------------------------

describe('cluster: hub-method sends from node 1 reach nodes 2 and 3', () => {
  const cluster = useCluster('hubsend');

  e2eTest('SendToGroup reaches the members on every node exactly once, and nobody else', async () => {
    const { all } = await spread(cluster);
    const group = unique('g');
    for (const l of ['a1', 'a2', 'b2', 'c1']) assertVoid(await all[l].conn.invoke('JoinGroup', group));

    assertVoid(await all.s.conn.invoke('SendToGroup', group, 'news', news('from-non-member')));
    await assertDelivered(all, 'from-non-member', ['a1', 'a2', 'b2', 'c1']);

    // A member on node 2 sends to its group (it receives it too).
    await all.a2.conn.invoke('SendToGroup', group, 'news', news('from-member'));
    await assertDelivered(all, 'from-member', ['a1', 'a2', 'b2', 'c1']);

    // Others in group: everyone in it except the caller.
    await all.c1.conn.invoke('SendToOthersInGroup', group, 'news', news('others-in-group'));
    await assertDelivered(all, 'others-in-group', ['a1', 'a2', 'b2']);

    // A member on node 3 leaves: the next send from node 1 skips it.
    assertVoid(await all.b2.conn.invoke('LeaveGroup', group));
    await all.s.conn.invoke('SendToGroup', group, 'news', news('after-leave'));
    await assertDelivered(all, 'after-leave', ['a1', 'a2', 'c1']);
    noCloses(all);
  });

  e2eTest("SendToUser reaches all of the user's connections on every node exactly once", async () => {
    const { all, alice, bob } = await spread(cluster);
    assertVoid(await all.s.conn.invoke('SendToUser', alice, 'news', news('to-alice')));
    await assertDelivered(all, 'to-alice', ['a1', 'a2', 'a3']);
    await all.s.conn.invoke('SendToUser', bob, 'news', news('to-bob'));
    await assertDelivered(all, 'to-bob', ['b1', 'b2']);
    await all.s.conn.invoke('SendToUser', unique('nobody'), 'news', news('to-nobody'));
    await all.s.conn.invoke('SendToUser', bob, 'news', news('marker'));
    await assertDelivered(all, 'marker', ['b1', 'b2']);
    assert.equal(EVERYONE.reduce((n, l) => n + receivedTag(all[l], 'to-nobody'), 0), 0);
    noCloses(all);
  });

  e2eTest('SendToConnection reaches exactly the one connection on another node', async () => {
    const { all } = await spread(cluster);
    assertVoid(await all.s.conn.invoke('SendToConnection', all.b2.id, 'news', news('to-b2')));
    await assertDelivered(all, 'to-b2', ['b2']);
    await all.s.conn.invoke('SendToConnection', all.a2.id, 'news', news('to-a2'));
    await assertDelivered(all, 'to-a2', ['a2']);
    await all.s.conn.invoke('SendToConnection', all.a1.id, 'news', news('to-a1'));
    await assertDelivered(all, 'to-a1', ['a1']);
    assertVoid(await all.s.conn.invoke('SendToConnection', 'no-such-connection', 'news', news('to-none')));
    await all.s.conn.invoke('SendToConnection', all.c1.id, 'news', news('marker'));
    await assertDelivered(all, 'marker', ['c1']);
    assert.equal(EVERYONE.reduce((n, l) => n + receivedTag(all[l], 'to-none'), 0), 0);
  });

  e2eTest('SendToAll and SendToOthers reach every connection on every node exactly once', async () => {
    const { all } = await spread(cluster);
    assertVoid(await all.s.conn.invoke('SendToAll', 'news', news('all')));
    await assertDelivered(all, 'all', EVERYONE);
    assertVoid(await all.s.conn.invoke('SendToOthers', 'news', news('others')));
    await assertDelivered(all, 'others', EVERYONE.filter((l) => l !== 's'));
    // From a MessagePack client on node 3.
    await all.b2.conn.invoke('SendToOthers', 'news', news('others-from-3'));
    await assertDelivered(all, 'others-from-3', EVERYONE.filter((l) => l !== 'b2'));
    noCloses(all);
  });
});

// ---------------------------------------------------------------------------
// REST API across nodes
// ---------------------------------------------------------------------------

describe('cluster: REST API on any node acts on the whole cluster', () => {
  const cluster = useCluster('rest');
  const n = (i) => cluster.nodes[i - 1];

  e2eTest('/readyz is 200 on every node', async () => {
    for (const node of cluster.nodes) assert.equal(await readyz(node), 200, node.name);
  });

  e2eTest('sends through node 1 reach clients on nodes 2 and 3 exactly once (all, except, group, group except, user, connection)', async () => {
    const { all, alice, bob } = await spread(cluster);
    const group = unique('room');
    for (const l of ['a1', 'a2', 'b2', 'c1']) {
      await restOk(n(1), 'PUT', `/groups/${escape(group)}/connections/${escape(all[l].id)}`, 200);
    }

    await restOk(n(1), 'POST', '/:send', 202, { message: restNews('all') });
    await assertDelivered(all, 'all', EVERYONE);

    await restOk(n(1), 'POST', '/:send', 202, { message: restNews('all-except'), query: { excluded: [all.a2.id, all.b2.id] } });
    await assertDelivered(all, 'all-except', ['s', 'a1', 'b1', 'a3', 'c1']);

    await restOk(n(1), 'POST', `/groups/${escape(group)}/:send`, 202, { message: restNews('group') });
    await assertDelivered(all, 'group', ['a1', 'a2', 'b2', 'c1']);

    // Excluding a member held by node 3.
    const except = { message: restNews('group-except'), query: { excluded: [all.c1.id] } };
    await restOk(n(1), 'POST', `/groups/${escape(group)}/:send`, 202, except);
    await assertDelivered(all, 'group-except', ['a1', 'a2', 'b2']);

    await restOk(n(1), 'POST', `/users/${escape(alice)}/:send`, 202, { message: restNews('user-alice') });
    await assertDelivered(all, 'user-alice', ['a1', 'a2', 'a3']);
    await restOk(n(1), 'POST', `/users/${escape(bob)}/:send`, 202, { message: restNews('user-bob') });
    await assertDelivered(all, 'user-bob', ['b1', 'b2']);

    await restOk(n(1), 'POST', `/connections/${escape(all.b2.id)}/:send`, 202, { message: restNews('conn-b2') });
    await assertDelivered(all, 'conn-b2', ['b2']);
    await restOk(n(1), 'POST', `/connections/${escape(all.a2.id)}/:send`, 202, { message: restNews('conn-a2') });
    await assertDelivered(all, 'conn-a2', ['a2']);
    noCloses(all);
  });

  e2eTest('a connection added to a group through another node receives group sends; removal takes effect', async () => {
    const [xena, yuri, zoe] = ['xena', 'yuri', 'zoe'].map(unique);
    const all = await clients(cluster, [
      ['x1', 1, xena, 'messagepack'], // the connection held by node 1
      ['y2', 2, yuri, 'json'], // the sender on node 2
      ['z3', 3, zoe, 'json'], // another member, on node 3
    ]);
    const group = unique('remote-add');
    const membership = (l) => `/groups/${escape(group)}/connections/${escape(all[l].id)}`;

    await restOk(n(3), 'PUT', membership('x1'), 200);
    await all.z3.conn.invoke('JoinGroup', group);
    await all.y2.conn.invoke('SendToGroup', group, 'news', news('after-add'));
    await assertDelivered(all, 'after-add', ['x1', 'z3']);
    // The group exists when asked on any node.
    for (const node of cluster.nodes) await restOk(node, 'HEAD', `/groups/${escape(group)}`, 200);

    // The same through REST on node 2.
    await restOk(n(2), 'POST', `/groups/${escape(group)}/:send`, 202, { message: restNews('rest-after-add') });
    await assertDelivered(all, 'rest-after-add', ['x1', 'z3']);

    await restOk(n(3), 'DELETE', membership('x1'), 200);
    await all.y2.conn.invoke('SendToGroup', group, 'news', news('after-remove'));
    await assertDelivered(all, 'after-remove', ['z3']);

    // Adding an unknown connection fails on every node.
    for (const node of cluster.nodes) {
      const res = await rest(node, 'PUT', `/groups/${escape(group)}/connections/no-such-connection`);
      assert.equal(res.status, 404, node.name);
      assert.equal(res.code, 'Error.Connection.NotExisted', node.name);
    }
    noCloses(all);
  });

  e2eTest("a user added to a group through node 2 joins with the connections on nodes 1 and 3, and with later ones", async () => {
    const [uma, val] = [unique('uma'), unique('val')];
    const all = await clients(cluster, [
      ['u1', 1, uma, 'json'],
      ['u3', 3, uma, 'messagepack'],
      ['v2', 2, val, 'json'],
    ]);
    const group = unique('user-group');
    await restOk(n(2), 'PUT', `/users/${escape(uma)}/groups/${escape(group)}`, 200);
    for (const node of cluster.nodes) {
      await restOk(node, 'GET', `/users/${escape(uma)}/groups/${escape(group)}`, 200);
    }
    await all.v2.conn.invoke('SendToGroup', group, 'news', news('current'));
    await assertDelivered(all, 'current', ['u1', 'u3']);

    // Connections the user opens afterwards, on node 2 and node 3, are members too.
    Object.assign(
      all,
      await clients(cluster, [
        ['u2new', 2, uma, 'messagepack'],
        ['u3new', 3, uma, 'json'],
      ]),
    );
    await all.v2.conn.invoke('SendToGroup', group, 'news', news('future'));
    await assertDelivered(all, 'future', ['u1', 'u3', 'u2new', 'u3new']);
    await restOk(n(1), 'POST', `/groups/${escape(group)}/:send`, 202, { message: restNews('future-rest') });
    await assertDelivered(all, 'future-rest', ['u1', 'u3', 'u2new', 'u3new']);

    // Removal through node 3 takes every one of them out.
    await restOk(n(3), 'DELETE', `/users/${escape(uma)}/groups/${escape(group)}`, 204);
    await all.v2.conn.invoke('SendToGroup', group, 'news', news('removed'));
    await all.v2.conn.invoke('SendToUser', val, 'news', news('marker'));
    await assertDelivered(all, 'marker', ['v2']);
    assert.equal(Object.values(all).reduce((k, c) => k + receivedTag(c, 'removed'), 0), 0, 'nobody gets removed');
    noCloses(all);
  });

  e2eTest('DELETE connections/{id}/groups on node 2 takes a connection on node 1 out of all its groups', async () => {
    const [wes, kay] = [unique('wes'), unique('kay')];
    const all = await clients(cluster, [
      ['w1', 1, wes, 'json'],
      ['k2', 2, kay, 'messagepack'],
      ['k3', 3, kay, 'json'],
    ]);
    const [g1, g2, g3] = ['g1', 'g2', 'g3'].map(unique);
    await all.w1.conn.invoke('JoinGroup', g1);
    await restOk(n(3), 'PUT', `/groups/${escape(g2)}/connections/${escape(all.w1.id)}`, 200);
    await restOk(n(1), 'PUT', `/users/${escape(wes)}/groups/${escape(g3)}`, 200, { query: { ttl: 0 } });
    await all.k3.conn.invoke('JoinGroup', g1);
    await all.k3.conn.invoke('JoinGroup', g2);
    await all.k3.conn.invoke('JoinGroup', g3);
    for (const g of [g1, g2, g3]) {
      await all.k2.conn.invoke('SendToGroup', g, 'news', news(`before-${g}`));
      await assertDelivered(all, `before-${g}`, ['w1', 'k3']);
    }

    await restOk(n(2), 'DELETE', `/connections/${escape(all.w1.id)}/groups`, 200);
    for (const g of [g1, g2, g3]) {
      await all.k2.conn.invoke('SendToGroup', g, 'news', news(`after-${g}`));
      await assertDelivered(all, `after-${g}`, ['k3']);
    }
    for (const node of cluster.nodes) {
      const listed = await restOk(node, 'GET', `/groups/${escape(g1)}/connections`, 200);
      assert.deepEqual(listed.value, [{ connectionId: all.k3.id, userId: kay }], `${g1} on ${node.name}`);
    }
    noCloses(all);
  });

  e2eTest('group listing, group count and users, user connections and hub count agree on every node', async () => {
    // Earlier tests' clients have stopped; wait until every node saw them go.
    for (const node of cluster.nodes) {
      await waitFor(async () => (await restOk(node, 'GET', '/count', 200)).connections === 0, {
        what: `an empty hub on ${node.name}`,
      });
    }
    const [ann, ben] = [unique('ann'), unique('ben')];
    const all = await clients(cluster, [
      ['a1', 1, ann, 'json'],
      ['a2', 2, ann, 'messagepack'],
      ['a3', 3, ann, 'json'],
      ['b1', 1, ben, 'messagepack'],
      ['b3', 3, ben, 'json'],
    ]);
    const group = unique('listed');
    await all.a1.conn.invoke('JoinGroup', group);
    await all.a3.conn.invoke('JoinGroup', group);
    await restOk(n(2), 'PUT', `/groups/${escape(group)}/connections/${escape(all.b3.id)}`, 200);
    await restOk(n(3), 'PUT', `/groups/${escape(group)}/connections/${escape(all.b1.id)}`, 200);
    const byId = (a, b) => a.connectionId.localeCompare(b.connectionId);
    const members = ['a1', 'a3', 'b1', 'b3'];
    const expectedListing = members.map((l) => ({ connectionId: all[l].id, userId: all[l].user })).sort(byId);
    const expectedUsers = [
      { userId: ann, connectionCount: 2 },
      { userId: ben, connectionCount: 2 },
    ].sort((x, y) => x.userId.localeCompare(y.userId));

    const nodeIds = new Map();
    for (const node of cluster.nodes) {
      const listing = await restOk(node, 'GET', `/groups/${escape(group)}/connections`, 200);
      assert.deepEqual([...listing.value].sort(byId), expectedListing, `group listing on ${node.name}`);
      assert.equal(listing.nextLink ?? null, null, `one page on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', `/groups/${escape(group)}/count`, 200), { connections: 4, users: 2 }, `group count on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', `/groups/${escape(group)}/users`, 200), { value: expectedUsers }, `group users on ${node.name}`);
      const anns = (await restOk(node, 'GET', `/users/${escape(ann)}/connections`, 200)).value;
      assert.deepEqual(anns.map((c) => c.connectionId).sort(), ['a1', 'a2', 'a3'].map((l) => all[l].id).sort(), `ann's connections on ${node.name}`);
      for (const c of anns) {
        assert.equal(c.userId, ann);
        assert.equal(c.transport, 'WebSockets');
        const label = Object.keys(all).find((l) => all[l].id === c.connectionId);
        // Every node names the node holding a connection the same way.
        const holder = all[label].nodeNo;
        if (!nodeIds.has(holder)) nodeIds.set(holder, c.node);
        assert.equal(c.node, nodeIds.get(holder), `node of ${label} as seen by ${node.name}`);
      }
      assert.deepEqual(await restOk(node, 'GET', `/users/${escape(ann)}/count`, 200), { connections: 3 }, `ann's count on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', `/users/${escape(ben)}/count`, 200), { connections: 2 }, `ben's count on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', '/count', 200), { connections: 5 }, `hub count on ${node.name}`);
      await restOk(node, 'HEAD', `/users/${escape(ben)}`, 200);
    }
    assert.equal(new Set(nodeIds.values()).size, 3, `three distinct node ids: ${[...nodeIds.values()]}`);

    // A member on node 3 disconnects: every node's numbers follow.
    await all.a3.conn.stop();
    for (const node of cluster.nodes) {
      await waitFor(async () => (await restOk(node, 'GET', `/groups/${escape(group)}/count`, 200)).connections === 3, {
        what: `group count 3 on ${node.name}`,
      });
      const listing = await restOk(node, 'GET', `/groups/${escape(group)}/connections`, 200);
      assert.deepEqual([...listing.value].sort(byId), expectedListing.filter((c) => c.connectionId !== all.a3.id), `listing on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', `/users/${escape(ann)}/count`, 200), { connections: 2 }, `ann on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', '/count', 200), { connections: 4 }, `hub count on ${node.name}`);
    }
  });

  e2eTest('a connection on another node exists everywhere; closing it through node 3 closes the client on node 1', async () => {
    const [mia, max] = [unique('mia'), unique('max')];
    const all = await clients(cluster, [
      ['m1', 1, mia, 'json'],
      ['x2', 2, max, 'messagepack'],
    ]);
    for (const node of cluster.nodes) {
      for (const l of ['m1', 'x2']) {
        for (const method of ['HEAD', 'GET']) await restOk(node, method, `/connections/${escape(all[l].id)}`, 200);
      }
    }
    const res = await rest(n(3), 'DELETE', `/connections/${escape(all.m1.id)}`, { query: { reason: 'kicked via node 3' } });
    assert.equal(res.status, 200, res.text);
    await waitFor(() => all.m1.conn.closeEvents.length > 0, { what: 'onclose of m1 (node 1)' });
    assert.match(String(all.m1.conn.closeEvents[0]?.message), /kicked via node 3/);
    for (const node of cluster.nodes) {
      await waitFor(async () => (await rest(node, 'HEAD', `/connections/${escape(all.m1.id)}`)).status === 404, {
        what: `m1 to be gone on ${node.name}`,
      });
    }
    const again = await rest(n(2), 'DELETE', `/connections/${escape(all.m1.id)}`);
    assert.equal(again.status, 404);
    assert.equal(again.code, 'Warning.Connection.NotExisted');
    assert.equal(all.x2.conn.closeEvents.length, 0);
    assert.equal(await all.x2.conn.invoke('Echo', 'still here'), 'still here');
  });

  e2eTest('UserOffline is announced once on every node when the last connection, anywhere, closes', async () => {
    const [ole, ivy, pia, quy] = ['ole', 'ivy', 'pia', 'quy'].map(unique);
    const all = await clients(cluster, [
      ['o1', 1, ole, 'json'], // observer on node 1
      ['o3', 3, ivy, 'messagepack'], // observer on node 3
      ['p2', 2, pia, 'json'], // pia's only connection, on node 2
      ['q1', 1, quy, 'messagepack'], // quy on node 1 ...
      ['q2', 2, quy, 'json'], // ... and on node 2
    ]);
    const offlines = (l, user) => all[l].offline.items.filter((u) => u === user).length;

    await all.p2.conn.stop();
    await waitFor(() => offlines('o1', pia) >= 1 && offlines('o3', pia) >= 1, { what: `UserOffline(${pia}) at o1 and o3` });

    // quy still has a connection on node 1: closing the one on node 2 announces nothing.
    await all.q2.conn.stop();
    await delay(GRACE_MS * 2);
    for (const l of ['o1', 'o3', 'q1']) assert.equal(offlines(l, quy), 0, `no UserOffline(${quy}) at ${l} yet`);

    await all.q1.conn.stop();
    await waitFor(() => offlines('o1', quy) >= 1 && offlines('o3', quy) >= 1, { what: `UserOffline(${quy}) at o1 and o3` });
    await delay(GRACE_MS);
    for (const l of ['o1', 'o3']) {
      assert.equal(offlines(l, pia), 1, `UserOffline(${pia}) exactly once at ${l}`);
      assert.equal(offlines(l, quy), 1, `UserOffline(${quy}) exactly once at ${l}`);
    }
  });
});

// ---------------------------------------------------------------------------
// Redis outage and a dead node
// ---------------------------------------------------------------------------

describe('cluster: Redis outage and a dead node', () => {
  const cluster = useCluster('outage');
  const n = (i) => cluster.nodes[i - 1];

  e2eTest('Redis down: not ready, local delivery goes on; Redis back: ready and cross-node delivery again', async (t) => {
    const [lou, lea, rod, rik] = ['lou', 'lea', 'rod', 'rik'].map(unique);
    const all = await clients(cluster, [
      ['l1', 1, lou, 'json'],
      ['l2', 1, lea, 'messagepack'],
      ['r2', 2, rod, 'messagepack'],
      ['r3', 3, rik, 'json'],
    ]);
    const group = unique('outage');
    for (const l of ['l1', 'l2', 'r2']) await all[l].conn.invoke('JoinGroup', group);
    for (const node of cluster.nodes) assert.equal(await readyz(node), 200, `${node.name} ready before the outage`);
    await all.l1.conn.invoke('SendToGroup', group, 'news', news('before'));
    await assertDelivered(all, 'before', ['l1', 'l2', 'r2']);

    await cluster.redis.kill();
    await Promise.all(
      cluster.nodes.map((node) =>
        waitFor(async () => (await readyz(node)) === 503, { timeout: 5_000, what: `/readyz 503 on ${node.name}` }),
      ),
    );
    // The REST API says the cluster store is unavailable.
    const down = await rest(n(2), 'GET', '/count');
    assert.equal(down.status, 503, down.text);
    assert.equal(down.code, 'Error.Backplane.Unavailable');

    // Local delivery still works; the hub call itself may fail with a backplane error.
    let outcome;
    try {
      outcome = await all.l1.conn.invoke('SendToGroup', group, 'news', news('local-during-outage'));
    } catch (err) {
      outcome = err;
    }
    t.diagnostic(
      `SendToGroup during the outage ${outcome instanceof Error ? `rejected: ${outcome.message}` : 'completed'}`,
    );
    await waitFor(() => receivedTag(all.l1, 'local-during-outage') >= 1 && receivedTag(all.l2, 'local-during-outage') >= 1, {
      what: `local members to receive during the outage (the call ended with ${outcome?.message ?? JSON.stringify(outcome)})`,
    });
    await all.l2.conn.invoke('SendToCaller', 'news', news('caller-during-outage')).catch(() => {});
    await waitFor(() => receivedTag(all.l2, 'caller-during-outage') === 1, { what: 'SendToCaller during the outage' });
    for (const c of Object.values(all)) assert.equal(await c.conn.invoke('Echo', 'up'), 'up', `${c.conn.label} serves calls`);
    noCloses(all);

    await cluster.redis.start();
    await Promise.all(
      cluster.nodes.map((node) =>
        waitFor(async () => (await readyz(node)) === 200, { timeout: 15_000, what: `/readyz 200 again on ${node.name}` }),
      ),
    );
    // Poll until a group send from node 1 crosses to node 2 again.
    let probes = 0;
    await waitFor(
      async () => {
        const tag = `probe-${probes++}`;
        await all.l1.conn.invoke('SendToGroup', group, 'news', news(tag)).catch(() => {});
        return waitFor(() => receivedTag(all.r2, tag) > 0, { timeout: 300 }).then(
          () => true,
          () => false,
        );
      },
      { timeout: 10_000, what: 'a group send from node 1 to reach node 2 after Redis came back' },
    );
    await all.l1.conn.invoke('SendToGroup', group, 'news', news('after'));
    await assertDelivered(all, 'after', ['l1', 'l2', 'r2']);
    await all.r2.conn.invoke('SendToUser', rik, 'news', news('user-after'));
    await assertDelivered(all, 'user-after', ['r3']);
    await restOk(n(3), 'POST', `/connections/${escape(all.l2.id)}/:send`, 202, { message: restNews('conn-after') });
    await assertDelivered(all, 'conn-after', ['l2']);
    await restOk(n(2), 'POST', '/:send', 202, { message: restNews('all-after') });
    await assertDelivered(all, 'all-after', ['l1', 'l2', 'r2', 'r3']);

    // The nodes re-registered their connections and group members in the fresh Redis.
    for (const node of cluster.nodes) {
      await waitFor(async () => (await rest(node, 'GET', '/count')).body?.connections === 4, {
        what: `hub count 4 on ${node.name} after Redis came back`,
      });
      assert.deepEqual(await restOk(node, 'GET', `/groups/${escape(group)}/count`, 200), { connections: 3, users: 3 }, `group count on ${node.name}`);
      assert.deepEqual(await restOk(node, 'GET', `/users/${escape(rik)}/count`, 200), { connections: 1 }, `rik on ${node.name}`);
    }
    noCloses(all);
  });

  e2eTest('a killed node is noticed: its connections leave the cluster and its users go offline', async (t) => {
    const [ada, bea, cid] = ['ada', 'bea', 'cid'].map(unique);
    const all = await clients(cluster, [
      ['a1', 1, ada, 'json'],
      ['b2', 2, bea, 'messagepack'],
      ['c3', 3, cid, 'json'], // on the node that dies
    ]);
    const group = unique('survivors');
    for (const l of ['a1', 'b2', 'c3']) await all[l].conn.invoke('JoinGroup', group);
    for (const node of [n(1), n(2)]) {
      await waitFor(async () => (await rest(node, 'GET', '/count')).body?.connections === 3, {
        what: `hub count 3 on ${node.name}`,
      });
    }

    const killedAt = Date.now();
    await n(3).kill();
    for (const node of [n(1), n(2)]) {
      await waitFor(async () => (await rest(node, 'GET', `/users/${escape(cid)}/count`)).body?.connections === 0, {
        timeout: 10_000,
        what: `${cid}'s connection on the dead node to leave the keyspace (asked ${node.name})`,
      });
      assert.deepEqual(await restOk(node, 'GET', `/groups/${escape(group)}/count`, 200), { connections: 2, users: 2 });
      assert.deepEqual(await restOk(node, 'GET', '/count', 200), { connections: 2 });
      assert.equal((await rest(node, 'HEAD', `/connections/${escape(all.c3.id)}`)).status, 404);
    }
    const noticedAfter = Date.now() - killedAt;
    t.diagnostic(`the dead node's connection left the keyspace ${noticedAfter} ms after SIGKILL`);
    await waitFor(
      () => all.a1.offline.items.includes(cid) && all.b2.offline.items.includes(cid),
      { timeout: 5_000, what: `UserOffline(${cid}) at a1 and b2` },
    );
    await delay(GRACE_MS);
    for (const l of ['a1', 'b2']) {
      assert.equal(all[l].offline.items.filter((u) => u === cid).length, 1, `UserOffline(${cid}) once at ${l}`);
    }
    await all.a1.conn.invoke('SendToGroup', group, 'news', news('survivors'));
    await waitFor(() => receivedTag(all.a1, 'survivors') === 1 && receivedTag(all.b2, 'survivors') === 1, {
      what: 'the surviving members to receive a group send',
    });
  });
});
