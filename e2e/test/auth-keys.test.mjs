// RS256 and ES256 user tokens, verified with a public key file
// (HUBWIRE_JWT_PUBLIC_KEY_FILE). Key pairs are generated per run; nothing is
// committed.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe } from 'node:test';

import { connect, e2eTest, negotiate, startNode, stopAllNodesAfter, token } from './harness.mjs';

stopAllNodesAfter();

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A JWT signed with `privateKey` (RS256, or ES256 in the JOSE r||s form). */
function sign(alg, privateKey, claims) {
  const input = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
  const signature =
    alg === 'RS256'
      ? crypto.sign('sha256', Buffer.from(input), privateKey)
      : crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

const claims = (sub, expInSeconds = 3600) => ({ sub, name: `${sub} (asym)`, exp: Math.floor(Date.now() / 1000) + expInSeconds });

for (const [alg, type, options] of [
  ['RS256', 'rsa', { modulusLength: 2048 }],
  ['ES256', 'ec', { namedCurve: 'P-256' }],
]) {
  describe(`${alg} tokens`, () => {
    let node;
    let privateKey;
    let otherKey;
    before(async () => {
      const pair = crypto.generateKeyPairSync(type, options);
      privateKey = pair.privateKey;
      otherKey = crypto.generateKeyPairSync(type, options).privateKey;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-keys-'));
      const file = path.join(dir, 'public.pem');
      fs.writeFileSync(file, pair.publicKey.export({ type: 'spki', format: 'pem' }));
      node = await startNode({ name: `auth-${alg}`, env: { HUBWIRE_JWT_PUBLIC_KEY_FILE: file } });
    });

    e2eTest(`a ${alg} token signed with the configured key connects and names the user`, async () => {
      const conn = await connect(node, { token: sign(alg, privateKey, claims('carol')) });
      const me = await conn.invoke('WhoAmI');
      assert.equal(me.userId, 'carol');
      assert.equal(me.userName, 'carol (asym)');
    });

    e2eTest(`a ${alg} token signed with another key, or expired, is refused with 401`, async () => {
      const foreign = await negotiate(node, { token: sign(alg, otherKey, claims('mallory')) });
      assert.equal(foreign.status, 401);
      const expired = await negotiate(node, { token: sign(alg, privateKey, claims('carol', -120)) });
      assert.equal(expired.status, 401);
      const good = await negotiate(node, { token: sign(alg, privateKey, claims('carol')) });
      assert.equal(good.status, 200);
    });
  });
}

describe('HS256 turned off next to a public key', () => {
  let node;
  let privateKey;
  before(async () => {
    const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    privateKey = pair.privateKey;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-keys-'));
    const file = path.join(dir, 'public.pem');
    fs.writeFileSync(file, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    node = await startNode({
      name: 'auth-no-hs256',
      env: { HUBWIRE_JWT_PUBLIC_KEY_FILE: file, HUBWIRE_JWT_ALLOW_HS256: 'false' },
    });
  });

  e2eTest('with HUBWIRE_JWT_ALLOW_HS256=false an HS256 token signed with the secret is refused (401)', async () => {
    const hs256 = await negotiate(node, { token: token({ sub: 'carol', secret: node.secret }) });
    assert.equal(hs256.status, 401);
    const es256 = await negotiate(node, { token: sign('ES256', privateKey, claims('carol')) });
    assert.equal(es256.status, 200);
  });
});
