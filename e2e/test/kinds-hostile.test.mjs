// A hostile client on the notifications, rooms and groups kinds (the model is
// chat-hostile.test.mjs), one node: each limit refuses with a HubException
// (REST: 400) naming itself and is counted in hubwire_limit_refusals_total;
// a connection flooding random acknowledgements, subscribe / unsubscribe
// churn, heartbeats, join / leave churn or relays gets refusals while its
// neighbours on the same node receive every notification, room event and
// group send the test makes; the node stays healthy. Counts and texts are
// asserted, never timings.

import assert from 'node:assert/strict';
import { before, describe } from 'node:test';

import { connect, e2eTest, record, startNode, stopAllNodesAfter, waitFor, delay } from './harness.mjs';
import { chatApi, GRACE_MS, hubException, metric, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** Low enough for a flood of 60 waves to pass them, high enough for the neighbours' 15. */
const PER_MINUTE = 20;
const MAX_GROUPS = 8;
const LIMITS = { subscriptions_per_minute: PER_MINUTE, heartbeats_per_minute: PER_MINUTE, acks_per_minute: PER_MINUTE, relays_per_minute: PER_MINUTE };
const HUBS = [
  { kind: 'notifications', path: '/hubs/notifications', limits: LIMITS },
  { kind: 'rooms', path: '/hubs/rooms', limits: LIMITS },
  {
    kind: 'groups',
    path: '/hubs/feeds',
    limits: { subscriptions_per_minute: PER_MINUTE, relays_per_minute: PER_MINUTE },
    groups: {
      methods: [
        { name: 'Subscribe', action: 'subscribe', group: 'g-{id}', allow: 'any' },
        { name: 'Unsubscribe', action: 'unsubscribe', group: 'g-{id}' },
        { name: 'Relay', action: 'relay', group: 'g-{room}', args: ['room', 'payload'], event: 'Relayed', allow: 'any' },
        { name: 'Ping', action: 'ping' },
      ],
    },
  },
];

const refusals = (node, hub, limit) => metric(node, `hubwire_limit_refusals_total{hub="${hub}",limit="${limit}"}`);
/** A HubException naming `field` (`limits.acks_per_minute`, `rooms.max_room_id_chars`). */
const naming = (field) => new RegExp(`HubException: .*\\(${field.replace('.', '\\.')}\\)\\.?$`);
const rateText = (what, field) =>
  new RegExp(`HubException: Rate limit exceeded: ${PER_MINUTE} ${what} per minute \\(limits\\.${field}\\); retry in \\d+ s\\.$`);
const groupsFull = (conn) => hubException(`connection '${conn.connectionId}' is already in ${MAX_GROUPS} groups, the most one connection may be in (max_groups_per_connection)`);
const settle = (promise, kind) => promise.then((v) => ({ kind, ok: v }), (e) => ({ kind, error: String(e.message) }));

/**
 * Runs `waves` waves of the invocations `wave(i)` makes, each wave at once and
 * the next once it is answered (all at once, the client would put them in one
 * frame beyond the node's frame limit); the settled results.
 */
async function flood(waves, wave) {
  const results = [];
  for (let i = 0; i < waves; i++) results.push(...(await Promise.all(wave(i))));
  return results;
}

/**
 * Checks a flood's results of `kind`: at least the bucket's tokens left
 * (`PER_MINUTE` less the `spent` ones) went through (`ok`, or refused as
 * `allowed`), the rest were refused by the rate; the number refused.
 */
function assertRated(results, kind, rate, { allowed, spent = 0 } = {}) {
  const of = results.filter((r) => r.kind === kind);
  const limited = of.filter((r) => r.error && rate.test(r.error));
  const other = of.filter((r) => !limited.includes(r));
  for (const r of other) {
    if (r.error) assert.match(r.error, allowed, `${kind}: ${r.error}`);
  }
  assert.ok(other.length >= PER_MINUTE - spent && limited.length > 0, `${kind}: ${other.length} through, ${limited.length} limited`);
  return limited.length;
}

describe('hostile clients of the newer kinds on one node', () => {
  let node;
  before(async () => {
    node = await startNode({
      name: 'kinds-hostile',
      env: { HUBWIRE_HUB: JSON.stringify(HUBS), HUBWIRE_MAX_GROUPS_PER_CONNECTION: String(MAX_GROUPS) },
    });
  });
  const client = (hub, user, claims = {}) => connect(node, { hub, user, token: node.token({ sub: user, ...claims }) });
  const notify = (body) => chatApi(node, 'POST', 'notifications', '/notifications', body);
  const grant = (room, user) => chatApi(node, 'PUT', 'rooms', `/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`);
  const groupSend = async (hub, group, target, args) => {
    const res = await chatApi(node, 'POST', hub, `/groups/${encodeURIComponent(group)}/:send`, { target, arguments: args });
    assert.equal(res.status, 202, res.text);
  };

  e2eTest('notifications: channel names, ids, REST fields and the groups of a connection are bounded, naming the limit', async () => {
    const user = unique('nora');
    const c = await client('notifications', user);
    const inputBefore = await refusals(node, 'notifications', 'notifications_input');
    const groupsBefore = await refusals(node, 'notifications', 'groups_per_connection');
    await assert.rejects(c.invoke('SubscribeToChannel', 'c'.repeat(129)), naming('notifications.max_name_chars'));
    await assert.rejects(c.invoke('UnsubscribeFromChannel', 'c'.repeat(129)), naming('notifications.max_name_chars'));
    await assert.rejects(
      c.invoke('AcknowledgeNotification', 'x'.repeat(5000)),
      hubException('no such notification for this user: an id is decimal text'),
      'a long id is not echoed back',
    );
    await assert.rejects(c.invoke('MarkAsRead', 'abc'), hubException("no notification 'abc' for this user"));
    for (let i = 0; i < MAX_GROUPS; i++) await c.invoke('SubscribeToChannel', `ch-${i}`);
    await assert.rejects(c.invoke('SubscribeToChannel', 'one-more'), groupsFull(c));
    await c.invoke('SubscribeToChannel', 'ch-3'); // one it is in: no new group

    const bad = [
      [await notify({ channel: 'c'.repeat(129), type: 't', title: 'x' }), 'notifications.max_name_chars'],
      [await notify({ tenant: 't'.repeat(129), type: 't', title: 'x' }), 'notifications.max_name_chars'],
      [await notify({ userId: user, type: 't'.repeat(129), title: 'x' }), 'notifications.max_name_chars'],
      [await notify({ userId: 'u'.repeat(129), type: 't', title: 'x' }), 'limits.max_user_id_chars'],
      [await notify({ notifications: [{ all: true, type: 't', title: 'x'.repeat(257) }] }), 'notifications.max_title_chars'],
      [await notify({ notifications: Array.from({ length: 101 }, () => ({ all: true, type: 't', title: 'x' })) }), 'notifications.max_batch'],
      [await chatApi(node, 'GET', 'notifications', `/users/${'u'.repeat(129)}/notifications`), 'limits.max_user_id_chars'],
      [await chatApi(node, 'GET', 'notifications', `/users/${user}/notifications?tenant=${'t'.repeat(129)}`), 'notifications.max_name_chars'],
    ];
    for (const [res, field] of bad) {
      assert.equal(res.status, 400, `${field}: ${res.text}`);
      assert.match(res.text, new RegExp(field.replace('.', '\\.')), res.text);
    }
    assert.equal((await notify({ channel: 'c'.repeat(128), type: 't'.repeat(128), title: 'x' })).status, 201, 'at the limits is fine');
    assert.equal(await refusals(node, 'notifications', 'notifications_input'), inputBefore + 2 + bad.length, 'each refusal counted');
    assert.equal(await refusals(node, 'notifications', 'groups_per_connection'), groupsBefore + 1);
  });

  e2eTest('notifications: random acks and subscribe churn are refused by the rate while neighbours get every notification', async () => {
    const [alice, bob, mallory] = [unique('alice'), unique('bob'), unique('mallory')];
    const a = await client('notifications', alice);
    const b = await client('notifications', bob);
    const m = await client('notifications', mallory);
    await b.invoke('SubscribeToChannel', 'news');
    const atAlice = record(a, 'ReceiveNotification');
    const atBob = record(b, 'ReceiveNotification');
    const ackBefore = await refusals(node, 'notifications', 'ack_rate');
    const subBefore = await refusals(node, 'notifications', 'subscription_rate');

    const flooding = flood(60, (i) => [
      settle(m.invoke('AcknowledgeNotification', String(1_000_000_000_000 + i)), 'ack'),
      settle(m.invoke('MarkAsRead', String(2_000_000_000_000 + i)), 'ack'),
      settle(m.invoke('SubscribeToChannel', `churn-${i % 3}`), 'churn'),
      settle(m.invoke('UnsubscribeFromChannel', `churn-${i % 3}`), 'churn'),
    ]);
    const sent = { alice: [], news: [] };
    const sending = (async () => {
      for (let i = 0; i < 15; i++) {
        const toAlice = await notify({ userId: alice, type: 'order', title: `for alice ${i}` });
        assert.equal(toAlice.status, 201, toAlice.text);
        sent.alice.push(toAlice.body.id);
        const toNews = await notify({ channel: 'news', type: 'news', title: `news ${i}` });
        assert.equal(toNews.status, 201, toNews.text);
        sent.news.push(toNews.body.id);
      }
    })();
    const [results] = await Promise.all([flooding, sending]);

    const acksLimited = assertRated(results, 'ack', rateText('acknowledgements and reads', 'acks_per_minute'), {
      allowed: /HubException: no notification '\d+' for this user$/,
    });
    const churnLimited = assertRated(results, 'churn', rateText('subscribes and unsubscribes', 'subscriptions_per_minute'));
    assert.equal(await refusals(node, 'notifications', 'ack_rate'), ackBefore + acksLimited, 'each rate refusal counted');
    assert.equal(await refusals(node, 'notifications', 'subscription_rate'), subBefore + churnLimited);

    await waitFor(() => atAlice.items.length >= 15 && atBob.items.length >= 15, { timeout: 10_000, what: 'the neighbours get their notifications' });
    await delay(GRACE_MS);
    assert.deepEqual(atAlice.items.map((n) => n.id), sent.alice, "every one of alice's, in order");
    assert.deepEqual(atBob.items.map((n) => n.id), sent.news, "every one of bob's channel, in order");
    assert.equal(m.state, 'Connected', 'refusals, not a closed connection');
    assert.equal(await m.invoke('Ping'), 'pong');
    assert.equal((await fetch(`${node.baseUrl}/healthz`)).status, 200, 'the node is fine');
  });

  e2eTest('rooms: room and user ids and the rooms of a connection are bounded, naming the limit', async () => {
    const user = unique('rita');
    const c = await client('rooms', user);
    const inputBefore = await refusals(node, 'rooms', 'rooms_input');
    const groupsBefore = await refusals(node, 'rooms', 'groups_per_connection');
    await assert.rejects(c.invoke('JoinRoom', 'r'.repeat(129)), naming('rooms.max_room_id_chars'));
    await assert.rejects(c.invoke('Heartbeat', 'r'.repeat(129)), naming('rooms.max_room_id_chars'));
    const bad = [
      [await grant('r'.repeat(129), user), 'rooms.max_room_id_chars'],
      [await grant('room', 'u'.repeat(129)), 'limits.max_user_id_chars'],
      [await chatApi(node, 'GET', 'rooms', `/rooms/${'r'.repeat(129)}/members`), 'rooms.max_room_id_chars'],
    ];
    for (const [res, field] of bad) {
      assert.equal(res.status, 400, `${field}: ${res.text}`);
      assert.match(res.text, new RegExp(field.replace('.', '\\.')), res.text);
    }
    const rooms = Array.from({ length: MAX_GROUPS + 1 }, (_, i) => `${user}-room-${i}`);
    for (const room of rooms) assert.equal((await grant(room, user)).status, 201);
    for (const room of rooms.slice(0, MAX_GROUPS)) await c.invoke('JoinRoom', room);
    await assert.rejects(c.invoke('JoinRoom', rooms[MAX_GROUPS]), groupsFull(c));
    assert.equal(await refusals(node, 'rooms', 'rooms_input'), inputBefore + 2 + bad.length, 'each refusal counted');
    assert.equal(await refusals(node, 'rooms', 'groups_per_connection'), groupsBefore + 1);
  });

  e2eTest('rooms: heartbeat floods and join / leave churn are refused by the rate while neighbours get every room event', async () => {
    const [alice, carol, mallory] = [unique('alice'), unique('carol'), unique('mallory')];
    const [room, mine, churn] = [unique('room'), unique('mine'), unique('churn')];
    for (const [r, u] of [[room, alice], [room, carol], [mine, mallory], [churn, mallory]]) {
      assert.equal((await grant(r, u)).status, 201);
    }
    const a = await client('rooms', alice);
    const m = await client('rooms', mallory);
    await a.invoke('JoinRoom', room);
    await m.invoke('JoinRoom', mine);
    const items = record(a, 'ItemAdded');
    const joined = record(a, 'UserJoined');
    const left = record(a, 'UserLeft');
    const beatBefore = await refusals(node, 'rooms', 'heartbeat_rate');
    const subBefore = await refusals(node, 'rooms', 'subscription_rate');

    const flooding = flood(60, (i) => [
      settle(m.invoke('Heartbeat', mine), 'beat'),
      settle(m.invoke('Heartbeat', mine), 'beat'),
      settle(m.invoke(i % 2 ? 'LeaveRoom' : 'JoinRoom', churn), 'churn'),
    ]);
    const events = (async () => {
      for (let i = 0; i < 15; i++) await groupSend('rooms', `room_${room}`, 'ItemAdded', [{ n: i }]);
      const c = await client('rooms', carol);
      await c.invoke('JoinRoom', room);
      await c.invoke('LeaveRoom', room);
    })();
    const [results] = await Promise.all([flooding, events]);

    const beatsLimited = assertRated(results, 'beat', rateText('heartbeats', 'heartbeats_per_minute'));
    const churnLimited = assertRated(results, 'churn', rateText('subscribes and unsubscribes', 'subscriptions_per_minute'), { spent: 1 });
    assert.equal(await refusals(node, 'rooms', 'heartbeat_rate'), beatBefore + beatsLimited, 'each rate refusal counted');
    assert.equal(await refusals(node, 'rooms', 'subscription_rate'), subBefore + churnLimited);

    await waitFor(() => items.items.length >= 15 && left.items.length >= 1, { timeout: 10_000, what: "alice gets the room's events" });
    await delay(GRACE_MS);
    assert.deepEqual(items.items.map((x) => x.n), [...Array(15).keys()], 'every backend send, in order');
    assert.deepEqual(joined.items.map((e) => e.userId), [carol], "carol's join, nothing of mallory's");
    assert.deepEqual(left.items.map((e) => [e.userId, e.reason]), [[carol, 'left']]);
    assert.equal(m.state, 'Connected', 'refusals, not a closed connection');
    assert.equal((await fetch(`${node.baseUrl}/healthz`)).status, 200, 'the node is fine');
    const fresh = await client('rooms', unique('late'));
    await assert.rejects(fresh.invoke('JoinRoom', room), hubException('Access denied'), 'a fresh connection is served');
  });

  e2eTest('groups: arguments, relay sizes and the groups of a connection are bounded, naming the limit', async () => {
    const user = unique('gus');
    const c = await client('feeds', user);
    const inputBefore = await refusals(node, 'feeds', 'groups_input');
    const groupsBefore = await refusals(node, 'feeds', 'groups_per_connection');
    await assert.rejects(c.invoke('Subscribe', 'r'.repeat(129)), naming('limits.max_argument_chars'));
    await assert.rejects(c.invoke('Unsubscribe', 'r'.repeat(129)), naming('limits.max_argument_chars'));
    await assert.rejects(c.invoke('Relay', 'r'.repeat(129), 'hi'), naming('limits.max_argument_chars'));
    await assert.rejects(c.invoke('Relay', 'room', 'x'.repeat(16_384)), naming('limits.max_relay_bytes'));
    await c.invoke('Relay', 'room', 'x'.repeat(16_000)); // within the limit
    for (let i = 0; i < MAX_GROUPS; i++) await c.invoke('Subscribe', `feed-${i}`);
    await assert.rejects(c.invoke('Subscribe', 'one-more'), groupsFull(c));
    assert.equal(await refusals(node, 'feeds', 'groups_input'), inputBefore + 4, 'each refusal counted');
    assert.equal(await refusals(node, 'feeds', 'groups_per_connection'), groupsBefore + 1);
    const batch = await chatApi(node, 'POST', 'feeds', '/:sendBatch', { messages: [{ to: 'user', id: 'u'.repeat(1025), target: 'x' }] });
    assert.equal(batch.status, 400, batch.text);
    assert.match(batch.text, /messages\[0\]: \\"id\\" is longer than 1024 characters/);
  });

  e2eTest('groups: relay floods and subscribe churn are refused by the rate while neighbours get every send', async () => {
    const [alice, bob, mallory] = [unique('alice'), unique('bob'), unique('mallory')];
    const a = await client('feeds', alice);
    const b = await client('feeds', bob);
    const m = await client('feeds', mallory);
    await a.invoke('Subscribe', 'shared');
    const relayed = record(a, 'Relayed');
    const fed = record(a, 'FeedItem');
    const relayBefore = await refusals(node, 'feeds', 'relay_rate');
    const subBefore = await refusals(node, 'feeds', 'subscription_rate');

    const flooding = flood(60, (i) => [
      settle(m.invoke('Relay', 'mine', { spam: i }), 'relay'),
      settle(m.invoke('Relay', 'mine', { spam: i, again: true }), 'relay'),
      settle(m.invoke(i % 2 ? 'Unsubscribe' : 'Subscribe', 'churn'), 'churn'),
    ]);
    const sends = (async () => {
      for (let i = 0; i < 15; i++) {
        await b.invoke('Relay', 'shared', { from: 'bob', i });
        await groupSend('feeds', 'g-shared', 'FeedItem', [{ i }]);
      }
    })();
    const [results] = await Promise.all([flooding, sends]);

    const relaysLimited = assertRated(results, 'relay', rateText('relays', 'relays_per_minute'));
    const churnLimited = assertRated(results, 'churn', rateText('subscribes and unsubscribes', 'subscriptions_per_minute'));
    assert.equal(await refusals(node, 'feeds', 'relay_rate'), relayBefore + relaysLimited, 'each rate refusal counted');
    assert.equal(await refusals(node, 'feeds', 'subscription_rate'), subBefore + churnLimited);

    await waitFor(() => relayed.items.length >= 15 && fed.items.length >= 15, { timeout: 10_000, what: 'alice gets every send' });
    await delay(GRACE_MS);
    assert.deepEqual(relayed.items, Array.from({ length: 15 }, (_, i) => ['shared', { from: 'bob', i }]), "bob's relays, nothing of mallory's");
    assert.deepEqual(fed.items.map((x) => x.i), [...Array(15).keys()], 'every backend send, in order');
    assert.equal(m.state, 'Connected', 'refusals, not a closed connection');
    assert.equal(await m.invoke('Ping'), 'pong');
    assert.equal((await fetch(`${node.baseUrl}/healthz`)).status, 200, 'the node is fine');
    const fresh = await client('feeds', unique('late'));
    assert.equal(await fresh.invoke('Ping'), 'pong', 'a fresh connection is served');
  });
});
