// Per-user limits and presence held cluster-wide on the chat hub: one user's
// connections on two nodes (Redis + PostgreSQL) share one message bucket and
// one typing bucket; a user's first connections on both nodes at once are
// announced online once, their last ones offline once, and last seen is
// read from any node.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { delay, e2eTest, record, stopAllNodesAfter } from './harness.mjs';
import { chatClient, createConversation, metric, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 500;
const MESSAGES_PER_MINUTE = 5;
const TYPING_PER_MINUTE = 2;

const conversation = (node, participants) => createConversation(node, participants);
const refusals = (n, limit) => metric(n, `hubwire_limit_refusals_total{hub="chat",limit="${limit}"}`);

const chat = (node, user) => chatClient(node, user);

describe('chat limits and presence on two nodes, Redis and PostgreSQL', () => {
  let cluster;
  before(async () => {
    const definition = [
      {
        kind: 'chat',
        path: '/hubs/chat',
        limits: { messages_per_minute: MESSAGES_PER_MINUTE, typing_per_minute: TYPING_PER_MINUTE },
      },
    ];
    cluster = await startChatCluster({ size: 2, name: 'chat-limits', env: { HUBWIRE_HUB: JSON.stringify(definition) } });
  });
  after(() => cluster?.stop());

  e2eTest('one user on two nodes gets exactly the message limit, then a HubException saying when to retry', async () => {
    const [n1, n2] = cluster.nodes;
    const alice = unique('alice');
    const bob = unique('bob');
    const id = await conversation(n1, [alice, bob]);
    const a1 = await chat(n1, alice);
    const a2 = await chat(n2, alice);
    const b = await chat(n2, bob);
    await b.invoke('JoinConversation', id);
    const received = record(b, 'ReceiveMessage');
    const before = (await refusals(n1, 'message_rate')) + (await refusals(n2, 'message_rate'));

    const outcomes = [];
    for (let i = 0; i < 2 * MESSAGES_PER_MINUTE; i++) {
      const conn = i % 2 === 0 ? a1 : a2;
      outcomes.push(await conn.invoke('SendMessage', id, `m${i}`).then((m) => ({ ok: m }), (e) => ({ error: e })));
    }
    const accepted = outcomes.filter((o) => o.ok);
    const refused = outcomes.filter((o) => o.error);
    assert.equal(accepted.length, MESSAGES_PER_MINUTE, 'the limit holds across both nodes');
    for (const { error } of refused) {
      assert.match(
        error.message,
        /HubException: Rate limit exceeded: 5 messages per minute; retry in \d+ s\.$/,
      );
      const secs = Number(/retry in (\d+) s/.exec(error.message)[1]);
      assert.ok(secs >= 1 && secs <= 60 / MESSAGES_PER_MINUTE, `retry in ${secs} s`);
    }
    const delivered = await received.wait(MESSAGES_PER_MINUTE);
    assert.deepEqual(delivered.map((m) => m.id).sort(), accepted.map((o) => o.ok.id).sort(), 'refused sends were not delivered');
    const after = (await refusals(n1, 'message_rate')) + (await refusals(n2, 'message_rate'));
    assert.equal(after - before, refused.length, 'every refusal counted in /metrics');

    const other = await chat(n1, bob);
    assert.ok((await other.invoke('SendMessage', id, 'bob has a bucket of his own')).id, 'the bucket is per user');
  });

  e2eTest('typing beyond the limit is dropped silently', async () => {
    const [n1, n2] = cluster.nodes;
    const carol = unique('carol');
    const dave = unique('dave');
    const id = await conversation(n1, [carol, dave]);
    const c1 = await chat(n1, carol);
    const c2 = await chat(n2, carol);
    const d = await chat(n1, dave);
    await d.invoke('JoinConversation', id);
    const typing = record(d, 'TypingChanged');
    for (let i = 0; i < 2 * TYPING_PER_MINUTE; i++) {
      const conn = i % 2 === 0 ? c1 : c2;
      assert.equal(await conn.invoke('StartTyping', id), null, 'a dropped notice is not an error');
      await conn.invoke('StopTyping', id);
    }
    await delay(GRACE_MS);
    const started = typing.items.filter(([, , isTyping]) => isTyping === true);
    assert.equal(started.length, TYPING_PER_MINUTE, 'only the notices within the limit were announced');
    assert.ok((await refusals(n1, 'typing_rate')) + (await refusals(n2, 'typing_rate')) >= TYPING_PER_MINUTE);
  });

  e2eTest('first connections on both nodes at once: one UserOnline; last ones at once: one UserOffline; last seen on any node', async () => {
    const [n1, n2] = cluster.nodes;
    const erin = unique('erin');
    const frank = unique('frank');
    await conversation(n1, [erin, frank]);
    const watcher = await chat(n1, frank);
    const online = record(watcher, 'UserOnline');
    const offline = record(watcher, 'UserOffline');

    const [e1, e2] = await Promise.all([chat(n1, erin), chat(n2, erin)]);
    assert.deepEqual(await online.wait(1), [erin]);
    const [presence] = await watcher.invoke('GetPresence', [erin]);
    assert.equal(presence.isOnline, true);
    assert.equal(presence.connections, 2);

    await Promise.all([e1.stop(), e2.stop()]);
    assert.deepEqual(await offline.wait(1), [erin]);
    await delay(GRACE_MS);
    assert.equal(online.items.length, 1, 'one UserOnline for two first connections');
    assert.equal(offline.items.length, 1, 'one UserOffline for two last connections');

    const other = await chat(n2, frank);
    const [seen] = await other.invoke('GetPresence', [erin]);
    assert.equal(seen.isOnline, false);
    assert.equal(seen.connections, 0);
    assert.ok(Date.parse(seen.lastSeen) > Date.now() - 60_000, `last seen on the other node: ${seen.lastSeen}`);
  });
});
