// A hostile client on the chat hub: the input limits (id lengths, content,
// attachments, participants) refuse with a HubException (REST: 400) naming the
// limit, and one connection flooding SendMessage — over the rate limit,
// oversized content, bad ids — does not hurt its neighbours on the same node:
// they get every message, the flooder gets clear refusals, nothing crashes.
// Delivery and refusals are asserted, never timings.

import assert from 'node:assert/strict';
import { before, describe } from 'node:test';

import { delay, e2eTest, record, startNode, stopAllNodesAfter, waitFor } from './harness.mjs';
import { chatApi, chatClient, createConversation, GRACE_MS, hubException, metric, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** High enough for the neighbours' 15 each, low enough for the flood's 60. */
const MESSAGES_PER_MINUTE = 30;
const chatInputRefusals = (node) => metric(node, 'hubwire_limit_refusals_total{hub="chat",limit="chat_input"}');
const limitText = (field) => new RegExp(`HubException: .*\\(limits\\.${field}\\)`);

describe('hostile input on one node', () => {
  let node;
  before(async () => {
    const hub = [{ kind: 'chat', path: '/hubs/chat', limits: { messages_per_minute: MESSAGES_PER_MINUTE } }];
    node = await startNode({ name: 'hostile', env: { HUBWIRE_HUB: JSON.stringify(hub) } });
  });

  e2eTest('each input limit refuses naming itself, by the hub and through REST', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = await createConversation(node, [alice, bob]);
    const a = await chatClient(node, alice);
    const before = await chatInputRefusals(node);
    await assert.rejects(a.invoke('SendMessage', id, 'hi', 'k'.repeat(129)), limitText('max_client_message_id_chars'));
    await assert.rejects(a.invoke('SendMessage', 'c'.repeat(129), 'hi'), limitText('max_conversation_id_chars'));
    await assert.rejects(a.invoke('JoinConversation', 'c'.repeat(129)), limitText('max_conversation_id_chars'));
    await assert.rejects(a.invoke('StartTyping', 'c'.repeat(129)), limitText('max_conversation_id_chars'));
    await assert.rejects(a.invoke('SendDirectMessage', 'u'.repeat(129), 'hi'), limitText('max_user_id_chars'));
    const longUser = await chatClient(node, 'u'.repeat(129));
    await assert.rejects(longUser.invoke('Ping'), limitText('max_user_id_chars'), "the token's sub is bounded too");
    assert.equal(await a.invoke('SendMessage', id, 'within limits', 'k'.repeat(128)).then((m) => m.clientMessageId.length), 128);
    assert.equal(await chatInputRefusals(node), before + 6, 'each refusal counted');

    const post = (body) => chatApi(node, 'POST', 'chat', `/conversations/${id}/messages`, { senderId: alice, content: 'x', ...body });
    const bad = [
      [await post({ clientMessageId: 'k'.repeat(129) }), 'max_client_message_id_chars'],
      [await post({ attachments: Array.from({ length: 11 }, (_, i) => ({ i })) }), 'max_attachments'],
      [await post({ attachments: ['x'.repeat(16_384)] }), 'max_attachments_bytes'],
      [await chatApi(node, 'POST', 'chat', '/conversations', { id: 'c'.repeat(129), participants: [alice] }), 'max_conversation_id_chars'],
      [await chatApi(node, 'POST', 'chat', '/conversations', { participants: [alice, 'u'.repeat(129)] }), 'max_user_id_chars'],
      [await chatApi(node, 'POST', 'chat', '/conversations', { participants: Array.from({ length: 1001 }, (_, i) => `p${i}`) }), 'max_participants'],
      [await chatApi(node, 'PUT', 'chat', `/conversations/${id}/participants/${'u'.repeat(129)}`), 'max_user_id_chars'],
    ];
    for (const [res, field] of bad) {
      assert.equal(res.status, 400, `${field}: ${res.text}`);
      assert.match(res.text, new RegExp(`limits\\.${field}`), res.text);
    }
    assert.equal((await post({ attachments: Array.from({ length: 10 }, (_, i) => ({ i })) })).status, 201, 'ten attachments are fine');
  });

  e2eTest('a connection flooding SendMessage gets clear refusals while its neighbours exchange every message', async () => {
    const [alice, bob, mallory] = [unique('alice'), unique('bob'), unique('mallory')];
    const neighbours = await createConversation(node, [alice, bob]);
    const shared = await createConversation(node, [mallory, bob]);
    const a = await chatClient(node, alice);
    const b = await chatClient(node, bob);
    const m = await chatClient(node, mallory);
    await a.invoke('JoinConversation', neighbours);
    await b.invoke('JoinConversation', neighbours);
    await b.invoke('JoinConversation', shared);
    await m.invoke('JoinConversation', shared);
    const atAlice = record(a, 'ReceiveMessage');
    const atBob = record(b, 'ReceiveMessage');

    // The flood: waves of five invocations at once, the next wave as soon as
    // the last is answered (all at once, the official client would put them
    // in one WebSocket frame beyond the node's frame limit, and be closed).
    const results = [];
    const settle = (promise, kind) => promise.then((v) => ({ kind, ok: v }), (e) => ({ kind, error: String(e.message) }));
    const flooding = (async () => {
      for (let i = 0; i < 60; i++) {
        const wave = [
          settle(m.invoke('SendMessage', shared, 'x'.repeat(4001)), 'oversized'),
          settle(m.invoke('SendMessage', shared, 'bad id', 'k'.repeat(500)), 'clientMessageId'),
          settle(m.invoke('SendMessage', 'c'.repeat(500), 'bad conversation'), 'conversationId'),
          settle(m.invoke('SendMessage', shared, 42), 'not text'),
          settle(m.invoke('SendMessage', shared, `spam ${i}`), 'valid'),
        ];
        results.push(...(await Promise.all(wave)));
      }
    })();
    // Meanwhile the neighbours talk (each waits for its own acknowledgement).
    const fromAlice = [];
    const fromBob = [];
    const talk = (async () => {
      for (let i = 0; i < 15; i++) {
        fromAlice.push(await a.invoke('SendMessage', neighbours, `alice ${i}`));
        fromBob.push(await b.invoke('SendMessage', neighbours, `bob ${i}`));
      }
    })();
    await Promise.all([flooding, talk]);

    const of = (kind) => results.filter((r) => r.kind === kind);
    for (const r of of('oversized')) assert.match(r.error, hubException('content must be 1 to 4000 characters'));
    for (const r of of('not text')) assert.match(r.error, hubException('content must be 1 to 4000 characters'));
    for (const r of of('clientMessageId')) assert.match(r.error, limitText('max_client_message_id_chars'));
    for (const r of of('conversationId')) assert.match(r.error, limitText('max_conversation_id_chars'));
    const valid = of('valid');
    const accepted = valid.filter((r) => r.ok);
    // The bucket (plus what refilled while the flood ran): refused inputs took no token.
    assert.ok(accepted.length >= MESSAGES_PER_MINUTE && accepted.length < valid.length, `accepted ${accepted.length}`);
    for (const r of valid.filter((r) => r.error)) {
      assert.match(r.error, new RegExp(`HubException: Rate limit exceeded: ${MESSAGES_PER_MINUTE} messages per minute; retry in \\d+ s\\.$`));
    }

    // The neighbours got every message of each other, and bob the flooder's accepted ones only.
    await waitFor(() => atAlice.items.length >= fromBob.length, { timeout: 10_000, what: "alice gets bob's messages" });
    const bobExpects = fromAlice.length + accepted.length;
    await waitFor(() => atBob.items.length >= bobExpects, { timeout: 10_000, what: 'bob gets his messages' });
    await delay(GRACE_MS);
    assert.deepEqual(atAlice.items.map((msg) => msg.id), fromBob.map((msg) => msg.id), 'every message of bob, in order');
    const bobGot = atBob.items.map((msg) => msg);
    assert.deepEqual(bobGot.filter((msg) => msg.conversationId === neighbours).map((msg) => msg.id), fromAlice.map((msg) => msg.id));
    assert.deepEqual(
      bobGot.filter((msg) => msg.conversationId === shared).map((msg) => msg.id).sort(),
      accepted.map((r) => r.ok.id).sort(),
      "the flooder's accepted messages, nothing refused",
    );
    assert.equal(m.state, 'Connected', 'refusals, not a closed connection');
    assert.equal(await m.invoke('Ping'), 'pong');
    assert.equal((await fetch(`${node.baseUrl}/healthz`)).status, 200, 'the node is fine');
  });
});
