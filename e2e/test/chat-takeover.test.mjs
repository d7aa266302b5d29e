// What a node that dies leaves undone, taken over by the node that sweeps it
// (issue #9): the typing indicators its connections held are cleared and
// each clear announced (TypingChanged(…, false), as for StopTyping or
// expiry), and a message it stored but never broadcast (its broadcast mark
// missing: the outbox) reaches the participants who stayed connected. Two
// nodes joined by Redis sharing PostgreSQL; one SIGKILLed.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe } from 'node:test';

import {
  accessToken,
  closeAllClients,
  connect,
  delay,
  e2eTest,
  record,
  startNode,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
} from './harness.mjs';
import { startPostgres } from './postgres.mjs';

stopAllNodesAfter();

const unique = (name) => `${name}-${crypto.randomBytes(3).toString('hex')}`;

/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 400;

async function api(node, method, rest, body) {
  const p = `/api/hubs/chat${rest}`;
  const headers = { Authorization: `Bearer ${accessToken(node, `http://127.0.0.1${p.split('?')[0]}`)}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await withTimeout(fetch(`${node.baseUrl}${p}`, init), 5_000, `${method} ${p}`);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

/** Runs `sql` with psql on `pg`; its unaligned, tuples-only output. */
function psql(pg, sql) {
  const out = pg.run('psql', ['-h', pg.dir, '-p', String(pg.port), '-U', 'postgres', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  assert.equal(out.status, 0, `psql failed: ${out.stderr}`);
  return out.stdout.trim();
}

/** A time-ordered message id for now (store/src/id.rs: ms since 2024-01-01, then 21 bits). */
function messageIdNow() {
  const ms = BigInt(Date.now() - Date.UTC(2024, 0, 1));
  return (ms << 21n) | BigInt(crypto.randomInt(1 << 20));
}

describe('two nodes, Redis and PostgreSQL: the sweeper of a dead node takes over', () => {
  const cluster = {};
  before(async () => {
    cluster.postgres = await startPostgres();
    cluster.redis = await startRedis({ name: 'takeover-redis' });
    const prefix = `e2e-${crypto.randomBytes(4).toString('hex')}`;
    const env = (id) => ({
      HUBWIRE_REDIS_URL: cluster.redis.url,
      HUBWIRE_REDIS_PREFIX: prefix,
      HUBWIRE_DATABASE_URL: cluster.postgres.url,
      HUBWIRE_NODE_ID: id,
      HUBWIRE_NODE_HEARTBEAT_MS: '300',
      HUBWIRE_NODE_DEAD_AFTER_MS: '2000',
    });
    cluster.survivor = await startNode({ name: 'takeover-1', env: env('takeover-1') });
    cluster.doomed = await startNode({ name: 'takeover-2', env: env('takeover-2') });
  });
  after(async () => {
    await closeAllClients();
    await cluster.survivor?.stop();
    await cluster.doomed?.stop();
    await cluster.redis?.stop();
    cluster.postgres?.stop();
  });

  e2eTest('typing held on the dead node is cleared and announced; its unbroadcast message is broadcast', { timeout: 60_000 }, async () => {
    const { survivor, doomed, postgres } = cluster;
    const [eve, dan, fay] = ['eve', 'dan', 'fay'].map(unique);
    const created = await api(survivor, 'POST', '/conversations', { participants: [eve, dan, fay] });
    assert.equal(created.status, 201, created.text);
    const id = created.body.id;

    const eveConn = await connect(survivor, { hub: 'chat', user: eve });
    const danConn = await connect(doomed, { hub: 'chat', user: dan });
    const fayConn = await connect(doomed, { hub: 'chat', user: fay });
    const eveTyping = record(eveConn, 'TypingChanged');
    const eveReceived = record(eveConn, 'ReceiveMessage');
    for (const c of [eveConn, danConn, fayConn]) assert.deepEqual(await c.invoke('JoinConversation', id), []);

    // dan types on the node that will die; fay types there and stops.
    await danConn.invoke('StartTyping', id);
    await fayConn.invoke('StartTyping', id);
    await waitFor(() => eveTyping.items.length >= 2, { what: 'two typing starts at eve' });
    await fayConn.invoke('StopTyping', id);
    await waitFor(() => eveTyping.items.length >= 3, { what: "fay's stop at eve" });
    assert.deepEqual(
      eveTyping.items.map((i) => JSON.stringify(i)).sort(),
      [[id, dan, true], [id, fay, false], [id, fay, true]].map((i) => JSON.stringify(i)).sort(),
    );

    // A message the doomed node stored and never broadcast: in the outbox
    // (stored_by it and the hub, broadcast_at NULL), as its commit would leave it had it
    // died before the group send.
    const orphan = messageIdNow().toString();
    psql(
      postgres,
      `INSERT INTO messages (id, conversation_id, sender_id, content, client_message_id, sent_at, message_type, stored_by, broadcast_at)
       VALUES (${orphan}, '${id}', '${dan}', 'stored, then the node died', 'orphan-1', ${Date.now()}, 'Text', 'takeover-2/chat', NULL)`,
    );
    // A message the doomed node stored and marked: not broadcast again.
    const done = (messageIdNow() + 1n).toString();
    psql(
      postgres,
      `INSERT INTO messages (id, conversation_id, sender_id, content, client_message_id, sent_at, stored_by, broadcast_at)
       VALUES (${done}, '${id}', '${dan}', 'already broadcast', 'done-1', ${Date.now()}, 'takeover-2/chat', ${Date.now()})`,
    );
    await delay(GRACE_MS);
    assert.equal(eveReceived.items.length, 0, 'nobody sweeps a live node');
    assert.equal(eveTyping.items.length, 3, 'dan still types while his node lives');

    await doomed.kill();

    const stopped = await waitFor(
      () => eveTyping.items.find((i) => i[1] === dan && i[2] === false),
      { timeout: 20_000, what: "dan's typing cleared after his node died" },
    );
    assert.deepEqual(stopped, [id, dan, false]);
    const [message] = await eveReceived.wait(1, 20_000);
    assert.equal(message.id, orphan);
    assert.equal(message.conversationId, id);
    assert.equal(message.senderId, dan);
    assert.equal(message.content, 'stored, then the node died');
    assert.equal(message.clientMessageId, 'orphan-1');
    await waitFor(() => psql(postgres, `SELECT broadcast_at IS NOT NULL FROM messages WHERE id = ${orphan}`) === 't', {
      timeout: 10_000,
      what: 'the swept message marked broadcast',
    });

    await delay(GRACE_MS);
    assert.deepEqual(eveReceived.items.map((m) => m.id), [orphan], 'only the unmarked message is broadcast again, once');
    assert.equal(eveTyping.items.filter((i) => i[1] === dan && i[2] === false).length, 1, "dan's typing cleared once");
    assert.equal(eveTyping.items.filter((i) => i[1] === fay).length, 2, "fay's cleared typing is not announced again");
    assert.equal(psql(postgres, `SELECT count(*) FROM messages WHERE stored_by = 'takeover-2/chat' AND broadcast_at IS NULL`), '0');
  });
});
