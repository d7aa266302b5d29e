// /metrics after scripted traffic (issue #12 Show 1): two nodes joined by
// Redis, official clients (JSON on node 1, MessagePack on node 2) on the
// diagnostics hub. The counters must move by what the traffic did — N
// invocations → N, the bytes they carried, one connect per client, one
// disconnect per close by its reason, the backplane's publishes and
// receives, Redis and database round trips — and docs/metrics.md must list
// exactly the metrics the node exposes, with their types. Also: the JSON log
// mode (log_format = json) writes parseable lines with node, connection and
// user fields.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import {
  accessToken,
  closeAllClients,
  connect,
  e2eTest,
  record,
  startCluster,
  startNode,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
} from './harness.mjs';
import { documentedMetrics, familyOf, scrape, value } from './prometheus.mjs';

stopAllNodesAfter();

const HUB = { hub: 'diagnostics' };
const WS = { ...HUB, transport: 'WebSockets' };
const N = 7;
const PAYLOAD = 'x'.repeat(1000);

describe('metrics after scripted traffic', () => {
  const cluster = {};
  before(async () => {
    cluster.redis = await startRedis({ name: 'metrics-redis' });
    Object.assign(cluster, await startCluster(cluster.redis, { size: 2, name: 'metrics' }));
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
  });

  e2eTest('counters move by what the traffic did', async () => {
    const [n1, n2] = cluster.nodes;
    const before1 = await scrape(n1);
    const before2 = await scrape(n2);
    const delta = (after, before, name, labels) => value(after, name, labels) - value(before, name, labels);

    // admin: SendToUser to another user needs the role.
    const a = await connect(n1, { user: 'metrics-a', protocol: 'json', roles: ['admin'] });
    const b = await connect(n2, { user: 'metrics-b', protocol: 'messagepack' });
    const heard = record(b, 'Receive');
    for (let i = 0; i < N; i++) assert.equal(await a.invoke('Echo', PAYLOAD), PAYLOAD);
    // One send that crosses the backplane: published on node 1, received on node 2.
    await a.invoke('SendToUser', 'metrics-b', 'Receive', 'over-redis');
    await heard.wait(1);
    // /readyz pings the database: one store round trip at least.
    assert.equal((await fetch(`${n1.baseUrl}/readyz`)).status, 200);

    const mid1 = await scrape(n1);
    const mid2 = await scrape(n2);
    assert.equal(value(mid1, 'hubwire_connections', { ...WS, protocol: 'json' }), 1);
    assert.equal(value(mid2, 'hubwire_connections', { ...WS, protocol: 'messagepack' }), 1);
    assert.equal(delta(mid1, before1, 'hubwire_connections_opened_total', { ...WS, protocol: 'json' }), 1);
    assert.equal(delta(mid2, before2, 'hubwire_connections_opened_total', { ...WS, protocol: 'messagepack' }), 1);
    assert.equal(
      delta(mid1, before1, 'hubwire_invocation_duration_seconds_count', { ...HUB, method: 'Echo' }),
      N,
      'N Echo invocations → N',
    );
    assert.equal(delta(mid1, before1, 'hubwire_invocation_duration_seconds_count', { ...HUB, method: 'SendToUser' }), 1);
    // Every Echo and the SendToUser is a hub message in; pings may add a few.
    const messagesIn = delta(mid1, before1, 'hubwire_messages_in_total', HUB);
    assert.ok(messagesIn >= N + 1 && messagesIn <= N + 4, `messages in: ${messagesIn}`);
    // N Completions of the echo, one for SendToUser (pings are not queued records).
    assert.ok(delta(mid1, before1, 'hubwire_messages_out_total', HUB) >= N + 1);
    // Each Echo carries the payload in (the invocation) and out (its Completion),
    // plus a JSON envelope of well under 200 bytes.
    const bytesIn = delta(mid1, before1, 'hubwire_received_bytes_total', HUB);
    assert.ok(bytesIn >= N * PAYLOAD.length && bytesIn < N * (PAYLOAD.length + 200) + 600, `bytes in: ${bytesIn}`);
    const bytesOut = delta(mid1, before1, 'hubwire_sent_bytes_total', HUB);
    assert.ok(bytesOut >= N * PAYLOAD.length && bytesOut < N * (PAYLOAD.length + 200) + 600, `bytes out: ${bytesOut}`);
    assert.ok(delta(mid1, before1, 'hubwire_delivery_seconds_count', HUB) >= N + 1);
    // The backplane: node 1 published the send, node 2 received it.
    assert.ok(delta(mid1, before1, 'hubwire_redis_published_total') >= 1);
    assert.ok(delta(mid2, before2, 'hubwire_redis_received_total') >= 1);
    assert.ok(delta(mid1, before1, 'hubwire_redis_duration_seconds_count') >= 1, 'Redis round trips counted');
    assert.ok(delta(mid1, before1, 'hubwire_database_duration_seconds_count') >= 1, 'database round trips counted');
    assert.equal(value(mid1, 'hubwire_backplane_ready'), 1);

    // Disconnects by reason: a closes itself; b is closed through the REST API.
    await a.stop();
    const path = `/api/hubs/diagnostics/connections/${encodeURIComponent(b.connectionId)}`;
    const fixed = '?api-version=2022-06-01';
    const res = await withTimeout(
      fetch(`${n2.baseUrl}${path}${fixed}`, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${accessToken(n2, `http://127.0.0.1${path}${fixed}`)}` },
      }),
      5_000,
      'REST close',
    );
    assert.ok(res.status < 300, `REST close answered ${res.status}`);
    let end1;
    let end2;
    await waitFor(
      async () => {
        end1 = await scrape(n1);
        end2 = await scrape(n2);
        return (
          value(end1, 'hubwire_connections', WS) === 0 && value(end2, 'hubwire_connections', WS) === 0
        );
      },
      { timeout: 10_000, what: 'both connections to end' },
    );
    assert.equal(delta(end1, before1, 'hubwire_disconnects_total', { ...WS, reason: 'client_closed' }), 1);
    assert.equal(delta(end1, before1, 'hubwire_disconnects_total', WS), 1, 'no other disconnect on node 1');
    assert.equal(delta(end2, before2, 'hubwire_disconnects_total', { ...WS, reason: 'closed' }), 1);
    assert.equal(delta(end2, before2, 'hubwire_disconnects_total', WS), 1, 'no other disconnect on node 2');
    assert.equal(delta(end1, before1, 'hubwire_connection_duration_seconds_count', WS), 1);
    assert.equal(delta(end2, before2, 'hubwire_connection_duration_seconds_count', WS), 1);
  });

  e2eTest('docs/metrics.md lists exactly the metrics the node exposes, with their types', async () => {
    const [n1] = cluster.nodes;
    // After the traffic above every labelled family has its series.
    const { families, samples } = await scrape(n1);
    const documented = documentedMetrics();
    assert.ok(documented.size >= 30, `docs/metrics.md table parsed: ${documented.size} rows`);
    const exposed = [...families.keys()].filter((n) => n.startsWith('hubwire_'));
    const undocumented = exposed.filter((n) => !documented.has(n));
    assert.deepEqual(undocumented, [], 'every exposed metric is documented');
    const missing = [...documented].filter(([n, doc]) => !doc.conditional && !families.has(n)).map(([n]) => n);
    assert.deepEqual(missing, [], 'every documented metric is exposed');
    for (const [name, doc] of documented) {
      if (doc.conditional && !families.has(name)) continue; // checked where it is configured
      assert.equal(families.get(name), doc.type, `type of ${name}`);
      const labels = new Set();
      for (const s of samples) {
        if (familyOf(families, s.name) === name) for (const k of Object.keys(s.labels)) if (k !== 'le') labels.add(k);
      }
      assert.deepEqual([...labels].sort(), [...doc.labels].sort(), `labels of ${name}`);
    }
    for (const s of samples) assert.ok(familyOf(families, s.name), `sample ${s.name} has a # TYPE`);
  });
});

describe('JSON log lines', () => {
  e2eTest('log_format = json writes one parseable object per line with node, connection and user', async () => {
    const node = await startNode({
      name: 'json-logs',
      env: { HUBWIRE_LOG_FORMAT: 'json', HUBWIRE_NODE_ID: 'json-node', RUST_LOG: 'info,hubwire_node=debug' },
    });
    const conn = await connect(node, { user: 'log-user' });
    // "connected" and "disconnected" are debug lines inside the connection's span.
    assert.equal(await conn.invoke('Echo', 'hi'), 'hi');
    await conn.stop();
    const stderr = () =>
      node.logs.filter((l) => l.includes(' stderr] ')).map((l) => l.slice(l.indexOf(' stderr] ') + 9));
    await waitFor(() => stderr().some((l) => l.includes('"connection"')), {
      timeout: 10_000,
      what: 'a log line of the connection',
    });
    const lines = stderr().map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2, `${lines.length} lines`);
    for (const line of lines) {
      assert.equal(line.node, 'json-node');
      assert.match(line.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(line.level), line.level);
      assert.equal(typeof line.target, 'string');
    }
    const ofConnection = lines.filter((l) => l.connection);
    assert.ok(ofConnection.length >= 1, 'lines with a connection field');
    for (const line of ofConnection) {
      assert.equal(line.user, 'log-user');
      assert.equal(line.hub, 'diagnostics');
    }
    await node.stop();
  });
});
