// Hand-made WebSocket upgrades over plain TCP, for what no client library
// does on purpose: stop reading, hold a handshake open, read the status of a
// refused upgrade. Plus a reader of single series from `/metrics`.

import crypto from 'node:crypto';
import net from 'node:net';

import { waitFor, withTimeout } from './harness.mjs';

const openSockets = new Set();

/** Destroys every socket opened here (call after each test). */
export function destroyRawSockets() {
  for (const socket of openSockets) socket.destroy();
  openSockets.clear();
}

/** A masked client frame (FIN set), as browsers send them. */
export function clientFrame(opcode, payload) {
  const data = Buffer.from(payload);
  let head;
  if (data.length < 126) head = Buffer.from([0x80 | opcode, 0x80 | data.length]);
  else if (data.length < 65536) {
    head = Buffer.from([0x80 | opcode, 0x80 | 126, data.length >> 8, data.length & 0xff]);
  } else throw new Error('frame too large for this helper');
  const key = crypto.randomBytes(4);
  for (let i = 0; i < data.length; i++) data[i] ^= key[i % 4];
  return Buffer.concat([head, key, data]);
}

/** A text frame with one JSON hub protocol record. */
export const textRecord = (message) => clientFrame(0x1, JSON.stringify(message) + '\x1e');

/**
 * Opens a TCP connection to `node` and sends a WebSocket upgrade of `path`
 * with `token` as bearer. Resolves once the server answered the upgrade:
 * `{ socket, status, head, received() }`; `received()` is every byte that
 * came after the response head. When `reading` is false the socket is paused
 * right after the head (the client stops reading).
 */
export async function openUpgrade(node, { path = '/hubs/diagnostics', token, reading = true } = {}) {
  const socket = net.connect(node.port, '127.0.0.1');
  openSockets.add(socket);
  const state = { bytes: Buffer.alloc(0), closed: false };
  const closed = new Promise((resolve) => socket.once('close', resolve));
  closed.then(() => {
    state.closed = true;
  });
  socket.on('error', () => {});
  await withTimeout(new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject)), 5_000, 'connect');
  const auth = token ? `Authorization: Bearer ${token}\r\n` : '';
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${auth}\r\n`,
  );
  const head = await withTimeout(
    new Promise((resolve, reject) => {
      const onData = (chunk) => {
        state.bytes = Buffer.concat([state.bytes, chunk]);
        const end = state.bytes.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = state.bytes.subarray(0, end).toString('latin1');
        state.bytes = state.bytes.subarray(end + 4);
        if (!reading) {
          socket.off('data', onData);
          socket.pause();
        }
        resolve(text);
      };
      socket.on('data', onData);
      closed.then(() => reject(new Error(`closed before an upgrade response: ${state.bytes.toString('latin1')}`)));
    }),
    5_000,
    'the upgrade response',
  );
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  return {
    socket,
    status,
    head,
    closed,
    get isClosed() {
      return state.closed;
    },
    /** Everything after the head (the body of a refusal, or WebSocket frames). */
    received: () => state.bytes,
    /** Waits until the server closed or reset the socket. */
    waitClosed: (ms = 20_000) => withTimeout(closed, ms, 'the server to close the socket'),
  };
}

/** Sends the SignalR JSON handshake and waits for `{}` (the socket must be reading). */
export async function signalrHandshake(upgrade) {
  upgrade.socket.write(textRecord({ protocol: 'json', version: 1 }));
  await waitFor(() => upgrade.received().includes('{}\x1e'), { what: 'the handshake response' });
}

/** The value of one series of the node's `/metrics` (0 when absent); `labels` as in the text, e.g. `hub="diagnostics"`. */
export async function metric(node, name, labels = '') {
  const res = await withTimeout(fetch(`${node.baseUrl}/metrics`), 5_000, 'GET /metrics');
  const text = await res.text();
  const series = labels ? `${name}{${labels}}` : name;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** The sum of every series of `name` (all label values; with `labels`, e.g. `hub="diagnostics"`, those whose labels contain it). */
export async function metricSum(node, name, labels = '') {
  const res = await withTimeout(fetch(`${node.baseUrl}/metrics`), 5_000, 'GET /metrics');
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => !labels || l.slice(0, l.lastIndexOf(' ')).includes(labels))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
