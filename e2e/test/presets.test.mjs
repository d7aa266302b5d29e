// The presets of examples/ (one per seed app: 000 pet-services, 001 social
// chat, 002 delivery messaging), each on two nodes joined by Redis and sharing
// PostgreSQL, started with `hubwire-node --config examples/<app>/hubwire.toml`,
// driven by the seed's own client calls and handlers (names, argument order,
// payload fields), and a message posted through the REST API reaching the
// app's own group names.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';

import {
  closeAllClients,
  connect,
  delay,
  e2eTest,
  record,
  startCluster,
  startRedis,
  stopAllNodesAfter,
  waitFor,
} from './harness.mjs';
import { startPostgres } from './postgres.mjs';
import { chatApi, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

/** Grace period used only for negative assertions ("nothing more arrived"). */
const GRACE_MS = 400;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const presetFile = (app) => path.join(ROOT, 'examples', app, 'hubwire.toml');
const keys = (o) => Object.keys(o).sort();
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;


const api = chatApi;

const shared = {};
before(async () => {
  shared.postgres = await startPostgres();
  shared.redis = await startRedis({ name: 'presets-redis' });
});
after(async () => {
  await closeAllClients();
  await shared.redis?.stop();
  shared.postgres?.stop();
});

/** Two nodes started with the preset of `app`. */
async function presetCluster(app) {
  const { nodes } = await startCluster(shared.redis, {
    size: 2,
    name: app,
    args: ['--config', presetFile(app)],
    env: { HUBWIRE_DATABASE_URL: shared.postgres.url },
  });
  return nodes;
}

describe('examples/pet-services (seed 000) on two nodes', () => {
  let n1, n2;
  before(async () => {
    [n1, n2] = await presetCluster('pet-services');
  });
  after(() => Promise.all([n1, n2].map((n) => n?.stop())));

  e2eTest('SendMessage(recipientId, content, messageType) is a direct message; typing, joins, refusals as events, presence to all', async () => {
    const [owner, walker, stranger] = [unique('owner'), unique('walker'), unique('stranger')];
    const hub = (node, user) => connect(node, { url: `${node.baseUrl}/hubs/chat`, user });
    const a = await hub(n1, owner);
    const online = record(a, 'UserOnline');
    const offline = record(a, 'UserOffline');
    const b = await hub(n2, walker);
    // Clients.All: everyone, the user's own connection included.
    await waitFor(() => online.items.includes(walker), { what: `UserOnline(${walker})` });

    const received = record(b, 'ReceiveMessage');
    const sent = record(a, 'MessageSent');
    const errors = record(a, 'MessageError');
    await a.invoke('SendMessage', walker, 'Is Rex free on Saturday?', 'Text');
    const [message] = await received.wait(1);
    assert.deepEqual(keys(message), ['content', 'conversationId', 'id', 'messageType', 'recipientId', 'senderId', 'timestamp']);
    assert.equal(message.senderId, owner);
    assert.equal(message.recipientId, walker);
    assert.equal(message.content, 'Is Rex free on Saturday?');
    assert.equal(message.messageType, 'Text');
    assert.match(message.timestamp, ISO);
    assert.deepEqual((await sent.wait(1))[0], message, 'MessageSent to the sender');
    await a.invoke('SendMessage', walker, 'photo', 'Image');
    assert.equal((await received.wait(2))[1].messageType, 'Image');
    await a.invoke('SendMessage', walker, 'no type given');
    assert.equal((await received.wait(3))[2].messageType, 'Text', 'messageType = "Text" by default');

    await a.invoke('SendMessage', walker, '   ');
    await a.invoke('SendMessage', walker, 'x'.repeat(4001));
    assert.deepEqual(await errors.wait(2), ['Invalid message content', 'Invalid message content']);

    const id = message.conversationId;
    const joined = record(a, 'UserJoinedConversation');
    const left = record(a, 'UserLeftConversation');
    const started = record(b, 'UserStartedTyping');
    const stopped = record(b, 'UserStoppedTyping');
    await a.invoke('JoinConversation', id);
    await b.invoke('JoinConversation', id);
    assert.deepEqual(await joined.wait(1), [[id, walker]]);
    await a.invoke('StartTyping', id);
    assert.deepEqual(await started.wait(1), [[id, owner]]);
    await a.invoke('StopTyping', id);
    assert.deepEqual(await stopped.wait(1), [[id, owner]]);

    const c = await hub(n1, stranger);
    const denied = record(c, 'ConversationError');
    await c.invoke('JoinConversation', id);
    assert.deepEqual(await denied.wait(1), ['Access denied']);

    // The backend posts into conversation_{id}: the joined recipient hears it.
    const res = await api(n1, 'POST', 'chat', `/conversations/${id}/messages`, { senderId: owner, content: 'booked' });
    assert.equal(res.status, 201, res.text);
    const [, , , fromBackend] = await received.wait(4);
    assert.equal(fromBackend.content, 'booked');
    assert.equal(fromBackend.messageType, 'Text');
    const group = await api(n2, 'POST', 'chat', `/groups/conversation_${id}/:send`, { target: 'ReceiveNotification', arguments: [{ title: 'Booking' }] });
    assert.equal(group.status, 202, group.text);

    const [inbox] = await b.invoke('GetConversations');
    assert.equal(inbox.id, id);
    assert.equal(inbox.lastMessage.content, 'booked');
    assert.equal(inbox.unreadCount, 4, 'four messages of the owner, none read');

    await b.invoke('LeaveConversation', id);
    assert.deepEqual(await left.wait(1), [[id, walker]]);
    await b.stop();
    assert.deepEqual(await offline.wait(1), [walker]);
    await delay(GRACE_MS);
    assert.equal(offline.items.length, 1);
  });

  e2eTest('messageType is stored: REST history and GetConversations\' last message carry it, from either node', async () => {
    const [owner, walker] = [unique('owner'), unique('walker')];
    const hub = (node, user) => connect(node, { url: `${node.baseUrl}/hubs/chat`, user });
    const a = await hub(n1, owner);
    const photo = await a.invoke('SendMessage', walker, 'photo', 'Image');
    assert.equal(photo.messageType, 'Image');
    const id = photo.conversationId;
    await a.invoke('SendMessage', walker, 'here we are', 'Location');
    const plain = await a.invoke('SendMessage', walker, 'no type given');
    assert.equal(plain.messageType, 'Text', 'the definition\'s default');

    const history = await api(n2, 'GET', 'chat', `/conversations/${id}/messages`);
    assert.equal(history.status, 200, history.text);
    assert.deepEqual(
      history.body.value.map((m) => [m.content, m.messageType]),
      [['no type given', null], ['here we are', 'Location'], ['photo', 'Image']],
      'newest first; none given is null (the definition\'s default)',
    );

    const b = await hub(n2, walker);
    const [untyped] = await b.invoke('GetConversations');
    assert.equal(untyped.lastMessage.content, 'no type given');
    assert.equal(untyped.lastMessage.messageType, 'Text', 'none stored: the default');
    await a.invoke('SendMessage', walker, 'listen', 'Voice');
    const [voice] = await b.invoke('GetConversations');
    assert.equal(voice.lastMessage.content, 'listen');
    assert.equal(voice.lastMessage.messageType, 'Voice', 'the stored type, read on the other node');
    const inbox = await api(n2, 'GET', 'chat', `/users/${walker}/conversations`);
    assert.equal(inbox.status, 200, inbox.text);
    assert.equal(inbox.body.value[0].lastMessage.messageType, 'Voice');
  });
});

describe('examples/social-chat (seed 001) on two nodes', () => {
  let n1, n2;
  before(async () => {
    [n1, n2] = await presetCluster('social-chat');
  });
  after(() => Promise.all([n1, n2].map((n) => n?.stop())));

  const hub = (node, user, name) => connect(node, { url: `${node.baseUrl}/chathub`, user, name });

  e2eTest('JoinConversationRoom, SendMessage, REST then broadcast to the group {id}, PresenceUpdated to the conversations', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const id = crypto.randomUUID();
    const created = await api(n1, 'POST', 'chathub', '/conversations', { id, participants: [alice, bob] });
    assert.equal(created.status, 201, created.text);

    const b = await hub(n2, bob, 'Bob');
    const presence = record(b, 'PresenceUpdated');
    const a = await hub(n1, alice, 'Alice Smith');
    assert.deepEqual(await presence.wait(1), [[alice, true]]);

    const joined = record(a, 'UserJoined');
    const left = record(a, 'UserLeft');
    await a.invoke('JoinConversationRoom', id);
    await b.invoke('JoinConversationRoom', id);
    assert.deepEqual(await joined.wait(1), [[id, bob]]);

    const bReceived = record(b, 'ReceiveMessage');
    const aReceived = record(a, 'ReceiveMessage');
    await a.invoke('SendMessage', id, 'hello from the hub');
    const [message] = await bReceived.wait(1);
    assert.deepEqual(keys(message), ['content', 'conversationId', 'id', 'senderId', 'senderUserName', 'sentAt']);
    assert.equal(message.senderUserName, 'Alice Smith', "the token's name");
    assert.equal(message.conversationId, id);
    assert.deepEqual((await aReceived.wait(1))[0], message, 'the whole group, the sender included');

    const res = await api(n2, 'POST', 'chathub', `/conversations/${id}/messages`, { senderId: bob, content: 'via REST', senderName: 'Bob' });
    assert.equal(res.status, 201, res.text);
    const fromRest = (await aReceived.wait(2))[1];
    assert.equal(fromRest.content, 'via REST');
    assert.equal(fromRest.senderUserName, 'Bob');
    assert.equal(fromRest.id, res.body.id);
    const toGroup = await api(n1, 'POST', 'chathub', `/groups/${id}/:send`, { target: 'ReceiveMessage', arguments: [{ id: 'x' }] });
    assert.equal(toGroup.status, 202, toGroup.text);
    assert.deepEqual((await bReceived.wait(3))[2], { id: 'x' }, 'the group is the conversation id');

    const inbox = await api(n1, 'GET', 'chathub', `/users/${alice}/conversations`);
    assert.equal(inbox.status, 200, inbox.text);
    assert.equal(inbox.body.value[0].id, id);
    assert.equal(inbox.body.value[0].lastMessage.content, 'via REST');
    assert.equal(inbox.body.value[0].unreadCount, 1);
    const who = await api(n2, 'GET', 'chathub', `/presence?userId=${alice}&userId=${bob}`);
    assert.equal(who.status, 200, who.text);
    assert.deepEqual(who.body.map((p) => [p.userId, p.isOnline, p.connections]), [[alice, true, 1], [bob, true, 1]]);

    await a.invoke('UpdatePresence', false);
    assert.deepEqual((await presence.wait(2))[1], [alice, false]);
    await a.invoke('UpdatePresence', true);
    assert.deepEqual((await presence.wait(3))[2], [alice, true]);
    await b.invoke('LeaveConversationRoom', id);
    assert.deepEqual(await left.wait(1), [[id, bob]]);
    await a.stop();
    assert.deepEqual((await presence.wait(4))[3], [alice, false], 'the last connection closed');
  });

  e2eTest('5 connections per user across the nodes, a sixth refused', async () => {
    const carol = unique('carol');
    const tabs = [];
    for (let i = 0; i < 5; i++) tabs.push(await hub(i % 2 ? n2 : n1, carol));
    // The WebSocket upgrade is answered 429; the official client reports it as a failed transport.
    await assert.rejects(hub(n2, carol), /WebSocket failed to connect/);
    await assert.rejects(hub(n1, carol), /WebSocket failed to connect/);
    const [presence] = (await api(n1, 'GET', 'chathub', `/presence?userId=${carol}`)).body;
    assert.equal(presence.connections, 5, 'the refused ones hold no place');
    await tabs[0].stop();
    await waitFor(async () => (await api(n2, 'GET', 'chathub', `/presence?userId=${carol}`)).body[0].connections === 4, { what: 'a place freed' });
    const again = await hub(n2, carol);
    assert.equal(again.state, 'Connected', 'a freed place can be taken again');
  });
});

describe('examples/delivery-messaging (seed 002) on two nodes', () => {
  let n1, n2;
  before(async () => {
    [n1, n2] = await presetCluster('delivery-messaging');
  });
  after(() => Promise.all([n1, n2].map((n) => n?.stop())));

  const hub = (node, user) => connect(node, { url: `${node.baseUrl}/hubs/messaging`, user });
  const hubException = (text) => new RegExp(`HubException: ${text}$`);

  e2eTest("MessagingHub's calls and handlers, receipts and typing to the others in conversation:{id}", async () => {
    const [customer, driver, other] = [unique('customer'), unique('driver'), unique('other')];
    const id = crypto.randomUUID();
    const created = await api(n1, 'POST', 'messaging', '/conversations', { id, type: 'customer-driver', participants: [customer, driver] });
    assert.equal(created.status, 201, created.text);
    const c = await hub(n1, customer);
    const online = record(c, 'UserOnline');
    const offline = record(c, 'UserOffline');
    const d = await hub(n2, driver);
    assert.deepEqual(await online.wait(1), [driver], 'UserOnline to the others');

    const o = await hub(n2, other);
    await assert.rejects(o.invoke('JoinConversation', crypto.randomUUID()), hubException('Conversation not found'));
    await assert.rejects(o.invoke('JoinConversation', id), hubException('You are not a participant in this conversation'));

    await c.invoke('JoinConversation', id);
    await d.invoke('JoinConversation', id);
    const cReceived = record(c, 'OnMessageReceived');
    const dReceived = record(d, 'OnMessageReceived');
    const cTyping = record(c, 'OnTypingIndicator');
    const dTyping = record(d, 'OnTypingIndicator');
    const cRead = record(c, 'OnMessageRead');
    const dRead = record(d, 'OnMessageRead');

    await c.invoke('SendMessage', id, 'Leave it at the door', ['https://x/door.jpg']);
    const [message] = await dReceived.wait(1);
    assert.deepEqual(keys(message), ['attachments', 'body', 'conversationId', 'messageId', 'senderUserId', 'sentAt']);
    assert.equal(message.body, 'Leave it at the door');
    assert.equal(message.senderUserId, customer);
    assert.deepEqual(message.attachments, ['https://x/door.jpg']);
    assert.match(message.sentAt, ISO);
    assert.deepEqual((await cReceived.wait(1))[0], message, 'the whole group, the sender included');
    await d.invoke('SendMessage', id, 'ok');
    assert.equal((await cReceived.wait(2))[1].attachments, null, 'attachments are optional');

    await d.invoke('StartTyping', id);
    assert.deepEqual(await cTyping.wait(1), [[id, driver, true]]);
    await d.invoke('StopTyping', id);
    assert.deepEqual((await cTyping.wait(2))[1], [id, driver, false]);

    await d.invoke('MarkAsRead', id, message.messageId);
    const [[readConversation, readMessage, reader, readAt]] = await cRead.wait(1);
    assert.deepEqual([readConversation, readMessage, reader], [id, message.messageId, driver]);
    assert.match(readAt, ISO);
    assert.equal(await d.invoke('Ping'), 'pong');

    const res = await api(n2, 'POST', 'messaging', `/conversations/${id}/messages`, { senderId: customer, content: 'from the backend' });
    assert.equal(res.status, 201, res.text);
    assert.equal((await dReceived.wait(3))[2].body, 'from the backend');
    const group = encodeURIComponent(`conversation:${id}`);
    const status = record(d, 'OrderStatusChanged');
    const sent = await api(n1, 'POST', 'messaging', `/groups/${group}/:send`, { target: 'OrderStatusChanged', arguments: ['delivered'] });
    assert.equal(sent.status, 202, sent.text);
    assert.deepEqual(await status.wait(1), ['delivered'], 'the backend reaches conversation:{id}');

    const [inbox] = await d.invoke('GetConversations');
    assert.equal(inbox.id, id);
    assert.equal(inbox.type, 'customer-driver');
    assert.equal(inbox.lastMessage.body, 'from the backend', "shaped as the app's OnMessageReceived");
    assert.equal(inbox.unreadCount, 1, 'read up to the first; the backend message is new');

    await delay(GRACE_MS);
    assert.equal(dTyping.items.length, 0, 'typing goes to the others only');
    assert.equal(dRead.items.length, 0, 'receipts go to the others only');
    await d.stop();
    assert.deepEqual(await offline.wait(1), [driver]);
  });
});
