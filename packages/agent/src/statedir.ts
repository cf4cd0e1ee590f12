/**
 * The state directory of one host's agent (`.parley` by default): data directories, logs, the host
 * file, the agent's pid and the status it publishes. Shared by the agent and the CLI, which reads
 * the status and pids to report and to clean up.
 *
 *   parley-state.json   marker: this is a Parley state directory (`clean` refuses any other dir)
 *   host.json           the agent's bootstrap (host name, prefix, etcd ports)
 *   ports.json          ports the agent picked for planned processes with port 0, reused on restart
 *   admin-token         the REST API's admin token (mode 0600), passed to every instance as a file
 *   secrets/            the backends' passwords (0700; files 0600, see secrets.ts)
 *   agent.pid           the running agent's pid
 *   status.json         the agent's status: every process with pid, state, restarts, last exit
 *   logs/<name>.log     one log per process: agent, etcd, redis, pg<N>, haproxy, <instance id>
 *   etcd/ redis/ pg/template/ pg/<N>/data/ haproxy/haproxy.cfg
 *   tls/                with `up --tls`: the lab's CA (ca.pem; its key ca-key.pem, 0600, never served)
 *                       and the instances' certificate (server.pem, server-key.pem 0600)
 *   run/                Unix sockets (PostgreSQL, HAProxy's runtime API); in /tmp if the path is long
 *
 * Nothing in it is for other local users: the directory is 0700 (0710 with the PostgreSQL user's
 * group when the agent runs as root and PostgreSQL as its own user, which must reach its data), and
 * so are its data and log directories; logs and secrets are 0600.
 */
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pgRunAs } from './postgres.js';
import { secretFile, secretsDir, type SecretName } from './secrets.js';
import type { UnitKind, UnitSnapshot, UnitState } from './supervisor.js';

export const MARKER_FILE = 'parley-state.json';
const MARKER_KIND = 'parley-state';

export interface StatePaths {
  root: string;
  marker: string;
  hostFile: string;
  portsFile: string;
  adminToken: string;
  secrets: string;
  secret(name: SecretName): string;
  pidFile: string;
  statusFile: string;
  logs: string;
  etcdData: string;
  redisDir: string;
  pgTemplate: string;
  pgData(id: number): string;
  run: string;
  pgSockets: string;
  haproxyDir: string;
  haproxyCfg: string;
  haproxySocket: string;
  /** the lab's CA and server certificate (`parley up --tls`; tls-certs.ts) */
  tlsDir: string;
  log(name: string): string;
}

/** Unix socket paths are limited to 107 bytes; PostgreSQL's lock file name is the longest we make. */
const SOCKET_ROOM = '/pg/.s.PGSQL.65535.lock'.length;

/** Where the sockets go: `<state>/run`, or a fixed per-state-dir directory in /tmp when that is too long. */
export function runDirFor(root: string): string {
  const inside = path.join(root, 'run');
  if (Buffer.byteLength(inside) + SOCKET_ROOM <= 100) return inside;
  const tag = crypto.createHash('sha1').update(root).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `parley-run-${tag}`);
}

export function statePaths(dir: string): StatePaths {
  const root = path.resolve(dir);
  const run = runDirFor(root);
  const logs = path.join(root, 'logs');
  return {
    root,
    marker: path.join(root, MARKER_FILE),
    hostFile: path.join(root, 'host.json'),
    portsFile: path.join(root, 'ports.json'),
    adminToken: path.join(root, 'admin-token'),
    secrets: secretsDir(root),
    secret: (name) => secretFile(root, name),
    pidFile: path.join(root, 'agent.pid'),
    statusFile: path.join(root, 'status.json'),
    logs,
    etcdData: path.join(root, 'etcd'),
    redisDir: path.join(root, 'redis'),
    pgTemplate: path.join(root, 'pg', 'template'),
    pgData: (id) => path.join(root, 'pg', String(id), 'data'),
    run,
    pgSockets: path.join(run, 'pg'),
    haproxyDir: path.join(root, 'haproxy'),
    haproxyCfg: path.join(root, 'haproxy', 'haproxy.cfg'),
    haproxySocket: path.join(run, 'haproxy.sock'),
    tlsDir: path.join(root, 'tls'),
    log: (name) => path.join(logs, `${name}.log`),
  };
}

export class StateDirError extends Error {}

/** What a directory is, as far as Parley is concerned. */
export type StateDirKind = 'missing' | 'empty' | 'parley' | 'legacy' | 'foreign';

/**
 * 'parley': has our marker; 'legacy': made by the single-process `parley up` of an earlier
 * release (cluster.json, etcd/ and pg0/); 'foreign': anything else that is not empty.
 */
export function stateDirKind(dir: string): StateDirKind {
  const root = path.resolve(dir);
  let entries: string[];
  try {
    entries = fsSync.readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return 'foreign';
    throw err;
  }
  if (entries.length === 0) return 'empty';
  if (entries.includes(MARKER_FILE)) {
    try {
      const m = JSON.parse(fsSync.readFileSync(path.join(root, MARKER_FILE), 'utf8')) as { kind?: unknown };
      if (m.kind === MARKER_KIND) return 'parley';
    } catch {
      // unreadable marker: not trusted
    }
    return 'foreign';
  }
  if (entries.includes('cluster.json') || (entries.includes('etcd') && entries.includes('pg0'))) return 'legacy';
  return 'foreign';
}

/** Creates the directory and its marker if needed; refuses a directory that holds something else. */
export async function initStateDir(dir: string): Promise<StatePaths> {
  const p = statePaths(dir);
  const kind = stateDirKind(p.root);
  if (kind === 'foreign') {
    throw new StateDirError(`${p.root} is not a Parley state directory (it is not empty and has no ${MARKER_FILE}); choose another --state-dir`);
  }
  if (kind === 'legacy') {
    throw new StateDirError(`${p.root} was made by the single-process \`parley up\` of an earlier release; remove it with \`parley clean --state-dir ${dir}\` or choose another --state-dir`);
  }
  await fs.mkdir(p.logs, { recursive: true, mode: 0o700 });
  await lockDir(p.root, { postgres: true });
  await lockDir(p.logs);
  if (kind !== 'parley') {
    await writeJsonAtomic(p.marker, { kind: MARKER_KIND, version: 1, createdAt: new Date().toISOString() });
  }
  return p;
}

/**
 * Makes `dir` private: mode 0700, or, with `postgres` when PostgreSQL runs as another user (the
 * agent is root), 0710 with that user's group, so that it can pass through to its data and socket
 * directories and nobody else can.
 */
export async function lockDir(dir: string, o: { postgres?: boolean } = {}): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fs.stat(dir);
  const who = o.postgres ? pgRunAs() : undefined;
  if (who && st.uid !== who.uid) {
    if (st.gid !== who.gid) await fs.chown(dir, st.uid, who.gid);
    if ((st.mode & 0o777) !== 0o710) await fs.chmod(dir, 0o710);
    return;
  }
  if ((st.mode & 0o777) !== 0o700) await fs.chmod(dir, 0o700);
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  await fs.writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await fs.rename(tmp, file);
}

/** Parsed JSON, undefined if the file does not exist; throws StateDirError if it is unreadable. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateDirError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new StateDirError(`${file} is corrupt (${(err as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Process identity: a pid plus its start time, so a reused pid is never taken for ours
// ---------------------------------------------------------------------------------------------

/** Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22), or null. */
export function procStartTicks(pid: number): number | null {
  try {
    const stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** The command line of a process (arguments joined by spaces), or null. */
export function procCmdline(pid: number): string | null {
  try {
    return fsSync.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return null;
  }
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie is not running; /proc tells (state Z).
  try {
    const stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** The process `pid` is alive and is the one that started at `startTicks` (when known). */
export function sameProcess(pid: number | null | undefined, startTicks: number | null | undefined): boolean {
  if (!pid || !pidAlive(pid)) return false;
  if (startTicks === null || startTicks === undefined) return true;
  const now = procStartTicks(pid);
  return now === null || now === startTicks;
}

// ---------------------------------------------------------------------------------------------
// The agent's published status
// ---------------------------------------------------------------------------------------------

/** A supervised process as `status.json` records it: the supervisor's view plus its start time (pid reuse check). */
export interface ProcessStatus extends UnitSnapshot {
  startTicks: number | null;
}

export interface FrontDoorMember {
  id: string;
  slot: string;
  state: 'ready' | 'maint';
  host: string;
  tcpPort: number;
  wsPort: number;
  tlsPort?: number;
  httpsPort?: number;
}

export interface AgentStatus {
  agent: {
    pid: number;
    startTicks: number | null;
    host: string;
    prefix: string;
    etcd: string[];
    startedAt: number;
    /** heartbeat: rewritten every 2 s while the agent runs */
    updatedAt: number;
    state: 'running' | 'stopping' | 'stopped';
    /** etcd mod revision of the plan being applied (null: none read yet) */
    planRevision: number | null;
    /** why the latest plan in etcd was not applied */
    planError: string | null;
  };
  processes: ProcessStatus[];
  /** `tlsIrc` and `https`: the TLS frontends (address:port), when the plan has them */
  frontDoor: { socket: string; irc: string; http: string; tlsIrc?: string; https?: string; members: FrontDoorMember[] } | null;
}

export async function readStatus(p: StatePaths): Promise<AgentStatus | undefined> {
  return (await readJsonFile(p.statusFile).catch(() => undefined)) as AgentStatus | undefined;
}

/** The agent of this state directory if it is running: pid file, same process, heartbeat. */
export async function liveAgent(p: StatePaths): Promise<{ pid: number; status: AgentStatus | undefined; fresh: boolean } | undefined> {
  const text = await fs.readFile(p.pidFile, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const pid = Number(text.trim());
  const status = await readStatus(p);
  const ticks = status?.agent.pid === pid ? status.agent.startTicks : undefined;
  if (!sameProcess(pid, ticks)) return undefined;
  // Without a status naming it, at least the command line must be an agent's (pids are reused).
  if (ticks === undefined && !/\bagent\b/.test(procCmdline(pid) ?? 'agent')) return undefined;
  const fresh = status !== undefined && status.agent.pid === pid && Date.now() - status.agent.updatedAt < 10_000;
  return { pid, status, fresh };
}
