// The browser check: headless Chromium (Debian's `chromium`, driven by
// playwright-core) loads the node's development page, which uses the
// official SignalR browser bundle to invoke and receive over WebSockets,
// Server-Sent Events and Long Polling.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before } from 'node:test';

import { chromium } from 'playwright-core';

import { e2eTest, startNode, stopAllNodesAfter, withTimeout } from './harness.mjs';

stopAllNodesAfter();

const here = path.dirname(fileURLToPath(import.meta.url));
const BUNDLE_DIR = path.join(here, '..', 'node_modules', '@microsoft', 'signalr', 'dist', 'browser');
const CHROMIUM = process.env.HUBWIRE_E2E_CHROMIUM ?? '/usr/bin/chromium';

let node;
before(async () => {
  node = await startNode({
    name: 'browser',
    env: { HUBWIRE_DEV_MODE: 'true', HUBWIRE_DEV_SIGNALR_DIR: BUNDLE_DIR },
  });
});

e2eTest('the development page is 404 unless dev_mode is on', async () => {
  const plain = await startNode({ name: 'browser-off' });
  assert.equal((await fetch(`${plain.baseUrl}/dev/`)).status, 404);
  assert.equal((await fetch(`${plain.baseUrl}/dev/signalr/signalr.js`)).status, 404);
  assert.equal((await fetch(`${node.baseUrl}/dev/signalr/../../package.json`)).status, 404);
});

e2eTest('headless Chromium invokes and receives over WebSockets, SSE and long polling', { timeout: 90_000 }, async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const token = node.token({ sub: 'browser-user' });
    await page.goto(`${node.baseUrl}/dev/?token=${encodeURIComponent(token)}`);
    await withTimeout(page.waitForFunction(() => window.hubwireDone === true, null, { timeout: 60_000 }), 65_000, 'the page');
    const results = await page.evaluate(() => window.hubwireResults);
    assert.deepEqual(errors, []);
    assert.deepEqual(
      results.map((r) => [r.transport, r.ok, r.error]),
      [
        ['WebSockets', true, undefined],
        ['ServerSentEvents', true, undefined],
        ['LongPolling', true, undefined],
      ],
    );
    for (const r of results) {
      assert.equal(r.serverTransport, r.transport, 'the server saw that transport');
      assert.equal(r.echo, `hello over ${r.transport}`);
      assert.deepEqual(r.received, { via: r.transport });
    }
  } finally {
    await browser.close();
  }
});
