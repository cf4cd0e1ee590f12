import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startOnFreePorts } from './ports.js';
import { removeOnExit, spawnManaged, type ManagedProcess } from './proc.js';

export interface RedisOptions {
  /** Working directory (created if missing). Default: a fresh temp dir, removed by stop(). */
  dir?: string;
  /** Port on 127.0.0.1. Default: a free port (retried on EADDRINUSE). */
  port?: number;
  /** stdout/stderr go here (appended). Default: kept in memory (last lines). */
  logFile?: string;
  /** e.g. "256mb". Default: no limit. */
  maxmemory?: string;
  /** redis-server binary. Default: $PARLEY_REDIS_BIN or "redis-server" on PATH. */
  bin?: string;
  /** Extra `--name value` pairs, e.g. { 'maxmemory-policy': 'allkeys-lru' }. */
  settings?: Record<string, string | number>;
  /** Readiness timeout (default 20 s). */
  timeoutMs?: number;
  /**
   * ACL users, one rule list each (`default off`, `parley on #<sha256> ~p:* ...`): written to
   * `<dir>/users.acl` (mode 0600) and loaded with `--aclfile`, so no password is on the command
   * line. Without it Redis has its open `default` user.
   */
  aclUsers?: string[];
  /** Who the readiness check logs in as (needed once `default` is off). */
  auth?: RedisAuth;
}

export interface RedisAuth {
  username: string;
  password: string;
}

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string;
  host: '127.0.0.1';
  port: number;
  dir: string;
  pid: number;
  logFile: string | undefined;
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after 10 s. Idempotent; never rejects. */
  stop(): Promise<void>;
}

/**
 * Starts redis-server with its configuration on the command line: loopback only, no persistence
 * unless `settings` ask for it (`appendonly yes`), ACL users from a file when given, and a large
 * pub/sub output buffer limit so that bursting subscribers are not disconnected.
 */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisHandle> {
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'parley-redis-')));
  const forget = ownsDir ? removeOnExit(dir) : () => {};
  // The append-only file holds nicks, channels and users' addresses: for the owner only.
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const bin = opts.bin ?? process.env.PARLEY_REDIS_BIN ?? 'redis-server';
  let aclFile: string | undefined;
  if (opts.aclUsers !== undefined) {
    aclFile = path.join(dir, 'users.acl');
    const tmp = `${aclFile}.tmp`;
    await fs.writeFile(tmp, opts.aclUsers.map((u) => `user ${u}\n`).join(''), { mode: 0o600 });
    await fs.rename(tmp, aclFile);
  }

  try {
    const { proc, ports } = await startOnFreePorts({
      ports: [opts.port],
      spawn: ([port]) => {
        const args = [
          '--port', String(port),
          '--bind', '127.0.0.1',
          '--dir', dir,
          '--save', '',
          '--appendonly', 'no',
          '--protected-mode', 'no',
          '--daemonize', 'no',
          '--logfile', '',
          '--client-output-buffer-limit', 'pubsub 256mb 64mb 60',
          ...(aclFile !== undefined ? ['--aclfile', aclFile] : []),
        ];
        if (opts.maxmemory !== undefined) args.push('--maxmemory', opts.maxmemory);
        for (const [k, v] of Object.entries(opts.settings ?? {})) args.push(`--${k}`, String(v));
        return spawnManaged({
          name: 'redis',
          command: bin,
          args,
          cwd: dir,
          ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
        });
      },
      ready: (proc, [port]) => redisServesPid(port!, proc.pid, opts.auth),
      timeoutMs: opts.timeoutMs ?? 20_000,
      stop: (proc) => proc.stop('SIGKILL'),
    });
    return makeHandle(proc, ports[0]!, dir, ownsDir, forget);
  } catch (err) {
    if (ownsDir) await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
    forget();
    throw err;
  }
}

function makeHandle(
  proc: ManagedProcess,
  port: number,
  dir: string,
  ownsDir: boolean,
  forget: () => void,
): RedisHandle {
  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    dir,
    pid: proc.pid,
    logFile: proc.logFile,
    logTail: (lines) => proc.logTail(lines),
    stop() {
      stopping ??= (async () => {
        await proc.stop('SIGTERM', 10_000);
        if (ownsDir) await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
        forget();
      })();
      return stopping;
    },
  };
}

/** Sends PING over a raw socket; true if the answer is +PONG. */
export async function redisPing(port: number, host = '127.0.0.1', timeoutMs = 2_000, auth?: RedisAuth): Promise<boolean> {
  const reply = await redisCommand(port, ['PING'], { host, timeoutMs, ...(auth ? { auth } : {}) });
  return reply?.startsWith('+PONG') ?? false;
}

/** `INFO server` says process_id is `pid` (so it is not another server on that port). */
async function redisServesPid(port: number, pid: number, auth: RedisAuth | undefined): Promise<boolean> {
  const info = await redisCommand(port, ['INFO', 'server'], { timeoutMs: 2_000, ...(auth ? { auth } : {}) });
  return new RegExp(`\\bprocess_id:${pid}\\r?\\n`).test(info ?? '');
}

/** A RESP array: binary-safe, so a password is sent as it is. */
function resp(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** Length of the first complete reply (simple, error, integer or bulk string) in `buf`, or -1. */
function replyLength(buf: Buffer): number {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return -1;
  if (buf[0] !== 0x24 /* $ */) return eol + 2;
  const len = Number(buf.subarray(1, eol).toString());
  if (len < 0) return eol + 2;
  const total = eol + 2 + len + 2;
  return buf.length >= total ? total : -1;
}

/**
 * Sends one command (after `AUTH user password` when `auth` is given) over a fresh connection and
 * resolves to the complete reply text (simple, error, integer or bulk string), or undefined on a
 * connection error or timeout. A refused AUTH resolves to its error reply (`-WRONGPASS ...`).
 */
export function redisCommand(port: number, command: readonly string[], o: { host?: string; timeoutMs?: number; auth?: RedisAuth } = {}): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: o.host ?? '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let authPending = o.auth !== undefined;
    const done = (reply: string | undefined): void => {
      sock.destroy();
      resolve(reply);
    };
    sock.setTimeout(o.timeoutMs ?? 2_000, () => done(undefined));
    sock.once('error', () => done(undefined));
    sock.once('connect', () => {
      const auth = o.auth ? resp(['AUTH', o.auth.username, o.auth.password]) : '';
      sock.write(auth + resp(command));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const n = replyLength(buf);
        if (n < 0) return;
        const reply = buf.subarray(0, n).toString('utf8');
        buf = buf.subarray(n);
        if (!authPending) return done(reply);
        authPending = false;
        if (reply.startsWith('-')) return done(reply);
      }
    });
    sock.once('end', () => done(undefined));
  });
}

/** SHA-256 of a password as ACL rules take it (`#<hex>`), so the ACL file holds no password. */
export function aclPasswordHash(password: string): string {
  return crypto.createHash('sha256').update(password).digest('hex');
}

/**
 * The lab's ACL users: `default` off; `admin` (the agent and `parley status`) may do anything;
 * `parley` (instances) only what instances do, on their own keys (`<prefix>:*`) and bus topics
 * (`<prefix>:t:*`): reads and writes of strings, hashes and sets, transactions, scripts run by
 * EVAL/EVALSHA (a script's commands are checked against the same rules) and loaded with SCRIPT
 * LOAD, PUBLISH/SUBSCRIBE, and the connection commands ioredis sends (AUTH, HELLO, CLIENT SETNAME,
 * the INFO of its ready check). Nothing `@admin` or `@dangerous` (CONFIG, FLUSHALL, KEYS, DEBUG,
 * MONITOR, CLIENT KILL/LIST, SCRIPT FLUSH/KILL, FUNCTION, MODULE, SHUTDOWN, ACL changes...).
 */
export function labAclUsers(prefix: string, pw: { admin: string; parley: string }): string[] {
  return [
    'default off resetkeys resetchannels -@all',
    `admin on #${aclPasswordHash(pw.admin)} ~* &* +@all`,
    [
      `parley on #${aclPasswordHash(pw.parley)} resetkeys ~${prefix}:* resetchannels &${prefix}:t:*`,
      '-@all +@read +@write +@transaction +@pubsub +@connection +@fast -@dangerous -@admin -@scripting',
      '+eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists +info +client|setname +client|getname +client|id',
    ].join(' '),
  ];
}
