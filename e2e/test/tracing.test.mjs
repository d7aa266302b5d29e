// OpenTelemetry traces (issue #12 Show 2): the test runs its own OTLP/HTTP
// receiver, starts two nodes joined by Redis that export to it, and checks
// the spans they send: a hub invocation whose `traceparent` header the test
// chose becomes a `diagnostics/SendToUser` server span of that trace
// (rpc.system = signalr, rpc.service, rpc.method) with the test's span as its
// parent, its publish a child of it, and the delivery on the second node a
// child of the publish — the same trace id on both nodes. Negotiate, the
// connect and REST calls have their spans too. A chat hub's store calls
// (PostgreSQL) and Redis keyspace commands are client spans of the invocation,
// REST call or WebSocket connection that made them (db.system.name,
// db.operation.name, ...).
// Without an endpoint a node exports nothing.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe } from 'node:test';

import {
  accessToken,
  closeAllClients,
  connect,
  delay,
  e2eTest,
  rawWs,
  record,
  startCluster,
  startNode,
  startRedis,
  stopAllNodesAfter,
  waitFor,
} from './harness.mjs';
import { startPostgres } from './postgres.mjs';

stopAllNodesAfter();

/** A minimal OTLP/HTTP receiver: POST /v1/traces with a JSON body. */
async function startReceiver() {
  const spans = [];
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, type: req.headers['content-type'] });
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const parsed = JSON.parse(body);
      for (const rs of parsed.resourceSpans ?? []) {
        const resource = Object.fromEntries(
          (rs.resource?.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
        );
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? []) {
            const attributes = Object.fromEntries(
              (span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
            );
            spans.push({ ...span, attributes, resource });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    spans,
    requests,
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const hex = (bytes) => crypto.randomBytes(bytes).toString('hex');

describe('OTLP traces from two nodes', () => {
  const cluster = {};
  before(async () => {
    cluster.receiver = await startReceiver();
    cluster.redis = await startRedis({ name: 'tracing-redis' });
    cluster.postgres = await startPostgres();
    Object.assign(
      cluster,
      await startCluster(cluster.redis, {
        size: 2,
        name: 'tracing',
        env: { HUBWIRE_OTLP_ENDPOINT: cluster.receiver.url, HUBWIRE_DATABASE_URL: cluster.postgres.url },
      }),
    );
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
    cluster.postgres?.stop();
    await cluster.receiver?.close();
  });

  e2eTest('an invocation with a traceparent header continues on the node its send reaches', async () => {
    const [n1, n2] = cluster.nodes;
    const { spans } = cluster.receiver;
    const b = await connect(n2, { user: 'trace-b' });
    const heard = record(b, 'Receive');

    const traceId = hex(16);
    const parentId = hex(8);
    const token = n1.token({ sub: 'trace-a', roles: ['admin'] });
    const raw = await rawWs(n1, `/hubs/diagnostics?access_token=${encodeURIComponent(token)}`);
    await raw.handshake();
    raw.sendMessage({
      type: 1,
      invocationId: '1',
      target: 'SendToUser',
      arguments: ['trace-b', 'Receive', 'traced'],
      headers: { traceparent: `00-${traceId}-${parentId}-01` },
    });
    const completion = await raw.waitMessage((m) => m.type === 3 && m.invocationId === '1');
    assert.equal(completion.error, undefined, JSON.stringify(completion));
    await heard.wait(1);

    const ofTrace = () => spans.filter((s) => s.traceId === traceId);
    const names = ['diagnostics/SendToUser', 'PUBLISH', 'diagnostics/deliver'];
    // Each node exports its own spans when they end, so they arrive in any order.
    await waitFor(() => names.every((n) => ofTrace().some((s) => s.name === n)), {
      timeout: 10_000,
      what: 'the invocation, publish and delivery spans from both nodes',
    });
    // A span is exported once: a second export would show here after the exporters' linger.
    await delay(1_500);
    assert.deepEqual(ofTrace().map((s) => s.name).sort(), [...names].sort(), 'each span exactly once');
    const invocation = ofTrace().find((s) => s.name === 'diagnostics/SendToUser');
    assert.ok(invocation, `spans of the trace: ${ofTrace().map((s) => s.name)}`);
    assert.equal(invocation.kind, 2, 'server span');
    assert.equal(invocation.parentSpanId, parentId, 'the header is the parent');
    assert.equal(invocation.attributes['rpc.system'], 'signalr');
    assert.equal(invocation.attributes['rpc.service'], 'diagnostics');
    assert.equal(invocation.attributes['rpc.method'], 'SendToUser');
    assert.equal(invocation.resource['service.name'], 'hubwire');
    assert.ok(BigInt(invocation.endTimeUnixNano) >= BigInt(invocation.startTimeUnixNano));

    const publish = ofTrace().find((s) => s.name === 'PUBLISH');
    assert.ok(publish, 'a publish span');
    assert.equal(publish.parentSpanId, invocation.spanId);
    assert.equal(publish.attributes['db.system.name'], 'redis');

    const delivery = ofTrace().find((s) => s.name === 'diagnostics/deliver');
    assert.equal(delivery.parentSpanId, publish.spanId, 'the second node continues the publish span');
    assert.equal(delivery.kind, 5, 'consumer span');
    assert.notEqual(
      delivery.resource['service.instance.id'],
      invocation.resource['service.instance.id'],
      'exported by the other node',
    );
    assert.equal(delivery.attributes['hubwire.recipients'], '1');
    raw.close();
  });

  e2eTest('negotiate, connect and REST calls have server spans', async () => {
    const [n1] = cluster.nodes;
    const { spans } = cluster.receiver;
    const conn = await connect(n1, { user: 'trace-c' });
    const path = '/api/hubs/diagnostics/users/trace-c/:send';
    const fixed = '?api-version=2022-06-01';
    const traceId = hex(16);
    const res = await fetch(`${n1.baseUrl}${path}${fixed}`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${accessToken(n1, `http://127.0.0.1${path}${fixed}`)}`,
        'Content-Type': 'application/json',
        traceparent: `00-${traceId}-${hex(8)}-01`,
      },
      body: JSON.stringify({ Target: 'Receive', Arguments: ['rest'] }),
    });
    assert.ok(res.status < 300, `REST send answered ${res.status}`);
    await conn.stop();
    await waitFor(
      () =>
        spans.some((s) => s.name === 'POST /hubs/{hub}/negotiate') &&
        spans.some((s) => s.name === 'GET /hubs/diagnostics' && s.attributes['rpc.service'] === 'diagnostics') &&
        spans.some((s) => s.traceId === traceId && s.name.startsWith('POST /api/')),
      { timeout: 10_000, what: 'negotiate, connect and REST spans' },
    );
    const rest = spans.find((s) => s.traceId === traceId && s.name.startsWith('POST /api/'));
    assert.equal(rest.kind, 2);
    assert.equal(rest.attributes['http.response.status_code'], '202');
    assert.ok(cluster.receiver.requests.every((r) => r.url === '/v1/traces' && r.type === 'application/json'));
    // Probes and scrapes are not traced.
    assert.equal((await fetch(`${n1.baseUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${n1.baseUrl}/metrics`)).status, 200);
    await fetch(`${n1.baseUrl}/hubs/diagnostics/negotiate?negotiateVersion=1`, { method: 'POST' });
    const marker = spans.length;
    await waitFor(() => spans.slice(marker).some((s) => s.name === 'POST /hubs/{hub}/negotiate'), {
      timeout: 10_000,
      what: 'the span of the request after the probes',
    });
    assert.ok(!spans.some((s) => s.attributes['url.path'] === '/healthz' || s.attributes['url.path'] === '/metrics'));
  });
  e2eTest('store calls and Redis commands are client spans of the invocation, REST call or connection', async () => {
    const [n1] = cluster.nodes;
    const { spans } = cluster.receiver;
    const suffix = hex(3);
    const [alice, bob] = [`trace-alice-${suffix}`, `trace-bob-${suffix}`];
    const ofTrace = (traceId) => spans.filter((s) => s.traceId === traceId);
    const named = (traceId, name) => ofTrace(traceId).filter((s) => s.name === name);

    // A REST call of the backend: the conversation's insert is a child of its span.
    const restTrace = hex(16);
    const path = '/api/hubs/chat/conversations';
    const res = await fetch(`${n1.baseUrl}${path}`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${accessToken(n1, `http://127.0.0.1${path}`)}`,
        'Content-Type': 'application/json',
        traceparent: `00-${restTrace}-${hex(8)}-01`,
      },
      body: JSON.stringify({ participants: [alice, bob] }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const conversation = (await res.json()).id;

    const connectTrace = hex(16);
    const raw = await rawWs(n1, `/hubs/chat?access_token=${encodeURIComponent(n1.token({ sub: alice }))}`, {
      headers: { traceparent: `00-${connectTrace}-${hex(8)}-01` },
    });
    await raw.handshake();
    const invoke = async (invocationId, target, args, traceId) => {
      raw.sendMessage({
        type: 1,
        invocationId,
        target,
        arguments: args,
        headers: { traceparent: `00-${traceId}-${hex(8)}-01` },
      });
      const completion = await raw.waitMessage((m) => m.type === 3 && m.invocationId === invocationId);
      assert.equal(completion.error, undefined, JSON.stringify(completion));
      return completion;
    };
    const joinTrace = hex(16);
    await invoke('1', 'JoinConversation', [conversation], joinTrace);
    const sendTrace = hex(16);
    const sent = await invoke('2', 'SendMessage', [conversation, 'traced', `client-${suffix}`], sendTrace);
    assert.equal(sent.result.content, 'traced');

    await waitFor(
      () =>
        named(restTrace, 'INSERT conversations').length > 0 &&
        named(joinTrace, 'chat/JoinConversation').length > 0 &&
        named(joinTrace, 'EVALSHA join_group').length > 0 &&
        named(sendTrace, 'chat/SendMessage').length > 0 &&
        named(sendTrace, 'INSERT messages').length > 0,
      { timeout: 10_000, what: 'the store and Redis spans of the REST call and both invocations' },
    );
    // A span is exported once: a second export would show here after the exporters' linger.
    await delay(1_500);
    for (const traceId of [restTrace, joinTrace, sendTrace]) {
      const ids = ofTrace(traceId).map((s) => s.spanId);
      assert.equal(new Set(ids).size, ids.length, `each span once: ${ofTrace(traceId).map((s) => s.name)}`);
    }

    // The message's insert: a PostgreSQL client span inside SendMessage, its batch counted.
    const send = named(sendTrace, 'chat/SendMessage');
    assert.equal(send.length, 1);
    const inserts = named(sendTrace, 'INSERT messages');
    assert.equal(inserts.length, 1, 'one insert span');
    const [insert] = inserts;
    assert.equal(insert.kind, 3, 'client span');
    assert.equal(insert.parentSpanId, send[0].spanId, 'a child of the invocation');
    assert.equal(insert.attributes['db.system.name'], 'postgresql');
    assert.equal(insert.attributes['db.operation.name'], 'INSERT');
    assert.equal(insert.attributes['db.collection.name'], 'messages');
    assert.equal(insert.attributes['code.function.name'], 'append_message');
    assert.ok(Number(insert.attributes['db.operation.batch.size']) >= 1, JSON.stringify(insert.attributes));
    assert.equal(insert.resource['service.instance.id'], send[0].resource['service.instance.id']);
    assert.ok(BigInt(insert.startTimeUnixNano) >= BigInt(send[0].startTimeUnixNano), 'starts within the invocation');
    assert.ok(BigInt(insert.endTimeUnixNano) <= BigInt(send[0].endTimeUnixNano), 'ends within the invocation');
    // Its rate limit is a Redis script, a child too; its publish keeps the one producer span.
    const rate = named(sendTrace, 'EVALSHA take_token');
    assert.equal(rate.length, 1, `spans of the send: ${ofTrace(sendTrace).map((s) => s.name)}`);
    assert.equal(rate[0].parentSpanId, send[0].spanId);
    assert.equal(rate[0].attributes['db.stored_procedure.name'], 'take_token');
    const publishes = ofTrace(sendTrace).filter((s) => s.name === 'PUBLISH' || s.attributes['db.operation.name'] === 'PUBLISH');
    assert.ok(publishes.length > 0, 'the sends are published');
    assert.ok(publishes.every((s) => s.kind === 4), 'only the producer spans, no client span beside them');
    for (const span of ofTrace(sendTrace).filter((s) => s.spanId !== send[0].spanId)) {
      assert.ok(span.parentSpanId, `${span.name} has a parent`);
    }

    // JoinConversation: the group add is a Redis keyspace script, a child of the invocation.
    const join = named(joinTrace, 'chat/JoinConversation');
    assert.equal(join.length, 1);
    const added = named(joinTrace, 'EVALSHA join_group');
    assert.equal(added.length, 1, 'one group-add span');
    assert.equal(added[0].kind, 3, 'client span');
    assert.equal(added[0].parentSpanId, join[0].spanId, 'a child of the invocation');
    assert.equal(added[0].attributes['db.system.name'], 'redis');
    assert.equal(added[0].attributes['db.operation.name'], 'EVALSHA');
    assert.equal(added[0].attributes['db.stored_procedure.name'], 'join_group');
    // Its room check reads the connection's groups: a plain keyspace command.
    const room = named(joinTrace, 'SMEMBERS');
    assert.equal(room.length, 1, `spans of the join: ${ofTrace(joinTrace).map((s) => s.name)}`);
    assert.equal(room[0].kind, 3);
    assert.equal(room[0].parentSpanId, join[0].spanId);
    assert.equal(room[0].attributes['db.system.name'], 'redis');
    assert.equal(room[0].attributes['db.operation.name'], 'SMEMBERS');
    assert.equal(room[0].attributes['db.stored_procedure.name'], undefined);
    // Its participant check is a store read of the same trace.
    const check = ofTrace(joinTrace).find((s) => s.attributes['db.collection.name'] === 'participants');
    assert.ok(check, `spans of the join: ${ofTrace(joinTrace).map((s) => s.name)}`);
    assert.equal(check.attributes['db.operation.name'], 'SELECT');
    assert.equal(check.parentSpanId, join[0].spanId);

    // The REST call's insert of the conversation.
    const rest = ofTrace(restTrace).find((s) => s.name.startsWith('POST /api/'));
    assert.ok(rest, `spans of the REST call: ${ofTrace(restTrace).map((s) => s.name)}`);
    const created = named(restTrace, 'INSERT conversations');
    assert.equal(created.length, 1);
    assert.equal(created[0].parentSpanId, rest.spanId, 'a child of the REST span');
    assert.equal(created[0].attributes['db.system.name'], 'postgresql');
    assert.equal(created[0].attributes['code.function.name'], 'create_conversation');

    // The connection's registration in the keyspace is a child of its connect
    // span, exported when the connection ends.
    raw.close();
    await waitFor(() => named(connectTrace, 'GET /hubs/chat').length > 0, {
      timeout: 10_000,
      what: 'the connect span',
    });
    await delay(1_500);
    const connectSpan = named(connectTrace, 'GET /hubs/chat');
    assert.equal(connectSpan.length, 1);
    const registered = named(connectTrace, 'EVALSHA register');
    assert.equal(registered.length, 1, `spans of the connection: ${ofTrace(connectTrace).map((s) => s.name)}`);
    assert.equal(registered[0].parentSpanId, connectSpan[0].spanId, 'a child of the connect span');
    assert.equal(registered[0].attributes['db.system.name'], 'redis');
    assert.equal(registered[0].attributes['db.stored_procedure.name'], 'register');
    const unregistered = named(connectTrace, 'EVALSHA unregister');
    assert.equal(unregistered.length, 1, 'its removal too');
    assert.equal(unregistered[0].parentSpanId, connectSpan[0].spanId);
    const connectIds = ofTrace(connectTrace).map((s) => s.spanId);
    assert.equal(new Set(connectIds).size, connectIds.length, 'each span of the connection once');
  });
});

describe('without an OTLP endpoint', () => {
  e2eTest('a node exports nothing', async () => {
    const receiver = await startReceiver();
    try {
      // The receiver exists, but the node is not told about it.
      const node = await startNode({ name: 'untraced' });
      const conn = await connect(node);
      assert.equal(await conn.invoke('Echo', 'x'), 'x');
      await conn.stop();
      await node.stop();
      assert.equal(receiver.requests.length, 0);
    } finally {
      await receiver.close();
    }
  });
});
