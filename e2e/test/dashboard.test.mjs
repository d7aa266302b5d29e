// The Grafana dashboard shipped with the chart (issue #12 Show 6): every
// panel's PromQL — and every templating query — uses only metrics the node
// exposes: each name is in docs/metrics.md (a histogram's `_bucket`, `_sum`
// and `_count` count as its own) and in a live scrape of a node with Redis
// after some traffic.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe } from 'node:test';

import { closeAllClients, connect, e2eTest, startCluster, startRedis, stopAllNodesAfter } from './harness.mjs';
import { REPO, documentedMetrics, scrape } from './prometheus.mjs';

stopAllNodesAfter();

const DASHBOARD = path.join(REPO, 'helm', 'hubwire', 'dashboards', 'hubwire.json');

/** The metric names a PromQL expression selects. */
export function metricNames(expr) {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // string literals (label matchers' values)
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // range and subquery durations
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ''); // label lists
  const names = [];
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = stripped.slice(m.index + m[0].length).trimStart();
    if (after.startsWith('(')) continue; // a function or aggregation
    if (/^(and|or|unless|bool|offset|by|without|on|ignoring|group_left|group_right)$/.test(m[0])) continue;
    names.push(m[0]);
  }
  return names;
}

/** `x_bucket` / `x_sum` / `x_count` → `x` when `x` is a documented histogram. */
function family(name, documented) {
  if (documented.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m && documented.get(m[1])?.type === 'histogram') return m[1];
  return null;
}

describe('the Grafana dashboard', () => {
  const cluster = {};
  before(async () => {
    cluster.redis = await startRedis({ name: 'dashboard-redis' });
    Object.assign(cluster, await startCluster(cluster.redis, { size: 1, name: 'dashboard' }));
  });
  after(async () => {
    await closeAllClients();
    await Promise.all((cluster.nodes ?? []).map((n) => n.stop()));
    await cluster.redis?.stop();
  });

  e2eTest('the expression parser finds metric names and nothing else', () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job=~"x|y", b="c{d}"}[5m])))'),
      ['a_bucket'],
    );
    assert.deepEqual(metricNames('sum(rate(x_total[1m])) / on (instance) group_left up and y'), ['x_total', 'up', 'y']);
  });

  e2eTest('every panel queries metrics the node exposes', async () => {
    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
    const documented = documentedMetrics();
    const conn = await connect(cluster.nodes[0]);
    assert.equal(await conn.invoke('Echo', 'dashboard'), 'dashboard');
    const { families } = await scrape(cluster.nodes[0]);

    const panels = dashboard.panels.flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]));
    assert.ok(panels.length >= 10, `${panels.length} panels`);
    const queries = [];
    for (const panel of panels) {
      const exprs = (panel.targets ?? []).map((t) => t.expr).filter(Boolean);
      assert.ok(exprs.length >= 1, `panel "${panel.title}" has a query`);
      for (const expr of exprs) queries.push({ where: `panel "${panel.title}"`, expr });
    }
    for (const variable of dashboard.templating?.list ?? []) {
      if (variable.type === 'query') queries.push({ where: `variable $${variable.name}`, expr: variable.query });
    }
    const used = new Set();
    for (const { where, expr } of queries) {
      const names = metricNames(expr.replace(/^label_values\((.*),\s*[a-zA-Z_]+\)$/, '$1'));
      assert.ok(names.length >= 1, `${where}: no metric in ${expr}`);
      for (const name of names) {
        const base = family(name, documented);
        assert.ok(base, `${where}: ${name} is not in docs/metrics.md`);
        assert.ok(families.has(base), `${where}: ${base} is not exposed by the node`);
        used.add(base);
      }
    }
    // The metrics of issue #12's list are all on the dashboard.
    for (const name of [
      'hubwire_connections',
      'hubwire_disconnects_total',
      'hubwire_received_bytes_total',
      'hubwire_sent_bytes_total',
      'hubwire_invocation_duration_seconds',
      'hubwire_delivery_seconds',
      'hubwire_slow_connections_closed_total',
      'hubwire_limit_refusals_total',
      'hubwire_redis_published_total',
      'hubwire_redis_received_total',
      'hubwire_redis_errors_total',
      'hubwire_redis_reconnects_total',
      'hubwire_backplane_inbox_pending',
      'hubwire_redis_duration_seconds',
      'hubwire_database_duration_seconds',
    ]) {
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
  });
});
