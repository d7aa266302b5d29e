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

  e2eTest('an unmasked client frame breaks the protocol: Close message, Close frame 1002, TCP closed', async () => {
    const bystander = await connect(node, { user: 'ws-bystander' });
    const hand = await handMadeSocket(clientFrame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
    hand.socket.write(clientFrame(1, `{"type":6}${RS}`, { mask: false }));
    await waitFor(() => hand.state.ended, { what: 'the server to close the TCP connection' });
    const frames = hand.frames();
    const close = frames.at(-1);
    assert.equal(close.opcode, 8, 'last frame is a Close frame');
    assert.equal(close.payload.readUInt16BE(0), 1002);
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

  e2eTest('the client Close code is echoed: 1000, 3000, 4000, and 1000 for a Close without a code', async () => {
    for (const code of [1000, 3000, 4000]) {
      const raw = await openRaw('ws-echo');
      await raw.handshake();
      const closed = new Promise((resolve) => raw.ws.once('close', (c) => resolve(c)));
      raw.ws.close(code, 'bye');
      assert.equal(await closed, code);
    }
    const hand = await handMadeSocket(clientFrame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
    hand.socket.write(clientFrame(8, Buffer.alloc(0)));
    await waitFor(() => hand.frames().some((f) => f.opcode === 8), { what: 'the Close frame' });
    assert.equal(hand.frames().find((f) => f.opcode === 8).payload.readUInt16BE(0), 1000);
    hand.socket.destroy();
  });
});

/** The big-endian bytes of a close code followed by a reason. */
function closeBody(code, reason = Buffer.alloc(0)) {
  const body = Buffer.alloc(2);
  body.writeUInt16BE(code);
  return Buffer.concat([body, Buffer.from(reason)]);
}

/**
 * Sends `bytes` on a hand-made connection after a JSON handshake and returns
 * the status code of the server's Close frame and the record before it, once
 * the server has closed the TCP connection.
 */
async function closeCodeFor(bytes) {
  const hand = await handMadeSocket(clientFrame(1, `{"protocol":"json","version":1}${RS}`));
  await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
  hand.socket.write(bytes);
  await waitFor(() => hand.state.ended, { timeout: 20_000, what: 'the server to close the TCP connection' });
  const frames = hand.frames();
  const close = frames.at(-1);
  assert.equal(close.opcode, 8, 'last frame is a Close frame');
  return { code: close.payload.readUInt16BE(0), before: frames.at(-2)?.payload.toString() };
}

/** A text frame whose payload is `bytes`, as is (no SignalR record). */
const text = (bytes, opts) => clientFrame(1, Buffer.from(bytes), opts);

describe('WebSocket close codes (Autobahn 3, 4, 5, 6, 7, 9 on the wire)', () => {
  // Clients are closed after each test, so each test opens its bystander.
  const bystanderFor = () => connect(node, { user: 'ws-close-bystander' });

  const withReservedBit = (() => {
    const frame = clientFrame(1, `{"type":6}${RS}`);
    frame[0] |= 0x40;
    return frame;
  })();
  const protocolErrors = [
    ['a reserved bit (3.x)', withReservedBit],
    ['a reserved opcode (4.1.x)', clientFrame(3, 'x')],
    ['a reserved control opcode (4.2.x)', clientFrame(11, '')],
    ['an unmasked frame', clientFrame(1, `{"type":6}${RS}`, { mask: false })],
    ['a fragmented Ping (5.1)', clientFrame(9, 'ping', { fin: false })],
    ['a continuation with no message (5.9)', clientFrame(0, 'x')],
    ['a one-byte Close payload (7.3.2)', clientFrame(8, Buffer.from([3]))],
    ['Close code 999 (7.9.x)', clientFrame(8, closeBody(999))],
    ['Close code 1005 (7.9.x)', clientFrame(8, closeBody(1005))],
    ['Close code 5000 (7.13.1)', clientFrame(8, closeBody(5000))],
  ];
  for (const [name, bytes] of protocolErrors) {
    e2eTest(`${name}: Close message, then Close frame 1002; a bystander is unaffected`, async () => {
      const bystander = await bystanderFor();
      const { code, before: last } = await closeCodeFor(bytes);
      assert.equal(code, 1002);
      assert.deepEqual(JSON.parse(last.replace(RS, '')), JSON.parse(CLOSE_WITH_ERROR));
      assert.equal(await bystander.invoke('Echo', name), name);
    });
  }

  const kosme = Buffer.from('κόσμε');
  const invalidUtf8 = [
    ['a text frame with a surrogate (6.3.1)', text(Buffer.concat([kosme, Buffer.from([0xed, 0xa0, 0x80])]))],
    [
      'a code point split across fragments whose second half is wrong',
      Buffer.concat([text([0xe2, 0x82], { fin: false }), clientFrame(0, Buffer.from([0x28, 0x1e]))]),
    ],
    [
      'a message that ends inside a code point (6.14)',
      Buffer.concat([text(`{"type":6}${RS}`, { fin: false }), clientFrame(0, Buffer.from([0xe2, 0x82]))]),
    ],
    ['a Close reason that is not UTF-8 (7.5.1)', clientFrame(8, closeBody(1000, [0xce, 0xba, 0xed, 0xa0, 0x80]))],
  ];
  for (const [name, bytes] of invalidUtf8) {
    e2eTest(`${name}: Close frame 1007; a bystander is unaffected`, async () => {
      const bystander = await bystanderFor();
      const { code } = await closeCodeFor(bytes);
      assert.equal(code, 1007);
      assert.equal(await bystander.invoke('Echo', name), name);
    });
  }

  e2eTest('MessagePack records: accepted in binary frames, refused with 1007 in text frames (not UTF-8)', async () => {
    const hand = await handMadeSocket(clientFrame(1, `{"protocol":"messagepack","version":1}${RS}`));
    await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
    // [1, {}, "i", "Echo", ["x"]] with its length prefix: 0x95, 0x80, 0xa1 are not UTF-8.
    const invocation = Buffer.from([0x0d, 0x95, 0x01, 0x80, 0xa1, 0x69, 0xa4, 0x45, 0x63, 0x68, 0x6f, 0x91, 0xa1, 0x78]);
    hand.socket.write(clientFrame(2, invocation));
    const completion = () => hand.frames().find((f) => f.opcode === 2 && f.payload.includes(Buffer.from([0xa1, 0x69])));
    await waitFor(completion, { what: 'the completion of the binary-frame invocation' });
    assert.ok(completion().payload.includes(Buffer.from([0xa1, 0x78])), 'the result "x"');
    hand.socket.write(clientFrame(1, invocation));
    await waitFor(() => hand.state.ended, { timeout: 20_000, what: 'the server to close the TCP connection' });
    const close = hand.frames().at(-1);
    assert.equal(close.opcode, 8);
    assert.equal(close.payload.readUInt16BE(0), 1007);
  });

  e2eTest('a code point split across fragments and reads is accepted', async () => {
    const hand = await handMadeSocket(clientFrame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => hand.texts().includes(`{}${RS}`), { what: 'handshake response' });
    const record = Buffer.from(JSON.stringify({ type: 1, invocationId: 'u', target: 'Echo', arguments: ['€𝄞'] }) + RS);
    const cut = record.indexOf(0xe2) + 1; // inside the euro sign
    const first = text(record.subarray(0, cut), { fin: false });
    const second = clientFrame(0, record.subarray(cut));
    // The first frame in two writes, split inside its payload.
    hand.socket.write(first.subarray(0, first.length - 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    hand.socket.write(Buffer.concat([first.subarray(first.length - 1), second]));
    await waitFor(() => hand.texts().some((t) => t.includes('"invocationId":"u"')), { what: 'the Echo result' });
    const result = hand.texts().join('').split(RS).filter(Boolean).map((r) => JSON.parse(r)).find((r) => r.invocationId === 'u');
    assert.deepEqual(result, { type: 3, invocationId: 'u', result: '€𝄞' });
    hand.socket.destroy();
  });

  e2eTest('a frame over the size limit (9.x), and a record over maxMessageSize: Close frame 1009', async () => {
    const bystander = await bystanderFor();
    // A header that declares 1 GiB: refused at the header.
    const huge = Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 2, 3, 4]);
    assert.equal((await closeCodeFor(huge)).code, 1009);
    // 40 000 bytes (over the default 32 KiB) in one frame with no record separator.
    const { code, before: last } = await closeCodeFor(text('x'.repeat(40_000)));
    assert.equal(code, 1009);
    assert.deepEqual(JSON.parse(last.replace(RS, '')), JSON.parse(CLOSE_WITH_ERROR));
    assert.equal(await bystander.invoke('Echo', 'big'), 'big');
  });

  e2eTest('every Close frame sent is counted by code in /metrics', async () => {
    const count = async (code) => {
      const body = await (await fetch(`${node.baseUrl}/metrics`)).text();
      return Number(body.match(new RegExp(`hubwire_websocket_closes_total\\{code="${code}"\\} (\\d+)`))?.[1] ?? 0);
    };
    const [protocol, utf8] = [await count(1002), await count(1007)];
    assert.equal((await closeCodeFor(clientFrame(3, 'x'))).code, 1002);
    assert.equal((await closeCodeFor(text([0xff]))).code, 1007);
    assert.equal(await count(1002), protocol + 1);
    assert.equal(await count(1007), utf8 + 1);
  });
});
