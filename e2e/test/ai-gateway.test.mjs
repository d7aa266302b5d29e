// examples/ai-gateway (seed 003, "Conduit") on two nodes joined by Redis, the
// gateway in the loop: a small gateway run by this file (a Node HTTP server)
// knows the virtual keys and the master key, answers hubwire's
// authentication hook with the key's id (the master key with the admin role),
// owns the generation requests and tasks (its CanUserAccessTaskAsync answers
// the authorisation hook), and publishes the progress, spend and health
// events through the REST API, as the seed's services do through
// IHubContext. The clients are the seed's: the official client with
// `accessTokenFactory: () => virtualKey` (or the master key), calling the
// seed's hub methods and handling its events.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';

import { closeAllClients, connect, delay, e2eTest, record, startCluster, startJsonBackend, startRedis, stopAllNodesAfter } from './harness.mjs';
import { chatApi, hubException, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 400;

/**
 * The gateway: `keys` maps a virtual key (an opaque string, not a JWT) to its
 * id; `masterKey` signs in as the admin; `owners` maps a request or task id
 * to the virtual key id that started it. Every hook request is recorded.
 */
async function startGateway() {
  const keys = new Map();
  const owners = new Map();
  const masterKey = `mk-${crypto.randomBytes(16).toString('hex')}`;
  const calls = [];
  const backend = await startJsonBackend(({ path: url, body }, json) => {
    calls.push({ path: url, body });
    if (url === '/hubwire/authenticate') {
      if (body.accessToken === masterKey) return json(200, { userId: 'master', roles: ['admin'] });
      const id = keys.get(body.accessToken);
      return id === undefined ? json(401) : json(200, { userId: id, name: `Virtual key ${id}` });
    }
    if (url === '/hubwire/authorize') {
      // CanUserAccessTaskAsync(Context.UserIdentifier, requestId)
      return json(200, { allow: owners.get(body.arguments[0]) === body.userId });
    }
    return json(404);
  });
  return {
    ...backend,
    calls,
    masterKey,
    owners,
    /** A new virtual key: [the key the client holds, its id]. */
    newKey() {
      const id = unique('vk');
      const key = `condt_${crypto.randomBytes(12).toString('hex')}`;
      keys.set(key, id);
      return [key, id];
    },
    /** `_hubContext.Clients.Group(group).SendAsync(target, ...args)` through REST on `node`. */
    publish: (node, hub, group, target, args) =>
      chatApi(node, 'POST', hub, `/groups/${encodeURIComponent(group)}/:send`, { target, arguments: args }),
    /** The seed's BatchedSpendNotificationService flush. */
    flush: (node, messages) => chatApi(node, 'POST', 'spend-notifications', '/:sendBatch', { messages }),
  };
}

/** The seed's ConduitSignalRService.connectToHub: the key as the access token. */
const hub = (node, name, key) => connect(node, { url: `${node.baseUrl}/hubs/${name}`, token: key });

/** Asserts that `rec` got `n` items and nothing more within the grace period. */
async function exactly(rec, n) {
  if (n > 0) await rec.wait(n);
  await delay(GRACE_MS);
  assert.equal(rec.items.length, n, JSON.stringify(rec.items));
}

describe('examples/ai-gateway (seed 003) on two nodes, the gateway in the loop', () => {
  let redis, gateway, n1, n2;
  before(async () => {
    redis = await startRedis({ name: 'ai-gateway-redis' });
    gateway = await startGateway();
    ({ nodes: [n1, n2] } = await startCluster(redis, {
      size: 2,
      name: 'ai-gateway',
      args: ['--config', path.join(ROOT, 'examples', 'ai-gateway', 'hubwire.toml')],
      env: { HUBWIRE_BACKEND_URL: gateway.url },
    }));
  });
  after(async () => {
    await closeAllClients();
    await Promise.all([n1, n2].map((n) => n?.stop()));
    gateway?.close();
    await redis?.stop();
  });

  e2eTest('a virtual key signs in through the gateway; an unknown key is refused with 401', async () => {
    const [key, id] = gateway.newKey();
    const before = gateway.calls.length;
    const spend = await hub(n1, 'spend-notifications', key);
    const auth = gateway.calls.slice(before).filter((c) => c.path === '/hubwire/authenticate');
    assert.ok(auth.length >= 1, 'the gateway was asked');
    assert.equal(auth[0].body.accessToken, key);
    assert.equal(auth[0].body.hub, 'spend-notifications');
    // Context.UserIdentifier is the key's id: the vkey-{id} group joined on connect.
    const updates = record(spend, 'SpendUpdate');
    await gateway.publish(n2, 'spend-notifications', `vkey-${id}`, 'SpendUpdate', [{ virtualKeyId: id, currentSpend: 2 }]);
    assert.deepEqual(await updates.wait(1), [{ virtualKeyId: id, currentSpend: 2 }]);

    await assert.rejects(hub(n2, 'tasks', 'condt_not-a-key'), /401|Unauthorized/);
    await assert.rejects(hub(n1, 'video-generation', ''), /401|Unauthorized/);
  });

  e2eTest('subscriptions are checked by the gateway (CanUserAccessTaskAsync); progress reaches the owner only', async () => {
    const [key, id] = gateway.newKey();
    const [otherKey, otherId] = gateway.newKey();
    const requestId = unique('req');
    gateway.owners.set(requestId, id);

    const video = await hub(n1, 'video-generation', key);
    const intruder = await hub(n2, 'video-generation', otherKey);
    await assert.rejects(video.invoke('SubscribeToVideoGeneration', ''), hubException('Request ID is required'));
    const before = gateway.calls.length;
    await assert.rejects(
      intruder.invoke('SubscribeToVideoGeneration', requestId),
      hubException('Access denied to video generation request'),
    );
    await video.invoke('SubscribeToVideoGeneration', requestId);
    const asked = gateway.calls.slice(before).filter((c) => c.path === '/hubwire/authorize').map((c) => c.body);
    assert.deepEqual(asked, [
      { hub: 'video-generation', userId: otherId, method: 'SubscribeToVideoGeneration', group: `video-${requestId}`, arguments: [requestId] },
      { hub: 'video-generation', userId: id, method: 'SubscribeToVideoGeneration', group: `video-${requestId}`, arguments: [requestId] },
    ]);

    const [progress, completed] = ['VideoProgress', 'VideoCompleted'].map((e) => record(video, e));
    const intruderGot = record(intruder, 'VideoProgress');
    // VideoGenerationService.NotifyProgress, on the other node.
    const p = { requestId, percentage: 40, status: 'rendering', timestamp: new Date().toISOString() };
    assert.equal((await gateway.publish(n2, 'video-generation', `video-${requestId}`, 'VideoProgress', [p])).status, 202);
    assert.deepEqual(await progress.wait(1), [p]);
    await video.invoke('UnsubscribeFromVideoGeneration', requestId);
    await gateway.publish(n1, 'video-generation', `video-${requestId}`, 'VideoCompleted', [{ requestId }]);
    await exactly(completed, 0);
    await exactly(intruderGot, 0);

    // The image and task hubs ask the same way.
    const imageId = unique('img');
    const taskId = unique('task');
    gateway.owners.set(imageId, id);
    gateway.owners.set(taskId, id);
    const image = await hub(n2, 'image-generation', key);
    await assert.rejects(image.invoke('SubscribeToImageGeneration', unique('not-mine')), hubException('Access denied to image generation request'));
    await image.invoke('SubscribeToImageGeneration', imageId);
    const ip = record(image, 'ImageProgress');
    await gateway.publish(n1, 'image-generation', `image-${imageId}`, 'ImageProgress', [{ requestId: imageId, progress: 10 }]);
    assert.deepEqual(await ip.wait(1), [{ requestId: imageId, progress: 10 }]);

    const tasks = await hub(n1, 'tasks', key);
    await assert.rejects(tasks.invoke('SubscribeToTask', ''), hubException('Task ID is required'));
    await assert.rejects(tasks.invoke('SubscribeToTask', unique('not-mine')), hubException('Access denied to task'));
    await tasks.invoke('SubscribeToTask', taskId);
    const events = ['TaskStarted', 'TaskProgress', 'TaskCompleted'];
    const got = events.map((e) => record(tasks, e));
    for (const e of events) await gateway.publish(n2, 'tasks', `task-${taskId}`, e, [{ taskId, event: e }]);
    for (const [i, e] of events.entries()) assert.deepEqual(await got[i].wait(1), [{ taskId, event: e }]);
  });

  e2eTest('spend flush, provider health, webhooks and navigation by virtual key; the admin hub by master key only', async () => {
    const [key, id] = gateway.newKey();
    const [otherKey, otherId] = gateway.newKey();
    const spend = await hub(n1, 'spend-notifications', key);
    const otherSpend = await hub(n2, 'spend-notifications', otherKey);
    const [mine, theirs] = [spend, otherSpend].map((c) => record(c, 'SpendUpdate'));
    const flush = await gateway.flush(n2, [
      { to: 'group', id: `vkey-${id}`, target: 'SpendUpdate', arguments: [{ virtualKeyId: id, currentSpend: 1.5, previousSpend: 1, delta: 0.5 }] },
      { to: 'group', id: `vkey-${otherId}`, target: 'SpendUpdate', arguments: [{ virtualKeyId: otherId, currentSpend: 9, previousSpend: 8, delta: 1 }] },
    ]);
    assert.deepEqual(flush.body, { sent: 2, all: 0, user: 0, group: 2, connection: 0 });
    assert.equal((await mine.wait(1))[0].virtualKeyId, id);
    assert.equal((await theirs.wait(1))[0].virtualKeyId, otherId);
    await exactly(mine, 1);

    // SystemNotificationHub at /hubs/notifications (it replaces the built-in hub there).
    const system = await hub(n2, 'notifications', key);
    const health = record(system, 'ProviderHealthChanged');
    const change = { provider: 'openai', status: 'Unhealthy', message: 'Provider openai is now Unhealthy' };
    await gateway.publish(n1, 'notifications', 'system-notifications', 'ProviderHealthChanged', [change]);
    assert.deepEqual(await health.wait(1), [change]);

    const hooks = await hub(n1, 'webhooks', key);
    const delivered = record(hooks, 'WebhookDelivered');
    await gateway.publish(n2, 'webhooks', `vkey-${id}`, 'WebhookDelivered', [{ url: 'https://app.example/hook' }]);
    assert.deepEqual(await delivered.wait(1), [{ url: 'https://app.example/hook' }]);

    // Two tabs of one key on two nodes, another key: the relay reaches the key's tabs only.
    const nav1 = await hub(n1, 'navigation-state', key);
    const nav2 = await hub(n2, 'navigation-state', key);
    const navOther = await hub(n2, 'navigation-state', otherKey);
    const [u1, u2, uo] = [nav1, nav2, navOther].map((c) => record(c, 'NavigationUpdated'));
    const state = { conversationId: 'conv-1', messageId: 'm-7' };
    await nav1.invoke('UpdateNavigation', state);
    assert.deepEqual(await u1.wait(1), [state]);
    assert.deepEqual(await u2.wait(1), [state]);
    await exactly(uo, 0);

    // getTokenForHub('admin-notifications') is the master key; a virtual key is refused.
    await assert.rejects(hub(n1, 'admin-notifications', key), /401|Unauthorized/);
    const admin = await hub(n2, 'admin-notifications', gateway.masterKey);
    const alert = record(admin, 'SystemAlert');
    await gateway.publish(n1, 'admin-notifications', 'admin', 'SystemAlert', [{ level: 'warning' }]);
    assert.deepEqual(await alert.wait(1), [{ level: 'warning' }]);
  });
});
