// Echo round trips and group-broadcast latency over WebSockets, Server-Sent
// Events and Long Polling, in one run against one node, with the official
// client (docs/benchmarks.md, "Transports"). Not a test: it asserts nothing.
//
//   node bench/transports.mjs [ECHO_CLIENTS=20] [RECEIVERS=50] [RATE=20] [SECONDS=10]
//
// HUBWIRE_NODE_BIN selects the binary (the harness's default is the debug build).

import { performance } from 'node:perf_hooks';

import { closeAllClients, connect, delay, HttpTransportType, startNode } from '../test/harness.mjs';

const [ECHO_CLIENTS = 20, RECEIVERS = 50, RATE = 20, SECONDS = 10] = process.argv.slice(2).map(Number);
const TRANSPORTS = [
  ['WebSockets', HttpTransportType.WebSockets],
  ['ServerSentEvents', HttpTransportType.ServerSentEvents],
  ['LongPolling', HttpTransportType.LongPolling],
];

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);
const ms = (x) => `${x.toFixed(1)} ms`;

async function echo(node, transport) {
  const conns = await Promise.all(
    Array.from({ length: ECHO_CLIENTS }, (_, i) => connect(node, { transport, user: `echo-${i}`, startTimeoutMs: 30_000 })),
  );
  const latencies = [];
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    conns.map(async (c) => {
      while (performance.now() < end) {
        const t = performance.now();
        await c.invoke('Echo', 'ping');
        latencies.push(performance.now() - t);
      }
    }),
  );
  await Promise.all(conns.map((c) => c.stop()));
  latencies.sort((a, b) => a - b);
  return { perSecond: latencies.length / SECONDS, p50: pct(latencies, 50), p99: pct(latencies, 99) };
}

async function broadcast(node, transport, name) {
  const group = `bench-${name}`;
  const latencies = [];
  const receivers = await Promise.all(
    Array.from({ length: RECEIVERS }, (_, i) => connect(node, { transport, user: `rx-${i}`, startTimeoutMs: 30_000 })),
  );
  for (const r of receivers) {
    r.on('tick', (sentAt) => {
      latencies.push(performance.now() - sentAt);
    });
    await r.invoke('JoinGroup', group);
  }
  const sender = await connect(node, { user: 'sender' });
  const total = RATE * SECONDS;
  for (let i = 0; i < total; i++) {
    await sender.invoke('SendToGroup', group, 'tick', performance.now());
    await delay(1000 / RATE);
  }
  await delay(2000);
  await Promise.all([...receivers, sender].map((c) => c.stop()));
  latencies.sort((a, b) => a - b);
  return { delivered: latencies.length, expected: total * RECEIVERS, p50: pct(latencies, 50), p99: pct(latencies, 99) };
}

const node = await startNode({
  name: 'bench-transports',
  env: { RUST_LOG: 'warn', HUBWIRE_MAX_CONNECTIONS_PER_USER: '0' },
});
try {
  console.log(`| transport | echo round trips/s (${ECHO_CLIENTS} clients) | echo p50 | echo p99 | broadcast deliveries (${RECEIVERS} receivers, ${RATE} msg/s) | broadcast p50 | broadcast p99 |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, transport] of TRANSPORTS) {
    const e = await echo(node, transport);
    const b = await broadcast(node, transport, name);
    console.log(
      `| ${name} | ${Math.round(e.perSecond)} | ${ms(e.p50)} | ${ms(e.p99)} | ${b.delivered} / ${b.expected} | ${ms(b.p50)} | ${ms(b.p99)} |`,
    );
  }
} finally {
  await closeAllClients();
  await node.stop();
}
