// The rooms kind (MISSION.md's /hubs/rooms, seed 004's shopping lists) on
// two nodes joined by Redis and sharing PostgreSQL, with the official
// client: grants through the REST API, the snapshot to a joiner (one entry
// per user across tabs and nodes, with the token's name and picture),
// UserJoined / UserLeft to the others, UserLeft after a silence (2 s here),
// and a revocation that takes the user out at once on another node. Then the
// shopping-list preset driven by seed 004's own calls, handlers and payload
// shapes, with the backend's item events sent through REST to list_{listId}.
// Last, three nodes of their own: two tabs of a user on two nodes joining or
// leaving at once are announced once, and a SIGKILLed node's members are
// announced as left (once per user; not a user with a tab on a survivor).

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';

import { connect, delay, e2eTest, record, startCluster, startJsonBackend, stopAllNodesAfter, waitFor } from './harness.mjs';
import { chatApi, GRACE_MS, hubException, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const keys = (o) => Object.keys(o).sort();

/** The rooms hub of these tests: MISSION's names, a 2 s inactivity. */
const ROOMS = [
  { kind: 'rooms', path: '/hubs/rooms', rooms: { inactive_after_secs: 2 } },
  // Rooms granted by the token's channels claim too, with the app's refusal text.
  { kind: 'rooms', path: '/hubs/team-rooms', rooms: { group: 'team:{id}', claims_grant: true, access_denied: 'Not your team' } },
];

let cluster;
before(async () => {
  cluster = await startChatCluster({ size: 2, name: 'rooms', env: { HUBWIRE_HUB: JSON.stringify(ROOMS) } });
});
after(async () => {
  await cluster?.stop();
});

/** A connection of `user` (display name `name`, picture `picture`) to `hub` on `node`. */
function member(node, user, { hub = 'rooms', name = `${user} name`, picture = `https://img.example/${user}.png` } = {}) {
  const claims = { sub: user, name, extra: picture === null ? {} : { picture } };
  return connect(node, { hub, user, token: node.token(claims) });
}

/** Grants `user` room `room` of `hub` through REST on `node`; the status. */
async function grant(node, room, user, hub = 'rooms') {
  const res = await chatApi(node, 'PUT', hub, `/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`);
  return res.status;
}

async function revoke(node, room, user, hub = 'rooms') {
  const res = await chatApi(node, 'DELETE', hub, `/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`);
  assert.equal(res.status, 200, res.text);
}

/** The backend's REST group send of `target(...args)` to `group`. */
async function sendToGroup(node, hub, group, target, args) {
  const res = await chatApi(node, 'POST', hub, `/groups/${encodeURIComponent(group)}/:send`, { target, arguments: args });
  assert.equal(res.status, 202, res.text);
}

describe('rooms kind', () => {
  e2eTest('a join needs a grant; the snapshot is one entry per user across tabs and nodes, with names and pictures', async () => {
    const [a, b] = cluster.nodes;
    const room = unique('room');
    const ann = unique('ann');
    const bob = unique('bob');
    const ann1 = await member(a, ann);
    await assert.rejects(ann1.invoke('JoinRoom', room), hubException('Access denied'));

    assert.equal(await grant(a, room, ann), 201, 'granted now');
    assert.equal(await grant(b, room, ann), 200, 'already granted');
    assert.equal(await grant(b, room, bob), 201);
    const listed = await chatApi(a, 'GET', 'rooms', `/rooms/${room}/members`);
    assert.deepEqual(listed.body, { members: [ann, bob].sort() });

    const ann1Presence = record(ann1, 'PresenceUpdate');
    const ann1Joined = record(ann1, 'UserJoined');
    const ann1Left = record(ann1, 'UserLeft');
    await ann1.invoke('JoinRoom', room);
    const [first] = await ann1Presence.wait(1);
    assert.deepEqual(keys(first), ['activeUsers', 'roomId', 'timestamp']);
    assert.equal(first.roomId, room);
    assert.match(first.timestamp, ISO);
    assert.equal(first.activeUsers.length, 1);
    assert.deepEqual(keys(first.activeUsers[0]), ['avatarUrl', 'displayName', 'joinedAt', 'userId']);
    assert.equal(first.activeUsers[0].userId, ann);
    assert.equal(first.activeUsers[0].displayName, `${ann} name`);
    assert.equal(first.activeUsers[0].avatarUrl, `https://img.example/${ann}.png`);
    assert.match(first.activeUsers[0].joinedAt, ISO);

    // A second tab of ann, on the other node: ann is still one active user.
    const ann2 = await member(b, ann);
    const ann2Presence = record(ann2, 'PresenceUpdate');
    const ann2Joined = record(ann2, 'UserJoined');
    await ann2.invoke('JoinRoom', room);
    const [second] = await ann2Presence.wait(1);
    assert.deepEqual(second.activeUsers.map((u) => u.userId), [ann]);

    const bobConn = await member(b, bob, { picture: null });
    const bobPresence = record(bobConn, 'PresenceUpdate');
    const bobLeft = record(bobConn, 'UserLeft');
    const bobJoined = record(bobConn, 'UserJoined');
    await bobConn.invoke('JoinRoom', room);
    const [snapshot] = await bobPresence.wait(1);
    assert.deepEqual(snapshot.activeUsers.map((u) => u.userId), [ann, bob], 'earliest join first, ann once');
    assert.equal(snapshot.activeUsers[1].avatarUrl, null, 'no picture claim');
    // Both of ann's tabs (two nodes) hear bob; nobody heard ann's second tab.
    for (const rec of [ann1Joined, ann2Joined]) {
      const [joined] = await rec.wait(1);
      assert.deepEqual(keys(joined), ['avatarUrl', 'displayName', 'roomId', 'timestamp', 'userId']);
      assert.equal(joined.userId, bob);
      assert.equal(joined.displayName, `${bob} name`);
      assert.equal(joined.roomId, room);
    }
    await delay(GRACE_MS);
    assert.equal(ann1Joined.items.length, 1, 'ann2 joining was not announced to ann1');
    assert.equal(bobJoined.items.length, 0, 'the joiner hears no UserJoined of itself');

    // One tab of ann leaves: ann is still active. The other: ann left.
    await ann2.invoke('LeaveRoom', room);
    await delay(GRACE_MS);
    assert.equal(bobLeft.items.length, 0, 'ann still has an active tab');
    await ann1.invoke('LeaveRoom', room);
    const [left] = await bobLeft.wait(1);
    assert.equal(left.userId, ann);
    assert.equal(left.reason, 'left');
    assert.equal(left.displayName, `${ann} name`);
    assert.equal(ann1Left.items.length, 0, 'the leaver hears no UserLeft of itself');

    // A user whose connection closes is announced as left too.
    const carol = unique('carol');
    await grant(a, room, carol);
    const carolConn = await member(a, carol);
    await carolConn.invoke('JoinRoom', room);
    await waitFor(() => bobJoined.items.some((j) => j.userId === carol), { what: 'carol joined' });
    await carolConn.stop();
    await waitFor(() => bobLeft.items.some((l) => l.userId === carol && l.reason === 'disconnected'), {
      what: 'carol left on disconnect',
    });
  });

  e2eTest('a member silent for the timeout is announced as left once per user; a heartbeat brings it back', async () => {
    const [a, b] = cluster.nodes;
    const room = unique('room');
    const ann = unique('ann');
    const bob = unique('bob');
    await grant(a, room, ann);
    await grant(a, room, bob);
    const bobConn = await member(a, bob);
    const bobLeft = record(bobConn, 'UserLeft');
    const bobJoined = record(bobConn, 'UserJoined');
    await bobConn.invoke('JoinRoom', room);
    const beat = setInterval(() => bobConn.invoke('Heartbeat', room).catch(() => {}), 400);
    try {
      // Two tabs of ann (two nodes), both silent after joining.
      const annTabs = [await member(a, ann), await member(b, ann)];
      const annLeft = annTabs.map((c) => record(c, 'UserLeft'));
      for (const tab of annTabs) await tab.invoke('JoinRoom', room);
      await bobJoined.wait(1);
      const [left] = await bobLeft.wait(1, 10_000);
      assert.equal(left.userId, ann);
      assert.equal(left.reason, 'inactive');
      await delay(GRACE_MS * 2);
      assert.equal(bobLeft.items.length, 1, 'one UserLeft for two silent tabs');
      for (const rec of annLeft) {
        assert.deepEqual(rec.items.filter((l) => l.userId === bob), [], 'bob kept heartbeating: still active');
      }

      // A silent member stays in the room's group (it still gets the
      // backend's sends), and a heartbeat makes it active again.
      const annItems = record(annTabs[0], 'ItemAdded');
      await sendToGroup(b, 'rooms', `room_${room}`, 'ItemAdded', [{ id: 1 }]);
      await annItems.wait(1);
      await annTabs[0].invoke('Heartbeat', room);
      await waitFor(() => bobJoined.items.filter((j) => j.userId === ann).length === 2, { what: 'ann back' });
      const presence = record(bobConn, 'PresenceUpdate');
      await bobConn.invoke('JoinRoom', room);
      const [snapshot] = await presence.wait(1);
      assert.deepEqual(snapshot.activeUsers.map((u) => u.userId).sort(), [ann, bob].sort());
    } finally {
      clearInterval(beat);
    }
  });

  e2eTest('a revocation takes the user out at once on another node, tells them, and a heartbeat does not bring them back', async () => {
    const [a, b] = cluster.nodes;
    const room = unique('room');
    const ann = unique('ann');
    const bob = unique('bob');
    await grant(a, room, ann);
    await grant(a, room, bob);
    const annConn = await member(a, ann);
    const bobConn = await member(b, bob);
    const annLeft = record(annConn, 'UserLeft');
    const annJoined = record(annConn, 'UserJoined');
    const annItems = record(annConn, 'ItemAdded');
    const bobItems = record(bobConn, 'ItemAdded');
    const bobRevoked = record(bobConn, 'RoomAccessRevoked');
    await annConn.invoke('JoinRoom', room);
    await bobConn.invoke('JoinRoom', room);
    await annJoined.wait(1);
    await sendToGroup(a, 'rooms', `room_${room}`, 'ItemAdded', [{ n: 1 }]);
    await annItems.wait(1);
    await bobItems.wait(1);

    // Revoked through node a; bob is on node b.
    await revoke(a, room, bob);
    const [told] = await bobRevoked.wait(1);
    assert.deepEqual(keys(told), ['roomId', 'timestamp', 'userId']);
    assert.equal(told.roomId, room);
    assert.equal(told.userId, bob);
    const [left] = await annLeft.wait(1);
    assert.equal(left.userId, bob);
    assert.equal(left.reason, 'revoked');
    // Out of the group before DELETE answered: the next send misses bob.
    await sendToGroup(a, 'rooms', `room_${room}`, 'ItemAdded', [{ n: 2 }]);
    await annItems.wait(2);
    await bobConn.invoke('Heartbeat', room);
    await sendToGroup(b, 'rooms', `room_${room}`, 'ItemAdded', [{ n: 3 }]);
    await annItems.wait(3);
    await delay(GRACE_MS);
    assert.equal(bobItems.items.length, 1, 'bob receives nothing after the revocation, heartbeat or not');
    assert.equal(annJoined.items.length, 1, 'the heartbeat did not announce bob again');
    assert.equal(annLeft.items.length, 1, 'bob left once');
    await assert.rejects(bobConn.invoke('JoinRoom', room), hubException('Access denied'));
    const listed = await chatApi(b, 'GET', 'rooms', `/rooms/${room}/members`);
    assert.deepEqual(listed.body, { members: [ann] });
    // Its connection closing later announces nothing more.
    await bobConn.stop();
    await delay(GRACE_MS);
    assert.equal(annLeft.items.length, 1, 'no second UserLeft for bob');
  });

  e2eTest("with claims_grant, a channels pattern matching the room's group grants it", async () => {
    const [a, b] = cluster.nodes;
    const ann = unique('ann');
    const conn = await connect(a, { hub: 'team-rooms', user: ann, token: a.token({ sub: ann, channels: ['team:blue-*'] }) });
    const presence = record(conn, 'PresenceUpdate');
    await conn.invoke('JoinRoom', 'blue-1');
    const [snapshot] = await presence.wait(1);
    assert.deepEqual(snapshot.activeUsers.map((u) => u.userId), [ann]);
    await assert.rejects(conn.invoke('JoinRoom', 'red-1'), hubException('Not your team'));
    // A REST grant still works beside the claim.
    assert.equal(await grant(b, 'red-1', ann, 'team-rooms'), 201);
    await conn.invoke('JoinRoom', 'red-1');
    await presence.wait(2);
    // Without the claims_grant setting the claim grants nothing.
    const plain = await connect(b, { hub: 'rooms', user: ann, token: b.token({ sub: ann, channels: ['room_*'] }) });
    await assert.rejects(plain.invoke('JoinRoom', unique('room')), hubException('Access denied'));
  });

  e2eTest('the members routes refuse a hub of another kind and bad ids', async () => {
    const [a] = cluster.nodes;
    const notRooms = await chatApi(a, 'PUT', 'chat', '/rooms/r1/members/u1');
    assert.equal(notRooms.status, 404, notRooms.text);
    const long = await chatApi(a, 'PUT', 'rooms', `/rooms/${'x'.repeat(129)}/members/u1`);
    assert.equal(long.status, 400, long.text);
  });
});

describe('shopping-list preset (seed 004)', () => {
  let nodes;
  // The app's permission service (HasAccessAsync): list id -> its collaborators.
  const collaborators = new Map();
  const asked = [];
  let backend;
  before(async () => {
    backend = await startJsonBackend(({ path: url, body }, json) => {
      if (url !== '/hubwire/authorize') return json(404);
      asked.push(body);
      return json(200, { allow: collaborators.get(body.arguments[0])?.has(body.userId) ?? false });
    });
    ({ nodes } = await startCluster(cluster.redis, {
      size: 2,
      name: 'shopping-list',
      args: ['--config', path.join(ROOT, 'examples', 'shopping-list', 'hubwire.toml')],
      env: { HUBWIRE_DATABASE_URL: cluster.postgres.url, HUBWIRE_BACKEND_URL: backend.url },
    }));
  });
  after(() => backend?.close());

  const HUB = 'shopping-list';
  const ITEM_EVENTS = [
    'ItemAdded',
    'ItemUpdated',
    'ItemDeleted',
    'ItemPurchasedStatusChanged',
    'ListUpdated',
    'CollaboratorAdded',
    'CollaboratorRemoved',
  ];

  e2eTest("the seed's JoinList / UpdatePresence / LeaveList and handlers, the backend's events to list_{listId}", async () => {
    const [a, b] = nodes;
    const listId = crypto.randomUUID();
    const owner = crypto.randomUUID();
    const friend = crypto.randomUUID();
    const ownerConn = await member(a, owner, { hub: HUB, name: 'Olivia Owner' });
    // signalRService.joinList(listId) without access: HubException("Access denied").
    await assert.rejects(ownerConn.invoke('JoinList', listId), hubException('Access denied'));
    assert.equal(await grant(a, listId, owner, HUB), 201);
    assert.equal(await grant(b, listId, friend, HUB), 201);

    const presence = record(ownerConn, 'PresenceUpdate');
    const joined = record(ownerConn, 'UserJoined');
    const left = record(ownerConn, 'UserLeft');
    await ownerConn.invoke('JoinList', listId);
    const [snapshot] = await presence.wait(1);
    assert.deepEqual(keys(snapshot), ['activeUsers', 'eventType', 'listId', 'timestamp']);
    assert.equal(snapshot.eventType, 'PresenceUpdate');
    assert.equal(snapshot.listId, listId);
    assert.deepEqual(keys(snapshot.activeUsers[0]), ['avatarUrl', 'displayName', 'id', 'joinedAt']);
    assert.equal(snapshot.activeUsers[0].id, owner);
    assert.equal(snapshot.activeUsers[0].displayName, 'Olivia Owner');

    const friendConn = await member(b, friend, { hub: HUB, name: 'Fred Friend' });
    const friendPresence = record(friendConn, 'PresenceUpdate');
    await friendConn.invoke('JoinList', listId);
    const [userJoined] = await joined.wait(1);
    assert.deepEqual(keys(userJoined), ['eventType', 'listId', 'timestamp', 'user']);
    assert.equal(userJoined.eventType, 'UserJoined');
    assert.equal(userJoined.listId, listId);
    assert.deepEqual(userJoined.user, {
      id: friend,
      displayName: 'Fred Friend',
      avatarUrl: `https://img.example/${friend}.png`,
    });
    assert.match(userJoined.timestamp, ISO);
    const [friendSnapshot] = await friendPresence.wait(1);
    assert.deepEqual(friendSnapshot.activeUsers.map((u) => u.id), [owner, friend]);
    // The 30 s heartbeat.
    await friendConn.invoke('UpdatePresence', listId);

    // The backend's IHubContext sends, through REST, to list_{listId}.
    const ownerGot = Object.fromEntries(ITEM_EVENTS.map((e) => [e, record(ownerConn, e)]));
    const friendGot = Object.fromEntries(ITEM_EVENTS.map((e) => [e, record(friendConn, e)]));
    for (const event of ITEM_EVENTS) {
      await sendToGroup(a, HUB, `list_${listId}`, event, [{ eventType: event, listId, timestamp: new Date().toISOString() }]);
    }
    for (const event of ITEM_EVENTS) {
      const [o] = await ownerGot[event].wait(1);
      const [f] = await friendGot[event].wait(1);
      assert.equal(o.eventType, event);
      assert.equal(f.listId, listId);
    }

    // A third collaborator leaves: UserLeft { eventType, listId, userId, displayName, timestamp }.
    const third = crypto.randomUUID();
    await grant(a, listId, third, HUB);
    const thirdConn = await member(b, third, { hub: HUB, name: 'Tina Third' });
    await thirdConn.invoke('JoinList', listId);
    await joined.wait(2);
    await thirdConn.invoke('LeaveList', listId);
    const [userLeft] = await left.wait(1);
    assert.deepEqual(keys(userLeft), ['displayName', 'eventType', 'listId', 'timestamp', 'userId']);
    assert.equal(userLeft.eventType, 'UserLeft');
    assert.equal(userLeft.userId, third);
    assert.equal(userLeft.displayName, 'Tina Third');

    // The owner removes the friend: CollaboratorRemoved to the list, then the
    // grant revoked; the friend stops receiving at once.
    const revoked = record(friendConn, 'ListAccessRevoked');
    await sendToGroup(a, HUB, `list_${listId}`, 'CollaboratorRemoved', [{ eventType: 'CollaboratorRemoved', listId, userId: friend }]);
    await friendGot.CollaboratorRemoved.wait(2);
    await revoke(a, listId, friend, HUB);
    const [notice] = await revoked.wait(1);
    assert.deepEqual(keys(notice), ['eventType', 'listId', 'timestamp', 'userId']);
    assert.equal(notice.eventType, 'ListAccessRevoked');
    await sendToGroup(b, HUB, `list_${listId}`, 'ItemAdded', [{ eventType: 'ItemAdded', listId }]);
    await ownerGot.ItemAdded.wait(2);
    await friendConn.invoke('UpdatePresence', listId);
    await sendToGroup(b, HUB, `list_${listId}`, 'ItemUpdated', [{ eventType: 'ItemUpdated', listId }]);
    await ownerGot.ItemUpdated.wait(2);
    await delay(GRACE_MS);
    assert.equal(friendGot.ItemAdded.items.length, 1, 'a removed collaborator receives nothing more');
    assert.equal(friendGot.ItemUpdated.items.length, 1);
    await assert.rejects(friendConn.invoke('JoinList', listId), hubException('Access denied'));
  });

  e2eTest("HasAccessAsync: a collaborator the app's permission service knows joins without a REST grant; others are refused", async () => {
    const [a, b] = nodes;
    const listId = crypto.randomUUID();
    const [owner, stranger] = [crypto.randomUUID(), crypto.randomUUID()];
    collaborators.set(listId, new Set([owner]));
    const ownerConn = await member(a, owner, { hub: HUB, name: 'Olivia Owner' });
    const strangerConn = await member(b, stranger, { hub: HUB, name: 'Sam Stranger' });
    const presence = record(ownerConn, 'PresenceUpdate');
    const from = asked.length;
    await ownerConn.invoke('JoinList', listId);
    assert.deepEqual((await presence.wait(1))[0].activeUsers.map((u) => u.id), [owner]);
    await assert.rejects(strangerConn.invoke('JoinList', listId), hubException('Access denied'));
    assert.deepEqual(
      asked.slice(from).map((q) => [q.hub, q.userId, q.method, q.group, q.arguments]),
      [
        ['shopping-list', owner, 'JoinList', `list_${listId}`, [listId]],
        ['shopping-list', stranger, 'JoinList', `list_${listId}`, [listId]],
      ],
    );
    // The backend's sends reach the collaborator it admitted, not the stranger.
    const [ownerGot, strangerGot] = [ownerConn, strangerConn].map((c) => record(c, 'ItemAdded'));
    await sendToGroup(b, HUB, `list_${listId}`, 'ItemAdded', [{ eventType: 'ItemAdded', listId }]);
    await ownerGot.wait(1);
    await delay(GRACE_MS);
    assert.equal(strangerGot.items.length, 0);
    // UpdatePresence asks again (answered from the cache here): still a collaborator.
    await ownerConn.invoke('UpdatePresence', listId);
  });
});

describe('rooms on three nodes: tabs racing, a node SIGKILLed', () => {
  // A 30 s inactivity: a UserLeft well before it comes from the dead node's sweep.
  const HUB = [{ kind: 'rooms', path: '/hubs/rooms', rooms: { inactive_after_secs: 30 } }];
  let nodes;
  before(async () => {
    ({ nodes } = await startCluster(cluster.redis, {
      size: 3,
      name: 'rooms-death',
      env: {
        HUBWIRE_DATABASE_URL: cluster.postgres.url,
        HUBWIRE_HUB: JSON.stringify(HUB),
        HUBWIRE_NODE_HEARTBEAT_MS: '300',
        HUBWIRE_NODE_DEAD_AFTER_MS: '2000',
      },
    }));
  });

  e2eTest('two tabs of one user on two nodes joining, then leaving, at once: one UserJoined and one UserLeft a round', { timeout: 120_000 }, async () => {
    const [a, , c] = nodes;
    const room = unique('room');
    const ann = unique('ann');
    const bob = unique('bob');
    await grant(a, room, ann);
    await grant(a, room, bob);
    const bobConn = await member(c, bob);
    const joined = record(bobConn, 'UserJoined');
    const left = record(bobConn, 'UserLeft');
    await bobConn.invoke('JoinRoom', room);
    const tabs = [await member(a, ann), await member(c, ann)];
    const ROUNDS = 20;
    for (let round = 1; round <= ROUNDS; round++) {
      await Promise.all(tabs.map((tab) => tab.invoke('JoinRoom', room)));
      await joined.wait(round, 10_000);
      await Promise.all(tabs.map((tab) => tab.invoke('LeaveRoom', room)));
      await left.wait(round, 10_000);
    }
    await delay(GRACE_MS);
    assert.equal(joined.items.length, ROUNDS, 'one UserJoined per round of two tabs joining at once');
    assert.equal(left.items.length, ROUNDS, 'one UserLeft per round of two tabs leaving at once');
    assert.deepEqual(new Set(joined.items.map((j) => j.userId)), new Set([ann]));
    assert.deepEqual(new Set(left.items.map((l) => `${l.userId}/${l.reason}`)), new Set([`${ann}/left`]));
  });

  e2eTest("a SIGKILLed node's members are announced as left once per user, not a user with a tab on a survivor", { timeout: 90_000 }, async () => {
    const [a, b, c] = nodes;
    const room = unique('room');
    const [wes, will, bob, ann, cat] = ['wes', 'will', 'bob', 'ann', 'cat'].map(unique);
    for (const user of [wes, will, bob, ann, cat]) assert.equal(await grant(a, room, user), 201);
    // Watchers on the two nodes that survive.
    const watchers = [await member(a, wes), await member(c, will)];
    const heard = watchers.map((w) => ({ joined: record(w, 'UserJoined'), left: record(w, 'UserLeft') }));
    for (const w of watchers) await w.invoke('JoinRoom', room);
    // Bob in two tabs, both on node b; ann with one tab on a and one on b.
    for (const conn of [await member(b, bob), await member(b, bob), await member(a, ann), await member(b, ann)]) {
      await conn.invoke('JoinRoom', room);
    }
    for (const { joined } of heard) {
      await waitFor(() => [bob, ann].every((u) => joined.items.some((j) => j.userId === u)), { what: 'bob and ann joined' });
    }

    await b.kill();
    for (const { left } of heard) {
      await left.wait(1, 20_000);
    }
    await delay(GRACE_MS * 3);
    for (const { left } of heard) {
      assert.deepEqual(
        left.items.map((l) => [l.userId, l.reason]),
        [[bob, 'disconnected']],
        'bob (two tabs on the dead node) left once; ann (a tab on a) did not',
      );
      assert.equal(left.items[0].displayName, `${bob} name`);
    }
    // A joiner's snapshot no longer lists bob: his entries are gone, not just old.
    const catConn = await member(c, cat);
    const presence = record(catConn, 'PresenceUpdate');
    await catConn.invoke('JoinRoom', room);
    const [snapshot] = await presence.wait(1);
    assert.deepEqual(snapshot.activeUsers.map((u) => u.userId).sort(), [wes, will, ann, cat].sort());
  });
});
