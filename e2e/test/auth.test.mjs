// JWT authentication at negotiate and at the WebSocket connect, plus
// anonymous hubs (HUBWIRE_ANONYMOUS_HUBS).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { before, describe } from 'node:test';

import {
  buildConnection,
  connect,
  e2eTest,
  negotiate,
  rawWs,
  rejectionOf,
  startNode,
  stopAllNodesAfter,
  token,
  wsUpgradeStatus,
  HubConnectionState,
  LogLevel,
} from './harness.mjs';

/** Expected start() failures would otherwise log client errors to stderr. */
const QUIET = { logLevel: LogLevel.None };

stopAllNodesAfter();

let node;
let anonNode;
before(async () => {
  [node, anonNode] = await Promise.all([
    startNode({ name: 'auth' }),
    startNode({ name: 'auth-anon', env: { HUBWIRE_ANONYMOUS_HUBS: 'diagnostics' } }),
  ]);
});

/** Tokens that must be rejected, built lazily (they need the node's secret). */
function badTokens() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const valid = node.token({ sub: 'mallory' });
  const [h, p] = valid.split('.');
  return {
    // Signed with a different secret.
    'invalid signature': token({ sub: 'mallory', secret: crypto.randomBytes(32).toString('hex') }),
    // Expired an hour ago (well outside any clock-skew leeway).
    expired: node.token({ sub: 'mallory', expSeconds: -3600, iat: now - 7200 }),
    // Unsigned token ("alg":"none").
    'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'mallory', exp: now + 3600, iat: now })}.`,
    // Valid header, tampered payload, original signature.
    'tampered payload': `${h}.${b64({ sub: 'admin', exp: now + 3600, iat: now })}.${valid.split('.')[2]}`,
    // Not a JWT at all.
    garbage: 'not-a-jwt',
    // Right structure, header/payload intact, signature stripped.
    'missing signature': `${h}.${p}.`,
  };
}

const STATUS_401 = /Status code '401'/;

describe('negotiate', () => {
  e2eTest('without a token → 401', async () => {
    const res = await negotiate(node, { query: 'negotiateVersion=1' });
    assert.equal(res.status, 401);
  });

  e2eTest('with invalid / expired tokens → 401', async () => {
    for (const [kind, tok] of Object.entries(badTokens())) {
      const res = await negotiate(node, { token: tok, query: 'negotiateVersion=1' });
      assert.equal(res.status, 401, `${kind} token: expected 401, got ${res.status}`);
      const viaQuery = await negotiate(node, {
        query: `negotiateVersion=1&access_token=${encodeURIComponent(tok)}`,
      });
      assert.equal(viaQuery.status, 401, `${kind} token via access_token: expected 401, got ${viaQuery.status}`);
    }
  });

  e2eTest('Authorization: Bearer header is accepted', async () => {
    const res = await negotiate(node, { token: node.token({ sub: 'alice' }), query: 'negotiateVersion=1' });
    assert.equal(res.status, 200);
    assert.equal(typeof res.body.connectionToken, 'string');
  });

  e2eTest('access_token query parameter is accepted', async () => {
    const tok = node.token({ sub: 'alice' });
    const res = await negotiate(node, { query: `negotiateVersion=1&access_token=${encodeURIComponent(tok)}` });
    assert.equal(res.status, 200);
    assert.equal(typeof res.body.connectionToken, 'string');
  });
});

describe('WebSocket connect', () => {
  e2eTest('skipNegotiation without a token → 401', async () => {
    assert.equal(await wsUpgradeStatus(node, '/hubs/diagnostics'), 401);
  });

  e2eTest('skipNegotiation with invalid / expired tokens → 401 (header and query)', async () => {
    for (const [kind, tok] of Object.entries(badTokens())) {
      assert.equal(
        await wsUpgradeStatus(node, '/hubs/diagnostics', { headers: { Authorization: `Bearer ${tok}` } }),
        401,
        `${kind} token in Authorization header`,
      );
      assert.equal(
        await wsUpgradeStatus(node, `/hubs/diagnostics?access_token=${encodeURIComponent(tok)}`),
        401,
        `${kind} token in access_token`,
      );
    }
  });

  e2eTest('a negotiated id still requires a valid token on the WebSocket', async () => {
    const { body } = await negotiate(node, { token: node.token(), query: 'negotiateVersion=1' });
    const path = `/hubs/diagnostics?id=${encodeURIComponent(body.connectionToken)}`;
    assert.equal(await wsUpgradeStatus(node, path), 401, 'no token');
    assert.equal(
      await wsUpgradeStatus(node, `${path}&access_token=${encodeURIComponent(badTokens().expired)}`),
      401,
      'expired token',
    );
    // The id is still usable with a valid token afterwards.
    const raw = await rawWs(node, `${path}&access_token=${encodeURIComponent(node.token())}`);
    await raw.handshake();
    assert.equal((await raw.echo('ok')).result, 'ok');
  });

  e2eTest('access_token query parameter works for the WebSocket', async () => {
    const tok = node.token({ sub: 'query-user', name: 'Query User' });
    const raw = await rawWs(node, `/hubs/diagnostics?access_token=${encodeURIComponent(tok)}`);
    await raw.handshake();
    raw.sendMessage({ type: 1, invocationId: 'w', target: 'WhoAmI', arguments: [] });
    const c = await raw.waitMessage((m) => m.type === 3 && m.invocationId === 'w');
    assert.equal(c.result.userId, 'query-user');
    assert.equal(c.result.userName, 'Query User');
    assert.equal(c.result.protocol, 'json');
  });

  e2eTest('Authorization header works for the WebSocket', async () => {
    const tok = node.token({ sub: 'header-user' });
    const raw = await rawWs(node, '/hubs/diagnostics', { headers: { Authorization: `Bearer ${tok}` } });
    await raw.handshake();
    raw.sendMessage({ type: 1, invocationId: 'w', target: 'WhoAmI', arguments: [] });
    const c = await raw.waitMessage((m) => m.type === 3 && m.invocationId === 'w');
    assert.equal(c.result.userId, 'header-user');
  });
});

describe('official client', () => {
  e2eTest('start() rejects with a 401 error without a token', async () => {
    const conn = buildConnection(node, { token: null, ...QUIET });
    const err = await rejectionOf(conn.start(), 10_000, 'start() rejection');
    assert.match(err.message, STATUS_401);
    assert.match(err.message, /^Failed to complete negotiation with the server/);
    assert.equal(conn.state, HubConnectionState.Disconnected);
  });

  e2eTest('start() rejects with a 401 error for invalid and expired tokens', async () => {
    for (const [kind, tok] of Object.entries(badTokens())) {
      for (const protocol of ['json', 'messagepack']) {
        const conn = buildConnection(node, { token: tok, protocol, ...QUIET });
        const err = await rejectionOf(conn.start(), 10_000, `start() rejection (${kind}, ${protocol})`);
        assert.match(err.message, STATUS_401, `${kind} token (${protocol}): ${err.message}`);
        assert.equal(conn.state, HubConnectionState.Disconnected);
      }
    }
  });

  e2eTest('start() with skipNegotiation rejects for a bad token (401 on the WebSocket)', async () => {
    for (const tok of [null, badTokens().expired]) {
      const conn = buildConnection(node, { token: tok, skipNegotiation: true, ...QUIET });
      // The browser-style WebSocket API hides the HTTP status: the client reports a generic failure.
      const err = await rejectionOf(conn.start(), 10_000, 'start() rejection (skipNegotiation)');
      assert.ok(err instanceof Error);
      assert.equal(conn.state, HubConnectionState.Disconnected);
    }
  });

  e2eTest('the user identity comes from the token (sub, name)', async () => {
    const conn = await connect(node, { user: 'dave', name: 'Dave Bowman' });
    const me = await conn.invoke('WhoAmI');
    assert.equal(me.userId, 'dave');
    assert.equal(me.userName, 'Dave Bowman');
  });

  e2eTest('tokens with tenant/roles/channels claims are accepted', async () => {
    const tok = node.token({ sub: 'erin', tenant: 'acme', roles: ['admin', 'ops'], channels: ['news', 'alerts'] });
    const conn = await connect(node, { token: tok, protocol: 'messagepack' });
    const me = await conn.invoke('WhoAmI');
    assert.equal(me.userId, 'erin');
  });
});

describe('anonymous hubs (HUBWIRE_ANONYMOUS_HUBS=diagnostics)', () => {
  e2eTest('negotiate without a token → 200', async () => {
    const res = await negotiate(anonNode, { query: 'negotiateVersion=1' });
    assert.equal(res.status, 200);
    assert.equal(typeof res.body.connectionToken, 'string');
  });

  for (const protocol of ['json', 'messagepack']) {
    e2eTest(`${protocol}: client connects without a token; WhoAmI userId is null`, async () => {
      const conn = await connect(anonNode, { token: null, protocol });
      const me = await conn.invoke('WhoAmI');
      assert.equal(me.userId, null);
      assert.equal(me.hub, 'diagnostics');
      assert.equal(me.protocol, protocol);
      assert.equal(await conn.invoke('Echo', 'anon'), 'anon');
    });
  }

  e2eTest('skipNegotiation without a token connects', async () => {
    const conn = await connect(anonNode, { token: null, skipNegotiation: true });
    const me = await conn.invoke('WhoAmI');
    assert.equal(me.userId, null);
  });
});
