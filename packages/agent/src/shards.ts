/**
 * The agent's PostgreSQL shards, made to be run by the thousand on one machine: a low-footprint
 * profile (after shared/MEASURED.md), one initdb'd template per state directory that already holds
 * the `parley` database, data directories made by copying it, a `postgresql.conf` generated at every
 * start from the profile and the shard's QoS class, and readiness read from `postmaster.pid` as the
 * kernel reports its changes (inotify), so a thousand starting shards cost no polling at all.
 *
 * Everything here runs as the PostgreSQL user when the agent is root (see postgres.ts).
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { withTimeout, type PostgresSettings } from '@parley/contracts';
import { chownForPostgres, isPgDataDir, pgBinaries, pgChildEnv, pgRunAs } from './postgres.js';
import { spawnManaged, type ManagedProcess } from './proc.js';

const execFileP = promisify(execFile);

/**
 * The lab shard profile: ≈5.6 MiB of RAM and 4 processes per idle cluster. Sized for the lab's
 * instances: each opens at most `poolSize` connections to a shard (a commit connection and reads),
 * so 16 leaves room for 4 instances with pools of 3, `parley status` and one superuser slot. A
 * shard's QoS class overrides any of these (`postgres` settings of the class).
 */
export const SHARD_PROFILE: Readonly<Record<string, string | number>> = {
  max_connections: 16,
  superuser_reserved_connections: 1,
  shared_buffers: '128kB',
  work_mem: '1MB',
  maintenance_work_mem: '1MB',
  temp_buffers: '800kB',
  wal_buffers: '64kB',
  wal_level: 'minimal',
  min_wal_size: '2MB',
  max_wal_size: '4MB',
  max_wal_senders: 0,
  max_replication_slots: 0,
  max_logical_replication_workers: 0,
  max_worker_processes: 0,
  max_parallel_workers: 0,
  max_parallel_workers_per_gather: 0,
  max_parallel_maintenance_workers: 0,
  max_locks_per_transaction: 16,
  autovacuum: 'off',
  huge_pages: 'off',
  dynamic_shared_memory_type: 'posix',
  fsync: 'on',
  synchronous_commit: 'on',
  track_activities: 'on',
  track_counts: 'off',
  jit: 'off',
  log_min_messages: 'warning',
  log_checkpoints: 'off',
  log_line_prefix: '%m [%p] ',
};

/**
 * Settings the agent owns whatever the profile or class says: they tie the shard to its place and
 * keep it locked (passwords stored as SCRAM verifiers, the socket for its owner only).
 */
function placeSettings(port: number, socketDir: string): Record<string, string | number> {
  return {
    port,
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    unix_socket_permissions: '0700',
    password_encryption: 'scram-sha-256',
  };
}

/** The role instances log in as: owns the shard's database, nothing else, no superuser. */
export const SHARD_ROLE = 'parley';

/**
 * The shard's pg_hba.conf, written at every start (and into the template): the superuser only
 * over the Unix socket, whose directory and file only the agent's user and PostgreSQL's can enter
 * (the agent's private socket); over TCP only the `parley` role, with its SCRAM password. Any other
 * connection finds no line and is refused.
 */
export function renderShardHba(): string {
  return [
    '# Written by the Parley agent at every start of this shard; edits here are overwritten.',
    '# TYPE  DATABASE  USER      ADDRESS        METHOD',
    'local   all       postgres                 trust',
    `host    all       ${SHARD_ROLE}    127.0.0.1/32   scram-sha-256`,
    '',
  ].join('\n');
}

/** Writes the shard's pg_hba.conf (owned by the PostgreSQL user). */
export async function writeShardHba(dataDir: string): Promise<void> {
  const file = path.join(dataDir, 'pg_hba.conf');
  const tmp = `${file}.tmp`;
  await fs.writeFile(tmp, renderShardHba(), { mode: 0o600 });
  await chownForPostgres(tmp);
  await fs.rename(tmp, file);
}

export interface ShardConfOptions {
  port: number;
  socketDir: string;
  /** the class named in the plan and its settings (undefined: the profile alone) */
  className?: string;
  classSettings?: PostgresSettings;
  /** why the class's settings are not applied (e.g. it does not exist), written as a comment */
  classNote?: string;
}

/** The text of a shard's postgresql.conf: profile, then the class's settings, then its place. */
export function renderShardConf(o: ShardConfOptions): string {
  const lines = [
    '# Written by the Parley agent at every start of this shard; edits here are overwritten.',
    '# Change the QoS class instead (its `postgres` settings apply at the next restart), or use',
    '# ALTER SYSTEM (postgresql.auto.conf is read after this file and wins).',
    '',
    '# low-footprint lab profile',
    ...Object.entries(SHARD_PROFILE).map(([k, v]) => `${k} = ${confValue(v)}`),
  ];
  if (o.className !== undefined) {
    lines.push('', `# QoS class "${o.className}"${o.classNote ? `: ${o.classNote}` : ''}`);
    for (const [k, v] of Object.entries(o.classSettings ?? {})) if (v !== undefined) lines.push(`${k} = ${confValue(v)}`);
  }
  lines.push('', '# where this shard lives');
  for (const [k, v] of Object.entries(placeSettings(o.port, o.socketDir))) lines.push(`${k} = ${confValue(v)}`);
  return `${lines.join('\n')}\n`;
}

function confValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

// ---------------------------------------------------------------------------------------------
// The template
// ---------------------------------------------------------------------------------------------

/** Marker in a template made here (and so in every copy): which databases it already holds. */
export const TEMPLATE_MARKER = 'parley-template.json';

interface TemplateMarker {
  version: 2;
  databases: string[];
  /** the role instances use, and the SHA-256 of the password it was given (absent: made before roles) */
  role?: { name: string; passwordSha256: string };
}

const sha256 = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

/** A SQL string literal (standard_conforming_strings is on). */
const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const sqlIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;

export interface ShardTemplateOptions {
  /** the password of the `parley` role (made in the template, so every copy has it) */
  rolePassword: string;
}

const templateJobs = new Map<string, Promise<string>>();

/**
 * Makes `dir` the shard template unless it is one already: initdb (`--no-sync -A trust -U postgres
 * --wal-segsize=1`), then, in single-user mode (no port, no server): the `parley` role (login,
 * SCRAM password, no other right) made, the `parley` database created and given to it, CONNECT on
 * the other databases taken from PUBLIC, `template0` dropped (7 MB a copy; nothing in Parley
 * creates databases from it), a checkpoint so that only 2 WAL segments are left, initdb's 29 kB
 * sample postgresql.conf emptied and its trust-everyone pg_hba.conf replaced by the shard's. Safe
 * to call concurrently: initdb runs in a temp dir renamed into place.
 */
export function initShardTemplate(dir: string, o: ShardTemplateOptions): Promise<string> {
  const abs = path.resolve(dir);
  let job = templateJobs.get(abs);
  if (!job) {
    job = makeTemplate(abs, o).finally(() => templateJobs.delete(abs));
    templateJobs.set(abs, job);
  }
  return job;
}

async function makeTemplate(dir: string, o: ShardTemplateOptions): Promise<string> {
  if (isPgDataDir(dir)) return dir;
  const bins = pgBinaries();
  const who = pgRunAs();
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${crypto.randomBytes(4).toString('hex')}`;
  const run = async (file: string, args: string[], input?: string): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      const child = execFile(file, args, { cwd: '/', env: pgChildEnv(), maxBuffer: 16 * 1024 * 1024, ...(who ? { uid: who.uid, gid: who.gid } : {}) }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${path.basename(file)} failed for ${tmp}: ${err.message}\n${stdout}${stderr}`));
        else resolve();
      });
      child.stdin?.end(input ?? '');
    });
  };
  try {
    await fs.mkdir(tmp, { mode: 0o700 });
    if (who) await fs.chown(tmp, who.uid, who.gid);
    await run(bins.initdb, ['-D', tmp, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--wal-segsize=1']);
    // Single-user mode reads one statement per line; each runs in its own transaction.
    // The password goes through stdin (never a command line) and is stored as a SCRAM verifier.
    const sql = [
      `CREATE ROLE ${SHARD_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ${sqlString(o.rolePassword)}`,
      `CREATE DATABASE parley OWNER ${SHARD_ROLE}`,
      'REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC',
      'REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC',
      "UPDATE pg_database SET datistemplate = false WHERE datname = 'template0'",
      'DROP DATABASE template0',
      'CHECKPOINT',
    ].join('\n');
    await run(bins.postgres, ['--single', '-D', tmp, '-c', 'fsync=off', '-c', 'min_wal_size=2MB', '-c', 'max_wal_size=4MB', '-c', 'autovacuum=off', '-c', 'password_encryption=scram-sha-256', 'template1'], `${sql}\n`);
    // A second checkpoint recycles the segments the first one left behind.
    await run(bins.postgres, ['--single', '-D', tmp, '-c', 'fsync=off', '-c', 'min_wal_size=2MB', '-c', 'max_wal_size=4MB', 'template1'], 'CHECKPOINT\n');
    await fs.writeFile(path.join(tmp, 'postgresql.conf'), '# replaced by the agent at every start\n');
    await fs.writeFile(path.join(tmp, 'pg_hba.conf'), renderShardHba(), { mode: 0o600 });
    const marker: TemplateMarker = {
      version: 2,
      databases: ['parley', 'postgres', 'template1'],
      role: { name: SHARD_ROLE, passwordSha256: sha256(o.rolePassword) },
    };
    await fs.writeFile(path.join(tmp, TEMPLATE_MARKER), `${JSON.stringify(marker)}\n`);
    await chownForPostgres(tmp, true);
    try {
      await fs.rename(tmp, dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      if (!isPgDataDir(dir)) {
        await fs.rmdir(dir);
        await fs.rename(tmp, dir);
      }
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
  }
  return dir;
}

/** Whether the data directory came from a template that already holds `database`. */
export async function templateHasDatabase(dataDir: string, database: string): Promise<boolean> {
  try {
    const m = JSON.parse(await fs.readFile(path.join(dataDir, TEMPLATE_MARKER), 'utf8')) as Partial<TemplateMarker>;
    return m.version === 2 && Array.isArray(m.databases) && m.databases.includes(database);
  } catch {
    return false;
  }
}

/**
 * Whether the data directory's `parley` role is known to have `password` (its marker says so): a
 * copy of a template made before roles existed, or made with another password, is not, and gets
 * `ensureShardRole` once it runs.
 */
export async function shardRoleCurrent(dataDir: string, password: string): Promise<boolean> {
  const m = await readMarker(dataDir);
  return m?.role?.name === SHARD_ROLE && m.role.passwordSha256 === sha256(password);
}

async function readMarker(dataDir: string): Promise<Partial<TemplateMarker> | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dataDir, TEMPLATE_MARKER), 'utf8')) as Partial<TemplateMarker>;
  } catch {
    return undefined;
  }
}

/** How the agent reaches a shard as its superuser: the private Unix socket. */
export interface ShardSocket {
  socketDir: string;
  port: number;
}

/** A superuser connection over the shard's private socket (the caller ends it). */
export async function superuserClient(s: ShardSocket, database = 'postgres'): Promise<pg.Client> {
  const client = new pg.Client({ host: s.socketDir, port: s.port, user: 'postgres', database, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * Brings a running shard's role in line (a cluster made before roles, or a password file made
 * again): the `parley` role exists with `password`, owns `databases` and every table, sequence and
 * function in their `public` schema (made by instances that logged in as the superuser), and
 * PUBLIC may not connect to the others. Then the marker says so, and later starts skip this.
 */
export async function ensureShardRole(s: ShardSocket, dataDir: string, databases: string[], password: string): Promise<void> {
  const admin = await superuserClient(s);
  try {
    await admin.query(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlString(SHARD_ROLE)}) THEN CREATE ROLE ${sqlIdent(SHARD_ROLE)} LOGIN; END IF; END $$`);
    await admin.query("SET password_encryption = 'scram-sha-256'");
    await admin.query(`ALTER ROLE ${sqlIdent(SHARD_ROLE)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ${sqlString(password)}`);
    const all = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn');
    for (const { datname } of all.rows) {
      if (!databases.includes(datname)) await admin.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${sqlIdent(datname)} FROM PUBLIC`);
    }
  } finally {
    await admin.end().catch(() => {});
  }
  for (const db of databases) {
    const c = await superuserClient(s, db);
    try {
      await c.query(`ALTER DATABASE ${sqlIdent(db)} OWNER TO ${sqlIdent(SHARD_ROLE)}`);
      await c.query(`DO $$ DECLARE r record; BEGIN
        FOR r IN SELECT format('ALTER TABLE public.%I OWNER TO ${SHARD_ROLE}', tablename) AS q FROM pg_tables WHERE schemaname = 'public' AND tableowner <> ${sqlString(SHARD_ROLE)} LOOP EXECUTE r.q; END LOOP;
        FOR r IN SELECT format('ALTER FUNCTION %s OWNER TO ${SHARD_ROLE}', p.oid::regprocedure) AS q FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' LOOP EXECUTE r.q; END LOOP;
      END $$`);
    } finally {
      await c.end().catch(() => {});
    }
  }
  const m = (await readMarker(dataDir)) ?? {};
  const marker: TemplateMarker = {
    version: 2,
    databases: Array.isArray(m.databases) ? m.databases : [],
    role: { name: SHARD_ROLE, passwordSha256: sha256(password) },
  };
  const file = path.join(dataDir, TEMPLATE_MARKER);
  await fs.writeFile(`${file}.tmp`, `${JSON.stringify(marker)}\n`);
  await chownForPostgres(`${file}.tmp`);
  await fs.rename(`${file}.tmp`, file);
}

/**
 * Makes `dataDir` a copy of the template unless it holds a cluster already; resolves to whether
 * it copied. `cp -a --reflink=auto`: a reflink (shared blocks until written) where the file system
 * can, a full copy elsewhere; never hard links, since PostgreSQL rewrites its files in place. The
 * copy goes to a temp name renamed into place, so a crash never leaves a half-copied cluster.
 */
export async function createShardDataDir(template: string, dataDir: string): Promise<boolean> {
  if (isPgDataDir(dataDir)) return false;
  await fs.mkdir(path.dirname(dataDir), { recursive: true });
  try {
    await fs.rmdir(dataDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new Error(`cannot create a PostgreSQL cluster in ${dataDir}: it exists and is not a cluster (remove it)`);
  }
  const tmp = `${dataDir}.tmp-${crypto.randomBytes(4).toString('hex')}`;
  try {
    await execFileP('cp', ['-a', '--reflink=auto', template, tmp]);
    await fs.rename(tmp, dataDir);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw new Error(`copying the shard template to ${dataDir} failed: ${(err as Error).message}`);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Running one
// ---------------------------------------------------------------------------------------------

export interface ShardProcessOptions {
  name: string;
  dataDir: string;
  port: number;
  logFile: string;
  timeoutMs: number;
  /** called once the process is spawned */
  onSpawn?: () => void;
}

/** `postmaster.pid` line 8 (PostgreSQL ≥ 10): the postmaster's state, `ready` once it accepts connections. */
const PM_STATUS_LINE = 7;
const PM_PORT_LINE = 3;

/**
 * Starts `postgres -D dataDir` (everything else comes from its postgresql.conf) and resolves once
 * its postmaster.pid says `ready` for our port: the kernel reports each rewrite of the file
 * (fs.watch on the data directory), so waiting costs nothing while it starts. Rejects, with the
 * log's last lines, when the process exits first or after `timeoutMs`; the process is then gone.
 */
export async function startShardProcess(o: ShardProcessOptions): Promise<ManagedProcess> {
  const bins = pgBinaries();
  const who = pgRunAs();
  const pidFile = path.join(o.dataDir, 'postmaster.pid');
  const watcher = fsSync.watch(o.dataDir, { persistent: false });
  let proc: ManagedProcess | undefined;
  try {
    const ready = new Promise<void>((resolve, reject) => {
      let reading = false;
      let again = false;
      const check = (): void => {
        if (reading) {
          again = true;
          return;
        }
        reading = true;
        void (async () => {
          do {
            again = false;
            const text = await fs.readFile(pidFile, 'utf8').catch(() => '');
            const lines = text.split('\n');
            if (proc && Number(lines[0]) === proc.pid && Number(lines[PM_PORT_LINE]) === o.port && lines[PM_STATUS_LINE]?.trim() === 'ready') {
              resolve();
              return;
            }
          } while (again);
        })().catch(reject).finally(() => (reading = false));
      };
      watcher.on('change', (_event, file) => {
        if (file === 'postmaster.pid') check();
      });
      watcher.on('error', reject);
      proc = spawnManaged({
        name: o.name,
        command: bins.postgres,
        args: ['-D', o.dataDir],
        cwd: o.dataDir,
        env: pgChildEnv(),
        logFile: o.logFile,
        // Immediate shutdown if the agent dies: unlike SIGKILL it removes the shared memory.
        emergencySignal: 'SIGQUIT',
        ...(who ? { uid: who.uid, gid: who.gid } : {}),
      });
      const p = proc;
      o.onSpawn?.();
      void p.exited.then(() => reject(p.failure(`exited (${describe(p)}) before it was ready`)));
      check();
    });
    await withTimeout(ready, o.timeoutMs, () => proc!.failure(`was not ready after ${o.timeoutMs} ms`));
    return proc!;
  } catch (err) {
    await proc?.stop(['SIGQUIT'], 5_000);
    throw err;
  } finally {
    watcher.close();
  }
}

function describe(p: ManagedProcess): string {
  const e = p.exitStatus;
  return e?.signal ? `signal ${e.signal}` : `code ${e?.code ?? '?'}`;
}

/** Writes the shard's postgresql.conf (owned by the PostgreSQL user). */
export async function writeShardConf(dataDir: string, text: string): Promise<void> {
  const file = path.join(dataDir, 'postgresql.conf');
  const tmp = `${file}.tmp`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await chownForPostgres(tmp);
  await fs.rename(tmp, file);
}

/**
 * A start whose postmaster.pid is left by a process that is gone (the agent and its shard were
 * killed together) is fine: PostgreSQL checks the pid itself. One still alive is another server on
 * our data directory: that is refused with its pid.
 */
export async function checkNoPostmaster(dataDir: string): Promise<void> {
  const text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return;
  }
  const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (cmd.includes('postgres')) throw new Error(`another PostgreSQL (pid ${pid}) runs on ${dataDir}; stop it first`);
}

// ---------------------------------------------------------------------------------------------

/** At most `n` jobs at a time, started in the order asked. */
export class Limiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly n: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // A finishing job hands its slot straight to the next in line, so none can jump the queue.
    if (this.active < this.n) this.active++;
    else await new Promise<void>((r) => this.queue.push(r));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}
