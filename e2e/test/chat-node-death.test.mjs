// Issue #9's "Show 5": a node is SIGKILLed while three users chat in one
// conversation across three nodes joined by Redis and sharing PostgreSQL.
// Every send acknowledged to its sender (SendMessage returned the stored
// message) must be in the database exactly once and reach every participant
// (live, or by JoinConversation(id, lastSeenMessageId) catch-up after the
// reconnect to a surviving node). A send that was refused may be absent but
// never stored twice; a refused send is retried with the same clientMessageId,
// as a client would. Participants dedupe by message id, as the JS clients do;
// the live stream alone must not deliver a message twice, but for one the
// dead node broadcast and had not yet marked broadcast (the outbox gives it
// again: at least once).

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import {
  buildConnection,
  delay,
  e2eTest,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
} from './harness.mjs';
import { chatApi, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();


/** Messages each user sends. */
const PER_SENDER = 40;
/** Attempts per message (the first and retries after a refusal). */
const ATTEMPTS = 4;

/** The built-in chat hub without its 60-a-minute send limit (the senders here are faster). */
const UNLIMITED_CHAT = [{ kind: 'chat', path: '/hubs/chat', limits: { messages_per_minute: 100000 } }];


/** `method` on `/api/hubs/chat{rest}` of `node`; { status, body, text }. */
const api = (node, method, rest, body) => chatApi(node, method, 'chat', rest, body);

/** Every stored message of conversation `id`, through the history pages. */
async function storedMessages(node, id) {
  const all = [];
  let rest = `/conversations/${encodeURIComponent(id)}/messages?limit=200`;
  for (let page = 0; rest && page < 50; page++) {
    const res = await api(node, 'GET', rest);
    assert.equal(res.status, 200, res.text);
    all.push(...res.body.value);
    const next = res.body.nextLink;
    rest = next ? next.slice(next.indexOf('/api/hubs/chat') + '/api/hubs/chat'.length) : null;
  }
  return all;
}

/** JSON with sorted keys: the same message whatever the key order. */
const canonical = (m) => JSON.stringify(Object.fromEntries(Object.entries(m).sort(([x], [y]) => (x < y ? -1 : 1))));

const maxId = (a, b) => (BigInt(a) > BigInt(b) ? a : b);

/**
 * A chat user: one connection at a time; on a close it reconnects to
 * `fallback` and catches up with JoinConversation(id, lastSeen).
 */
class Participant {
  constructor(user, node, conversationId) {
    this.user = user;
    this.node = node;
    this.fallback = null;
    this.conversationId = conversationId;
    this.conn = null; // the joined, connected connection, else null
    this.byId = new Map(); // message id -> message, from every source
    this.liveIds = new Map(); // message id -> times the live stream (all connections) gave it
    this.lastSeen = '0';
    this.acked = new Map(); // clientMessageId -> stored message returned to SendMessage
    this.ackedOnRetry = new Set(); // clientMessageIds acknowledged only to a retry
    this.attempted = new Set(); // every clientMessageId sent at least once
    this.refusals = []; // { clientId, error }
    this.closes = 0;
    this.reconnected = 0;
    this.reconnectErrors = [];
    this.catchUps = []; // arrays of ids returned by JoinConversation
    this.conflicts = []; // same id, different message
    this.stopping = false;
  }

  note(message) {
    const known = this.byId.get(message.id);
    if (known && canonical(known) !== canonical(message)) this.conflicts.push([known, message]);
    if (!known) this.byId.set(message.id, message);
    this.lastSeen = maxId(this.lastSeen, message.id);
  }

  live(message) {
    this.liveIds.set(message.id, (this.liveIds.get(message.id) ?? 0) + 1);
    this.note(message);
  }

  /** Connects to `node`, listens, joins with the cursor; sets `conn` once joined. */
  async attach(node) {
    const conn = buildConnection(node, { hub: 'chat', user: this.user });
    conn.on('ReceiveMessage', (m) => this.live(m));
    conn.on('MessageSent', (m) => this.live(m));
    conn.onclose(() => {
      if (this.conn !== conn) return;
      this.conn = null;
      this.closes++;
      if (!this.stopping) this.reconnecting = this.reconnect();
    });
    await withTimeout(conn.start(), 10_000, `${this.user} start on ${node.name}`);
    const missed = await withTimeout(
      conn.invoke('JoinConversation', this.conversationId, this.lastSeen),
      10_000,
      `${this.user} JoinConversation on ${node.name}`,
    );
    this.catchUps.push(missed.map((m) => m.id));
    for (const m of missed) this.note(m);
    this.node = node;
    this.conn = conn;
  }

  async reconnect() {
    for (let attempt = 0; attempt < 20 && !this.stopping; attempt++) {
      try {
        await this.attach(this.fallback);
        this.reconnected++;
        return;
      } catch (err) {
        this.reconnectErrors.push(String(err));
        await delay(250);
      }
    }
  }

  /** A joined connection (waits for a reconnect in progress). */
  async ready() {
    await waitFor(() => this.conn?.state === 'Connected', { timeout: 20_000, what: `${this.user} connected again` });
    return this.conn;
  }

  /** Sends `clientId`, retrying a refused send with the same clientMessageId. */
  async send(clientId) {
    this.attempted.add(clientId);
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const conn = await this.ready();
      try {
        const stored = await withTimeout(
          conn.invoke('SendMessage', this.conversationId, `${clientId} says hi`, clientId),
          10_000,
          `${this.user} SendMessage ${clientId}`,
        );
        assert.equal(stored.clientMessageId, clientId);
        assert.equal(stored.senderId, this.user);
        this.acked.set(clientId, stored);
        if (attempt > 1) this.ackedOnRetry.add(clientId);
        this.note(stored);
        return;
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        this.refusals.push({ clientId, attempt, error: String(err) });
        await delay(100);
      }
    }
  }

  async sendAll(count, pause) {
    for (let i = 1; i <= count; i++) {
      await this.send(`${this.user}-${i}`);
      await delay(pause);
    }
  }
}

describe('three nodes, Redis and PostgreSQL, one SIGKILLed mid-chat', () => {
  const cluster = {};
  before(async () => {
    const env = { HUBWIRE_NODE_HEARTBEAT_MS: '300', HUBWIRE_NODE_DEAD_AFTER_MS: '2000', HUBWIRE_HUB: JSON.stringify(UNLIMITED_CHAT) };
    Object.assign(cluster, await startChatCluster({ size: 3, name: 'death', env }));
  });
  after(() => cluster.stop?.());

  e2eTest(
    'kill -9 of a node: every acknowledged message is stored once and reaches every participant after reconnect',
    { timeout: 180_000 },
    async (t) => {
      const [n1, n2, n3] = cluster.nodes;
      const [a, b, c] = ['ann', 'ben', 'cat'].map(unique);
      const created = await api(n1, 'POST', '/conversations', { participants: [a, b, c] });
      assert.equal(created.status, 201, created.text);
      const id = created.body.id;

      const ann = new Participant(a, n1, id);
      const ben = new Participant(b, n2, id); // on the node that dies
      const cat = new Participant(c, n3, id);
      ben.fallback = n3;
      ann.fallback = n3;
      cat.fallback = n1;
      const everyone = [ann, ben, cat];
      try {
        await chatThroughTheKill(t, { id, nodes: [n1, n2, n3], ann, ben, cat, everyone });
      } finally {
        // No reconnects while the harness closes the clients.
        for (const p of everyone) p.stopping = true;
      }
    },
  );
});

async function chatThroughTheKill(t, { id, nodes: [n1, n2, n3], ann, ben, cat, everyone }) {
  for (const p of everyone) await p.attach(p.node);

  // All three send; ben's node dies while the stream runs.
  const senders = everyone.map((p) => p.sendAll(PER_SENDER, 15));
  await waitFor(() => ann.acked.size >= 10 && ben.acked.size >= 8 && cat.acked.size >= 10, {
    timeout: 30_000,
    what: 'some messages acknowledged before the kill',
  });
  const ackedBeforeKill = new Map(everyone.map((p) => [p.user, p.acked.size]));
  await n2.kill();
  await Promise.all(senders);

  assert.ok(ben.closes >= 1, 'ben saw its connection close');
  assert.ok(ben.reconnected >= 1, `ben reconnected to a surviving node: ${ben.reconnectErrors.join('; ')}`);
  assert.equal(ben.node, n3);
  for (const p of everyone) {
    assert.ok(
      p.acked.size > ackedBeforeKill.get(p.user),
      `${p.user} had sends acknowledged after the kill (${ackedBeforeKill.get(p.user)} before, ${p.acked.size} in all)`,
    );
  }

  const acked = everyone.flatMap((p) => [...p.acked.values()]);
  const ackedIds = new Set(acked.map((m) => m.id));
  assert.equal(ackedIds.size, acked.length, 'different sends were acknowledged with different message ids');

  // Every participant ends with every acknowledged message (live or caught
  // up) — also one acknowledged only to a retry, which the dying node may
  // have stored and never broadcast: the retry (its broadcast mark missing)
  // or the sweep of the dead node's outbox broadcasts it again.
  const onRetry = everyone.flatMap((p) => [...p.ackedOnRetry].map((c) => p.acked.get(c)));
  const missing = (p, of) => of.filter((m) => !p.byId.has(m.id)).map((m) => `${m.clientMessageId}#${m.id}`);
  try {
    await waitFor(() => everyone.every((p) => missing(p, acked).length === 0), {
      timeout: 20_000,
      what: 'every participant to have every acknowledged message',
    });
  } catch (err) {
    for (const p of everyone) t.diagnostic(`${p.user} misses ${missing(p, acked).join(', ')}; catch-ups ${JSON.stringify(p.catchUps)}`);
    throw err;
  }
  t.diagnostic(`acknowledged only to a retry: [${onRetry.map((m) => m.clientMessageId).join(', ')}]`);
  await delay(400);

  for (const p of everyone) {
    assert.deepEqual(p.conflicts, [], `${p.user} got one id with two different messages`);
    for (const m of acked) assert.deepEqual(p.byId.get(m.id), m, `${p.user} has ${m.clientMessageId} as acknowledged`);
    // A message of the dying node (ben's) broadcast just before the kill and
    // not yet marked broadcast is broadcast again (at least once; clients
    // dedupe by id): at most twice, and only those. The others' never twice.
    const twiceLive = [...p.liveIds].filter(([id, n]) => n > 2 || (n > 1 && p.byId.get(id)?.senderId !== ben.user));
    assert.deepEqual(twiceLive, [], `${p.user}: the live stream gave a message more than once`);
    const again = [...p.liveIds].filter(([, n]) => n > 1).map(([id]) => p.byId.get(id)?.clientMessageId);
    if (again.length) t.diagnostic(`${p.user} got the dead node's [${again.join(', ')}] twice live`);
    for (const ids of p.catchUps) assert.equal(new Set(ids).size, ids.length, `${p.user}: a catch-up repeated a message`);
  }

  // The database: each acknowledged send exactly once, as acknowledged; no send twice.
  const stored = await storedMessages(n1, id);
  assert.equal(new Set(stored.map((m) => m.id)).size, stored.length, 'no message id twice in the history');
  const byClientId = new Map();
  for (const m of stored) {
    const key = `${m.senderId}/${m.clientMessageId}`;
    byClientId.set(key, [...(byClientId.get(key) ?? []), m]);
  }
  const twice = [...byClientId].filter(([, ms]) => ms.length > 1).map(([k]) => k);
  assert.deepEqual(twice, [], 'no clientMessageId stored twice');
  for (const p of everyone) {
    for (const [clientId, message] of p.acked) {
      const rows = byClientId.get(`${p.user}/${clientId}`) ?? [];
      assert.equal(rows.length, 1, `${clientId} stored once`);
      assert.equal(rows[0].id, message.id, `${clientId} stored as acknowledged`);
      assert.equal(rows[0].content, message.content);
    }
  }
  const attempted = new Set(everyone.flatMap((p) => [...p.attempted].map((c) => `${p.user}/${c}`)));
  const strangers = [...byClientId.keys()].filter((k) => !attempted.has(k));
  assert.deepEqual(strangers, [], 'only sent messages are stored');

  const unacked = stored.filter((m) => !ackedIds.has(m.id)).map((m) => m.clientMessageId);
  const refused = everyone.flatMap((p) => p.refusals.map((r) => `${r.clientId}(${r.attempt}): ${r.error}`));
  t.diagnostic(`${acked.length} acknowledged, ${stored.length} stored, stored but unacknowledged: [${unacked.join(', ')}]`);
  t.diagnostic(`refused attempts: ${refused.length ? refused.join(' | ') : 'none'}`);
}
