// The app's backend in the loop (docs/hubs.md, "The backend hooks"): a small
// backend run by this file (a Node HTTP server) answers hubwire's
// authentication hook (cookie or opaque access_token -> principal, 401, 403,
// or too slow) and its authorisation hook (JoinConversation allowed or not).
// The official client connects with a Cookie header on all three transports;
// refusals reach it as 401 / 403; a backend that is down or slower than the
// timeout gives 503 and the call returns; answers are cached for the
// configured time; the social-chat preset (seed 001) signs in with its
// ASP.NET Identity cookie through the backend; concurrent misses of one
// credential share one backend call (its answer, or its 503).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';

import { HubConnectionBuilder, HttpTransportType, LogLevel } from '@microsoft/signalr';

import {
  delay,
  e2eTest,
  freePort,
  negotiate,
  startJsonBackend,
  startNode,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
  wsUpgradeStatus,
} from './harness.mjs';
import { createConversation, hookRequests, hubException, metric, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECRET = crypto.randomBytes(24).toString('hex');
const COOKIE = '.AspNetCore.Identity.Application';
/** The authentication cache of the main node, in seconds. */
const AUTH_CACHE_SECS = 2;
/** Longer than the main node's backend timeout (500 ms). */
const SLOW_MS = 3_000;

/**
 * The app's backend: `/hubwire/authenticate` reads the Identity cookie (or
 * the `accessToken`): `good-<user>` signs <user> in, `refused` answers 401,
 * `forbidden` 403, `slow-<user>` answers after SLOW_MS, `held-<user>` when
 * the test calls `release(credential)` (never, if it does not);
 * `/hubwire/authorize` allows every group but those with `deny` in their
 * name. Every request is recorded with its parsed body and whether its
 * signature is right.
 */
async function startBackend() {
  const calls = [];
  /** Credential -> answers held until released. */
  const held = new Map();
  const backend = await startJsonBackend(({ path: url, body, raw, headers }, json) => {
    const expected = `sha256=${crypto.createHmac('sha256', SECRET).update(raw).digest('hex')}`;
    calls.push({ path: url, body, signed: headers['x-hubwire-signature'] === expected });
    if (url === '/hubwire/authorize') {
      return json(200, { allow: !body.group.includes('deny') });
    }
    const cookie = /(?:^|;\s*)\.AspNetCore\.Identity\.Application=([^;]*)/.exec(body.headers?.cookie ?? '')?.[1];
    const credential = cookie ?? body.accessToken ?? '';
    if (credential.startsWith('good-')) {
      const user = credential.slice(5);
      return json(200, { userId: user, name: `Name of ${user}`, roles: ['member'], picture: `http://pics/${user}.png`, expiresIn: 3600 });
    }
    if (credential.startsWith('held-')) {
      const answer = () => json(200, { userId: credential.slice(5) });
      held.set(credential, [...(held.get(credential) ?? []), answer]);
      return undefined;
    }
    if (credential.startsWith('slow-')) {
      setTimeout(() => json(200, { userId: credential.slice(5) }), SLOW_MS).unref();
      return undefined;
    }
    if (credential === 'forbidden') return json(403);
    return json(401);
  });
  return {
    ...backend,
    calls,
    callsWith: (value) => calls.filter((c) => JSON.stringify(c.body).includes(value)),
    release: (credential) => {
      for (const answer of held.get(credential) ?? []) answer();
      held.delete(credential);
    },
  };
}

/** A chat hub at /hubs/backed whose conversations are groups `{id}`, asking the backend. */
const HUB = [
  {
    kind: 'chat',
    path: '/hubs/backed',
    conversation_group: '{id}',
    methods: [
      { name: 'JoinConversation', operation: 'join_conversation', args: ['conversationId'] },
      { name: 'SendMessage', operation: 'send_message', args: ['conversationId', 'content'] },
    ],
    backend: { authenticate: '/hubwire/authenticate', authorize: '/hubwire/authorize' },
  },
  // A groups hub (seed 003's task subscriptions) whose subscriptions the backend allows.
  {
    kind: 'groups',
    path: '/hubs/tasks',
    backend: { authorize: '/hubwire/authorize' },
    groups: {
      methods: [
        { name: 'SubscribeToTask', action: 'subscribe', group: 'task-{taskId}', argument: 'taskId', allow: 'backend', denied: 'You may not follow this task.' },
      ],
    },
  },
  // A rooms hub (seed 004's lists) whose joins the backend allows when no grant does.
  { kind: 'rooms', path: '/hubs/lists', backend: { authorize: '/hubwire/authorize' }, rooms: { group: 'list_{id}' } },
];

const clients = new Set();
/** An official client to `url` sending `cookie` as the Identity cookie (none: no cookie). */
function client(url, { cookie, transport = HttpTransportType.WebSockets, accessToken } = {}) {
  const options = { transport };
  if (cookie !== undefined) options.headers = { Cookie: `${COOKIE}=${cookie}; theme=dark` };
  if (accessToken !== undefined) options.accessTokenFactory = () => accessToken;
  const conn = new HubConnectionBuilder().withUrl(url, options).configureLogging(LogLevel.None).build();
  clients.add(conn);
  return conn;
}
async function connected(url, opts) {
  const conn = client(url, opts);
  await withTimeout(conn.start(), 10_000, `start() to ${url}`);
  return conn;
}
async function stopClients() {
  await Promise.all([...clients].map((c) => c.stop().catch(() => {})));
  clients.clear();
}
const cookieHeader = (value) => ({ Cookie: `${COOKIE}=${value}` });

describe('backend authentication and authorisation hooks', () => {
  let backend;
  let node; // cache AUTH_CACHE_SECS, timeout 500 ms, signed
  let uncached; // the same backend, nothing cached: every request asks it
  let orphan; // a backend URL nobody listens on
  before(async () => {
    backend = await startBackend();
    const env = { HUBWIRE_HUB: JSON.stringify(HUB), HUBWIRE_BACKEND_URL: backend.url, HUBWIRE_BACKEND_TIMEOUT_MS: '500' };
    node = await startNode({
      name: 'backed',
      env: { ...env, HUBWIRE_BACKEND_AUTH_CACHE_SECS: String(AUTH_CACHE_SECS), HUBWIRE_BACKEND_SECRET: SECRET },
    });
    uncached = await startNode({
      name: 'uncached',
      env: { ...env, HUBWIRE_BACKEND_AUTH_CACHE_SECS: '0', HUBWIRE_BACKEND_AUTHORIZE_CACHE_SECS: '0' },
    });
    const nobody = await freePort();
    orphan = await startNode({ name: 'orphan', env: { ...env, HUBWIRE_BACKEND_URL: `http://127.0.0.1:${nobody}` } });
  });
  after(async () => {
    await stopClients();
    backend?.close();
  });

  e2eTest('a cookie signs the user in on all three transports; the backend is told the transport and the address', async () => {
    for (const [transport, name] of [
      [HttpTransportType.WebSockets, 'WebSockets'],
      [HttpTransportType.ServerSentEvents, 'ServerSentEvents'],
      [HttpTransportType.LongPolling, 'LongPolling'],
    ]) {
      const user = unique(`cookie-${name}`);
      const id = await createConversation(uncached, [user], { hub: 'backed' });
      const conn = await connected(uncached.hubUrl('backed'), { cookie: `good-${user}`, transport });
      // The participant check passes only for the backend's user id.
      assert.deepEqual(await conn.invoke('JoinConversation', id), []);
      const sent = await conn.invoke('SendMessage', id, `over ${name}`);
      assert.equal(sent.senderId, user, name);
      const seen = backend.callsWith(`good-${user}`).filter((c) => c.path === '/hubwire/authenticate');
      const transports = new Set(seen.map((c) => c.body.transport ?? 'negotiate'));
      assert.ok(transports.has('negotiate') && transports.has(name), `${name}: ${[...transports]}`);
      for (const { body } of seen) {
        assert.equal(body.hub, 'backed');
        assert.equal(body.remoteAddr, '127.0.0.1');
        assert.match(body.headers.cookie, new RegExp(`${COOKIE.replace(/\./g, '\\.')}=good-${user}; theme=dark`));
        assert.equal(body.accessToken, undefined, 'absent fields are left out');
      }
      await conn.stop();
    }
  });

  e2eTest('an opaque access_token goes to the backend; a valid JWT does not', async () => {
    const user = unique('opaque');
    const id = await createConversation(node, [user], { hub: 'backed' });
    const conn = await connected(node.hubUrl('backed'), { accessToken: `good-${user}` });
    assert.equal((await conn.invoke('SendMessage', id, 'hi')).senderId, user);
    const [call] = backend.callsWith(`good-${user}`);
    assert.equal(call.body.accessToken, `good-${user}`);
    assert.equal(call.body.headers.authorization, `Bearer good-${user}`);
    assert.ok(call.signed, 'signed with backend_secret');

    const jwtUser = unique('jwt');
    const before = backend.calls.length;
    const jwt = await connected(node.hubUrl('backed'), { accessToken: node.token({ sub: jwtUser }) });
    await jwt.invoke('JoinConversation', await createConversation(node, [jwtUser], { hub: 'backed' }));
    assert.equal(
      backend.calls.slice(before).filter((c) => c.path === '/hubwire/authenticate').length,
      0,
      'a valid JWT needs no backend',
    );
  });

  e2eTest('refusals reach the client as 401 and 403 on negotiate and connect', async () => {
    for (const [cookie, status] of [
      ['refused', 401],
      ['forbidden', 403],
    ]) {
      const res = await negotiate(node, { hub: 'backed', headers: cookieHeader(cookie) });
      assert.equal(res.status, status, `negotiate with ${cookie}`);
      assert.equal(await wsUpgradeStatus(node, '/hubs/backed', { headers: cookieHeader(cookie) }), status);
      const conn = client(node.hubUrl('backed'), { cookie });
      await assert.rejects(withTimeout(conn.start(), 10_000, 'start()'), new RegExp(`${status}`));
    }
    assert.equal((await negotiate(node, { hub: 'backed' })).status, 401, 'no credentials at all');
    assert.ok((await metric(node, 'hubwire_requests_refused_total{reason="backend_forbidden"}')) >= 1);
  });

  e2eTest('a backend slower than the timeout, or down, gives 503 and the call returns', async () => {
    const slow = await negotiate(node, { hub: 'backed', headers: cookieHeader(`slow-${unique('s')}`) });
    assert.equal(slow.status, 503);
    assert.equal(
      await wsUpgradeStatus(node, '/hubs/backed', { headers: cookieHeader(`slow-${unique('s')}`) }),
      503,
    );
    const down = await negotiate(orphan, { hub: 'backed', headers: cookieHeader(`good-${unique('d')}`) });
    assert.equal(down.status, 503);
    const conn = client(orphan.hubUrl('backed'), { cookie: `good-${unique('d')}` });
    await assert.rejects(withTimeout(conn.start(), 10_000, 'start()'), /503/);
    assert.ok((await metric(orphan, 'hubwire_requests_refused_total{reason="backend_unavailable"}')) >= 2);
    assert.ok((await metric(node, 'hubwire_requests_refused_total{reason="backend_unavailable"}')) >= 2);
    // The node stays usable: the next request with a good cookie signs in.
    const user = unique('after-slow');
    const ok = await negotiate(node, { hub: 'backed', headers: cookieHeader(`good-${user}`) });
    assert.equal(ok.status, 200, ok.text);
  });

  e2eTest('answers are cached: one backend call for repeated connects within the TTL, again after it', async () => {
    const user = unique('cached');
    const authCalls = () => backend.callsWith(`good-${user}`).filter((c) => c.path === '/hubwire/authenticate').length;
    for (let i = 0; i < 3; i++) {
      const conn = await connected(node.hubUrl('backed'), { cookie: `good-${user}` });
      await conn.stop();
    }
    assert.equal(authCalls(), 1, 'three negotiates and three connects, one call');
    await delay(AUTH_CACHE_SECS * 1000 + 500);
    const conn = await connected(node.hubUrl('backed'), { cookie: `good-${user}` });
    await conn.stop();
    assert.equal(authCalls(), 2, 'asked again once the answer expired');
    // A refusal is cached too.
    const refusedBefore = backend.callsWith('=refused').length;
    const stranger = `refused; n=${unique('n')}`;
    await negotiate(node, { hub: 'backed', headers: { Cookie: `${COOKIE}=${stranger}` } });
    await negotiate(node, { hub: 'backed', headers: { Cookie: `${COOKIE}=${stranger}` } });
    assert.equal(backend.callsWith('=refused').length - refusedBefore, 1);
  });

  e2eTest('JoinConversation is allowed or denied by the authorisation hook', async () => {
    const user = unique('joiner');
    const allowed = await createConversation(node, [user], { hub: 'backed', id: unique('open') });
    const denied = await createConversation(node, [user], { hub: 'backed', id: unique('deny') });
    const conn = await connected(node.hubUrl('backed'), { cookie: `good-${user}` });
    assert.deepEqual(await conn.invoke('JoinConversation', allowed), []);
    await assert.rejects(conn.invoke('JoinConversation', denied), hubException('not a participant'));
    const asked = backend.calls.filter((c) => c.path === '/hubwire/authorize' && c.body.userId === user);
    assert.deepEqual(
      asked.map((c) => c.body),
      [
        { hub: 'backed', userId: user, method: 'JoinConversation', group: allowed, arguments: [allowed] },
        { hub: 'backed', userId: user, method: 'JoinConversation', group: denied, arguments: [denied] },
      ],
    );
    assert.ok(asked.every((c) => c.signed));
    // A backend that cannot answer allows nothing (JWT sign-in; the join asks the dead backend).
    const orphanUser = unique('orphan');
    const id = await createConversation(orphan, [orphanUser], { hub: 'backed' });
    const lonely = await connected(orphan.hubUrl('backed'), { accessToken: orphan.token({ sub: orphanUser }) });
    await assert.rejects(lonely.invoke('JoinConversation', id), hubException('not a participant'));
  });
});

describe('concurrent misses of one credential share one backend call', () => {
  let backend;
  let node; // timeout 4 s, default cache, no per-user connection limit
  before(async () => {
    backend = await startBackend();
    node = await startNode({
      name: 'single-flight',
      env: {
        HUBWIRE_HUB: JSON.stringify(HUB),
        HUBWIRE_BACKEND_URL: backend.url,
        HUBWIRE_BACKEND_TIMEOUT_MS: '4000',
        HUBWIRE_MAX_CONNECTIONS_PER_USER: '0',
      },
    });
  });
  after(async () => {
    await stopClients();
    backend?.close();
  });
  const shared = () => metric(node, 'hubwire_backend_shared_total{hook="authenticate"}');
  const authCalls = (credential) =>
    backend.callsWith(credential).filter((c) => c.path === '/hubwire/authenticate').length;

  e2eTest('20 clients connecting at once with one cookie: one authenticate call, all 20 signed in as its user', async () => {
    const user = unique('storm');
    const credential = `held-${user}`;
    const id = await createConversation(node, [user], { hub: 'backed' });
    const before = await shared();
    const okBefore = await hookRequests(node, 'backed', 'authenticate', 'ok');
    const starting = Array.from({ length: 20 }, () => {
      const conn = client(node.hubUrl('backed'), { cookie: credential });
      return withTimeout(conn.start(), 20_000, 'start()').then(() => conn);
    });
    // Every negotiate has reached the node: one asks the backend, 19 wait for its answer.
    await waitFor(async () => (await shared()) - before === 19, { timeout: 15_000, what: '19 shared waits' });
    assert.equal(authCalls(credential), 1, 'one call while 20 negotiates wait');
    backend.release(credential);
    const conns = await Promise.all(starting);
    const senders = await Promise.all(conns.map(async (c, i) => (await c.invoke('SendMessage', id, `storm ${i}`)).senderId));
    assert.deepEqual(new Set(senders), new Set([user]), 'every connection is the backend\'s user');
    assert.equal(senders.length, 20);
    assert.equal(authCalls(credential), 1, 'the connects found the cached answer');
    assert.equal((await hookRequests(node, 'backed', 'authenticate', 'ok')) - okBefore, 1, 'one request counted');
  });

  e2eTest('a stuck backend with 10 waiters: one call, and every waiter gets 503 after the timeout', async () => {
    const credential = `held-${unique('stuck')}`;
    const before = await metric(node, 'hubwire_requests_refused_total{reason="backend_unavailable"}');
    const timeoutsBefore = await hookRequests(node, 'backed', 'authenticate', 'timeout');
    const statuses = await Promise.all(
      Array.from({ length: 10 }, () =>
        fetch(`${node.baseUrl}/hubs/backed/negotiate?negotiateVersion=1`, { method: 'POST', headers: cookieHeader(credential) }).then(
          (r) => r.status,
        ),
      ),
    );
    assert.deepEqual(statuses, Array(10).fill(503));
    assert.equal(authCalls(credential), 1, 'the backend saw one request');
    assert.equal((await metric(node, 'hubwire_requests_refused_total{reason="backend_unavailable"}')) - before, 10);
    assert.equal((await hookRequests(node, 'backed', 'authenticate', 'timeout')) - timeoutsBefore, 1, 'one timed-out request counted');
    // A failure is not cached: the next request asks again (and is answered once released).
    const again = negotiate(node, { hub: 'backed', headers: cookieHeader(credential) });
    await waitFor(() => authCalls(credential) === 2, { what: 'a second call' });
    backend.release(credential);
    assert.equal((await again).status, 200);
  });
});

describe('a groups hub asks the authorisation hook for its subscriptions', () => {
  let backend;
  let node;
  let orphan;
  before(async () => {
    backend = await startBackend();
    const env = { HUBWIRE_HUB: JSON.stringify(HUB), HUBWIRE_BACKEND_URL: backend.url, HUBWIRE_BACKEND_TIMEOUT_MS: '500' };
    node = await startNode({ name: 'tasks', env: { ...env, HUBWIRE_BACKEND_SECRET: SECRET } });
    const nobody = await freePort();
    orphan = await startNode({ name: 'tasks-orphan', env: { ...env, HUBWIRE_BACKEND_URL: `http://127.0.0.1:${nobody}` } });
  });
  after(async () => {
    await stopClients();
    backend?.close();
  });

  e2eTest('allowed and denied subscriptions, with the resolved group; a backend that cannot answer allows nothing', async () => {
    const user = unique('follower');
    const conn = await connected(node.hubUrl('tasks'), { accessToken: node.token({ sub: user }) });
    const ok = unique('ok');
    const no = unique('deny');
    assert.equal(await conn.invoke('SubscribeToTask', ok), null);
    await assert.rejects(conn.invoke('SubscribeToTask', no), hubException('You may not follow this task.'));
    const asked = backend.calls.filter((c) => c.path === '/hubwire/authorize' && c.body.userId === user);
    assert.deepEqual(
      asked.map((c) => c.body),
      [
        { hub: 'tasks', userId: user, method: 'SubscribeToTask', group: `task-${ok}`, arguments: [ok] },
        { hub: 'tasks', userId: user, method: 'SubscribeToTask', group: `task-${no}`, arguments: [no] },
      ],
    );
    assert.ok(asked.every((c) => c.signed));
    const lonely = await connected(orphan.hubUrl('tasks'), { accessToken: orphan.token({ sub: unique('orphan') }) });
    await assert.rejects(lonely.invoke('SubscribeToTask', unique('ok')), hubException('You may not follow this task.'));
  });

  e2eTest('a rooms hub asks the hook for a join without a grant (HasAccessAsync)', async () => {
    const user = unique('shopper');
    const conn = await connected(node.hubUrl('lists'), { accessToken: node.token({ sub: user }) });
    const ok = unique('ok');
    const no = unique('deny');
    assert.equal(await conn.invoke('JoinRoom', ok), null);
    await assert.rejects(conn.invoke('JoinRoom', no), hubException('Access denied'));
    const asked = backend.calls.filter((c) => c.path === '/hubwire/authorize' && c.body.userId === user);
    assert.deepEqual(
      asked.map((c) => c.body),
      [
        { hub: 'lists', userId: user, method: 'JoinRoom', group: `list_${ok}`, arguments: [ok] },
        { hub: 'lists', userId: user, method: 'JoinRoom', group: `list_${no}`, arguments: [no] },
      ],
    );
    const lonely = await connected(orphan.hubUrl('lists'), { accessToken: orphan.token({ sub: unique('orphan') }) });
    await assert.rejects(lonely.invoke('JoinRoom', unique('ok')), hubException('Access denied'));
  });
});

describe('examples/social-chat (seed 001) signs in with its Identity cookie', () => {
  let backend;
  let node;
  before(async () => {
    backend = await startBackend();
    node = await startNode({
      name: 'social-chat',
      args: ['--config', path.join(ROOT, 'examples', 'social-chat', 'hubwire.toml')],
      env: { HUBWIRE_BACKEND_URL: backend.url },
    });
  });
  after(async () => {
    await stopClients();
    backend?.close();
  });

  e2eTest('the cookie of the seed signs in at /chathub; the seed\'s own access_token too; a JWT still works', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = await createConversation(node, [alice, bob], { hub: 'chathub', id: crypto.randomUUID() });
    const a = await connected(`${node.baseUrl}/chathub`, { cookie: `good-${alice}` });
    const b = await connected(`${node.baseUrl}/chathub`, { accessToken: `good-${bob}` });
    await a.invoke('JoinConversationRoom', id);
    await b.invoke('JoinConversationRoom', id);
    const received = [];
    b.on('ReceiveMessage', (m) => received.push(m));
    await a.invoke('SendMessage', id, 'signed in by cookie');
    await waitFor(() => received.length === 1, { what: 'ReceiveMessage' });
    assert.equal(received[0].senderId, alice);
    assert.equal(received[0].senderUserName, `Name of ${alice}`, "the backend's name");
    assert.equal(backend.calls.filter((c) => c.body.hub === 'chathub').length, 2, 'one call per credential');
    const jwt = await connected(`${node.baseUrl}/chathub`, { accessToken: node.token({ sub: unique('carol') }) });
    await jwt.invoke('GetConversations');
    assert.equal(backend.calls.length, 2, 'a valid JWT needs no backend');
    const refused = await fetch(`${node.baseUrl}/chathub/negotiate?negotiateVersion=1`, {
      method: 'POST',
      headers: cookieHeader('refused'),
    });
    assert.equal(refused.status, 401);
  });
});
