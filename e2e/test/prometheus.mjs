// Reading the node's /metrics (Prometheus text format) and docs/metrics.md's
// table, for metrics.test.mjs and dashboard.test.mjs.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { withTimeout } from './harness.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The metrics docs/metrics.md documents: Map name → { type, labels[] }, from
 * the rows of its table whose first cell is a `hubwire_…` name in backticks.
 */
export function documentedMetrics() {
  const text = fs.readFileSync(path.join(REPO, 'docs', 'metrics.md'), 'utf8');
  const metrics = new Map();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`(hubwire_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|\s*([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = m[3].trim() === '—' ? [] : m[3].split(',').map((l) => l.trim()).filter(Boolean);
    if (metrics.has(m[1])) throw new Error(`docs/metrics.md lists ${m[1]} twice`);
    // A row that says "(only with `…`)" is a metric that exists once that is configured.
    const conditional = /\(only with `[a-z_]+`/.test(line);
    metrics.set(m[1], { type: m[2], labels, conditional });
  }
  return metrics;
}

/**
 * One scrape: { families: Map name → type (from `# TYPE`), samples: [{ name, labels, value }] }.
 */
export async function scrape(node) {
  const res = await withTimeout(fetch(`${node.baseUrl}/metrics`), 5_000, `GET /metrics on ${node.name}`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseExposition(await res.text());
}

export function parseExposition(text) {
  const families = new Map();
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      families.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { families, samples };
}

/** The sum of the samples of `name` whose labels include every one of `labels`. */
export function value(scraped, name, labels = {}) {
  return scraped.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** The family a sample name belongs to (`x_bucket` → `x` for histograms). */
export function familyOf(families, sampleName) {
  if (families.has(sampleName)) return sampleName;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = sampleName.endsWith(suffix) ? sampleName.slice(0, -suffix.length) : null;
    if (base && families.get(base) === 'histogram') return base;
  }
  return null;
}
