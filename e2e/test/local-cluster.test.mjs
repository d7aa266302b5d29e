// deploy/local-cluster.sh: three nodes behind Debian's nginx with sticky
// sessions (deploy/nginx/hubwire.conf), Redis and PostgreSQL — and the
// official client through the proxy (issue #12 Show 4), then SIGTERM to one
// node under load (Show 3): every client on it gets Close with
// allowReconnect: true, reconnects through nginx to another node, the
// keyspace no longer lists the stopped node, and its /readyz said 503 before
// the first Close.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe } from 'node:test';

import { HttpTransportType, LogLevel, buildConnection, connect, e2eTest, rawWs, waitFor, withTimeout } from './harness.mjs';
import { nginxInstalled, processGone, startLocalCluster } from './local-cluster.mjs';

// The transports the official client is tested with through nginx. Server-Sent
// Events and long polling need the stickiness most (several requests per
// connection): add them here once the node serves them, e.g.
//   HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling,
const TRANSPORTS = [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling];
const transportName = (t) => HttpTransportType[t];

const CLIENTS = 9;

describe('local cluster behind nginx (deploy/local-cluster.sh)', { skip: !nginxInstalled() && 'nginx is not installed (apt-get install nginx)' }, () => {
  let cluster;
  before(async () => {
    cluster = await startLocalCluster({
      env: {
        // Long enough to see /readyz say 503 before the first Close, and small
        // batches, so that the drain's batching shows.
        HUBWIRE_SHUTDOWN_DELAY_SECS: '2',
        HUBWIRE_SHUTDOWN_CLOSE_BATCH: '2',
        HUBWIRE_SHUTDOWN_TIMEOUT_SECS: '20',
        // A dead-node sweep far away: only the stopped node's own leaving can empty its keys.
        HUBWIRE_NODE_DEAD_AFTER_MS: '600000',
      },
    });
  });
  after(() => {
    const stopped = cluster?.stop();
    if (stopped && stopped.status !== 0) process.stderr.write(stopped.stderr);
  });

  const test = (name, fn) =>
    e2eTest(name, { timeout: 120_000 }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        cluster?.dumpLogs();
        throw err;
      }
    });

  test('status lists three ready nodes, nginx, Redis and PostgreSQL', async () => {
    const status = cluster.status();
    assert.equal(status.status, 0, status.stdout + status.stderr);
    assert.equal((status.stdout.match(/^node-\d .* ready /gm) ?? []).length, 3, status.stdout);
    assert.match(status.stdout, /^nginx /m);
    assert.match(status.stdout, /^redis /m);
    assert.match(status.stdout, /^postgres postgres:\/\//m);
  });

  for (const transport of TRANSPORTS) {
    test(`${transportName(transport)}: official clients through nginx stay on one node each, spread over the nodes, and reach each other`, async () => {
      const conns = [];
      for (let i = 0; i < CLIENTS; i++) {
        conns.push(await connect(cluster.proxy, { user: `sticky-${i}`, transport, roles: i === 0 ? ['admin'] : undefined, logLevel: LogLevel.Error }));
      }
      const nodes = new Set();
      for (const conn of conns) {
        const me = await conn.invoke('WhoAmI');
        // The negotiated id is only known to the node that negotiated it: the
        // connection request landed where the negotiate did.
        assert.equal(me.connectionId, conn.connectionId);
        assert.equal(me.transport, transportName(transport));
        assert.ok(cluster.nodes.some((n) => n.id === me.node), `a node of the cluster: ${me.node}`);
        nodes.add(me.node);
      }
      // Each client has its own cookie, i.e. its own key: nine clients on one
      // of three nodes by chance is 3 * (1/3)^9 ≈ 1.5e-4.
      assert.ok(nodes.size >= 2, `clients spread over the nodes: ${[...nodes]}`);
      // Across nodes through Redis: the first client to the last one's user.
      const got = new Promise((resolve) => conns.at(-1).on('Hello', resolve));
      await conns[0].invoke('SendToUser', `sticky-${CLIENTS - 1}`, 'Hello', { from: 'sticky-0' });
      assert.deepEqual(await withTimeout(got, 10_000, 'Hello across the cluster'), { from: 'sticky-0' });
    });
  }

  test('SIGTERM to one node under load: its clients get Close with allowReconnect, reconnect through nginx elsewhere, the keyspace forgets it, /readyz was 503 first', async () => {
    // Official clients with automatic reconnect, each invoking Echo in a loop.
    const clients = [];
    for (let i = 0; i < CLIENTS * 2; i++) {
      const conn = buildConnection(cluster.proxy, { user: `load-${i}`, reconnectDelays: [0, 200, 500, 1000, 1000, 2000, 2000, 2000], logLevel: LogLevel.Error });
      await withTimeout(conn.start(), 10_000, 'start through nginx');
      clients.push({ conn, node: (await conn.invoke('WhoAmI')).node, echoes: 0, reconnectingAt: null });
    }
    const counts = new Map();
    for (const c of clients) counts.set(c.node, (counts.get(c.node) ?? 0) + 1);
    const victimId = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
    const victim = cluster.nodes.find((n) => n.id === victimId);
    const onVictim = clients.filter((c) => c.node === victimId);
    const elsewhere = clients.filter((c) => c.node !== victimId);

    // Raw sockets through nginx to the victim (the exact Close message): a
    // cookie of our own per socket, kept when it lands on the victim.
    const raws = [];
    for (let i = 0; i < 40 && raws.length < 2; i++) {
      const cookie = `hubwire_affinity=raw-${i}-${Date.now()}`;
      const raw = await rawWs(cluster.proxy, `/hubs/diagnostics?access_token=${cluster.proxy.token({ sub: `raw-${i}` })}`, { headers: { Cookie: cookie } });
      await raw.handshake();
      raw.sendMessage({ type: 1, invocationId: 'who', target: 'WhoAmI', arguments: [] });
      const who = await raw.waitMessage((m) => m.type === 3 && m.invocationId === 'who');
      if (who.result.node === victimId) {
        raws.push(raw);
        raw.closeAt = raw.waitMessage((m) => m.type === 7, { timeout: 60_000, what: 'Close' }).then((m) => ({ m, at: Date.now() }));
      } else raw.close();
    }
    assert.equal(raws.length, 2, 'two raw sockets on the victim');

    let loading = true;
    const loops = clients.map(async (c) => {
      c.conn.onreconnecting((err) => {
        c.reconnectingAt ??= Date.now();
        c.reconnectError ??= err;
      });
      while (loading) {
        try {
          if ((await c.conn.invoke('Echo', c.echoes)) === c.echoes) c.echoes++;
        } catch {
          await new Promise((r) => setTimeout(r, 50)); // reconnecting: the invocation is rejected
        }
      }
    });

    // Readiness, straight from the victim (not through nginx).
    let readyFalseAt = null;
    let polling = true;
    const poller = (async () => {
      while (polling && readyFalseAt === null) {
        try {
          if ((await fetch(`${victim.baseUrl}/readyz`)).status === 503) readyFalseAt = Date.now();
        } catch {
          /* gone */
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const echoesBefore = clients.map((c) => c.echoes);
    const logBefore = fs.readFileSync(victim.log, 'utf8').length;

    process.kill(victim.pid, 'SIGTERM');
    await waitFor(() => processGone(victim.pid), { timeout: 60_000, what: `${victimId} exits after SIGTERM` });
    polling = false;
    await poller;

    // Every raw socket: the exact Close.
    const closes = await Promise.all(raws.map((r) => r.closeAt));
    for (const { m } of closes) assert.deepEqual(m, { type: 7, error: 'Server is shutting down.', allowReconnect: true });
    // Every official client on the victim reconnected (which it does only for a
    // Close with allowReconnect: true) to another node, through nginx.
    for (const c of onVictim) {
      await waitFor(() => c.conn.reconnectedEvents.length > 0, { timeout: 30_000, what: `load client on ${victimId} reconnected` });
      assert.match(String(c.reconnectError), /Server is shutting down/);
      const me = await c.conn.invoke('WhoAmI');
      assert.notEqual(me.node, victimId, 'reconnected to another node');
      assert.equal(me.connectionId, c.conn.connectionId);
    }
    for (const c of elsewhere) assert.equal(c.conn.reconnectingEvents.length, 0, 'clients on the other nodes stay connected');
    // /readyz said 503 before the first Close reached anyone.
    const firstClose = Math.min(...closes.map((c) => c.at), ...onVictim.map((c) => c.reconnectingAt));
    assert.ok(readyFalseAt !== null, '/readyz answered 503 during the drain');
    assert.ok(readyFalseAt < firstClose, `/readyz 503 (${readyFalseAt}) before the first Close (${firstClose})`);

    // The keyspace: the node left the live set, and no key names it.
    assert.ok(!cluster.redis('ZRANGE', 'hubwire:{nodes}:live', '0', '-1').includes(victimId), 'not among the live nodes');
    const keys = cluster.redis('--scan', '--pattern', '*');
    assert.deepEqual(keys.filter((k) => k.includes(`node:${victimId}`)), [], 'no key of the stopped node left');
    // Cluster-wide count through nginx: every official client, and nothing of the raw sockets.
    const countUrl = `${cluster.proxy.baseUrl}/api/hubs/diagnostics/count`;
    const admin = { Authorization: `Bearer ${cluster.proxy.token({ sub: 'ops', roles: ['admin'] })}` };
    await waitFor(async () => (await (await fetch(countUrl, { headers: admin })).json()).connections === clients.length, {
      timeout: 10_000,
      what: `${clients.length} connections listed cluster-wide`,
    });

    // The drain: batches of at most 2, all asked, and no timeout.
    const log = fs.readFileSync(victim.log, 'utf8').slice(logBefore).replace(/\x1b\[[0-9;]*m/g, '');
    const batches = [...log.matchAll(/shutdown: a batch asked to reconnect.*?asked=(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(batches.reduce((a, b) => a + b, 0), onVictim.length + raws.length, `every connection asked once: ${batches}`);
    assert.ok(batches.every((n) => n <= 2), `batches of at most 2: ${batches}`);
    assert.ok(!/shutdown timeout/.test(log), 'the drain ended before its timeout');

    // Under load all along: every client's Echo loop goes on after the stop.
    const echoesAfter = clients.map((c) => c.echoes);
    await waitFor(() => clients.every((c, i) => c.echoes > echoesAfter[i]), { timeout: 20_000, what: 'every client echoes after the stop' });
    assert.ok(clients.every((c, i) => c.echoes > echoesBefore[i]));
    loading = false;
    await Promise.all(clients.map((c) => c.conn.stop()));
    await Promise.all(loops);
  });
});
