// The chat hub's offline-delivery hook on two nodes (Redis + PostgreSQL): a
// new message whose recipient has no live connection anywhere in the cluster
// is POSTed to the configured URL, signed with HMAC-SHA256; a 500 and a
// receiver slower than the timeout are retried (same delivery id); a
// recipient online on the other node gets no POST; /metrics counts it all.
// The receiver is a small Node HTTP server in this file.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe } from 'node:test';

import { delay, e2eTest, record, stopAllNodesAfter, waitFor } from './harness.mjs';
import { documentedMetrics, scrape } from './prometheus.mjs';
import { chatApi, chatClient, createConversation, GRACE_MS, metric, startChatCluster, unique } from './chat-helpers.mjs';

stopAllNodesAfter();

const SECRET = crypto.randomBytes(24).toString('hex');
/** Longer than one attempt may take: the first answer to a "slow" message comes too late. */
const SLOW_MS = 3_000;

/**
 * The app's push receiver: records every request ({ headers, body, json,
 * signed }); answers 500 to the first attempt of a message whose content
 * starts with "flaky", answers the first attempt of a "slow" one only after
 * SLOW_MS, and 200 otherwise.
 */
function startReceiver() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = `sha256=${crypto.createHmac('sha256', SECRET).update(body).digest('hex')}`;
      const json = JSON.parse(body.toString('utf8'));
      const entry = { headers: req.headers, json, signed: req.headers['x-hubwire-signature'] === expected };
      requests.push(entry);
      const attempt = Number(req.headers['x-hubwire-attempt']);
      const content = json.message?.content ?? '';
      if (content.startsWith('flaky') && attempt === 1) {
        res.writeHead(500).end('try again');
      } else if (content.startsWith('slow') && attempt === 1) {
        setTimeout(() => res.writeHead(200).end(), SLOW_MS).unref();
      } else {
        res.writeHead(204).end();
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}/push`, requests, close: () => server.close() });
    });
  });
}

const outcome = (node, o) => metric(node, `hubwire_webhook_total{hook="offline",hub="chat",outcome="${o}"}`);
async function counters(node) {
  const out = {};
  for (const o of ['queued', 'delivered', 'retried', 'failed', 'dropped']) out[o] = await outcome(node, o);
  return out;
}
const moved = (after, before) => Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));

describe('the offline-delivery hook on two nodes', () => {
  let cluster;
  let receiver;
  before(async () => {
    receiver = await startReceiver();
    const hub = [
      {
        kind: 'chat',
        path: '/hubs/chat',
        offline_hook: { url: receiver.url, secret: SECRET, timeout_ms: 1000, retries: 3, backoff_ms: 100, queue: 100 },
      },
    ];
    cluster = await startChatCluster({ size: 2, name: 'offline-hook', env: { HUBWIRE_HUB: JSON.stringify(hub) } });
  });
  after(async () => {
    await cluster?.stop();
    receiver?.close();
  });

  const forMessage = (id) => receiver.requests.filter((r) => r.json.message?.id === id);

  e2eTest('a message for an offline participant is POSTed signed; a 500 is retried; the online participant gets no POST', async () => {
    const [n1, n2] = cluster.nodes;
    const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
    const id = await createConversation(n1, [alice, bob, carol]);
    const a = await chatClient(n1, alice);
    const b = await chatClient(n2, bob);
    await a.invoke('JoinConversation', id);
    await b.invoke('JoinConversation', id);
    const received = record(b, 'ReceiveMessage');
    const start = await counters(n1);

    const message = await a.invoke('SendMessage', id, 'flaky push', 'hook-1');
    assert.equal((await received.wait(1))[0].id, message.id, 'the online participant gets it live');
    await waitFor(async () => (await outcome(n1, 'delivered')) > start.delivered, { timeout: 15_000, what: 'the delivery' });
    const posts = forMessage(message.id);
    assert.equal(posts.length, 2, 'a 500, then the retry that succeeded');
    for (const post of posts) {
      assert.ok(post.signed, 'X-Hubwire-Signature is HMAC-SHA256 of the body with the secret');
      assert.equal(post.headers['content-type'], 'application/json');
      assert.deepEqual(
        { hub: post.json.hub, conversationId: post.json.conversationId, recipientId: post.json.recipientId },
        { hub: 'chat', conversationId: id, recipientId: carol },
      );
      assert.deepEqual(post.json.message, message, 'the message as the hub shapes it');
    }
    assert.deepEqual(posts.map((p) => p.headers['x-hubwire-attempt']), ['1', '2']);
    assert.equal(posts[0].headers['x-hubwire-delivery'], posts[1].headers['x-hubwire-delivery'], 'one delivery id for its attempts');
    await delay(GRACE_MS);
    assert.equal(forMessage(message.id).length, 2, 'nothing for bob, who is online on the other node');
    assert.deepEqual(moved(await counters(n1), start), { queued: 1, delivered: 1, retried: 1, failed: 0, dropped: 0 });

    // A backend's REST post to the conversation goes through the same rule.
    const posted = await chatApi(n2, 'POST', 'chat', `/conversations/${id}/messages`, { senderId: bob, content: 'from the backend' });
    assert.equal(posted.status, 201, posted.text);
    await waitFor(() => forMessage(posted.body.id).length === 1, { timeout: 15_000, what: 'the REST message posted' });
    await delay(GRACE_MS);
    const restPosts = forMessage(posted.body.id);
    assert.deepEqual(restPosts.map((p) => p.json.recipientId), [carol], 'alice is online: only carol');
    assert.ok(restPosts[0].signed);
  });

  e2eTest('a receiver slower than the timeout is retried, and a direct message to a user online on another node is not posted', async () => {
    const [n1, n2] = cluster.nodes;
    const [alice, dave, erin] = [unique('alice'), unique('dave'), unique('erin')];
    const a = await chatClient(n1, alice);
    const e = await chatClient(n2, erin);
    const erinReceived = record(e, 'ReceiveMessage');
    const start = await counters(n1);

    const slow = await a.invoke('SendDirectMessage', dave, 'slow push');
    await waitFor(async () => (await outcome(n1, 'delivered')) > start.delivered, { timeout: 20_000, what: 'the delivery after the timeout' });
    const posts = forMessage(slow.id);
    assert.ok(posts.length >= 2, `the timed-out attempt and its retry (${posts.length})`);
    assert.deepEqual(posts.slice(0, 2).map((p) => p.headers['x-hubwire-attempt']), ['1', '2']);
    assert.ok(posts.every((p) => p.signed && p.json.recipientId === dave));
    assert.equal(new Set(posts.map((p) => p.headers['x-hubwire-delivery'])).size, 1);
    const afterSlow = moved(await counters(n1), start);
    assert.equal(afterSlow.queued, 1);
    assert.equal(afterSlow.delivered, 1);
    assert.equal(afterSlow.retried, posts.length - 1, 'each attempt but the last counted as retried');
    assert.equal(afterSlow.failed, 0);

    const online = await a.invoke('SendDirectMessage', erin, 'you are here');
    assert.equal((await erinReceived.wait(1))[0].id, online.id);
    await delay(GRACE_MS * 2);
    assert.equal(forMessage(online.id).length, 0, 'no POST for a recipient with a live connection');
    assert.equal((await outcome(n1, 'queued')) - start.queued, 1, 'nothing more queued');

    // The hook's counter, exposed only where a hook is configured, is documented as it is.
    const doc = documentedMetrics().get('hubwire_webhook_total');
    assert.ok(doc?.conditional, 'docs/metrics.md lists hubwire_webhook_total as conditional');
    const { families, samples } = await scrape(n1);
    assert.equal(families.get('hubwire_webhook_total'), doc.type);
    const labels = new Set(samples.filter((x) => x.name === 'hubwire_webhook_total').flatMap((x) => Object.keys(x.labels)));
    assert.deepEqual([...labels].sort(), [...doc.labels].sort());
  });
});
