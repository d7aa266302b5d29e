// A throw-away PostgreSQL server for e2e tests: `initdb` into a temporary
// directory and `pg_ctl start` on a free port with trust authentication, the
// way test-support's PostgresServer does it. PostgreSQL refuses to run as
// root: as root, every PostgreSQL binary runs as `postgres` (or `nobody`)
// through `runuser`. The server is stopped (`pg_ctl stop -m immediate`) by
// `stop()` and when the test file's process exits; `pause()` and `resume()`
// stop and start the same server (port, data directory) for outage tests.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePort } from './harness.mjs';

/** The newest /usr/lib/postgresql/<v>/bin with an initdb, else the PATH. */
function binDir() {
  const root = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = fs
      .readdirSync(root)
      .filter((v) => /^\d+$/.test(v) && fs.existsSync(path.join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(a) - Number(b));
  } catch {
    /* not installed there */
  }
  return versions.length ? path.join(root, versions.at(-1), 'bin') : '';
}

/** The user to run PostgreSQL as when we are root. */
function runAs() {
  if (process.getuid?.() !== 0) return null;
  return spawnSync('id', ['postgres']).status === 0 ? 'postgres' : 'nobody';
}

const live = new Set();
process.on('exit', () => {
  for (const server of live) server.stop();
});

/** One PostgreSQL cluster of its own. */
export class PostgresServer {
  constructor({ port, dir }) {
    this.port = port;
    this.dir = dir;
    this.bin = binDir();
    this.user = runAs();
  }

  /** postgres://postgres@127.0.0.1:PORT/postgres */
  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get logFile() {
    return path.join(this.dir, 'postgres.log');
  }

  run(program, args) {
    const binary = this.bin ? path.join(this.bin, program) : program;
    const [command, argv] = this.user ? ['runuser', ['-u', this.user, '--', binary, ...args]] : [binary, args];
    return spawnSync(command, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  start() {
    if (this.user) spawnSync('chown', ['-R', this.user, this.dir]);
    const data = path.join(this.dir, 'data');
    const init = this.run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stdout}\n${init.stderr}`);
    live.add(this);
    this.resume();
  }

  /** Stops the server (`pg_ctl stop -m immediate`), keeping its data directory for `resume()`. */
  pause() {
    const stopped = this.run('pg_ctl', ['-D', path.join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    if (stopped.status !== 0) throw new Error(`postgres did not stop: ${stopped.stdout}\n${stopped.stderr}`);
  }

  /** Starts the server (again) on the same port and data directory. */
  resume() {
    const data = path.join(this.dir, 'data');
    const options = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.dir} -c max_connections=200`;
    const started = this.run('pg_ctl', ['-D', data, '-l', this.logFile, '-o', options, '-w', '-t', '30', 'start']);
    if (started.status !== 0) {
      const log = fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
      this.stop();
      throw new Error(`postgres did not start: ${started.stderr}\n${log}`);
    }
  }

  stop() {
    if (!live.has(this)) return;
    live.delete(this);
    this.run('pg_ctl', ['-D', path.join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    if (process.env.HUBWIRE_E2E_KEEP_DATA !== '1') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a PostgreSQL server on a free port in a fresh temporary directory. */
export async function startPostgres() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubwire-e2e-pg-'));
  fs.chmodSync(dir, 0o755);
  const server = new PostgresServer({ port: await freePort(), dir });
  server.start();
  return server;
}
