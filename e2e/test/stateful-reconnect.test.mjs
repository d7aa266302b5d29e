// Stateful reconnect (issue 11, Show 2) with the official client's
// `withStatefulReconnect()`: the client reaches node A through a TCP proxy in
// this test, which cuts every connection it carries while the server sends a
// numbered sequence — the first part through node A's REST API to the
// client's group, the rest through node B's REST API to the client's user,
// i.e. through Redis (dotnet/aspnetcore#55575). The client ends with every
// number exactly once, in order, on the same connection, and the invocations
// it made across the cuts all complete once. A reconnect that reaches another
// node (the proxy now points at B) is refused, and the client starts afresh.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, describe } from 'node:test';

import signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

import {
  accessToken,
  closeAllClients,
  delay,
  e2eTest,
  negotiate,
  wsUpgradeStatus,
  startCluster,
  startRedis,
  stopAllNodesAfter,
  waitFor,
  withTimeout,
} from './harness.mjs';

stopAllNodesAfter();

const API_VERSION = '2022-06-01';
const unique = (name) => `${name}-${crypto.randomBytes(3).toString('hex')}`;

/** A TCP proxy to `target` (a node) that can cut every connection it carries. */
class CuttingProxy {
  constructor(target) {
    this.target = target;
    this.pairs = new Set();
    this.accepted = 0;
    this.server = net.createServer((client) => {
      this.accepted++;
      const upstream = net.connect(this.target.port, '127.0.0.1');
      const pair = { client, upstream };
      this.pairs.add(pair);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }
  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  /** Drops every carried connection at once, both ways, without a WebSocket Close. */
  cut() {
    const n = this.pairs.size;
    for (const { client, upstream } of [...this.pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    return n;
  }
  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** `POST /api/hubs/diagnostics{path}` on `node` with the access key, as the Management SDK does. */
async function restSend(node, path, target, args) {
  const apiPath = `/api/hubs/diagnostics${path}`;
  const fixed = `?api-version=${API_VERSION}`;
  const res = await withTimeout(
    fetch(`${node.baseUrl}${apiPath}${fixed}`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${accessToken(node, `http://127.0.0.1${apiPath}${fixed}`)}`,
        'Content-Type': 'application/json; charset=utf-8',
      },
      body: JSON.stringify({ Target: target, Arguments: args }),
    }),
    5_000,
    `POST ${apiPath} on ${node.name}`,
  );
  assert.equal(res.status, 202, `POST ${apiPath} on ${node.name}: ${res.status} ${await res.text()}`);
}

function statefulClient(url, node, { user, protocol, reconnect }) {
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${url}/hubs/diagnostics`, {
      transport: signalR.HttpTransportType.WebSockets,
      accessTokenFactory: () => node.token({ sub: user }),
    })
    .withStatefulReconnect()
    .configureLogging(signalR.LogLevel.Warning);
  if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  if (reconnect) builder = builder.withAutomaticReconnect([0, 200, 500, 1000]);
  const conn = builder.build();
  conn.closeEvents = [];
  conn.reconnectedEvents = [];
  conn.onclose((e) => conn.closeEvents.push(e ?? null));
  conn.onreconnected((id) => conn.reconnectedEvents.push(id));
  return conn;
}

describe('stateful reconnect on two nodes (Redis)', () => {
  const cluster = {};
  const conns = [];
  before(async () => {
    cluster.redis = await startRedis({ name: 'stateful-redis' });
    Object.assign(cluster, await startCluster(cluster.redis, { size: 2, name: 'stateful' }));
  });
  after(async () => {
    await Promise.all(conns.map((c) => c.stop().catch(() => {})));
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
  });

  for (const protocol of ['json', 'messagepack']) {
    e2eTest(`${protocol}: cut twice while numbers arrive from node A and through Redis from node B: each once, in order`, async () => {
      const [a, b] = cluster.nodes;
      const proxy = await new CuttingProxy(a).listen();
      try {
        const user = unique('stateful');
        const group = unique('numbers');
        const conn = statefulClient(proxy.url, a, { user, protocol });
        conns.push(conn);
        const got = [];
        conn.on('Num', (n) => {
          got.push(Number(n));
        });
        await withTimeout(conn.start(), 10_000, 'start through the proxy');
        const id = conn.connectionId;
        await conn.invoke('JoinGroup', group);

        const TOTAL = 120;
        const FROM_A = 60;
        const echoes = [];
        for (let n = 1; n <= TOTAL; n++) {
          if (n <= FROM_A) await restSend(a, `/groups/${group}/:send`, 'Num', [n]);
          else await restSend(b, `/users/${user}/:send`, 'Num', [n]);
          if (n === 25 || n === 85) {
            assert.ok(proxy.cut() >= 1, 'the client socket went through the proxy');
          }
          // The client invokes across the cuts too: its own buffer resends, the node dedupes.
          if (n % 10 === 5) echoes.push(conn.invoke('Echo', n).then((v) => Number(v)));
          await delay(5);
        }
        const echoed = await withTimeout(Promise.all(echoes), 20_000, 'echo invocations across the cuts');
        assert.deepEqual(
          echoed,
          Array.from({ length: TOTAL / 10 }, (_, i) => i * 10 + 5),
        );
        await waitFor(() => got.length >= TOTAL, { timeout: 20_000, what: `${TOTAL} numbers (got ${got.length})` });
        await delay(300); // nothing doubled arrives late
        assert.deepEqual(got, Array.from({ length: TOTAL }, (_, i) => i + 1), 'every number once, in order');
        assert.equal(conn.connectionId, id, 'the same connection');
        assert.equal(conn.state, signalR.HubConnectionState.Connected);
        assert.deepEqual(conn.closeEvents, []);
        assert.ok(proxy.accepted >= 3, `the client reconnected through the proxy (${proxy.accepted} sockets)`);
        const who = await conn.invoke('WhoAmI');
        assert.equal(who.connectionId, id, 'the node still knows it as the same connection');
        const metrics = await (await fetch(`${a.baseUrl}/metrics`)).text();
        const resumed = Number(/^hubwire_stateful_reconnects_total (\d+)/m.exec(metrics)?.[1] ?? 0);
        assert.ok(resumed >= 2, `node A counted the resumes (${resumed})`);
        await conn.stop();
      } finally {
        await proxy.close();
      }
    });
  }

  e2eTest('a reconnect that reaches another node is refused (404) and the client starts a new connection', async () => {
    const [a, b] = cluster.nodes;
    const proxy = await new CuttingProxy(a).listen();
    try {
      const user = unique('moved');
      const conn = statefulClient(proxy.url, a, { user, protocol: 'json', reconnect: true });
      conns.push(conn);
      await withTimeout(conn.start(), 10_000, 'start through the proxy');
      const first = conn.connectionId;
      // What the client's one resume attempt meets on B: a token B does not know.
      const negotiated = await negotiate(a, { query: 'negotiateVersion=1&useStatefulReconnect=true', token: a.token({ sub: user }) });
      assert.equal(negotiated.body.useStatefulReconnect, true, 'negotiate offers stateful reconnect');
      const elsewhere = await wsUpgradeStatus(
        b,
        `/hubs/diagnostics?id=${encodeURIComponent(negotiated.body.connectionToken)}&access_token=${b.token({ sub: user })}`,
      );
      assert.equal(elsewhere, 404, 'another node refuses the token');
      proxy.target = b;
      proxy.cut();
      await waitFor(() => conn.reconnectedEvents.length >= 1, { timeout: 15_000, what: 'a fresh connection' });
      assert.notEqual(conn.connectionId, first, 'a new connection id');
      const who = await conn.invoke('WhoAmI');
      assert.equal(who.connectionId, conn.connectionId);
      assert.equal(who.userId, user);
      await conn.stop();
    } finally {
      await proxy.close();
    }
  });
});
