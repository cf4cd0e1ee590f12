/**
 * Test harness for integration and end-to-end tests: starts real etcd, Redis and PostgreSQL on
 * free loopback ports, in parallel, in one fresh temp dir, and tears them down again.
 *
 *   const svc = await startServices();
 *   after(() => svc.stop());
 *
 * Environment:
 *   PARLEY_KEEP_TEST_DIR=1   keep the temp dir (logs, data) after stop()
 *   PARLEY_PG_TEMPLATE=dir   initdb'd template to copy (default: a cache in the OS temp dir)
 *   PARLEY_PG_TEMPLATE=off   run initdb for every cluster instead
 *   PARLEY_TEST_TMPDIR=dir   parent of the temp dirs (default: os.tmpdir()). /dev/shm makes
 *                            PostgreSQL start several times faster where file creation is slow
 *
 * Fault injection: `svc.kill('redis')` (SIGKILL, as in a crash) and `svc.restart('redis')` (the
 * same port and data dir, so clients reconnect to the same URL), the same for etcd; `freeze(pid)`
 * and `thaw(pid)` for a hung process.
 */
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  chownForPostgres,
  initPostgresTemplate,
  pgBinaries,
  removeOnExit,
  spawnManaged,
  startEtcd,
  startPostgres,
  startRedis,
  type EtcdHandle,
  type PgHandle,
  type RedisHandle,
} from '@parley/agent';

export interface ServicesOptions {
  etcd?: boolean;
  redis?: boolean;
  postgres?: boolean;
  /** PostgreSQL fsync (default false: tests do not need durability across OS crashes). */
  pgFsync?: boolean;
  /** Extra PostgreSQL settings. */
  pgSettings?: Record<string, string | number | boolean>;
  /**
   * Extra redis-server settings, e.g. `{ appendonly: 'yes', appendfsync: 'always' }` so that a
   * Redis killed and restarted still holds what it acknowledged (as the lab's Redis does).
   */
  redisSettings?: Record<string, string | number>;
}

/** The services that fault tests kill and restart. */
export type Restartable = 'etcd' | 'redis';

export interface Services {
  etcd?: EtcdHandle;
  redis?: RedisHandle;
  postgres?: PgHandle;
  /** The temp dir holding all data and the logs (etcd.log, redis.log, postgres.log). */
  dir: string;
  /** Stops everything and removes `dir`. Idempotent; never throws. */
  stop(): Promise<void>;
  /** SIGKILL (what a crash looks like) and resolves once the process is gone; its data dir stays. */
  kill(name: Restartable): Promise<void>;
  /**
   * Starts a killed or stopped service again on the same port(s) with the same data dir and log
   * file; resolves once it serves. `svc.etcd` / `svc.redis` then refer to the new process.
   */
  restart(name: Restartable): Promise<void>;
  /** Restarts whatever `kill` took down and nothing restarted yet (for an after() hook). */
  revive(): Promise<void>;
}

type Name = 'etcd' | 'redis' | 'postgres';

/** Starts the requested services (default: all three) in parallel. */
export async function startServices(opts: ServicesOptions = {}): Promise<Services> {
  const want = {
    etcd: opts.etcd ?? true,
    redis: opts.redis ?? true,
    postgres: opts.postgres ?? true,
  };
  const dir = await fs.mkdtemp(path.join(testTmpRoot(), 'parley-test-'));
  // If the test process dies without stop(), the children are killed and this dir removed.
  const forget = process.env.PARLEY_KEEP_TEST_DIR ? () => {} : removeOnExit(dir);
  const logOf = (name: Name): string => path.join(dir, `${name}.log`);

  const jobs: Array<{ name: Name; job: Promise<EtcdHandle | RedisHandle | PgHandle> }> = [];
  try {
    if (want.postgres) await chownForPostgres(dir);
  } catch (err) {
    await removeDir(dir);
    forget();
    throw err;
  }
  if (want.etcd) {
    jobs.push({ name: 'etcd', job: startEtcd({ dataDir: path.join(dir, 'etcd'), logFile: logOf('etcd') }) });
  }
  if (want.redis) {
    const settings = opts.redisSettings;
    jobs.push({ name: 'redis', job: startRedis({ dir: path.join(dir, 'redis'), logFile: logOf('redis'), ...(settings ? { settings } : {}) }) });
  }
  if (want.postgres) {
    const job = (async () => {
      const template = await pgTemplate();
      return startPostgres({
        dataDir: path.join(dir, 'pg'),
        socketDir: path.join(dir, 'sock'),
        logFile: logOf('postgres'),
        fsync: opts.pgFsync ?? false,
        ...(template !== undefined ? { template } : {}),
        ...(opts.pgSettings !== undefined ? { settings: opts.pgSettings } : {}),
      });
    })();
    jobs.push({ name: 'postgres', job });
  }

  const results = await Promise.allSettled(jobs.map((j) => j.job));
  const down = new Set<Restartable>();
  const services: Services = {
    dir,
    stop: () => Promise.resolve(),
    kill: async (name) => {
      down.add(name);
      await killService(services, name);
    },
    restart: async (name) => {
      await restartService(services, name, opts, logOf(name));
      down.delete(name);
    },
    revive: async () => {
      for (const name of [...down]) await services.restart(name);
    },
  };
  const failures: string[] = [];
  results.forEach((r, i) => {
    const name = jobs[i]!.name;
    if (r.status === 'fulfilled') {
      (services as unknown as Record<Name, unknown>)[name] = r.value;
    } else {
      failures.push(describeFailure(name, r.reason, logOf(name)));
    }
  });

  let stopping: Promise<void> | undefined;
  services.stop = () => {
    stopping ??= (async () => {
      const handles = [services.etcd, services.redis, services.postgres].filter((h) => h !== undefined);
      await Promise.allSettled(handles.map((h) => h.stop()));
      if (process.env.PARLEY_KEEP_TEST_DIR) {
        console.error(`[harness] kept ${dir}`);
      } else {
        await removeDir(dir);
      }
      forget();
    })().catch(() => {});
    return stopping;
  };

  if (failures.length > 0) {
    const keepNote = process.env.PARLEY_KEEP_TEST_DIR ? ` (files kept in ${dir})` : '';
    await services.stop();
    throw new Error(`startServices failed${keepNote}:\n${failures.join('\n\n')}`);
  }
  return services;
}

async function killService(svc: Services, name: Restartable): Promise<void> {
  const h = svc[name];
  if (!h) throw new Error(`kill: ${name} was not started`);
  try {
    process.kill(h.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  // The handle's stop() resolves once the process has exited (its data dir is ours: kept).
  await h.stop();
}

async function restartService(svc: Services, name: Restartable, opts: ServicesOptions, logFile: string): Promise<void> {
  if (name === 'redis') {
    const old = svc.redis;
    if (!old) throw new Error('restart: redis was not started');
    await old.stop();
    svc.redis = await startRedis({ dir: old.dir, port: old.port, logFile, ...(opts.redisSettings ? { settings: opts.redisSettings } : {}) });
    return;
  }
  const old = svc.etcd;
  if (!old) throw new Error('restart: etcd was not started');
  await old.stop();
  svc.etcd = await restartEtcd(old, logFile);
}

/**
 * etcd again on an existing data dir. `startEtcd` cannot do this: it names each member afresh,
 * and a member must keep the name its data dir was created with.
 */
async function restartEtcd(old: EtcdHandle, logFile: string): Promise<EtcdHandle> {
  const clientUrl = `http://127.0.0.1:${old.clientPort}`;
  const peerUrl = `http://127.0.0.1:${old.peerPort}`;
  const proc = spawnManaged({
    name: 'etcd',
    command: process.env.PARLEY_ETCD_BIN ?? 'etcd',
    args: [
      `--name=${old.name}`, `--data-dir=${old.dataDir}`,
      `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${old.name}=${peerUrl}`, `--initial-cluster-token=${old.name}`,
      '--heartbeat-interval=10', '--election-timeout=100', '--logger=zap', '--log-outputs=stderr',
    ],
    logFile,
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  await proc.waitReady(async () => {
    const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2_000) });
    const body = (await res.json()) as { health?: unknown };
    return res.ok && (body.health === 'true' || body.health === true);
  }, 30_000);
  return {
    endpoint: clientUrl,
    clientPort: old.clientPort,
    peerPort: old.peerPort,
    dataDir: old.dataDir,
    pid: proc.pid,
    name: old.name,
    logFile,
    logTail: (lines) => proc.logTail(lines),
    stop: async () => {
      await proc.stop('SIGTERM', 10_000);
    },
  };
}

/** SIGSTOP: the process hangs (connections stay open, nothing answers) until `thaw`. */
export function freeze(pid: number): void {
  process.kill(pid, 'SIGSTOP');
}

export function thaw(pid: number): void {
  process.kill(pid, 'SIGCONT');
}

function describeFailure(name: Name, reason: unknown, logFile: string): string {
  const msg = reason instanceof Error ? reason.message : String(reason);
  let text = `${name} failed to start: ${msg}`;
  if (!msg.includes('--- last log lines ---')) {
    try {
      const log = fsSync.readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n').trim();
      if (log) text += `\n--- last log lines (${logFile}) ---\n${log}\n--- end of log ---`;
    } catch {
      // no log file
    }
  }
  return text;
}

function testTmpRoot(): string {
  return process.env.PARLEY_TEST_TMPDIR || os.tmpdir();
}

async function removeDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 }).catch(() => {});
}

/**
 * A cached initdb'd template, shared across test runs (cp -a of it is ~4x faster than initdb).
 * Made atomically, so concurrent test processes are fine.
 */
async function pgTemplate(): Promise<string | undefined> {
  const env = process.env.PARLEY_PG_TEMPLATE;
  if (env === 'off' || env === '0') return undefined;
  const dir = env || path.join(os.tmpdir(), `parley-pg-template-${pgBinaries().version}-u${process.getuid?.() ?? 0}`);
  return initPostgresTemplate(dir);
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * `prefix_xxxxxxxx`: lowercase, [a-z0-9_] only, starts with a letter, at most 63 characters, so
 * it is valid as a PostgreSQL database name, a Redis key prefix, an etcd key segment or a channel
 * suffix.
 */
export function uniqueName(prefix: string): string {
  let p = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  if (!/^[a-z]/.test(p)) p = `t${p}`;
  p = p.slice(0, 50);
  const bytes = crypto.randomBytes(8);
  let suffix = '';
  for (const b of bytes) suffix += ALPHABET[b % ALPHABET.length];
  return `${p}_${suffix}`;
}
