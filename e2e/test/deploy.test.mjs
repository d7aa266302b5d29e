// The deployment files, checked without Helm, Docker or a cluster (issue #12
// Show 5; the method and what it cannot catch: docs/deployment.md):
// - the Helm chart rendered by helm/render (Go's text/template + sprig, Helm's
//   include/tpl/toYaml/required/.Files...) for the default values and for
//   helm/hubwire/ci/cluster-values.yaml with a preset mounted, every manifest
//   validated by kubernetes-validate --strict against the Kubernetes schemas
//   (the oldest version the chart supports and the newest), and its
//   cross-references checked (deploy/check.py chart);
// - the Dockerfile, compose file and nginx files (deploy/check.py docker).
// Tools: scripts/deploy-tools.sh (run by .ci/run) builds them under target/.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOOLS = path.join(ROOT, 'target/deploy-tools');
const RENDER = path.join(TOOLS, 'render');
const PYTHON = path.join(TOOLS, 'venv/bin/python');
const VALIDATE = path.join(TOOLS, 'venv/bin/kubernetes-validate');
const CHART = path.join(ROOT, 'helm/hubwire');
const KUBE_VERSIONS = ['1.30.0', '1.37.0'];

const haveTools = [RENDER, PYTHON, VALIDATE].every((f) => fs.existsSync(f));
// In CI the tools must be there (.ci/run builds them): a missing one fails.
const skip = !haveTools && process.env.CI !== 'true' && 'run scripts/deploy-tools.sh first (Go, sprig, kubernetes-validate)';

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', cwd: ROOT, timeout: 120_000, ...opts });
}

function render(args) {
  const r = run(RENDER, [...args, CHART]);
  return { ...r, docs: r.status === 0 ? r.stdout.split(/^---\n/m).filter((d) => d.trim()) : [] };
}

/** kubernetes-validate --strict on each document, for each version; returns failures. */
function validate(docs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-chart-'));
  const files = docs.map((d, i) => {
    const f = path.join(dir, `${i}.yaml`);
    fs.writeFileSync(f, d);
    return f;
  });
  const out = [];
  for (const version of KUBE_VERSIONS) {
    const r = run(VALIDATE, ['--strict', '-k', version, ...files]);
    out.push({ version, status: r.status, output: r.stdout + r.stderr });
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}

const kinds = (docs) => docs.map((d) => /^kind: (\S+)/m.exec(d)?.[1]).sort();

const CASES = [
  { name: 'default values', args: [], values: '-', kinds: ['Deployment', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount'] },
  {
    name: 'ci/cluster-values.yaml with the pet-services preset',
    args: ['-f', 'helm/hubwire/ci/cluster-values.yaml', '--set-file', 'config=examples/pet-services/hubwire.toml', '--name', 'prod', '--namespace', 'chat'],
    values: 'helm/hubwire/ci/cluster-values.yaml',
    kinds: ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount', 'ServiceMonitor'],
  },
];
// The dashboard ConfigMap is rendered once the chart carries the dashboard.
if (fs.existsSync(path.join(CHART, 'dashboards/hubwire.json'))) CASES[1].kinds = [...CASES[1].kinds, 'ConfigMap'].sort();

describe('deployment files (no Helm, no Docker engine)', { skip }, () => {
  for (const c of CASES) {
    test(`chart: ${c.name} renders, validates against the Kubernetes schemas and its references hold`, () => {
      const r = render(c.args);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(kinds(r.docs), c.kinds);
      for (const v of validate(r.docs)) {
        assert.equal(v.status, 0, `kubernetes-validate ${v.version}:\n${v.output}`);
        // Every manifest got a schema, except the ServiceMonitor (a CRD: deploy/check.py checks it).
        const passed = (v.output.match(/ passed for resource /g) ?? []).length;
        assert.equal(passed, r.docs.length - kinds(r.docs).filter((k) => k === 'ServiceMonitor').length, v.output);
      }
      const file = path.join(os.tmpdir(), `hubwire-chart-${process.pid}.yaml`);
      fs.writeFileSync(file, r.stdout);
      const checked = run(PYTHON, ['deploy/check.py', 'chart', c.values, file]);
      fs.rmSync(file);
      assert.equal(checked.status, 0, checked.stdout + checked.stderr);
      assert.match(checked.stdout, /^\d+ passed, 0 failed$/m);
    });
  }

  test('chart: the checks bite — a wrong type fails the schema, a bad value fails the render, a broken selector fails check.py', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-chart-bad-'));
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'probes:\n  liveness:\n    periodSeconds: ten\n');
    const typed = render(['-f', bad]);
    assert.equal(typed.status, 0, typed.stderr);
    assert.ok(validate(typed.docs).every((v) => v.status !== 0), 'periodSeconds: ten is refused by the schema');

    fs.writeFileSync(bad, 'replicaCount: 3\n');
    const refused = render(['-f', bad]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /more than one replica needs Redis/);

    const good = render([]);
    const broken = good.stdout.replace(/(kind: Service\n[\s\S]*?selector:\n\s+app\.kubernetes\.io\/name: )hubwire/, '$1other');
    assert.notEqual(broken, good.stdout);
    const file = path.join(dir, 'broken.yaml');
    fs.writeFileSync(file, broken);
    const checked = run(PYTHON, ['deploy/check.py', 'chart', '-', file]);
    assert.equal(checked.status, 1, checked.stdout);
    assert.match(checked.stdout, /FAILED: Service .*: selects the pods/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('Dockerfile, compose file and nginx files (deploy/check.py docker)', () => {
    const checked = run(PYTHON, ['deploy/check.py', 'docker']);
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, /^\d+ passed, 0 failed$/m);
  });

  test('nginx accepts deploy/nginx/hubwire.conf (nginx -t, the local cluster’s paths)', { skip: run('sh', ['-c', 'command -v nginx']).status !== 0 && 'nginx is not installed' }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-nginx-'));
    fs.writeFileSync(path.join(dir, 'hubwire-servers.conf'), 'server 127.0.0.1:1 max_fails=1 fail_timeout=5s;\n');
    fs.writeFileSync(path.join(dir, 'hubwire-listen.conf'), 'listen 127.0.0.1:1;\n');
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}\nhttp {\n  access_log off;\n  include ${ROOT}/deploy/nginx/hubwire.conf;\n}\n`,
    );
    const r = run('nginx', ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')]);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /syntax is ok/);
  });
});
