// What the chat e2e files share: the REST calls a backend makes on a chat hub
// (access-key token, conversations created through REST), a chat client, the
// HubException matcher, /metrics series, and a cluster of nodes with Redis and
// PostgreSQL started for one file.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { accessToken, closeAllClients, connect, startCluster, startRedis, withTimeout } from './harness.mjs';
import { startPostgres } from './postgres.mjs';

/** Grace period used only for negative assertions ("nothing more arrived"). */
export const GRACE_MS = 400;

/** `name` with a random suffix, so tests never share users or conversations. */
export const unique = (name) => `${name}-${crypto.randomBytes(3).toString('hex')}`;

/**
 * `method` on `/api/hubs/{hub}{rest}` of `node` with an access-key token (its
 * audience the path without the query), as the app's backend calls it;
 * { status, body, text }.
 */
export async function chatApi(node, method, hub, rest, body, { timeout = 5_000 } = {}) {
  const path = `/api/hubs/${hub}${rest}`;
  const headers = { Authorization: `Bearer ${accessToken(node, `http://127.0.0.1${path.split('?')[0]}`)}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await withTimeout(fetch(`${node.baseUrl}${path}`, init), timeout, `${method} ${path}`);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

/** Creates a conversation of `participants` through REST on `node`; its id. */
export async function createConversation(node, participants, { hub = 'chat', id, type } = {}) {
  const res = await chatApi(node, 'POST', hub, '/conversations', { id, type, participants });
  assert.equal(res.status, 201, res.text);
  return res.body.id;
}

/** A connection of `user` to the built-in `/hubs/chat` (or `opts.hub` / `opts.url`). */
export const chatClient = (node, user, opts = {}) => connect(node, { hub: 'chat', user, ...opts });

/** The HubException text the official client reports for a refused invocation. */
export const hubException = (text) => new RegExp(`HubException: ${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/** The value of one series in the node's /metrics (0 when absent). */
export async function metric(node, series) {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** The value of `hubwire_hook_requests_total` with these labels (0 when absent). */
export async function hookRequests(node, hub, hook, outcome) {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const labels = [`hook="${hook}"`, `hub="${hub}"`, `outcome="${outcome}"`];
  const line = text.split('\n').find((l) => l.startsWith('hubwire_hook_requests_total{') && labels.every((x) => l.includes(x)));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * PostgreSQL, Redis and `size` nodes on them (`env` and `args` to every node).
 * Returns { postgres, redis, nodes, stop() }; stop closes the clients first.
 */
export async function startChatCluster({ size = 2, name = 'chat', env = {}, args } = {}) {
  const cluster = { nodes: [] };
  cluster.stop = async () => {
    await closeAllClients();
    await Promise.all(cluster.nodes.map((n) => n.stop()));
    await cluster.redis?.stop();
    cluster.postgres?.stop();
  };
  cluster.postgres = await startPostgres();
  cluster.redis = await startRedis({ name: `${name}-redis` });
  const started = await startCluster(cluster.redis, {
    size,
    name,
    args,
    env: { HUBWIRE_DATABASE_URL: cluster.postgres.url, ...env },
  });
  cluster.nodes = started.nodes;
  cluster.prefix = started.prefix;
  return cluster;
}
