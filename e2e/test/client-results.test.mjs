// Client results (issue 11, Show 3): the server invokes a client method and
// awaits what the official client's `connection.on(...)` handler returns —
// from hub code (the diagnostics hub's AskCaller / AskConnection) and from
// the REST API (`POST /api/hubs/{hub}/connections/{id}/:invoke`, Azure's
// 2024-12-01 shape), on one node and across two (Redis), JSON and
// MessagePack; the client's error, a missing handler, the timeout, the target
// disconnecting before it answers and its node being killed (-9) each end
// the call with an error instead of a hang.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

import {
  accessToken,
  closeAllClients,
  connect,
  e2eTest,
  startCluster,
  startRedis,
  stopAllNodesAfter,
  withTimeout,
} from './harness.mjs';

stopAllNodesAfter();

const API_VERSION = '2024-12-01';
const LIVENESS = { HUBWIRE_NODE_HEARTBEAT_MS: '300', HUBWIRE_NODE_DEAD_AFTER_MS: '2000' };
const TIMEOUT_SECS = 10;

/** `POST /api/hubs/diagnostics/connections/{id}/:invoke` on `node`. */
async function restInvoke(node, id, target, args) {
  const path = `/api/hubs/diagnostics/connections/${encodeURIComponent(id)}/:invoke`;
  const fixed = `?api-version=${API_VERSION}`;
  const res = await withTimeout(
    fetch(`${node.baseUrl}${path}${fixed}`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${accessToken(node, `http://127.0.0.1${path}${fixed}`)}`,
        'Content-Type': 'application/json; charset=utf-8',
      },
      body: JSON.stringify({ target, arguments: args }),
    }),
    20_000,
    `:invoke on ${node.name}`,
  );
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, code: res.headers.get('x-ms-error-code') };
}

/** A client on `node` whose `Question(x)` handler answers `answer(x)`. */
async function answering(node, answer, opts = {}) {
  const conn = await connect(node, opts);
  conn.on('Question', answer);
  return conn;
}

const hubError = (text) => new RegExp(`An unexpected error occurred invoking '\\w+' on the server\\. HubException: ${text}`);

describe('client results on two nodes (Redis)', () => {
  const cluster = {};
  before(async () => {
    cluster.redis = await startRedis({ name: 'results-redis' });
    Object.assign(
      cluster,
      await startCluster(cluster.redis, {
        size: 2,
        name: 'results',
        env: { ...LIVENESS, HUBWIRE_CLIENT_RESULT_TIMEOUT_SECS: String(TIMEOUT_SECS) },
      }),
    );
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
  });

  for (const protocol of ['json', 'messagepack']) {
    e2eTest(`${protocol}: hub code and REST get the client's answer, on its node and from the other`, async () => {
      const [a, b] = cluster.nodes;
      const onA = await answering(a, (x) => x * 2, { user: 'target-a', protocol });
      const onB = await answering(b, async (x) => `b:${x}`, { user: 'target-b', protocol });
      const admin = await answering(a, (x) => ({ echoed: x }), { user: 'admin', roles: ['admin'] });

      assert.deepEqual(await admin.invoke('AskCaller', 'Question', 'me'), { echoed: 'me' });
      assert.equal(await admin.invoke('AskConnection', onA.connectionId, 'Question', 21), 42);
      assert.equal(await admin.invoke('AskConnection', onB.connectionId, 'Question', 7), 'b:7', 'through Redis');

      assert.deepEqual(await restInvoke(a, onA.connectionId, 'Question', [5]), {
        status: 200,
        body: { result: 10, protocol: 'json' },
        code: null,
      });
      const remote = await restInvoke(a, onB.connectionId, 'Question', [5]);
      assert.equal(remote.status, 200, JSON.stringify(remote));
      assert.deepEqual(remote.body, { result: 'b:5', protocol: 'json' });
      const fromB = await restInvoke(b, onA.connectionId, 'Question', [1]);
      assert.deepEqual(fromB.body, { result: 2, protocol: 'json' });

      // A non-admin may ask only itself.
      await assert.rejects(onA.invoke('AskConnection', onB.connectionId, 'Question', 1), /requires the 'admin' role/);
    });
  }

  e2eTest("the client's error, a missing handler and the timeout are errors", async () => {
    const [a, b] = cluster.nodes;
    const failing = await answering(b, () => {
      throw new Error('no idea');
    }, { user: 'failing' });
    const silent = await answering(b, () => new Promise(() => {}), { user: 'silent' });
    const admin = await connect(a, { user: 'admin', roles: ['admin'] });

    await assert.rejects(admin.invoke('AskConnection', failing.connectionId, 'Question', 1), hubError('.*no idea'));
    const failed = await restInvoke(a, failing.connectionId, 'Question', [1]);
    assert.equal(failed.status, 400);
    assert.equal(failed.code, 'Error.Invocation.Failed');
    assert.match(failed.body.message, /no idea/);

    await assert.rejects(
      admin.invoke('AskConnection', failing.connectionId, 'NoSuchHandler', 1),
      hubError("Client didn't provide a result\\."),
    );
    const missing = await restInvoke(a, 'no-such-connection', 'Question', [1]);
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'Warning.Connection.NotExisted');

    const timedOut = await restInvoke(a, silent.connectionId, 'Question', [1]);
    assert.equal(timedOut.status, 504);
    assert.match(timedOut.body.message, new RegExp(`did not answer 'Question' within ${TIMEOUT_SECS} s`));
    assert.equal(await admin.invoke('Echo', 'still here'), 'still here');
  });

  e2eTest('a target that disconnects before answering ends the call with an error, on its node and from the other', async () => {
    const [a, b] = cluster.nodes;
    const local = await connect(a, { user: 'leaving-a' });
    local.on('Question', () => {
      setTimeout(() => local.stop(), 100);
      return new Promise(() => {});
    });
    const remote = await connect(b, { user: 'leaving-b' });
    remote.on('Question', () => {
      setTimeout(() => remote.stop(), 100);
      return new Promise(() => {});
    });
    const admin = await connect(a, { user: 'admin', roles: ['admin'] });
    await assert.rejects(
      admin.invoke('AskConnection', local.connectionId, 'Question', 1),
      hubError(`Connection '${local.connectionId}' disconnected\\.`),
    );
    const gone = await restInvoke(a, remote.connectionId, 'Question', [1]);
    assert.equal(gone.status, 404, JSON.stringify(gone));
    assert.match(gone.body.message, /disconnected/);
  });

  e2eTest("a target whose node is killed (-9) ends the call with an error", async () => {
    const [a, b] = cluster.nodes;
    const doomed = await connect(b, { user: 'doomed' });
    let asked;
    const question = new Promise((resolve) => {
      asked = resolve;
    });
    doomed.on('Question', () => {
      asked();
      return new Promise(() => {});
    });
    const admin = await connect(a, { user: 'admin', roles: ['admin'] });
    const rest = restInvoke(a, doomed.connectionId, 'Question', [1]);
    const hub = admin.invoke('AskConnection', doomed.connectionId, 'Question', 2).then(
      () => 'answered',
      (e) => e.message,
    );
    await withTimeout(question, 10_000, 'the question to reach the client on node B');
    await b.kill();
    const [restAnswer, hubAnswer] = await Promise.all([rest, hub]);
    assert.equal(restAnswer.status, 404, JSON.stringify(restAnswer));
    assert.match(restAnswer.body.message, /disconnected/);
    assert.match(hubAnswer, /disconnected/);
  });
});
