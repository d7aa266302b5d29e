// Issue #9, "Show 6": PostgreSQL stopped under load. One node on PostgreSQL,
// two users sending into one conversation without pause; PostgreSQL is
// stopped (`pg_ctl stop -m immediate`) and started again on the same port and
// data directory. While it is down, sends reject with a clear HubException
// and `/readyz` answers 503; once it is back the node recovers without a
// restart (sends succeed, `/readyz` 200). At the end, the stored messages are
// exactly the acknowledged ones, each once: nothing acknowledged is missing
// and nothing the senders saw rejected was stored.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { closeAllClients, connect, delay, e2eTest, startNode, stopAllNodesAfter, waitFor, withTimeout } from './harness.mjs';
import { startPostgres } from './postgres.mjs';
import { chatApi, hubException, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** What a send answers while the message store is down. */
const STORE_DOWN = 'The message store is not available right now; nothing was stored. Try again.';

/** The error the official client reports for it. */
const STORE_DOWN_ERROR = hubException(STORE_DOWN);

/** How long each phase may take to show (bounded polling, never a timing assertion). */
const PHASE_MS = 30_000;



/** `method` on `/api/hubs/chat{rest}` of `node` with an access-key token; { status, body }. */
const api = (node, method, rest, body) => chatApi(node, method, 'chat', rest, body, { timeout: 10_000 });

/** The status of `/readyz`. */
async function readyz(node) {
  const res = await withTimeout(fetch(`${node.baseUrl}/readyz`), 10_000, 'GET /readyz');
  await res.text();
  return res.status;
}

/** Every stored message of conversation `id`, following the pages' nextLinks. */
async function allMessages(node, id) {
  const messages = [];
  let rest = `/conversations/${id}/messages?limit=200`;
  while (rest) {
    const page = await api(node, 'GET', rest);
    assert.equal(page.status, 200, page.text);
    messages.push(...page.body.value);
    rest = page.body.nextLink ? page.body.nextLink.replace('/api/hubs/chat', '') : null;
  }
  return messages;
}

/**
 * A sender sending SendMessage one after the other (each with its own
 * clientMessageId) until `stop()`; it records what was acknowledged and what
 * was rejected, and with which error.
 */
function sender(conn, conversationId, user) {
  const s = { acked: new Map(), rejected: new Map(), stopped: false };
  s.done = (async () => {
    for (let n = 0; !s.stopped; n++) {
      const clientMessageId = `${user}-${n}`;
      try {
        const stored = await conn.invoke('SendMessage', conversationId, `message ${n} from ${user}`, clientMessageId);
        s.acked.set(clientMessageId, stored);
      } catch (err) {
        s.rejected.set(clientMessageId, err);
      }
      // A little pause so the history stays a few pages long.
      await delay(5);
    }
  })();
  s.stop = () => {
    s.stopped = true;
    return s.done;
  };
  /** Acknowledged / rejected clientMessageIds from send number `from` on. */
  s.ackedSince = (from) => [...s.acked.keys()].filter((k) => Number(k.split('-').at(-1)) >= from).length;
  s.rejectedSince = (from) => [...s.rejected.keys()].filter((k) => Number(k.split('-').at(-1)) >= from).length;
  s.sent = () => s.acked.size + s.rejected.size;
  return s;
}

describe('PostgreSQL stopped under load', () => {
  let postgres;
  let node;
  before(async () => {
    postgres = await startPostgres();
    // The built-in chat hub without its per-user rate limit: the senders do not pause.
    const hub = [{ kind: 'chat', path: '/hubs/chat', limits: { messages_per_minute: 0 } }];
    node = await startNode({
      name: 'chat-pg-outage',
      env: { HUBWIRE_DATABASE_URL: postgres.url, HUBWIRE_HUB: JSON.stringify(hub) },
    });
  });
  after(async () => {
    await closeAllClients();
    await node?.stop();
    postgres?.stop();
  });

  e2eTest('sends fail with a clear HubException and /readyz is 503 while it is down; the node recovers when it returns', { timeout: 180_000 }, async (t) => {
    const alice = unique('alice');
    const bob = unique('bob');
    const created = await api(node, 'POST', '/conversations', { participants: [alice, bob] });
    assert.equal(created.status, 201, created.text);
    const id = created.body.id;
    const connections = [await connect(node, { hub: 'chat', user: alice }), await connect(node, { hub: 'chat', user: bob })];
    for (const conn of connections) {
      // The live events are not what this test is about; handlers keep the client quiet.
      for (const event of ['ReceiveMessage', 'MessageSent', 'UserOnline', 'UserJoinedConversation']) conn.on(event, () => {});
      await conn.invoke('JoinConversation', id);
    }
    assert.equal(await readyz(node), 200);

    const senders = [sender(connections[0], id, alice), sender(connections[1], id, bob)];
    try {
      await waitFor(() => senders.every((s) => s.acked.size >= 5), { timeout: PHASE_MS, what: '5 acknowledged sends per sender' });
      assert.equal(senders.reduce((n, s) => n + s.rejected.size, 0), 0, 'nothing rejected while PostgreSQL is up');

      postgres.pause();
      const downFrom = senders.map((s) => s.sent() + 1);
      await waitFor(() => senders.every((s, i) => s.rejectedSince(downFrom[i]) >= 3), {
        timeout: PHASE_MS,
        what: '3 rejected sends per sender after PostgreSQL stopped',
      });
      let downStatus;
      await waitFor(
        async () => {
          downStatus = await readyz(node);
          return downStatus === 503;
        },
        { timeout: PHASE_MS, what: '/readyz 503 while PostgreSQL is down' },
      );
      assert.equal(downStatus, 503);
      const stillDownFrom = senders.map((s) => s.sent() + 1);
      await waitFor(() => senders.every((s, i) => s.rejectedSince(stillDownFrom[i]) >= 3), {
        timeout: PHASE_MS,
        what: '3 more rejected sends per sender once /readyz said 503',
      });
      assert.ok(connections.every((c) => c.state === 'Connected'), 'the connections stay up through the outage');

      postgres.resume();
      const upFrom = senders.map((s) => s.sent() + 1);
      await waitFor(() => senders.every((s, i) => s.ackedSince(upFrom[i]) >= 5), {
        timeout: PHASE_MS,
        what: '5 acknowledged sends per sender after PostgreSQL came back',
      });
      await waitFor(async () => (await readyz(node)) === 200, { timeout: PHASE_MS, what: '/readyz 200 after PostgreSQL came back' });
    } finally {
      await Promise.all(senders.map((s) => s.stop()));
    }

    for (const s of senders) {
      for (const [clientMessageId, err] of s.rejected) {
        assert.match(err.message, STORE_DOWN_ERROR, `${clientMessageId} rejected with a clear reason`);
      }
    }

    const stored = await allMessages(node, id);
    const count = new Map();
    for (const m of stored) count.set(m.clientMessageId, (count.get(m.clientMessageId) ?? 0) + 1);
    const acked = new Map(senders.flatMap((s) => [...s.acked]));
    const rejected = senders.flatMap((s) => [...s.rejected.keys()]);
    const reasons = new Set(senders.flatMap((s) => [...s.rejected.values()].map((e) => e.message)));
    t.diagnostic(`${acked.size} acknowledged, ${rejected.length} rejected, ${stored.length} stored; reasons: ${[...reasons].join(' | ')}`);
    assert.ok(rejected.length >= 12 && acked.size >= 20, `sends on both sides of the outage (${acked.size} acknowledged, ${rejected.length} rejected)`);
    for (const [clientMessageId, message] of acked) {
      assert.equal(count.get(clientMessageId), 1, `acknowledged ${clientMessageId} is stored exactly once`);
      assert.equal(stored.find((m) => m.clientMessageId === clientMessageId).id, message.id, `${clientMessageId} stored under its acknowledged id`);
    }
    for (const clientMessageId of rejected) assert.equal(count.get(clientMessageId), undefined, `rejected ${clientMessageId} is not stored`);
    assert.equal(stored.length, acked.size, 'nothing is stored but the acknowledged messages');
  });
});
