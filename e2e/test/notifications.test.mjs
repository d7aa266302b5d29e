// The built-in notifications hub (`/hubs/notifications`, MISSION.md's names)
// driven by the official @microsoft/signalr client on three nodes joined by
// Redis and sharing PostgreSQL: notifications created through the REST API
// reach a user's sessions on every node, a tenant's connections only, a
// channel's subscribers only; acknowledged / read state is stored and synced
// to the user's other sessions; unread ones are fetched after a reconnect
// (hub method and REST); a batch arrives as ReceiveNotificationBatch; bad
// bodies are 400 with a clear message. Then seed 002's NotificationHub preset
// (examples/delivery-messaging) driven by the seed's own names.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';

import { accessToken, closeAllClients, connect, delay, e2eTest, record, startCluster, startRedis, stopAllNodesAfter, waitFor } from './harness.mjs';
import { startPostgres } from './postgres.mjs';
import { chatApi, GRACE_MS, hubException, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A connection of `user` to `hub` on `node`, its token with `tenant` / `channels`. */
const client = (node, user, { tenant, channels, hub = 'notifications' } = {}) =>
  connect(node, { hub, user, token: node.token({ sub: user, tenant, channels }) });

/** POST /api/hubs/{hub}/notifications on `node`. */
const notify = (node, body, hub = 'notifications') => chatApi(node, 'POST', hub, '/notifications', body);

/** GET /api/hubs/{hub}/users/{user}/notifications{query} on `node`. */
const listOf = (node, user, query = '', hub = 'notifications') =>
  chatApi(node, 'GET', hub, `/users/${encodeURIComponent(user)}/notifications${query}`);

/** Waits until `group` of `hub` has `n` connections cluster-wide (joins at connect run on a task). */
async function groupHas(node, group, n, hub = 'notifications') {
  await waitFor(
    async () => {
      const res = await chatApi(node, 'GET', hub, `/groups/${encodeURIComponent(group)}/count`);
      return res.status === 200 && res.body.connections === n;
    },
    { what: `${n} connections in group ${group}` },
  );
}

describe('three nodes, Redis and PostgreSQL', () => {
  let cluster;
  let n1, n2, n3;
  before(async () => {
    cluster = await startChatCluster({ size: 3, name: 'notif' });
    [n1, n2, n3] = cluster.nodes;
  });
  after(() => cluster?.stop());

  e2eTest("a notification reaches the user's sessions on every node; ack / read synced to the others and stored", async () => {
    const user = unique('user');
    const sessions = [await client(n1, user), await client(n2, user), await client(n3, user)];
    const received = sessions.map((s) => record(s, 'ReceiveNotification'));
    const acked = sessions.map((s) => record(s, 'NotificationAcknowledged'));
    const read = sessions.map((s) => record(s, 'NotificationRead'));
    const other = await client(n2, unique('other'));
    const otherReceived = record(other, 'ReceiveNotification');

    const res = await notify(n1, { userId: user, type: 'order.update', title: 'Picked up', body: 'On its way', data: { orderId: 42 } });
    assert.equal(res.status, 201, res.text);
    const { id } = res.body;
    assert.match(id, /^\d+$/);
    assert.equal(res.body.audience, 'user');
    assert.equal(res.body.userId, user);
    assert.equal(res.body.readAt, null);
    assert.match(res.body.createdAt, ISO);
    const expected = { id, type: 'order.update', title: 'Picked up', body: 'On its way', data: { orderId: 42 }, createdAt: res.body.createdAt };
    for (const rec of received) assert.deepEqual((await rec.wait(1))[0], expected);

    assert.equal(await sessions[0].invoke('AcknowledgeNotification', id), null);
    for (const i of [1, 2]) assert.deepEqual((await acked[i].wait(1))[0], id);
    assert.equal(await sessions[1].invoke('MarkAsRead', id), null);
    for (const i of [0, 2]) {
      const [readId, readAt] = (await read[i].wait(1))[0];
      assert.equal(readId, id);
      assert.match(readAt, ISO);
    }
    await delay(GRACE_MS);
    assert.equal(acked[0].items.length, 0, 'the acknowledging session is not told');
    assert.equal(read[1].items.length, 0, 'the reading session is not told');
    assert.equal(otherReceived.items.length, 0, "another user's session got nothing");

    const all = await listOf(n3, user);
    assert.equal(all.status, 200, all.text);
    assert.equal(all.body.value.length, 1);
    assert.equal(all.body.value[0].id, id);
    assert.match(all.body.value[0].acknowledgedAt, ISO);
    assert.equal(all.body.value[0].readAt, read[0].items[0][1], 'the stored readAt is the one sent');
    const unread = await listOf(n2, user, '?unread=true');
    assert.deepEqual(unread.body.value, []);

    await assert.rejects(sessions[0].invoke('MarkAsRead', 'nope'), hubException("no notification 'nope' for this user"));
    await assert.rejects(other.invoke('AcknowledgeNotification', id), /HubException: no notification/);
    assert.equal(await sessions[2].invoke('Ping'), 'pong');
  });

  e2eTest('a user who was offline gets the unread ones on reconnect (hub method and REST, paged)', async () => {
    const user = unique('offline');
    const ids = [];
    for (const title of ['first', 'second', 'third']) {
      const res = await notify(n2, { userId: user, type: 'note', title });
      assert.equal(res.status, 201, res.text);
      ids.push(res.body.id);
    }
    const everyone = await notify(n1, { all: true, type: 'broadcast', title: 'to all' });
    assert.equal(everyone.status, 201, everyone.text);

    const first = await client(n3, user);
    const unread = await first.invoke('GetUnreadNotifications');
    const mine = unread.filter((n) => n.type === 'note');
    assert.deepEqual(mine.map((n) => n.title), ['third', 'second', 'first'], 'newest first');
    assert.deepEqual(Object.keys(mine[0]).sort(), ['body', 'createdAt', 'data', 'id', 'title', 'type']);
    assert.ok(unread.some((n) => n.id === everyone.body.id), 'an all-users notification counts as unread too');
    await first.invoke('MarkAsRead', ids[1]);
    await first.stop();

    const again = await client(n1, user);
    const left = (await again.invoke('GetUnreadNotifications')).filter((n) => n.type === 'note');
    assert.deepEqual(left.map((n) => n.id), [ids[2], ids[0]]);
    assert.equal((await again.invoke('GetUnreadNotifications', 1)).length, 1, 'limit');

    const page1 = await listOf(n2, user, '?unread=true&limit=2');
    assert.equal(page1.status, 200, page1.text);
    assert.equal(page1.body.value.length, 2);
    assert.equal(page1.body.value[0].id, everyone.body.id);
    assert.equal(page1.body.value[1].id, ids[2]);
    assert.ok(page1.body.nextLink, 'a next page');
    const rest = page1.body.nextLink.replace(/^\/api\/hubs\/notifications/, '');
    const page2 = await chatApi(n2, 'GET', 'notifications', rest);
    assert.deepEqual(page2.body.value.map((n) => n.id), [ids[0]]);
    assert.equal(page2.body.nextLink, null);
  });

  e2eTest('a tenant-wide send reaches every connection of the tenant on every node, and only them', async () => {
    const [t1, t2] = [unique('tenant'), unique('tenant')];
    const a = await client(n1, unique('a'), { tenant: t1 });
    const b = await client(n2, unique('b'), { tenant: t1 });
    const c = await client(n3, unique('c'), { tenant: t2 });
    const d = await client(n3, unique('d'));
    const got = [a, b, c, d].map((s) => record(s, 'ReceiveNotification'));
    await groupHas(n1, `tenant_${t1}`, 2);
    await groupHas(n1, `tenant_${t2}`, 1);

    const res = await notify(n3, { tenant: t1, type: 'maintenance', title: 'Down at noon' });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.tenant, t1);
    for (const rec of got.slice(0, 2)) assert.equal((await rec.wait(1))[0].id, res.body.id);
    await delay(GRACE_MS);
    assert.equal(got[2].items.length, 0, 'another tenant got nothing');
    assert.equal(got[3].items.length, 0, 'a connection without a tenant got nothing');

    const listed = await listOf(n1, 'someone', `?unread=true&tenant=${t1}`);
    assert.deepEqual(listed.body.value.map((n) => n.id).filter((id) => id === res.body.id), [res.body.id]);
    const notListed = await listOf(n1, 'someone', `?unread=true&tenant=${t2}`);
    assert.ok(!notListed.body.value.some((n) => n.id === res.body.id));
  });

  e2eTest("channel subscriptions follow the token's channels claim; channel sends reach subscribers only", async () => {
    const channel = unique('task');
    const allowed = await client(n1, unique('worker'), { channels: ['task-*'] });
    const refused = await client(n2, unique('rider'), { channels: ['rides'] });
    const unclaimed = await client(n3, unique('free'));
    const later = await client(n2, unique('late'), { channels: ['task-*'] });
    const got = [allowed, refused, unclaimed, later].map((s) => record(s, 'ReceiveNotification'));

    assert.equal(await allowed.invoke('SubscribeToChannel', channel), null);
    await assert.rejects(refused.invoke('SubscribeToChannel', channel), /HubException: You may not subscribe to channel/);
    await assert.rejects(allowed.invoke('SubscribeToChannel', 'orders'), /HubException: You may not subscribe to channel 'orders'/);
    assert.equal(await unclaimed.invoke('SubscribeToChannel', channel), null, 'no channels claim: any channel');

    const res = await notify(n2, { channel, type: 'task', title: 'Task ready' });
    assert.equal(res.status, 201, res.text);
    assert.equal((await got[0].wait(1))[0].id, res.body.id);
    assert.equal((await got[2].wait(1))[0].id, res.body.id);
    const unread = await allowed.invoke('GetUnreadNotifications');
    assert.ok(unread.some((n) => n.id === res.body.id), "a subscribed channel's notification is unread");

    await unclaimed.invoke('UnsubscribeFromChannel', channel);
    const second = await notify(n3, { channel, type: 'task', title: 'Task two' });
    assert.equal((await got[0].wait(2))[1].id, second.body.id);
    await delay(GRACE_MS);
    assert.equal(got[1].items.length, 0, 'a refused subscriber got nothing');
    assert.equal(got[2].items.length, 1, 'an unsubscribed connection got no more');
    assert.equal(got[3].items.length, 0, 'a connection that never subscribed got nothing');
  });

  e2eTest("a channel's notifications are listed by REST, newest first, paged with nextLink", async () => {
    const channel = unique('orders');
    const ids = [];
    for (const [node, title] of [[n1, 'c0'], [n2, 'c1'], [n3, 'c2']]) {
      const res = await notify(node, { channel, type: 'order', title });
      assert.equal(res.status, 201, res.text);
      ids.push(res.body.id);
    }
    assert.equal((await notify(n1, { channel: unique('other'), type: 'order', title: 'elsewhere' })).status, 201);
    assert.equal((await notify(n2, { userId: unique('u'), type: 'order', title: 'to a user' })).status, 201);

    const path = `/channels/${encodeURIComponent(channel)}/notifications`;
    const page1 = await chatApi(n3, 'GET', 'notifications', `${path}?limit=2`);
    assert.equal(page1.status, 200, page1.text);
    assert.deepEqual(page1.body.value.map((n) => n.title), ['c2', 'c1']);
    assert.deepEqual(page1.body.value.map((n) => n.id), [ids[2], ids[1]]);
    assert.equal(page1.body.value[0].channel, channel);
    assert.equal(page1.body.value[0].audience, 'channel');
    assert.equal(page1.body.value[0].readAt, null);
    assert.equal(page1.body.nextLink, `/api/hubs/notifications${path}?before=${ids[1]}&limit=2`);
    const page2 = await chatApi(n1, 'GET', 'notifications', page1.body.nextLink.replace(/^\/api\/hubs\/notifications/, ''));
    assert.deepEqual(page2.body.value.map((n) => n.id), [ids[0]]);
    assert.equal(page2.body.nextLink, null);
    const empty = await chatApi(n2, 'GET', 'notifications', `/channels/${unique('none')}/notifications`);
    assert.deepEqual(empty.body, { value: [], nextLink: null });
    assert.equal((await chatApi(n2, 'GET', 'notifications', `${path}?before=abc`)).status, 400);
    assert.equal((await chatApi(n2, 'GET', 'notifications', `${path}?limit=0`)).status, 400);
  });

  e2eTest('notifications created on three nodes at once get distinct ids and are all stored', async () => {
    const user = unique('burst');
    const batch = (node, k) =>
      notify(node, { notifications: Array.from({ length: 20 }, (_, i) => ({ userId: user, type: 'burst', title: `${k}-${i}` })) });
    const answers = await Promise.all([n1, n2, n3, n1, n2, n3].map((node, k) => batch(node, k)));
    for (const res of answers) assert.equal(res.status, 201, res.text);
    const ids = answers.flatMap((res) => res.body.value.map((n) => n.id));
    assert.equal(ids.length, 120);
    assert.equal(new Set(ids).size, 120, 'no two notifications share an id');
    const listed = await listOf(n2, user, '?limit=200');
    const bursts = listed.body.value.filter((n) => n.type === 'burst');
    assert.deepEqual(new Set(bursts.map((n) => n.id)), new Set(ids), 'every one stored for the user');
  });

  e2eTest('a batch arrives as ReceiveNotificationBatch, one per audience', async () => {
    const user = unique('batch');
    const tenant = unique('tenant');
    const s1 = await client(n1, user, { tenant });
    const s2 = await client(n3, user, { tenant });
    const single = [s1, s2].map((s) => record(s, 'ReceiveNotification'));
    const batches = [s1, s2].map((s) => record(s, 'ReceiveNotificationBatch'));
    await groupHas(n2, `tenant_${tenant}`, 2);

    const res = await notify(n2, {
      notifications: [
        { userId: user, type: 'a', title: 'one' },
        { tenant, type: 'b', title: 'tenant one' },
        { userId: user, type: 'a', title: 'two', data: [1, 2] },
      ],
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.value.length, 3);
    for (const rec of batches) {
      const items = await rec.wait(2);
      const byTitle = items.map((ns) => ns.map((n) => n.title)).sort();
      assert.deepEqual(byTitle, [['one', 'two'], ['tenant one']]);
      const mine = items.find((ns) => ns.length === 2);
      assert.deepEqual(mine[1], {
        id: res.body.value[2].id,
        type: 'a',
        title: 'two',
        body: null,
        data: [1, 2],
        createdAt: res.body.value[2].createdAt,
      });
    }
    await delay(GRACE_MS);
    assert.equal(single[0].items.length + single[1].items.length, 0, 'a batch is not also sent one by one');
  });

  e2eTest('bad REST bodies are 400 with a clear message; other hubs are 404', async () => {
    const cases = [
      [{ type: 't', title: 'x' }, /exactly one audience field .* \(it has none\)/],
      [{ userId: 'u', tenant: 't', type: 't', title: 'x' }, /exactly one audience field .* \(it has userId, tenant\)/],
      [{ userId: 'u', title: 'x' }, /"type" must be a non-empty string/],
      [{ userId: 'u', type: 't' }, /"title" must be a non-empty string/],
      [{ userId: '', type: 't', title: 'x' }, /"userId" must be a non-empty string/],
      [{ all: false, type: 't', title: 'x' }, /"all" must be true/],
      [{ userId: 'u', type: 't', title: 'x', colour: 'red' }, /unknown field "colour"/],
      [{ userId: 'u', type: 't', title: 'x', body: 5 }, /"body" must be a string/],
      [{ userId: 'u', type: 't', title: 'x'.repeat(300) }, /max_title_chars/],
      [[1, 2], /must be a JSON object/],
      [{ notifications: [] }, /a batch holds 1 to 100 notifications/],
      [{ notifications: {} }, /"notifications" must be an array/],
      [{ notifications: [{ userId: 'u', type: 't', title: 'x' }, { type: 't', title: 'y' }] }, /notifications\[1\] must have exactly one audience/],
    ];
    for (const [body, message] of cases) {
      const res = await notify(n1, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.match(res.body.message, message, JSON.stringify(body));
    }
    const url = `${n1.baseUrl}/api/hubs/notifications/notifications`;
    const notJson = await fetch(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${accessToken(n1, 'http://127.0.0.1/api/hubs/notifications/notifications')}` },
      body: '{',
    });
    assert.equal(notJson.status, 400);
    assert.match(await notJson.text(), /the body must be JSON/);
    const chat = await notify(n1, { userId: 'u', type: 't', title: 'x' }, 'chat');
    assert.equal(chat.status, 404, chat.text);
    assert.match(chat.text, /not a notifications hub/);
    const badQuery = await listOf(n1, 'u', '?unread=maybe');
    assert.equal(badQuery.status, 400);
    assert.match(badQuery.text, /unread must be true or false/);
    // Nothing of the refused batch was stored.
    const stored = await listOf(n2, 'u');
    assert.deepEqual(stored.body.value.filter((n) => n.audience !== 'all'), []);
  });
});

describe('examples/delivery-messaging (seed 002 NotificationHub) on two nodes', () => {
  const shared = { nodes: [] };
  let p1, p2;
  before(async () => {
    shared.postgres = await startPostgres();
    shared.redis = await startRedis({ name: 'notif-preset-redis' });
    const started = await startCluster(shared.redis, {
      size: 2,
      name: 'notif-preset',
      args: ['--config', path.join(ROOT, 'examples', 'delivery-messaging', 'hubwire.toml')],
      env: { HUBWIRE_DATABASE_URL: shared.postgres.url },
    });
    shared.nodes = started.nodes;
    [p1, p2] = started.nodes;
  });
  after(async () => {
    await closeAllClients();
    await Promise.all(shared.nodes.map((n) => n.stop()));
    await shared.redis?.stop();
    shared.postgres?.stop();
  });

  e2eTest("the seed's client: ReceiveNotification on every session, NotificationAcknowledged / NotificationRead to the others, tenant and channel sends, a batch", async () => {
    const driver = unique('driver');
    const tenant = unique('listo');
    const phone = await client(p1, driver, { tenant, channels: ['orders', 'rides'] });
    const web = await client(p2, driver, { tenant, channels: ['orders', 'rides'] });
    const dispatcher = await client(p2, unique('dispatcher'), { tenant: unique('other') });
    const on = (conn, method) => record(conn, method);
    const phoneGot = on(phone, 'ReceiveNotification');
    const webGot = on(web, 'ReceiveNotification');
    const dispatcherGot = on(dispatcher, 'ReceiveNotification');
    const webAcked = on(web, 'NotificationAcknowledged');
    const phoneRead = on(phone, 'NotificationRead');
    const webBatch = on(web, 'ReceiveNotificationBatch');

    assert.equal(await phone.invoke('Ping'), 'pong');
    assert.equal(await phone.invoke('SubscribeToChannel', 'orders'), null);
    await assert.rejects(phone.invoke('SubscribeToChannel', 'payments'), /HubException: You may not subscribe/);

    const res = await notify(p1, { userId: driver, type: 'RideAssigned', title: 'New ride', body: 'Pickup at 5th Ave', data: { rideId: 'r1' } });
    assert.equal(res.status, 201, res.text);
    const n = (await webGot.wait(1))[0];
    assert.deepEqual(n, (await phoneGot.wait(1))[0]);
    assert.deepEqual(Object.keys(n).sort(), ['body', 'createdAt', 'data', 'id', 'title', 'type']);
    assert.equal(n.id, res.body.id);

    await phone.invoke('AcknowledgeNotification', n.id);
    assert.equal((await webAcked.wait(1))[0], n.id);
    await web.invoke('MarkAsRead', n.id);
    const [readId, readAt] = (await phoneRead.wait(1))[0];
    assert.equal(readId, n.id);
    assert.match(readAt, ISO);

    await groupHas(p1, `tenant:${tenant}`, 2);
    const tenantWide = await notify(p2, { tenant, type: 'Announcement', title: 'Surge pricing' });
    assert.equal(tenantWide.status, 201, tenantWide.text);
    assert.equal((await webGot.wait(2))[1].id, tenantWide.body.id);
    assert.equal((await phoneGot.wait(2))[1].id, tenantWide.body.id);

    const order = await notify(p2, { channel: 'orders', type: 'OrderCreated', title: 'Order #7' });
    assert.equal((await phoneGot.wait(3))[2].id, order.body.id);

    const batch = await notify(p1, { notifications: [
      { userId: driver, type: 'A', title: 'one' },
      { userId: driver, type: 'B', title: 'two' },
    ] });
    assert.equal(batch.status, 201, batch.text);
    const ns = (await webBatch.wait(1))[0];
    assert.deepEqual(ns.map((x) => x.title), ['one', 'two']);

    await delay(GRACE_MS);
    assert.equal(dispatcherGot.items.length, 0, "another tenant's user got nothing");
    assert.equal(webGot.items.length, 2, 'the unsubscribed session got no channel send');
  });
});
