// The groups kind (subscriptions) and the REST batch send, on two nodes
// joined by Redis, with the official client: groups joined on connect,
// authorised and refused subscriptions, the required argument, relays that
// reach the group on the other node (and nobody else), REST publishes to
// template groups, `:sendBatch` (order, counts, a bad entry, the cap), a
// configured hub replacing the built-in one at its path. The
// examples/ai-gateway preset (seed 003) is driven in ai-gateway.test.mjs.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { closeAllClients, connect, delay, e2eTest, record, startCluster, startRedis, stopAllNodesAfter } from './harness.mjs';
import { chatApi as api, hubException, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 400;

const FEEDS = {
  kind: 'groups',
  path: '/hubs/feeds',
  groups: {
    on_connect: ['vkey-{userId}', 'system-notifications', 'tenant-{tenant}'],
    methods: [
      { name: 'Subscribe', action: 'subscribe', group: 'video-{requestId}', argument: 'requestId', required: 'Request ID is required', allow: 'any' },
      { name: 'Unsubscribe', action: 'unsubscribe', group: 'video-{requestId}', argument: 'requestId', required: 'Request ID is required' },
      { name: 'SubscribeOps', action: 'subscribe', group: 'ops-{id}', allow: 'role:ops', denied: 'Operators only' },
      { name: 'SubscribeScoped', action: 'subscribe', group: 'scoped-{id}', allow: 'channels' },
      { name: 'UpdateNavigation', action: 'relay', group: 'vkey-{userId}', event: 'NavigationUpdated', args: ['state'], allow: 'any', except_caller: true },
      { name: 'Ping', action: 'ping' },
    ],
  },
};
// A hub of another kind at the built-in chat hub's path replaces it.
const CHAT_REPLACED = { kind: 'groups', path: '/hubs/chat', groups: { methods: [{ name: 'Ping', action: 'ping' }] } };
const BATCH_MAX = 25;

const shared = {};
before(async () => {
  shared.redis = await startRedis({ name: 'groups-redis' });
});
after(async () => {
  await closeAllClients();
  await shared.redis?.stop();
});

const client = (node, hub, claims) => connect(node, { url: `${node.baseUrl}/hubs/${hub}`, token: node.token(claims) });
const send = (node, hub, group, target, args) =>
  api(node, 'POST', hub, `/groups/${encodeURIComponent(group)}/:send`, { target, arguments: args });
const batch = (node, hub, messages) => api(node, 'POST', hub, '/:sendBatch', { messages });

/** Asserts that `rec` got `n` items and nothing more within the grace period. */
async function exactly(rec, n) {
  if (n > 0) await rec.wait(n);
  await delay(GRACE_MS);
  assert.equal(rec.items.length, n, JSON.stringify(rec.items));
}

describe('groups hubs on two nodes', () => {
  let n1, n2;
  before(async () => {
    ({ nodes: [n1, n2] } = await startCluster(shared.redis, {
      size: 2,
      name: 'groups',
      env: {
        HUBWIRE_HUB: JSON.stringify([FEEDS, CHAT_REPLACED]),
        HUBWIRE_REST_BATCH_MAX_MESSAGES: String(BATCH_MAX),
      },
    }));
  });
  after(() => Promise.all([n1, n2].map((n) => n?.stop())));

  e2eTest('on-connect groups are joined before start() resolves, from the token; REST publishes reach them', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const a = await client(n2, 'feeds', { sub: alice, tenant: 't1' });
    const aKey = record(a, 'SpendUpdate');
    const aSys = record(a, 'ProviderHealthChanged');
    const aTenant = record(a, 'TenantNews');
    const b = await client(n2, 'feeds', { sub: bob });
    const bKey = record(b, 'SpendUpdate');
    const bSys = record(b, 'ProviderHealthChanged');
    const bTenant = record(b, 'TenantNews');
    // Published on the other node at once: the joins happened before the handshake answer.
    assert.equal((await send(n1, 'feeds', `vkey-${alice}`, 'SpendUpdate', [{ currentSpend: 3 }])).status, 202);
    assert.equal((await send(n1, 'feeds', 'system-notifications', 'ProviderHealthChanged', [{ provider: 'openai' }])).status, 202);
    assert.equal((await send(n1, 'feeds', 'tenant-t1', 'TenantNews', ['t1 only'])).status, 202);
    assert.deepEqual(await aKey.wait(1), [{ currentSpend: 3 }]);
    assert.deepEqual(await aSys.wait(1), [{ provider: 'openai' }]);
    assert.deepEqual(await aTenant.wait(1), ['t1 only']);
    assert.deepEqual(await bSys.wait(1), [{ provider: 'openai' }]);
    // bob's key group is his own; his token has no tenant, so no tenant group.
    await exactly(bKey, 0);
    await exactly(bTenant, 0);
    assert.equal(await a.invoke('Ping'), 'pong');
  });

  e2eTest('subscribe / unsubscribe: template groups, the required argument, role and channels rules', async () => {
    const [alice, op, scoped] = [unique('alice'), unique('op'), unique('scoped')];
    const a = await client(n1, 'feeds', { sub: alice });
    const progress = record(a, 'VideoProgress');
    for (const empty of ['', '   ', null]) {
      await assert.rejects(a.invoke('Subscribe', empty), hubException('Request ID is required'), `argument ${JSON.stringify(empty)}`);
    }
    await assert.rejects(a.invoke('Subscribe'), hubException('Request ID is required'));
    await assert.rejects(a.invoke('Unsubscribe', ''), hubException('Request ID is required'));
    const request = unique('req');
    assert.equal(await a.invoke('Subscribe', request), null);
    assert.equal((await send(n2, 'feeds', `video-${request}`, 'VideoProgress', [{ requestId: request, percentage: 50 }])).status, 202);
    assert.deepEqual(await progress.wait(1), [{ requestId: request, percentage: 50 }]);
    await a.invoke('Unsubscribe', request);
    await send(n2, 'feeds', `video-${request}`, 'VideoProgress', [{ requestId: request, percentage: 60 }]);
    await exactly(progress, 1);

    // role:ops
    await assert.rejects(a.invoke('SubscribeOps', 'x'), hubException('Operators only'));
    const o = await client(n2, 'feeds', { sub: op, roles: ['ops'] });
    const alerts = record(o, 'Alert');
    await o.invoke('SubscribeOps', 'x');
    await send(n1, 'feeds', 'ops-x', 'Alert', ['disk']);
    assert.deepEqual(await alerts.wait(1), ['disk']);

    // channels: the claim must match the group; no claim at all is refused too.
    await assert.rejects(a.invoke('SubscribeScoped', 'a1'), hubException('Access denied.'));
    const s = await client(n2, 'feeds', { sub: scoped, channels: ['scoped-a*'] });
    await assert.rejects(s.invoke('SubscribeScoped', 'b1'), hubException('Access denied.'));
    const scopedNews = record(s, 'Scoped');
    await s.invoke('SubscribeScoped', 'a1');
    await send(n1, 'feeds', 'scoped-a1', 'Scoped', [1]);
    assert.deepEqual(await scopedNews.wait(1), [1]);
  });

  e2eTest('a relay reaches the group on the other node, not the caller (except_caller) nor other users', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const a1 = await client(n1, 'feeds', { sub: alice });
    const a2 = await client(n2, 'feeds', { sub: alice });
    const b = await client(n2, 'feeds', { sub: bob });
    const [r1, r2, rb] = [a1, a2, b].map((c) => record(c, 'NavigationUpdated'));
    const state = { conversationId: 'c-9', route: '/chat/c-9' };
    assert.equal(await a1.invoke('UpdateNavigation', state), null);
    assert.deepEqual(await r2.wait(1), [state]);
    await exactly(r1, 0);
    await exactly(rb, 0);
    await assert.rejects(a1.invoke('UpdateNavigation'), /UpdateNavigation|arguments|HubException|Invocation/);
  });

  e2eTest(':sendBatch delivers in order and answers counts; a bad entry (400, its index) or a batch beyond the cap sends nothing', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const a = await client(n1, 'feeds', { sub: alice });
    const b = await client(n2, 'feeds', { sub: bob });
    const spend = record(a, 'SpendUpdate');
    const direct = record(b, 'Direct');
    const all = record(b, 'Everyone');
    const messages = [];
    for (let i = 0; i < 20; i++) messages.push({ to: 'group', id: `vkey-${alice}`, target: 'SpendUpdate', arguments: [{ seq: i }] });
    messages.push({ to: 'user', id: bob, target: 'Direct', arguments: ['hi', 2] });
    messages.push({ to: 'all', target: 'Everyone', arguments: [] });
    messages.push({ to: 'connection', id: a.connectionId, target: 'SpendUpdate', arguments: [{ seq: 20 }] });
    const res = await batch(n2, 'feeds', messages);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { sent: 23, all: 1, user: 1, group: 20, connection: 1 });
    const seqs = (await spend.wait(21)).map((u) => u.seq);
    assert.deepEqual(seqs, [...Array(21).keys()]);
    assert.deepEqual(await direct.wait(1), [['hi', 2]]);
    await all.wait(1);

    const bad = await batch(n2, 'feeds', [
      { to: 'group', id: `vkey-${alice}`, target: 'SpendUpdate', arguments: [{ seq: 'no' }] },
      { to: 'group', id: `vkey-${alice}`, target: 'SpendUpdate', arguments: [] },
      { to: 'room', id: 'r', target: 'SpendUpdate' },
    ]);
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /messages\[2\]/);
    const tooMany = Array.from({ length: BATCH_MAX + 1 }, () => ({ to: 'group', id: `vkey-${alice}`, target: 'SpendUpdate', arguments: [{ seq: 'cap' }] }));
    const capped = await batch(n1, 'feeds', tooMany);
    assert.equal(capped.status, 400, capped.text);
    assert.match(capped.text, new RegExp(`at most ${BATCH_MAX} messages`));
    await exactly(spend, 21);
    assert.equal((await batch(n1, 'nosuchhub', [])).status, 404);
  });

  e2eTest('a configured hub at /hubs/chat replaces the built-in chat hub', async () => {
    const c = await client(n1, 'chat', { sub: unique('u') });
    assert.equal(await c.invoke('Ping'), 'pong');
    await assert.rejects(c.invoke('JoinConversation', 'x'), /Method does not exist|JoinConversation/);
    const conv = await api(n1, 'POST', 'chat', '/conversations', { participants: ['a', 'b'] });
    assert.equal(conv.status, 404, conv.text);
  });
});
