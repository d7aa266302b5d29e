// Client-to-server streaming (issue 11, Show 4): the official client's
// `Subject` uploaded into the diagnostics hub's `Sum(stream)`, JSON and
// MessagePack — more items than the node's stream buffer (10) holds, so the
// client is held back while the method catches up — and the errors: a
// stream the client completes with an error, a non-number item, a stream
// count the method does not take, and more streams than
// `max_streams_per_connection`.

import assert from 'node:assert/strict';
import { before } from 'node:test';

import signalR from '@microsoft/signalr';

import { connect, e2eTest, startNode, stopAllNodesAfter, withTimeout } from './harness.mjs';

stopAllNodesAfter();

let node;
before(async () => {
  node = await startNode({ name: 'upload', env: { HUBWIRE_MAX_STREAMS_PER_CONNECTION: '3' } });
});

const hubError = (text) =>
  new RegExp(`An unexpected error occurred invoking 'Sum' on the server\\. HubException: ${text}`);

for (const protocol of ['json', 'messagepack']) {
  e2eTest(`${protocol}: Sum consumes an uploaded Subject of 500 numbers`, async () => {
    const conn = await connect(node, { protocol });
    const subject = new signalR.Subject();
    const result = conn.invoke('Sum', subject);
    for (let i = 1; i <= 500; i++) {
      subject.next(i);
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    subject.complete();
    assert.equal(Number(await withTimeout(result, 10_000, 'Sum')), 125_250);
    // Floats too, and two uploads one after the other on the same connection.
    const floats = new signalR.Subject();
    const second = conn.invoke('Sum', floats);
    floats.next(0.5);
    floats.next(0.25);
    floats.complete();
    assert.equal(await second, 0.75);
    assert.equal(await conn.invoke('Echo', 'still fine'), 'still fine');
  });

  e2eTest(`${protocol}: upload errors come back as the invocation's error`, async () => {
    const conn = await connect(node, { protocol });
    const failing = new signalR.Subject();
    const failed = conn.invoke('Sum', failing);
    failing.next(1);
    failing.error(new Error('the sensor went away'));
    await assert.rejects(failed, hubError("The client's stream '\\d+' failed: .*the sensor went away"));

    const words = new signalR.Subject();
    const wrong = conn.invoke('Sum', words);
    words.next('seven');
    words.complete();
    await assert.rejects(wrong, hubError('Sum takes numbers, not "seven"\\.'));

    await assert.rejects(conn.invoke('Sum'), hubError('Client sent 0 stream\\(s\\), Hub method expects 1\\.'));
    const a = new signalR.Subject();
    const b = new signalR.Subject();
    // The client takes a stream out of its arguments and skips the argument
    // after it (its splice in a forward loop), hence the numbers in between.
    await assert.rejects(conn.invoke('Sum', a, 0, b), hubError('Client sent 2 stream\\(s\\), Hub method expects 1\\.'));
    const [s1, s2, s3, s4] = [1, 2, 3, 4].map(() => new signalR.Subject());
    await assert.rejects(
      conn.invoke('Sum', s1, 0, s2, 0, s3, 0, s4),
      hubError('A connection may run at most 3 streams at once\\.'),
    );
    assert.equal(conn.state, signalR.HubConnectionState.Connected, 'the connection stays open');
    assert.equal(await conn.invoke('Echo', 1), 1);
  });
}
