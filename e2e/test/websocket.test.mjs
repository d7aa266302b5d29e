// The WebSocket layer itself (RFC 6455), which hubwire frames on the socket:
// control frames, fragmentation, early data, protocol violations, and the
// closing handshake. Clients here are the `ws` library (what the official
// client uses under Node.js) and, for what no client library will send, a
// hand-written socket.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { before, describe } from 'node:test';

import { connect, e2eTest, rawWs, startNode, stopAllNodesAfter, waitFor, RS } from './harness.mjs';
import { CLOSE_WITH_ERROR } from './expected.mjs';

stopAllNodesAfter();

let node;
before(async () => {
  node = await startNode({ name: 'websocket' });
});

async function openRaw(user = 'ws-raw') {
  return rawWs(node, '/hubs/diagnostics', { headers: { Authorization: `Bearer ${node.token({ sub: user })}` } });
}

/** A masked client frame, as browsers send them. */
function clientFrame(opcode, payload, { fin = true, mask = true } = {}) {
  const data = Buffer.from(payload);
  const head = [(fin ? 0x80 : 0) | opcode];
  const maskBit = mask ? 0x80 : 0;
  if (data.length < 126) head.push(maskBit | data.length);
  else {
    head.push(maskBit | 126, data.length >> 8, data.length & 0xff);
  }
  const key = crypto.randomBytes(4);
  const body = Buffer.from(data);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from(head), mask ? key : Buffer.alloc(0), body]);
}

/** Server frames parsed from raw bytes: [{ opcode, payload }] (server frames are never masked). */
function parseServerFrames(bytes) {
  const frames = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at] & 0x0f;
    let len = bytes[at + 1] & 0x7f;
    let start = at + 2;
    if (len === 126) {
      len = bytes.readUInt16BE(at + 2);
      start += 2;
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(at + 2));
      start += 8;
    }
    if (start + len > bytes.length) break;
    frames.push({ opcode, payload: bytes.subarray(start, start + len) });
    at = start + len;
  }
  return frames;
}

/**
 * A hand-written WebSocket client over TCP: sends the upgrade request plus
 * `early` bytes in one write, collects everything the server sends.
 */
async function handMadeSocket(early = Buffer.alloc(0)) {
  const socket = net.connect(node.port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const state = { bytes: Buffer.alloc(0), ended: false };
  socket.on('data', (chunk) => {
    state.bytes = Buffer.concat([state.bytes, chunk]);
  });
  socket.on('end', () => {
    state.ended = true;
  });
  socket.on('close', () => {
    state.ended = true;
  });
  socket.on('error', () => {});
  const key = crypto.randomBytes(16).toString('base64');
  const request =
    `GET /hubs/diagnostics?access_token=${node.token({ sub: 'hand' })} HTTP/1.1\r\n` +
    `Host: 127.0.0.1:${node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  socket.write(Buffer.concat([Buffer.from(request), early]));
  await waitFor(() => state.bytes.indexOf('\r\n\r\n') >= 0, { what: 'upgrade response' });
  const headEnd = state.bytes.indexOf('\r\n\r\n') + 4;
  const head = state.bytes.subarray(0, headEnd).toString();
  const expectedAccept = crypto
    .createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  return {
    socket,
    head,
    expectedAccept,
    state,
    frames: () => parseServerFrames(state.bytes.subarray(headEnd)),
    texts: () =>
      parseServerFrames(state.bytes.subarray(headEnd))
        .filter((f) => f.opcode === 1)
        .map((f) => f.payload.toString()),
  };
}

describe('WebSocket framing', () => {
  e2eTest('a Ping frame is answered with a Pong carrying the same payload', async () => {
    const raw = await openRaw();
    await raw.handshake();
    const pong = new Promise((resolve) => raw.ws.once('pong', (data) => resolve(data.toString())));
    raw.ws.ping('are-you-there');
    assert.equal(await pong, 'are-you-there');
  });

  e2eTest('fragmented messages, binary frames and records split across messages are one byte stream', async () => {
    const raw = await openRaw();
    // The handshake in two fragments of one message.
    raw.ws.send('{"protocol":"json",', { fin: false });
    raw.ws.send(`"version":1}${RS}`, { fin: true });
    assert.equal(await raw.nextRecord({ what: 'handshake response' }), '{}');
    // One invocation in three fragments, the first a binary frame.
    const invocation = JSON.stringify({ type: 1, invocationId: '1', target: 'Echo', arguments: ['fragments'] }) + RS;
    raw.ws.send(Buffer.from(invocation.slice(0, 10)), { binary: true, fin: false });
    raw.ws.send(invocation.slice(10, 30), { fin: false });
    raw.ws.send(invocation.slice(30), { fin: true });
    assert.deepEqual(await raw.nextMessage(), { type: 3, invocationId: '1', result: 'fragments' });
    // One record split over two messages, and two records in one message.
    const second = JSON.stringify({ type: 1, invocationId: '2', target: 'Echo', arguments: [2] }) + RS;
    const third = JSON.stringify({ type: 1, invocationId: '3', target: 'Echo', arguments: [3] }) + RS;
    raw.send(second.slice(0, 7));
    raw.send(second.slice(7) + third);
    assert.deepEqual(await raw.nextMessage(), { type: 3, invocationId: '2', result: 2 });
    assert.deepEqual(await raw.nextMessage(), { type: 3, invocationId: '3', result: 3 });
  });

  e2eTest('bytes sent with the upgrade request (before the 101) are not lost', async () => {
    const early = Buffer.concat([
      clientFrame(1, `{"protocol":"json","version":1}${RS}`),
      clientFrame(1, JSON.stringify({ type: 1, invocationId: 'e', target: 'Echo', arguments: ['early'] }) + RS),
    ]);
    const hand = await handMadeSocket(early);
    assert.match(hand.head, /^HTTP\/1\.1 101 /);
    assert.match(hand.head, new RegExp(`sec-websocket-accept: ${hand.expectedAccept.replace(/[+/]/g, '\\$&')}\r\n`, 'i'));
    await waitFor(() => hand.texts().some((t) => t.includes('"invocationId":"e"')), { what: 'the early invocation' });
    const records = hand.texts().join('').split(RS).filter(Boolean);
    assert.equal(records[0], '{}');
    assert.deepEqual(JSON.parse(records[1]), { type: 3, invocationId: 'e', result: 'early' });
    hand.socket.destroy();
  });

  e2eTest('an unmasked client frame breaks the protocol: Close message, Close frame 1000, TCP closed', async () => {
    const bystander = await connect(node, { user: 'ws-bystander' });
    const hand = await handMadeSocket(clientFrame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
    hand.socket.write(clientFrame(1, `{"type":6}${RS}`, { mask: false }));
    await waitFor(() => hand.state.ended, { what: 'the server to close the TCP connection' });
    const frames = hand.frames();
    const close = frames.at(-1);
    assert.equal(close.opcode, 8, 'last frame is a Close frame');
    assert.equal(close.payload.readUInt16BE(0), 1000);
    assert.deepEqual(JSON.parse(frames.at(-2).payload.toString().replace(RS, '')), JSON.parse(CLOSE_WITH_ERROR));
    assert.equal(await bystander.invoke('Echo', 'still here'), 'still here');
  });

  e2eTest('the client Close frame is answered with a Close frame and the connection is forgotten', async () => {
    const raw = await openRaw('ws-closer');
    await raw.handshake();
    const admin = node.token({ sub: 'ops', roles: ['admin'] });
    const count = async () => {
      const res = await fetch(`${node.baseUrl}/api/hubs/diagnostics/users/ws-closer/count`, {
        headers: { Authorization: `Bearer ${admin}` },
      });
      assert.equal(res.status, 200);
      return (await res.json()).connections;
    };
    assert.equal(await count(), 1, 'listed while open');
    const { code } = await new Promise((resolve) => {
      raw.ws.once('close', (c) => resolve({ code: c }));
      raw.ws.close(1000, 'bye');
    });
    assert.equal(code, 1000);
    await waitFor(async () => (await count()) === 0, { what: 'the closed connection to leave the registry' });
  });
});
