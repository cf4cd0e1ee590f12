import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startOnFreePorts } from './ports.js';
import { removeOnExit, spawnManaged, type ManagedProcess } from './proc.js';

const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Locating the binaries and the user to run them as
// ---------------------------------------------------------------------------------------------

export interface PgBinaries {
  binDir: string;
  initdb: string;
  postgres: string;
  /** Major version, e.g. "15". */
  version: string;
}

let cachedBinaries: PgBinaries | undefined;

/**
 * Finds the PostgreSQL server binaries: $PARLEY_PG_BIN (a bin dir), else
 * /usr/lib/postgresql/<highest version>/bin, else initdb on PATH.
 */
export function pgBinaries(): PgBinaries {
  if (cachedBinaries) return cachedBinaries;
  const candidates: string[] = [];
  const fromEnv = process.env.PARLEY_PG_BIN;
  if (fromEnv) candidates.push(fromEnv);
  const root = '/usr/lib/postgresql';
  try {
    const versions = fsSync
      .readdirSync(root)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(path.join(root, v, 'bin'));
  } catch {
    // no Debian layout
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir) candidates.push(dir);

  for (const binDir of candidates) {
    const initdb = path.join(binDir, 'initdb');
    const postgres = path.join(binDir, 'postgres');
    if (isExecutable(initdb) && isExecutable(postgres)) {
      cachedBinaries = { binDir, initdb, postgres, version: majorVersion(postgres, binDir) };
      return cachedBinaries;
    }
  }
  throw new Error(
    'PostgreSQL server binaries (initdb, postgres) not found: looked in $PARLEY_PG_BIN, ' +
      '/usr/lib/postgresql/<version>/bin and PATH. Install them (Debian/Ubuntu: ' +
      'apt-get install postgresql) or run scripts/setup.',
  );
}

function isExecutable(file: string): boolean {
  try {
    fsSync.accessSync(file, fsSync.constants.X_OK);
    return fsSync.statSync(file).isFile();
  } catch {
    return false;
  }
}

function majorVersion(postgresBin: string, binDir: string): string {
  const m = /\/postgresql\/(\d+)\/bin\/?$/.exec(binDir);
  if (m?.[1]) return m[1];
  const out = execFileSync(postgresBin, ['-V'], { encoding: 'utf8' });
  const v = /(\d+)(?:\.\d+)?/.exec(out);
  if (!v?.[1]) throw new Error(`cannot read PostgreSQL version from "${out.trim()}"`);
  return v[1];
}

export interface RunAs {
  uid: number;
  gid: number;
}

let cachedRunAs: RunAs | null | undefined;

/**
 * initdb and postgres refuse to run as root. As root, returns the uid/gid of the `postgres`
 * system user (or $PARLEY_PG_USER); otherwise undefined (run as the current user).
 */
export function pgRunAs(): RunAs | undefined {
  if (cachedRunAs !== undefined) return cachedRunAs ?? undefined;
  if (process.getuid?.() !== 0) {
    cachedRunAs = null;
    return undefined;
  }
  const user = process.env.PARLEY_PG_USER ?? 'postgres';
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('bad id output');
    cachedRunAs = { uid, gid };
    return cachedRunAs;
  } catch {
    throw new Error(
      `running as root, but there is no "${user}" system user to run PostgreSQL as ` +
        `(PostgreSQL refuses to run as root). Install the postgresql package or set PARLEY_PG_USER.`,
    );
  }
}

/** As root, chowns `p` to the PostgreSQL user (no-op otherwise). */
export async function chownForPostgres(p: string, recursive = false): Promise<void> {
  const who = pgRunAs();
  if (!who) return;
  if (recursive) await execFileP('chown', ['-R', `${who.uid}:${who.gid}`, p]);
  else await fs.chown(p, who.uid, who.gid);
}

/** Checks the PostgreSQL user can reach `dir`; chowns `dir` itself if that is what is missing. */
async function ensureTraversable(dir: string): Promise<void> {
  const who = pgRunAs();
  if (!who) return;
  const abs = path.resolve(dir);
  const st = await fs.stat(abs);
  if (!canTraverse(st, who)) await fs.chown(abs, who.uid, who.gid);
  for (let p = path.dirname(abs); ; p = path.dirname(p)) {
    const s = await fs.stat(p);
    if (!canTraverse(s, who)) {
      throw new Error(
        `the PostgreSQL user (uid ${who.uid}) cannot reach ${abs}: ${p} is not searchable by it ` +
          `(mode ${(s.mode & 0o777).toString(8)}, owner ${s.uid}). Put PostgreSQL data elsewhere ` +
          `or make ${p} searchable.`,
      );
    }
    if (p === path.dirname(p)) break;
  }
}

function canTraverse(st: fsSync.Stats, who: RunAs): boolean {
  if (st.uid === who.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === who.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/** The environment of PostgreSQL programs: ours without PG* variables, in the C locale. */
export function pgChildEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

export interface InitdbOptions {
  /** WAL segment size in MB (initdb --wal-segsize), e.g. 1 for many tiny clusters. */
  walSegSizeMb?: number;
}

const templateJobs = new Map<string, Promise<string>>();

/** True if `dir` holds an initdb'd PostgreSQL data directory. */
export function isPgDataDir(dir: string): boolean {
  return (
    fsSync.existsSync(path.join(dir, 'PG_VERSION')) &&
    fsSync.existsSync(path.join(dir, 'global', 'pg_control'))
  );
}

/**
 * Makes `dir` an initdb'd data directory (`--no-sync -A trust -U postgres -E UTF8 --locale=C`)
 * unless it already is one. Safe to call concurrently, also from several processes: initdb runs
 * in a temp dir that is renamed into place. Resolves to `dir`.
 */
export function initPostgresTemplate(dir: string, opts: InitdbOptions = {}): Promise<string> {
  const abs = path.resolve(dir);
  let job = templateJobs.get(abs);
  if (!job) {
    job = makeTemplate(abs, opts).finally(() => templateJobs.delete(abs));
    templateJobs.set(abs, job);
  }
  return job;
}

async function makeTemplate(dir: string, opts: InitdbOptions): Promise<string> {
  const bins = pgBinaries();
  if (isPgDataDir(dir)) {
    await checkVersion(dir, bins);
    return dir;
  }
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${crypto.randomBytes(4).toString('hex')}`;
  try {
    await runInitdb(tmp, opts);
    try {
      await fs.rename(tmp, dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      if (isPgDataDir(dir)) return dir; // someone else made it meanwhile
      await fs.rmdir(dir); // an empty dir was in the way
      await fs.rename(tmp, dir);
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
  }
  return dir;
}

/** Runs initdb into `dataDir` (which must not exist, or be empty). */
async function runInitdb(dataDir: string, opts: InitdbOptions): Promise<void> {
  const bins = pgBinaries();
  const who = pgRunAs();
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await fs.chmod(dataDir, 0o700);
  if (who) await fs.chown(dataDir, who.uid, who.gid);
  await ensureTraversable(path.dirname(dataDir));
  const args = ['-D', dataDir, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C'];
  if (opts.walSegSizeMb !== undefined) args.push(`--wal-segsize=${opts.walSegSizeMb}`);
  try {
    await execFileP(bins.initdb, args, {
      cwd: '/',
      env: pgChildEnv(),
      maxBuffer: 16 * 1024 * 1024,
      ...(who ? { uid: who.uid, gid: who.gid } : {}),
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `initdb failed for ${dataDir}: ${e.message}\n--- initdb output ---\n${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
  }
}

async function checkVersion(dataDir: string, bins: PgBinaries): Promise<void> {
  const v = (await fs.readFile(path.join(dataDir, 'PG_VERSION'), 'utf8')).trim();
  if (v !== bins.version) {
    throw new Error(
      `${dataDir} was made by PostgreSQL ${v}, but the server binaries are version ${bins.version} (${bins.binDir})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Starting a cluster
// ---------------------------------------------------------------------------------------------

export interface PgOptions {
  /**
   * Data directory. If it already holds a cluster, that cluster is started as is; otherwise it is
   * created from `template` or by initdb. Default: a fresh temp dir, removed by stop().
   */
  dataDir?: string;
  /** Port on 127.0.0.1. Default: a free port (retried on EADDRINUSE). */
  port?: number;
  /** postgres's stdout/stderr go here (appended). Default: kept in memory (last lines). */
  logFile?: string;
  /** An initdb'd data dir to copy with `cp -a` instead of running initdb (about 4x faster). */
  template?: string;
  /** Server settings, merged into postgresql.auto.conf (so ALTER SYSTEM can still change them). */
  settings?: Record<string, string | number | boolean>;
  /** fsync (default true). false also turns full_page_writes off: for tests only. */
  fsync?: boolean;
  /**
   * Directory for the Unix socket (created if missing; keep the path short, sockets are limited
   * to ~100 bytes). Default: a fresh temp dir, removed by stop().
   */
  socketDir?: string;
  /** initdb options when no template is given. */
  initdb?: InitdbOptions;
  /** Readiness timeout (default 60 s). */
  timeoutMs?: number;
}

export interface PgHandle {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  host: '127.0.0.1';
  port: number;
  dataDir: string;
  /** Private directory of the Unix socket. */
  socketDir: string;
  pid: number;
  logFile: string | undefined;
  logTail(lines?: number): string;
  /** Creates a database (owner postgres) and resolves to its URL. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL. Idempotent; never rejects. */
  stop(): Promise<void>;
}

/** Small defaults for a development/test cluster; `settings` override them. */
export const DEFAULT_PG_SETTINGS: Readonly<Record<string, string | number>> = {
  shared_buffers: '32MB',
  max_connections: 100,
  wal_level: 'minimal',
  max_wal_senders: 0,
  autovacuum: 'on',
};

/**
 * Starts a PostgreSQL cluster by running `postgres` directly (not pg_ctl), on 127.0.0.1 and a
 * private Unix socket directory, as the postgres user when running as root. Resolves once a
 * client can connect over TCP and the server reports our data directory.
 */
export async function startPostgres(opts: PgOptions = {}): Promise<PgHandle> {
  const bins = pgBinaries();
  const who = pgRunAs();
  const cleanup: string[] = [];
  const forgets: Array<() => void> = [];
  const own = (dir: string): void => {
    cleanup.push(dir);
    forgets.push(removeOnExit(dir));
  };
  let dataDir: string;
  if (opts.dataDir === undefined) {
    const base = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-pg-'));
    own(base);
    if (who) await fs.chown(base, who.uid, who.gid);
    dataDir = path.join(base, 'data');
  } else {
    dataDir = path.resolve(opts.dataDir);
  }

  try {
    await fs.mkdir(path.dirname(dataDir), { recursive: true });
    await ensureTraversable(path.dirname(dataDir));
    if (isPgDataDir(dataDir)) {
      await checkVersion(dataDir, bins);
    } else if (opts.template !== undefined) {
      await copyTemplate(opts.template, dataDir, bins);
    } else {
      await runInitdb(dataDir, opts.initdb ?? {});
    }

    const settings: Record<string, string | number | boolean> = { ...DEFAULT_PG_SETTINGS };
    if (opts.fsync === false) {
      settings.fsync = 'off';
      settings.full_page_writes = 'off';
    } else {
      settings.fsync = 'on';
    }
    Object.assign(settings, opts.settings ?? {});
    await mergeAutoConf(dataDir, settings);

    let socketDir: string;
    if (opts.socketDir === undefined) {
      socketDir = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-pgsock-'));
      own(socketDir);
    } else {
      socketDir = path.resolve(opts.socketDir);
      await fs.mkdir(socketDir, { recursive: true, mode: 0o700 });
      await ensureTraversable(path.dirname(socketDir));
    }
    if (who) await fs.chown(socketDir, who.uid, who.gid);

    const { proc, ports } = await startOnFreePorts({
      ports: [opts.port],
      spawn: ([port]) =>
        spawnManaged({
          name: 'postgres',
          command: bins.postgres,
          args: ['-D', dataDir, '-p', String(port), '-k', socketDir, '-c', 'listen_addresses=127.0.0.1'],
          cwd: dataDir,
          env: pgChildEnv(),
          // Immediate shutdown if we die: unlike SIGKILL it removes the /dev/shm segments.
          emergencySignal: 'SIGQUIT',
          ...(who ? { uid: who.uid, gid: who.gid } : {}),
          ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
        }),
      ready: (_proc, [port]) => pgServesDataDir(port!, dataDir),
      timeoutMs: opts.timeoutMs ?? 60_000,
      stop: (proc) => proc.stop(['SIGQUIT'], 5_000),
    });
    const ownedDirs = [...cleanup];
    const forgetAll = [...forgets];
    cleanup.length = 0; // the handle owns them now
    forgets.length = 0;
    return makeHandle(proc, { port: ports[0]!, dataDir, socketDir, ownedDirs, forgetAll });
  } catch (err) {
    for (const d of cleanup) await fs.rm(d, { recursive: true, force: true }).catch(() => {});
    for (const f of forgets) f();
    throw err;
  }
}

async function copyTemplate(template: string, dataDir: string, bins: PgBinaries): Promise<void> {
  const src = path.resolve(template);
  if (!isPgDataDir(src)) throw new Error(`PostgreSQL template ${src} is not an initdb'd data directory`);
  await checkVersion(src, bins);
  try {
    await fs.rmdir(dataDir); // cp -a into an existing dir would nest the copy
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      throw new Error(`cannot create a PostgreSQL cluster in ${dataDir}: it exists and is not empty`);
    }
  }
  try {
    await execFileP('cp', ['-a', src, dataDir]);
  } catch (err) {
    throw new Error(`copying PostgreSQL template ${src} to ${dataDir} failed: ${(err as Error).message}`);
  }
  // cp -a keeps owner and mode; make sure they are what postgres needs even if the template was
  // made by someone else.
  const who = pgRunAs();
  const st = await fs.stat(dataDir);
  if (who && st.uid !== who.uid) await chownForPostgres(dataDir, true);
  if ((st.mode & 0o077) !== 0 && (st.mode & 0o777) !== 0o750) await fs.chmod(dataDir, 0o700);
}

function confValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Replaces or adds `settings` in postgresql.auto.conf, keeping other lines. */
async function mergeAutoConf(dataDir: string, settings: Record<string, string | number | boolean>): Promise<void> {
  const file = path.join(dataDir, 'postgresql.auto.conf');
  let lines: string[] = [];
  try {
    lines = (await fs.readFile(file, 'utf8')).split('\n');
  } catch {
    lines = ['# Do not edit this file manually!', '# It will be overwritten by the ALTER SYSTEM command.'];
  }
  const keys = new Set(Object.keys(settings).map((k) => k.toLowerCase()));
  const kept = lines.filter((line) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?/.exec(line);
    return !(m?.[1] && keys.has(m[1].toLowerCase()));
  });
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  for (const [k, v] of Object.entries(settings)) {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(k)) throw new Error(`invalid PostgreSQL setting name "${k}"`);
    kept.push(`${k} = ${confValue(v)}`);
  }
  await fs.writeFile(file, kept.join('\n') + '\n');
  await chownForPostgres(file);
}

/**
 * Connects and checks `data_directory` is ours (so it is not another server that already held
 * the port).
 */
async function pgServesDataDir(port: number, dataDir: string): Promise<boolean> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 2_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    const res = await client.query<{ data_directory: string }>('show data_directory');
    const dir = res.rows[0]?.data_directory;
    return dir !== undefined && path.resolve(dir) === path.resolve(dataDir);
  } finally {
    await client.end().catch(() => {});
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function makeHandle(
  proc: ManagedProcess,
  h: { port: number; dataDir: string; socketDir: string; ownedDirs: string[]; forgetAll: Array<() => void> },
): PgHandle {
  const base = `postgres://postgres@127.0.0.1:${h.port}`;
  let stopping: Promise<void> | undefined;
  return {
    url: `${base}/postgres`,
    host: '127.0.0.1',
    port: h.port,
    dataDir: h.dataDir,
    socketDir: h.socketDir,
    pid: proc.pid,
    logFile: proc.logFile,
    logTail: (lines) => proc.logTail(lines),
    async createDatabase(name: string): Promise<string> {
      if (name.length === 0 || Buffer.byteLength(name) > 63) {
        throw new Error(`invalid database name "${name}" (1 to 63 bytes)`);
      }
      const client = new pg.Client({ host: '127.0.0.1', port: h.port, user: 'postgres', database: 'postgres' });
      client.on('error', () => {});
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await client.end().catch(() => {});
      }
      return `${base}/${encodeURIComponent(name)}`;
    },
    stop() {
      stopping ??= (async () => {
        // SIGINT = fast shutdown; SIGQUIT = immediate shutdown; then SIGKILL.
        await proc.stop(['SIGINT', 'SIGQUIT'], 10_000);
        for (const d of h.ownedDirs) await fs.rm(d, { recursive: true, force: true }).catch(() => {});
        for (const f of h.forgetAll) f();
      })();
      return stopping;
    },
  };
}
