// The built-in chat hub (`/hubs/chat`, MISSION.md's names) driven by the
// official @microsoft/signalr client: conversations made through the REST
// API, join / type / send / read between two users, refusals, idempotent
// sends, catch-up after a reconnect, typing cleared by a dropped connection,
// presence once per transition; a hub definition under an app's own path and
// names; and one conversation across two nodes joined by Redis and sharing
// PostgreSQL.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import { connect, delay, e2eTest, record, startNode, stopAllNodesAfter } from './harness.mjs';
import { chatApi, chatClient, createConversation, GRACE_MS, hubException, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const api = chatApi;
const conversation = createConversation;
const chat = chatClient;

describe('one node', () => {
  let node;
  before(async () => {
    node = await startNode({ name: 'chat' });
  });

  e2eTest('two users join, type, send and read', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    const bobTyping = record(bob, 'TypingChanged');
    const bobReceived = record(bob, 'ReceiveMessage');
    const aliceSent = record(alice, 'MessageSent');
    const aliceRead = record(alice, 'MessageRead');
    const aliceReceived = record(alice, 'ReceiveMessage');
    const aliceJoined = record(alice, 'UserJoinedConversation');

    assert.deepEqual(await alice.invoke('JoinConversation', id), []);
    assert.deepEqual(await bob.invoke('JoinConversation', id), []);
    assert.deepEqual((await aliceJoined.wait(1))[0], [id, 'bob']);

    await alice.invoke('StartTyping', id);
    assert.deepEqual((await bobTyping.wait(1))[0], [id, 'alice', true]);

    const stored = await alice.invoke('SendMessage', id, 'hello bob', 'client-1');
    assert.equal(stored.conversationId, id);
    assert.equal(stored.senderId, 'alice');
    assert.equal(stored.content, 'hello bob');
    assert.equal(stored.clientMessageId, 'client-1');
    assert.match(stored.id, /^\d+$/);
    assert.match(stored.sentAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(Object.keys(stored).sort(), ['clientMessageId', 'content', 'conversationId', 'id', 'senderId', 'sentAt']);

    assert.deepEqual((await aliceSent.wait(1))[0], stored, 'MessageSent to the sender carries the clientMessageId');
    assert.deepEqual((await bobReceived.wait(1))[0], stored);
    assert.deepEqual((await bobTyping.wait(2))[1], [id, 'alice', false], 'the send cleared the typing');

    await bob.invoke('MarkAsRead', id, stored.id);
    const [readId, readMessage, reader, readAt] = (await aliceRead.wait(1))[0];
    assert.deepEqual([readId, readMessage, reader], [id, stored.id, 'bob']);
    assert.ok(Date.parse(readAt) > 0, readAt);

    await delay(GRACE_MS);
    assert.equal(aliceReceived.items.length, 0, 'the sender does not get its own ReceiveMessage');
    assert.equal(bobTyping.items.length, 2);
    assert.equal(await alice.invoke('Ping'), 'pong');
  });

  e2eTest('a non-participant is refused and bad content is refused', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const carol = await chat(node, 'carol');
    await assert.rejects(carol.invoke('JoinConversation', id), hubException('not a participant'));
    await assert.rejects(carol.invoke('SendMessage', id, 'hi'), hubException('not a participant'));
    await assert.rejects(carol.invoke('StartTyping', id), hubException('not a participant'));
    await assert.rejects(carol.invoke('MarkAsRead', id, '1'), hubException('not a participant'));
    await assert.rejects(carol.invoke('JoinConversation', unique('nosuch')), hubException('not a participant'));
    const alice = await chat(node, 'alice');
    const tooLong = 'x'.repeat(4001);
    await assert.rejects(alice.invoke('SendMessage', id, ''), hubException('content must be 1 to 4000 characters'));
    await assert.rejects(alice.invoke('SendMessage', id, tooLong), hubException('content must be 1 to 4000 characters'));
    const longest = await alice.invoke('SendMessage', id, 'é'.repeat(4000));
    assert.equal(longest.content.length, 4000, 'characters, not bytes');
    await assert.rejects(alice.invoke('JoinConversation'), /Failed to invoke 'JoinConversation'/, 'too few arguments');
    await assert.rejects(alice.invoke('JoinConversation', id, '0', 'x'), /Failed to invoke 'JoinConversation'/, 'too many');
    await assert.rejects(alice.invoke('JoinConversation', id, 'not-an-id'), /Failed to invoke 'JoinConversation'/);
  });

  e2eTest('a duplicate clientMessageId is stored and delivered once', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    await alice.invoke('JoinConversation', id);
    await bob.invoke('JoinConversation', id);
    const received = record(bob, 'ReceiveMessage');
    const sent = record(alice, 'MessageSent');
    const first = await alice.invoke('SendMessage', id, 'once', 'dup-1');
    const second = await alice.invoke('SendMessage', id, 'once', 'dup-1');
    assert.deepEqual(second, first, 'the stored message, twice');
    await received.wait(1);
    await sent.wait(1);
    await delay(GRACE_MS);
    assert.equal(received.items.length, 1);
    assert.equal(sent.items.length, 1);
    const history = await bob.invoke('JoinConversation', id, '0');
    assert.deepEqual(history.map((m) => m.id), [first.id], 'stored once');
  });

  e2eTest('a client that reconnects gets what it missed from JoinConversation(id, afterMessageId)', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    await alice.invoke('JoinConversation', id);
    let bob = await chat(node, 'bob');
    await bob.invoke('JoinConversation', id);
    const seen = record(bob, 'ReceiveMessage');
    await alice.invoke('SendMessage', id, 'before');
    const [last] = await seen.wait(1);
    await bob.stop();
    const missed = [];
    for (const text of ['while away 1', 'while away 2']) missed.push(await alice.invoke('SendMessage', id, text));
    bob = await chat(node, 'bob');
    const caughtUp = await bob.invoke('JoinConversation', id, last.id);
    assert.deepEqual(caughtUp, missed);
    const live = record(bob, 'ReceiveMessage');
    const after = await alice.invoke('SendMessage', id, 'back');
    assert.deepEqual((await live.wait(1))[0], after, 'and live again after the join');
  });

  e2eTest('typing is cleared, and announced, when the typer\'s connection drops', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    await alice.invoke('JoinConversation', id);
    await bob.invoke('JoinConversation', id);
    const typing = record(bob, 'TypingChanged');
    await alice.invoke('StartTyping', id);
    await alice.invoke('StartTyping', id);
    assert.deepEqual((await typing.wait(1))[0], [id, 'alice', true]);
    await alice.stop();
    assert.deepEqual((await typing.wait(2))[1], [id, 'alice', false]);
    await delay(GRACE_MS);
    assert.equal(typing.items.length, 2, 'a refresh is not announced again; the clear once');
  });

  e2eTest('StopTyping clears the indicator once', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    await bob.invoke('JoinConversation', id);
    const typing = record(bob, 'TypingChanged');
    await alice.invoke('StartTyping', id);
    await typing.wait(1);
    await alice.invoke('StopTyping', id);
    await alice.invoke('StopTyping', id);
    assert.deepEqual((await typing.wait(2))[1], [id, 'alice', false]);
    await delay(GRACE_MS);
    assert.equal(typing.items.length, 2);
  });

  e2eTest('one UserOnline for the first tab and one UserOffline after the last, to users sharing a conversation', async () => {
    const user = unique('tabs');
    await conversation(node, [user, 'bob']);
    const bob = await chat(node, 'bob');
    const stranger = await chat(node, unique('stranger'));
    const online = record(bob, 'UserOnline');
    const offline = record(bob, 'UserOffline');
    const strangerHeard = record(stranger, 'UserOffline');
    const tab1 = await chat(node, user);
    assert.deepEqual(await online.wait(1), [user]);
    const tab2 = await chat(node, user);
    const presence = await bob.invoke('GetPresence', [user, unique('nobody')]);
    assert.equal(presence[0].userId, user);
    assert.equal(presence[0].isOnline, true);
    assert.equal(presence[0].connections, 2);
    assert.equal(presence[1].isOnline, false);
    assert.equal(presence[1].connections, 0);
    assert.equal(presence[1].lastSeen, null);
    await tab1.stop();
    await delay(GRACE_MS);
    assert.equal(offline.items.length, 0, 'a tab is left');
    await tab2.stop();
    assert.deepEqual(await offline.wait(1), [user]);
    await delay(GRACE_MS);
    assert.equal(online.items.length, 1);
    assert.equal(offline.items.length, 1);
    assert.equal(strangerHeard.items.length, 0, 'only users who share a conversation hear it');
    const [gone] = await bob.invoke('GetPresence', [user]);
    assert.equal(gone.isOnline, false);
    assert.ok(Date.parse(gone.lastSeen) > 0, `last seen ${gone.lastSeen}`);
  });

  e2eTest('SendDirectMessage reaches every connection of the recipient and reuses one conversation', async () => {
    const dave = unique('dave');
    const alice = await chat(node, 'alice');
    const tabs = [await chat(node, dave), await chat(node, dave)];
    const received = tabs.map((t) => record(t, 'ReceiveMessage'));
    const first = await alice.invoke('SendDirectMessage', dave, 'psst', 'd-1');
    for (const r of received) assert.deepEqual((await r.wait(1))[0], first);
    const second = await alice.invoke('SendDirectMessage', dave, 'again');
    assert.equal(second.conversationId, first.conversationId, 'one conversation for the two users');
    const reply = await tabs[0].invoke('SendMessage', first.conversationId, 'hi alice');
    assert.equal(reply.conversationId, first.conversationId, 'the recipient takes part in it');
  });

  e2eTest('REST: conversations are created idempotently, participants added and removed', async () => {
    const id = unique('conv');
    const created = await api(node, 'POST', 'chat', '/conversations', { id, type: 'support', participants: ['bob', 'alice'] });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.id, id);
    assert.equal(created.body.type, 'support');
    assert.deepEqual(created.body.participants, ['alice', 'bob']);
    const again = await api(node, 'POST', 'chat', '/conversations', { id, type: 'support', participants: ['alice', 'bob'] });
    assert.equal(again.status, 201);
    assert.deepEqual(again.body, created.body);
    const other = await api(node, 'POST', 'chat', '/conversations', { id, type: 'support', participants: ['alice'] });
    assert.equal(other.status, 409, other.text);
    const generated = await api(node, 'POST', 'chat', '/conversations', { participants: ['alice'] });
    assert.equal(generated.status, 201);
    assert.notEqual(generated.body.id, id);
    assert.equal((await api(node, 'POST', 'chat', '/conversations', { participant: [] })).status, 400);
    assert.equal((await api(node, 'GET', 'chat', `/conversations/${id}`)).body.id, id);
    assert.equal((await api(node, 'GET', 'chat', `/conversations/${unique('none')}`)).status, 404);
    assert.equal((await api(node, 'POST', 'diagnostics', '/conversations', { participants: [] })).status, 404);

    const carol = await chat(node, 'carol');
    await assert.rejects(carol.invoke('JoinConversation', id), hubException('not a participant'));
    assert.equal((await api(node, 'PUT', 'chat', `/conversations/${id}/participants/carol`)).status, 200);
    await carol.invoke('JoinConversation', id);
    const carolLeft = record(carol, 'UserLeftConversation');
    const carolReceived = record(carol, 'ReceiveMessage');
    assert.equal((await api(node, 'DELETE', 'chat', `/conversations/${id}/participants/carol`)).status, 200);
    assert.deepEqual((await carolLeft.wait(1))[0], [id, 'carol'], 'the removed user is told');
    const alice = await chat(node, 'alice');
    await alice.invoke('SendMessage', id, 'after carol left');
    await delay(GRACE_MS);
    assert.equal(carolReceived.items.length, 0, 'and has left the group at once');
    await assert.rejects(carol.invoke('SendMessage', id, 'hi'), hubException('not a participant'));
    const unauthorized = await fetch(`${node.baseUrl}/api/hubs/chat/conversations`, { method: 'POST', body: '{}' });
    assert.equal(unauthorized.status, 401);
  });
});

describe('a backend posting through REST', () => {
  let node;
  before(async () => {
    node = await startNode({ name: 'backend' });
  });

  e2eTest('a posted message is stored, then reaches the group and the sender; history pages newest first', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    await bob.invoke('JoinConversation', id);
    const received = record(bob, 'ReceiveMessage');
    const sent = record(alice, 'MessageSent');
    const post = (body) => api(node, 'POST', 'chat', `/conversations/${id}/messages`, body);
    const created = await post({ senderId: 'alice', content: 'from the backend', clientMessageId: 'b-1', attachments: { n: 1 } });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.content, 'from the backend');
    assert.deepEqual(created.body.attachments, { n: 1 });
    const [live] = await received.wait(1);
    assert.equal(live.id, created.body.id);
    assert.equal(live.clientMessageId, 'b-1');
    assert.equal((await sent.wait(1))[0].id, created.body.id);
    const again = await post({ senderId: 'alice', content: 'from the backend', clientMessageId: 'b-1' });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, created.body.id);
    assert.equal((await post({ senderId: 'carol', content: 'x' })).status, 403);
    assert.equal((await post({ senderId: 'alice', content: '' })).status, 400);
    assert.equal((await api(node, 'POST', 'chat', `/conversations/${unique('none')}/messages`, { senderId: 'alice', content: 'x' })).status, 404);
    await delay(GRACE_MS);
    assert.equal(received.items.length, 1, 'the repeat is not broadcast');

    const ids = [created.body.id];
    for (const n of [2, 3, 4]) ids.push((await post({ senderId: 'bob', content: `m${n}` })).body.id);
    const first = await api(node, 'GET', 'chat', `/conversations/${id}/messages?limit=3`);
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.body.value.map((m) => m.id), ids.slice(1).reverse());
    assert.ok(first.body.nextLink, 'a full page links the next');
    const second = await api(node, 'GET', 'chat', first.body.nextLink.replace('/api/hubs/chat', ''));
    assert.deepEqual(second.body.value.map((m) => m.id), [ids[0]]);
    assert.equal(second.body.nextLink, null);
  });
});

describe('a hub definition under an app\'s own path and names', () => {
  let node;
  const definition = [
    {
      kind: 'chat',
      path: '/api-less/messaging',
      conversation_group: 'conversation:{id}',
      presence: 'others',
      methods: [
        { name: 'JoinConversation', operation: 'join_conversation', args: ['conversationId'] },
        { name: 'SendMessage', operation: 'send_message', args: ['conversationId', 'content', 'attachments?'] },
        { name: 'Ping', operation: 'ping' },
      ],
      events: {
        message_received: {
          name: 'OnMessageReceived',
          args: ['id', 'conversationId', 'senderId', 'content', 'attachments', 'sentAt'],
          fields: { id: 'messageId', senderId: 'senderUserId', content: 'body' },
        },
        message_error: { name: 'MessageError' },
      },
      refusals: { style: 'event', invalid_content: 'Invalid message content' },
    },
  ];
  before(async () => {
    node = await startNode({ name: 'defined', env: { HUBWIRE_HUB: JSON.stringify(definition) } });
  });

  e2eTest('the app\'s client names, argument order and payload fields; its backend reaches its group names', async () => {
    const id = await conversation(node, ['alice', 'bob'], { hub: 'messaging' });
    const url = `${node.baseUrl}/api-less/messaging`;
    const alice = await connect(node, { url, user: 'alice' });
    const bob = await connect(node, { url, user: 'bob' });
    await alice.invoke('JoinConversation', id);
    await bob.invoke('JoinConversation', id);
    const received = record(bob, 'OnMessageReceived');
    const sent = await alice.invoke('SendMessage', id, 'parcel at the door', [{ url: 'https://x/1.jpg' }]);
    const [message] = await received.wait(1);
    assert.deepEqual(Object.keys(message).sort(), ['attachments', 'body', 'conversationId', 'messageId', 'senderUserId', 'sentAt']);
    assert.equal(message.body, 'parcel at the door');
    assert.equal(message.senderUserId, 'alice');
    assert.deepEqual(message.attachments, [{ url: 'https://x/1.jpg' }]);
    assert.equal(message.messageId, sent.id, "the method returns message_sent's shape (its defaults here)");

    const errors = record(alice, 'MessageError');
    assert.equal(await alice.invoke('SendMessage', id, ''), null, 'refused by an event, not an exception');
    assert.deepEqual(await errors.wait(1), ['Invalid message content']);
    await assert.rejects(alice.invoke('StartTyping', id), /Method does not exist|Unknown hub method/);

    const fromBackend = record(bob, 'OrderUpdated');
    const group = encodeURIComponent(`conversation:${id}`);
    const res = await api(node, 'POST', 'messaging', `/groups/${group}/:send`, { target: 'OrderUpdated', arguments: [7] });
    assert.equal(res.status, 202, res.text);
    assert.deepEqual(await fromBackend.wait(1), [7]);
    const builtIn = await connect(node, { hub: 'chat', user: 'alice' });
    assert.equal(await builtIn.invoke('Ping'), 'pong', 'the built-in /hubs/chat is still served beside it');
  });
});

describe('a definition at /hubs/chat replaces the built-in one', () => {
  let node;
  before(async () => {
    const replaced = [{ kind: 'chat', path: '/hubs/chat', limits: { typing_timeout_secs: 1 } }];
    node = await startNode({ name: 'replaced', env: { HUBWIRE_HUB: JSON.stringify(replaced) } });
  });

  e2eTest('typing that is not refreshed expires, and its clear is announced once', async () => {
    const id = await conversation(node, ['alice', 'bob']);
    const alice = await chat(node, 'alice');
    const bob = await chat(node, 'bob');
    await bob.invoke('JoinConversation', id);
    const typing = record(bob, 'TypingChanged');
    await alice.invoke('StartTyping', id);
    assert.deepEqual((await typing.wait(1))[0], [id, 'alice', true]);
    assert.deepEqual((await typing.wait(2, 10_000))[1], [id, 'alice', false], 'expired without a stop');
    await delay(GRACE_MS);
    assert.equal(typing.items.length, 2);
    assert.ok(alice.state === 'Connected', 'the typer is still connected: it was the expiry');
  });
});

describe('three nodes, Redis and PostgreSQL (issue 9, Show 2)', () => {
  let cluster;
  before(async () => {
    cluster = await startChatCluster({
      size: 3,
      name: 'chat-cluster',
      env: { HUBWIRE_NODE_HEARTBEAT_MS: '300', HUBWIRE_NODE_DEAD_AFTER_MS: '2000' },
    });
  });
  after(() => cluster?.stop());

  e2eTest('two users on different nodes: join, typing until the send, MessageSent and ReceiveMessage, read, one UserOffline after the last tab', async () => {
    const [n1, n2, n3] = cluster.nodes;
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = await conversation(n3, [alice, bob]);
    const a = await chat(n1, alice);
    const bobTabs = [await chat(n2, bob), await chat(n3, bob)];
    const joined = record(a, 'UserJoinedConversation');
    assert.deepEqual(await a.invoke('JoinConversation', id), []);
    for (const tab of bobTabs) assert.deepEqual(await tab.invoke('JoinConversation', id), []);
    assert.deepEqual((await joined.wait(1))[0], [id, bob]);
    const typing = record(bobTabs[0], 'TypingChanged');
    const received = bobTabs.map((t) => record(t, 'ReceiveMessage'));
    const sent = record(a, 'MessageSent');
    const ownReceived = record(a, 'ReceiveMessage');
    const read = record(a, 'MessageRead');
    const offline = record(a, 'UserOffline');

    await a.invoke('StartTyping', id);
    assert.deepEqual((await typing.wait(1))[0], [id, alice, true], 'typing start reaches the other node');
    const stored = await a.invoke('SendMessage', id, 'across three nodes', 'c3-1');
    assert.equal(stored.clientMessageId, 'c3-1');
    assert.deepEqual((await sent.wait(1))[0], stored, 'MessageSent carries the clientMessageId');
    for (const r of received) assert.deepEqual((await r.wait(1))[0], stored, 'ReceiveMessage on every tab of bob');
    assert.deepEqual((await typing.wait(2))[1], [id, alice, false], 'the send cleared the typing');

    await bobTabs[1].invoke('MarkAsRead', id, stored.id);
    const [readConversation, readMessage, reader, readAt] = (await read.wait(1))[0];
    assert.deepEqual([readConversation, readMessage, reader], [id, stored.id, bob]);
    assert.ok(Date.parse(readAt) > 0, readAt);

    await bobTabs[0].stop();
    await delay(GRACE_MS);
    assert.equal(offline.items.length, 0, 'bob still has a tab on the third node');
    await bobTabs[1].stop();
    assert.deepEqual(await offline.wait(1), [bob], 'after the last tab');
    await delay(GRACE_MS);
    assert.equal(offline.items.length, 1, 'one UserOffline, not one per tab');
    assert.equal(ownReceived.items.length, 0, 'the sender gets MessageSent, not ReceiveMessage');
    assert.equal(typing.items.length, 2);
  });

  e2eTest('a non-participant is refused on any node, and nothing reaches the participants', async () => {
    const [n1, n2, n3] = cluster.nodes;
    const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
    const id = await conversation(n1, [alice, bob]);
    const b = await chat(n2, bob);
    await b.invoke('JoinConversation', id);
    const heard = ['ReceiveMessage', 'TypingChanged', 'MessageRead', 'UserJoinedConversation'].map((e) => record(b, e));
    const c = await chat(n3, carol);
    await assert.rejects(c.invoke('JoinConversation', id), hubException('not a participant'));
    await assert.rejects(c.invoke('SendMessage', id, 'let me in'), hubException('not a participant'));
    await assert.rejects(c.invoke('StartTyping', id), hubException('not a participant'));
    await assert.rejects(c.invoke('MarkAsRead', id, '1'), hubException('not a participant'));
    await delay(GRACE_MS);
    for (const h of heard) assert.equal(h.items.length, 0, 'nothing from the non-participant');
    const history = await api(n1, 'GET', 'chat', `/conversations/${id}/messages`);
    assert.deepEqual(history.body.value, [], 'nothing stored');
  });

  e2eTest('a duplicate clientMessageId, sent from two nodes, is stored and delivered once', async () => {
    const [n1, n2, n3] = cluster.nodes;
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = await conversation(n2, [alice, bob]);
    const tabs = [await chat(n1, alice), await chat(n2, alice)];
    const b = await chat(n3, bob);
    await b.invoke('JoinConversation', id);
    const received = record(b, 'ReceiveMessage');
    const sent = record(tabs[0], 'MessageSent');
    const first = await tabs[0].invoke('SendMessage', id, 'only once', 'dup-3');
    const second = await tabs[1].invoke('SendMessage', id, 'only once', 'dup-3');
    assert.deepEqual(second, first, 'the stored message, from either node');
    assert.deepEqual((await received.wait(1))[0], first);
    await sent.wait(1);
    await delay(GRACE_MS);
    assert.equal(received.items.length, 1, 'delivered once');
    assert.equal(sent.items.length, 1, 'acknowledged to the sender once');
    const history = await api(n3, 'GET', 'chat', `/conversations/${id}/messages`);
    assert.deepEqual(history.body.value.map((m) => m.id), [first.id], 'stored once');
  });

  e2eTest('a client disconnected while messages were sent gets them from JoinConversation(id, afterMessageId) on the third node', async () => {
    const [n1, n2, n3] = cluster.nodes;
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = await conversation(n1, [alice, bob]);
    const a = await chat(n1, alice);
    let b = await chat(n2, bob);
    await a.invoke('JoinConversation', id);
    await b.invoke('JoinConversation', id);
    const seen = record(b, 'ReceiveMessage');
    await a.invoke('SendMessage', id, 'before');
    const [last] = await seen.wait(1);
    await b.stop();
    const missed = [];
    for (const text of ['while away 1', 'while away 2', 'while away 3']) missed.push(await a.invoke('SendMessage', id, text));
    b = await chat(n3, bob);
    assert.deepEqual(await b.invoke('JoinConversation', id, last.id), missed, 'caught up on the third node, in order');
    const live = record(b, 'ReceiveMessage');
    const back = await a.invoke('SendMessage', id, 'welcome back');
    assert.deepEqual((await live.wait(1))[0], back, 'and live again after the join');
  });

  e2eTest('typing is cleared, and announced on the other nodes, when the typer\'s connection drops', async () => {
    const [n1, n2, n3] = cluster.nodes;
    const [alice, bob, dan] = [unique('alice'), unique('bob'), unique('dan')];
    const id = await conversation(n1, [alice, bob, dan]);
    const a = await chat(n1, alice);
    const watchers = [await chat(n2, bob), await chat(n3, dan)];
    for (const w of watchers) await w.invoke('JoinConversation', id);
    const typing = watchers.map((w) => record(w, 'TypingChanged'));
    await a.invoke('StartTyping', id);
    for (const t of typing) assert.deepEqual((await t.wait(1))[0], [id, alice, true]);
    await a.stop();
    for (const t of typing) assert.deepEqual((await t.wait(2))[1], [id, alice, false], 'cleared by the disconnect');
    await delay(GRACE_MS);
    for (const t of typing) assert.equal(t.items.length, 2, 'announced once');
  });
});

describe('a definition carrying messageType, with a catch-up cursor', () => {
  let node;
  const definition = [
    {
      kind: 'chat',
      path: '/typed/pets',
      methods: [
        { name: 'JoinConversation', operation: 'join_conversation', args: ['conversationId', 'afterMessageId?'] },
        { name: 'SendMessage', operation: 'send_message', args: ['conversationId', 'content', 'messageType?'] },
      ],
      events: {
        message_received: {
          name: 'ReceiveMessage',
          layout: 'object',
          args: ['id', 'conversationId', 'senderId', 'content', 'messageType', 'sentAt'],
          defaults: { messageType: 'Text' },
        },
        message_sent: {
          name: 'MessageSent',
          layout: 'object',
          args: ['id', 'conversationId', 'senderId', 'content', 'messageType', 'sentAt'],
          defaults: { messageType: 'Text' },
        },
      },
    },
  ];
  before(async () => {
    node = await startNode({ name: 'typed', env: { HUBWIRE_HUB: JSON.stringify(definition) } });
  });

  e2eTest('JoinConversation(id, afterMessageId) returns the stored messageType (the default when none was given)', async () => {
    const id = await conversation(node, ['alice', 'bob'], { hub: 'pets' });
    const url = `${node.baseUrl}/typed/pets`;
    const alice = await connect(node, { url, user: 'alice' });
    assert.deepEqual(await alice.invoke('JoinConversation', id), []);
    const image = await alice.invoke('SendMessage', id, 'photo', 'Image');
    const plain = await alice.invoke('SendMessage', id, 'words');
    assert.deepEqual([image.messageType, plain.messageType], ['Image', 'Text']);

    const bob = await connect(node, { url, user: 'bob' });
    const missed = await bob.invoke('JoinConversation', id, '0');
    assert.deepEqual(
      missed.map((m) => [m.id, m.content, m.messageType]),
      [[image.id, 'photo', 'Image'], [plain.id, 'words', 'Text']],
    );
    const after = await bob.invoke('JoinConversation', id, image.id);
    assert.deepEqual(after.map((m) => m.messageType), ['Text']);
  });
});
