// Limits of what one connection may make the node do (issue 7):
//   - server-to-client streams end with their connection, however it ends, and
//     a connection runs at most max_streams_per_connection at once;
//   - one connection's fast streams do not starve the other connections;
//   - the diagnostics hub is off by default, and its sends to other users or
//     connections need the `admin` role;
//   - JoinGroup honours the token's `channels` claim;
//   - group names are 1-1,024 characters on every path, and a connection is in
//     at most max_groups_per_connection groups.
// Refusals are read back from /metrics.

import assert from 'node:assert/strict';
import { before, describe } from 'node:test';

import { connect, e2eTest, negotiate, rawWs, record, rejectionOf, startNode, stopAllNodesAfter, waitFor } from './harness.mjs';
import { metricSum } from './raw-upgrade.mjs';

stopAllNodesAfter();

const HUB = 'diagnostics';
const invokeError = (method, text) => `An unexpected error occurred invoking '${method}' on the server. HubException: ${text}`;
const NEEDS_ADMIN = (method) => invokeError(method, `'${method}' to other users or connections requires the 'admin' role.`);
const GROUP_NAME_ERROR = 'a group name must be 1 to 1024 characters long';

let node; // defaults, with the diagnostics hub on (the harness's default)
let floodNode; // one worker: a starving connection would hold up everyone
let defaultNode; // HUBWIRE_DIAGNOSTICS_HUB unset

before(async () => {
  [node, floodNode, defaultNode] = await Promise.all([
    startNode({ name: 'limits' }),
    // A long queue, so that the flood is never closed as slow while the
    // bystander's round trips are checked.
    startNode({ name: 'flood', env: { HUBWIRE_WORKERS: '1', HUBWIRE_OUTBOUND_QUEUE: '500000' } }),
    startNode({ name: 'default', env: { HUBWIRE_DIAGNOSTICS_HUB: null } }),
  ]);
});

/** The value of one series in the node's /metrics (0 when absent). */
async function metric(n, series) {
  const res = await fetch(`${n.baseUrl}/metrics`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
const running = (n) => metric(n, `hubwire_streams_running{hub="${HUB}"}`);
const refusals = (n, limit) => metric(n, `hubwire_limit_refusals_total{hub="${HUB}",limit="${limit}"}`);

/** REST call with an admin user token; returns { status, code, body }. */
async function rest(n, method, path) {
  const res = await fetch(`${n.baseUrl}${path}?api-version=2022-06-01`, {
    method,
    headers: { Authorization: `Bearer ${n.token({ sub: 'ops', roles: ['admin'] })}` },
  });
  const text = await res.text();
  return { status: res.status, code: res.headers.get('x-ms-error-code'), body: text ? JSON.parse(text) : null };
}

/** Starts Stream(count, intervalMs) and counts what it delivers. */
function stream(conn, count, intervalMs) {
  const s = { items: 0, completed: false, error: null };
  conn.stream('Stream', count, intervalMs).subscribe({
    next: () => s.items++,
    complete: () => (s.completed = true),
    error: (err) => (s.error = err),
  });
  return s;
}

describe('server-to-client streams', () => {
  e2eTest('every stream ends with its connection, however it ends; beyond the limit one is refused and the connection stays', async () => {
    const LIMIT = 32; // max_streams_per_connection's default
    const baseline = await running(node);
    const refusedBefore = await refusals(node, 'streams_per_connection');
    // Three official clients and a raw socket, each with as many hour-long streams as allowed.
    const conns = await Promise.all(['s1', 's2', 's3'].map((user) => connect(node, { user })));
    const streams = conns.map((conn) => Array.from({ length: LIMIT }, () => stream(conn, 100_000, 3_600_000)));
    const raw = await rawWs(node, `/hubs/${HUB}`, { headers: { Authorization: `Bearer ${node.token({ sub: 's4' })}` } });
    await raw.handshake();
    for (let i = 0; i < LIMIT; i++) {
      raw.sendMessage({ type: 4, invocationId: `r${i}`, target: 'Stream', arguments: [100_000, 3_600_000] });
    }
    await waitFor(async () => (await running(node)) === baseline + 4 * LIMIT, { timeout: 20_000, what: `${4 * LIMIT} running streams` });

    // One more on each: a Completion with the error; the connection stays open.
    const limitError = invokeError('Stream', `A connection may run at most ${LIMIT} streams at once.`);
    const extra = conns.map((conn) => stream(conn, 3, 0));
    raw.sendMessage({ type: 4, invocationId: 'r-extra', target: 'Stream', arguments: [3, 0] });
    const refused = await raw.waitMessage((m) => m.type === 3 && m.invocationId === 'r-extra', { what: 'the refusal' });
    assert.equal(refused.error, limitError);
    await waitFor(() => extra.every((s) => s.error), { what: 'every extra stream refused' });
    for (const s of extra) assert.equal(s.error.message, limitError);
    for (const conn of conns) assert.equal(await conn.invoke('Echo', 'still here'), 'still here');
    assert.equal((await raw.echo('still here')).result, 'still here');
    assert.equal(await refusals(node, 'streams_per_connection'), refusedBefore + 4);
    assert.equal(await running(node), baseline + 4 * LIMIT, 'refused streams do not run');
    assert.ok(streams.flat().every((s) => !s.completed && !s.error), 'no stream ended early');

    // Ended four ways: the client leaves cleanly, the socket drops, the
    // server closes it (REST), and the last client leaves.
    await conns[0].stop();
    raw.terminate();
    const closed = await rest(node, 'DELETE', `/api/hubs/${HUB}/connections/${conns[1].connectionId}`);
    assert.ok(closed.status < 300, `REST close answered ${closed.status}`);
    await conns[2].stop();
    await waitFor(async () => (await running(node)) === baseline, {
      timeout: 20_000,
      what: 'every stream of the closed connections to end',
    });
    await waitFor(async () => (await metricSum(node, 'hubwire_connections', `hub="${HUB}"`)) === 0, {
      timeout: 20_000,
      what: 'the connections to be gone',
    });
  });

  e2eTest("one connection's fast streams do not hold up another user's round trips", async () => {
    const flood = await connect(floodNode, { user: 'flood' });
    const streams = Array.from({ length: 8 }, () => stream(flood, 100_000, 0));
    await waitFor(() => streams.every((s) => s.items > 0), { timeout: 20_000, what: 'every flood stream to deliver' });

    // While the flood runs on the node's only worker, another user connects
    // and completes round trips.
    const bystander = await connect(floodNode, { user: 'bystander' });
    for (let i = 0; i < 20; i++) assert.equal(await bystander.invoke('Echo', i), i);

    const delivered = streams.reduce((sum, s) => sum + s.items, 0);
    assert.ok(
      streams.every((s) => !s.completed && !s.error),
      `the flood was still streaming when the bystander's answers arrived (${delivered} items delivered)`,
    );
    assert.equal(flood.state, 'Connected');
    assert.equal(flood.closeEvents.length, 0);
    await flood.stop();
    await waitFor(async () => (await running(floodNode)) === 0, { timeout: 20_000, what: 'the flood streams to end' });
    assert.equal(await bystander.invoke('Echo', 'after'), 'after');
  });
});

describe('the diagnostics hub', () => {
  e2eTest('is off unless HUBWIRE_DIAGNOSTICS_HUB turns it on', async () => {
    const off = await negotiate(defaultNode, { token: defaultNode.token() });
    assert.equal(off.status, 404);
    const on = await negotiate(node, { token: node.token() });
    assert.equal(on.status, 200);
  });

  e2eTest('sends to other users or connections need the admin role; group sends and sends to oneself do not', async () => {
    const refusedBefore = await refusals(node, 'admin_role');
    const alice = await connect(node, { user: 'alice' });
    const bob = await connect(node, { user: 'bob' });
    const admin = await connect(node, { user: 'root', roles: ['admin'] });
    const toAlice = record(alice, 'news');
    const toBob = record(bob, 'news');
    const bobId = (await bob.invoke('WhoAmI')).connectionId;
    const aliceId = (await alice.invoke('WhoAmI')).connectionId;

    const refused = [
      ['SendToAll', 'news', 'x'],
      ['SendToOthers', 'news', 'x'],
      ['SendToUser', 'bob', 'news', 'x'],
      ['SendToConnection', bobId, 'news', 'x'],
    ];
    for (const [method, ...args] of refused) {
      const err = await rejectionOf(alice.invoke(method, ...args), 5_000, `${method} refused`);
      assert.equal(err.message, NEEDS_ADMIN(method));
    }
    assert.equal(await refusals(node, 'admin_role'), refusedBefore + refused.length);

    // Open to everyone: oneself, and groups.
    await alice.invoke('SendToUser', 'alice', 'news', 'self-user');
    await alice.invoke('SendToConnection', aliceId, 'news', 'self-connection');
    await alice.invoke('SendToCaller', 'news', 'caller');
    await alice.invoke('JoinGroup', 'open');
    await alice.invoke('SendToGroup', 'open', 'news', 'group');
    assert.deepEqual(await toAlice.wait(4), ['self-user', 'self-connection', 'caller', 'group']);

    // An admin reaches others; bob got nothing before it.
    await admin.invoke('SendToUser', 'bob', 'news', 'from-admin');
    await admin.invoke('SendToConnection', bobId, 'news', 'from-admin-to-connection');
    assert.deepEqual(await toBob.wait(2), ['from-admin', 'from-admin-to-connection']);
    assert.equal(await refusals(node, 'admin_role'), refusedBefore + refused.length);
  });

  e2eTest("JoinGroup outside the token's channels patterns is refused; without the claim any group", async () => {
    const refusedBefore = await refusals(node, 'channels_claim');
    const limited = await connect(node, { token: node.token({ sub: 'carol', channels: ['room-*', 'lobby'] }) });
    await limited.invoke('JoinGroup', 'room-42');
    await limited.invoke('JoinGroup', 'lobby');
    const err = await rejectionOf(limited.invoke('JoinGroup', 'kitchen'), 5_000, 'JoinGroup refused');
    assert.equal(err.message, invokeError('JoinGroup', "The token's channels claim does not allow joining group 'kitchen'."));
    assert.equal(await refusals(node, 'channels_claim'), refusedBefore + 1);
    const kitchen = await rest(node, 'GET', `/api/hubs/${HUB}/groups/kitchen`);
    assert.equal(kitchen.status, 404, 'the refused join left no member');

    const free = await connect(node, { user: 'dave' });
    await free.invoke('JoinGroup', 'kitchen');
    assert.equal((await rest(node, 'GET', `/api/hubs/${HUB}/groups/kitchen`)).status, 200);
  });
});

describe('groups', () => {
  e2eTest('group names longer than 1,024 characters are refused by hub methods and the REST API alike', async () => {
    const refusedBefore = await refusals(node, 'group_name_length');
    const conn = await connect(node, { user: 'erin' });
    const id = conn.connectionId;
    const tooLong = 'g'.repeat(1025);
    for (const [method, ...args] of [
      ['JoinGroup', tooLong],
      ['SendToGroup', tooLong, 'news', 'x'],
    ]) {
      const err = await rejectionOf(conn.invoke(method, ...args), 5_000, `${method} refused`);
      assert.equal(err.message, invokeError(method, GROUP_NAME_ERROR));
    }
    await conn.invoke('JoinGroup', 'g'.repeat(1024));

    const add = await rest(node, 'PUT', `/api/hubs/${HUB}/groups/${tooLong}/connections/${id}`);
    assert.equal(add.status, 400);
    assert.equal(add.code, 'Error.Request.Invalid');
    assert.deepEqual(add.body, {
      code: 'Error.Request.Invalid',
      level: 'Error',
      scope: 'Request',
      errorKind: 'Invalid',
      message: GROUP_NAME_ERROR,
    });
    assert.equal((await rest(node, 'PUT', `/api/hubs/${HUB}/users/erin/groups/${tooLong}`)).status, 400);
    assert.equal(await refusals(node, 'group_name_length'), refusedBefore + 4);
  });

  e2eTest('a connection is in at most 128 groups, whether JoinGroup or the REST API adds it', async () => {
    const refusedBefore = await refusals(node, 'groups_per_connection');
    const conn = await connect(node, { user: 'frank' });
    const id = conn.connectionId;
    for (let i = 0; i < 127; i++) await conn.invoke('JoinGroup', `many-${i}`);
    assert.equal((await rest(node, 'PUT', `/api/hubs/${HUB}/groups/many-127/connections/${id}`)).status, 200);

    const tooMany = `connection '${id}' is already in 128 groups, the most one connection may be in (max_groups_per_connection)`;
    const err = await rejectionOf(conn.invoke('JoinGroup', 'one-more'), 5_000, 'JoinGroup refused');
    assert.equal(err.message, invokeError('JoinGroup', tooMany));
    const add = await rest(node, 'PUT', `/api/hubs/${HUB}/groups/one-more/connections/${id}`);
    assert.equal(add.status, 409);
    assert.equal(add.code, 'Error.Connection.GroupLimitReached');
    assert.equal(add.body.message, tooMany);
    assert.equal(await refusals(node, 'groups_per_connection'), refusedBefore + 2);

    await conn.invoke('JoinGroup', 'many-5'); // a group it is in: no new group
    await conn.invoke('LeaveGroup', 'many-0');
    await conn.invoke('JoinGroup', 'one-more');
    assert.equal(await conn.invoke('Echo', 'open'), 'open', 'the connection stays open');
    const other = await connect(node, { user: 'gina' });
    await other.invoke('JoinGroup', 'one-more');
  });
});
