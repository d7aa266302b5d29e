// OpenTelemetry traces (issue #12 Show 2): the test runs its own OTLP/HTTP
// receiver, starts two nodes joined by Redis that export to it, and checks
// the spans they send: a hub invocation whose `traceparent` header the test
// chose becomes a `diagnostics/SendToUser` server span of that trace
// (rpc.system = signalr, rpc.service, rpc.method) with the test's span as its
// parent, its publish a child of it, and the delivery on the second node a
// child of the publish — the same trace id on both nodes. Negotiate, the
// connect and REST calls have their spans too; without an endpoint a node
// exports nothing.

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
    Object.assign(
      cluster,
      await startCluster(cluster.redis, {
        size: 2,
        name: 'tracing',
        env: { HUBWIRE_OTLP_ENDPOINT: cluster.receiver.url },
      }),
    );
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
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
