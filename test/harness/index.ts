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
}

export interface Services {
  etcd?: EtcdHandle;
  redis?: RedisHandle;
  postgres?: PgHandle;
  /** The temp dir holding all data and the logs (etcd.log, redis.log, postgres.log). */
  dir: string;
  /** Stops everything and removes `dir`. Idempotent; never throws. */
  stop(): Promise<void>;
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
    jobs.push({ name: 'redis', job: startRedis({ dir: path.join(dir, 'redis'), logFile: logOf('redis') }) });
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
  const services: Services = { dir, stop: () => Promise.resolve() };
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
