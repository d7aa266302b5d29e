// Issue 7's hardening of the HTTP surface, end to end: negotiated tokens bound
// to their user and bounded, token checks (nbf, empty sub, crit), closing a
// connection when its token expires, the Origin allow-list with CORS, and the
// security headers.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { before, describe } from 'node:test';

import { delay, e2eTest, negotiate, rawWs, startNode, stopAllNodesAfter, wsUpgradeStatus } from './harness.mjs';

stopAllNodesAfter();

const DIAGNOSTICS = { HUBWIRE_DIAGNOSTICS_HUB: 'true' };

/** The value of one series in the node's /metrics text (0 when absent). */
async function metric(node, series) {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const refused = (reason) => `hubwire_requests_refused_total{reason="${reason}"}`;

describe('negotiated connection tokens', () => {
  let node;
  let shortLived;
  before(async () => {
    [node, shortLived] = await Promise.all([
      startNode({
        name: 'sec-negotiate',
        env: { ...DIAGNOSTICS, HUBWIRE_MAX_PENDING_NEGOTIATIONS_PER_USER: '3', HUBWIRE_MAX_PENDING_NEGOTIATIONS: '5' },
      }),
      startNode({ name: 'sec-negotiate-ttl', env: { ...DIAGNOSTICS, HUBWIRE_NEGOTIATE_TTL_SECS: '1' } }),
    ]);
  });

  e2eTest('a token negotiated as alice is refused (403) on a WebSocket authenticated as bob', async () => {
    const { body } = await negotiate(node, { token: node.token({ sub: 'alice' }) });
    const path = (user) =>
      `/hubs/diagnostics?id=${encodeURIComponent(body.connectionToken)}&access_token=${encodeURIComponent(node.token({ sub: user }))}`;
    assert.equal(await wsUpgradeStatus(node, path('bob')), 403);
    assert.equal(await metric(node, refused('user_mismatch')), 1);
    const ws = await rawWs(node, path('alice'));
    await ws.handshake();
    const done = await ws.echo('still alice');
    assert.equal(done.result, 'still alice');
  });

  e2eTest('unused tokens are capped per user (429) and per node (503), counted in /metrics', async () => {
    const as = (sub) => negotiate(node, { token: node.token({ sub }) });
    for (let i = 0; i < 3; i++) assert.equal((await as('carol')).status, 200);
    const fourth = await as('carol');
    assert.equal(fourth.status, 429, fourth.text);
    assert.equal((await as('dave')).status, 200, 'another user is not affected');
    assert.equal((await as('dave')).status, 200);
    // 5 unused tokens on the node now (the first test's token was used).
    const full = await as('erin');
    assert.equal(full.status, 503, full.text);
    assert.equal(await metric(node, refused('negotiate_user_limit')), 1);
    assert.equal(await metric(node, refused('negotiate_node_limit')), 1);
    assert.equal(await metric(node, 'hubwire_negotiations_pending'), 5);
  });

  e2eTest('a token not used within negotiate_ttl_secs is gone (404)', async () => {
    const { body } = await negotiate(shortLived, { token: shortLived.token({ sub: 'alice' }) });
    await delay(1_500);
    const path = `/hubs/diagnostics?id=${encodeURIComponent(body.connectionToken)}&access_token=${encodeURIComponent(shortLived.token({ sub: 'alice' }))}`;
    assert.equal(await wsUpgradeStatus(shortLived, path), 404);
  });
});

describe('user tokens', () => {
  let node;
  let closing;
  before(async () => {
    [node, closing] = await Promise.all([
      startNode({ name: 'sec-tokens', env: DIAGNOSTICS }),
      startNode({ name: 'sec-expiry', env: { ...DIAGNOSTICS, HUBWIRE_CLOSE_ON_TOKEN_EXPIRY: 'true' } }),
    ]);
  });

  e2eTest('a future nbf, an empty sub and a crit header are refused with 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const hs256 = (header, claims) => {
      const input = `${b64(header)}.${b64(claims)}`;
      const sig = crypto.createHmac('sha256', node.secret).update(input).digest('base64url');
      return `${input}.${sig}`;
    };
    const bad = {
      'nbf in an hour': node.token({ sub: 'alice', extra: { nbf: now + 3600 } }),
      'empty sub': node.token({ sub: '' }),
      'crit header': hs256({ alg: 'HS256', typ: 'JWT', crit: ['x-ext'], 'x-ext': 1 }, { sub: 'alice', exp: now + 3600 }),
    };
    for (const [kind, tok] of Object.entries(bad)) {
      assert.equal((await negotiate(node, { token: tok })).status, 401, kind);
      assert.equal(
        await wsUpgradeStatus(node, `/hubs/diagnostics?access_token=${encodeURIComponent(tok)}`),
        401,
        `${kind} on the WebSocket`,
      );
    }
    const good = node.token({ sub: 'alice', extra: { nbf: now } });
    assert.equal((await negotiate(node, { token: good })).status, 200);
  });

  e2eTest('with close_on_token_expiry a connection is closed when its token expires; without it, not', async () => {
    const soon = (n) => n.token({ sub: 'alice', expSeconds: 2 });
    const watched = await rawWs(closing, `/hubs/diagnostics?access_token=${encodeURIComponent(soon(closing))}`);
    await watched.handshake();
    const bystander = await rawWs(node, `/hubs/diagnostics?access_token=${encodeURIComponent(soon(node))}`);
    await bystander.handshake();
    const close = await watched.waitMessage((m) => m.type === 7, { timeout: 20_000, what: 'Close at expiry' });
    assert.match(close.error, /access token expired/);
    assert.equal(close.allowReconnect, true, 'the client may reconnect with a fresh token');
    await watched.waitClosed(10_000);
    // Its token expired just as long ago, yet the default node keeps it.
    assert.equal((await bystander.echo('after expiry')).result, 'after expiry');
    assert.equal(await metric(closing, refused('token_expired')), 1);
  });
});

describe('allowed origins', () => {
  const APP = 'https://app.example.com';
  const EVIL = 'https://evil.example.com';
  let node;
  before(async () => {
    node = await startNode({ name: 'sec-origins', env: { ...DIAGNOSTICS, HUBWIRE_ALLOWED_ORIGINS: APP } });
  });

  e2eTest('WebSocket upgrades from another origin are refused with 403; listed and absent origins pass', async () => {
    const path = `/hubs/diagnostics?access_token=${encodeURIComponent(node.token())}`;
    assert.equal(await wsUpgradeStatus(node, path, { headers: { Origin: EVIL } }), 403);
    const listed = await rawWs(node, path, { headers: { Origin: APP } });
    await listed.handshake();
    const native = await rawWs(node, path);
    await native.handshake();
    assert.equal(await metric(node, refused('origin')), 1);
  });

  e2eTest('negotiate: preflight answered for the listed origin, ACAO on the response, 403 for others', async () => {
    const url = `${node.baseUrl}/hubs/diagnostics/negotiate?negotiateVersion=1`;
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: {
        Origin: APP,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, x-requested-with, x-signalr-user-agent',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), APP);
    assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true');
    assert.match(preflight.headers.get('access-control-allow-headers'), /x-signalr-user-agent/);
    const ok = await negotiate(node, { token: node.token(), headers: { Origin: APP } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), APP);
    const evil = await negotiate(node, { token: node.token(), headers: { Origin: EVIL } });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
  });

  e2eTest('HTTP responses carry X-Content-Type-Options: nosniff and X-Frame-Options: DENY', async () => {
    for (const path of ['/healthz', '/metrics', '/api/health', '/hubs/diagnostics/negotiate']) {
      const res = await fetch(`${node.baseUrl}${path}`, { method: path.endsWith('negotiate') ? 'POST' : 'GET' });
      await res.arrayBuffer();
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
    }
  });
});
