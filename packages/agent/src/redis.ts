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
 * Starts redis-server with its configuration on the command line: no persistence, loopback only,
 * and a large pub/sub output buffer limit so that bursting subscribers are not disconnected.
 */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisHandle> {
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'parley-redis-')));
  const forget = ownsDir ? removeOnExit(dir) : () => {};
  await fs.mkdir(dir, { recursive: true });
  const bin = opts.bin ?? process.env.PARLEY_REDIS_BIN ?? 'redis-server';

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
      ready: (proc, [port]) => redisServesPid(port!, proc.pid),
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
export async function redisPing(port: number, host = '127.0.0.1', timeoutMs = 2_000): Promise<boolean> {
  const reply = await rawCommand(port, host, 'PING', timeoutMs);
  return reply?.startsWith('+PONG') ?? false;
}

/** `INFO server` says process_id is `pid` (so it is not another server on that port). */
async function redisServesPid(port: number, pid: number): Promise<boolean> {
  const info = await rawCommand(port, '127.0.0.1', 'INFO server', 2_000);
  return new RegExp(`\\bprocess_id:${pid}\\r?\\n`).test(info ?? '');
}

/**
 * Sends one inline command and resolves to the complete reply text (simple, error or bulk
 * string), or undefined on error/timeout.
 */
function rawCommand(port: number, host: string, command: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    let buf = '';
    const done = (reply: string | undefined): void => {
      sock.destroy();
      resolve(reply);
    };
    sock.setTimeout(timeoutMs, () => done(undefined));
    sock.once('error', () => done(undefined));
    sock.once('connect', () => sock.write(`${command}\r\n`));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      if (buf[0] !== '$') return done(buf.slice(0, eol + 2));
      const len = Number(buf.slice(1, eol));
      if (len < 0) return done(buf.slice(0, eol + 2));
      const total = eol + 2 + len + 2;
      if (Buffer.byteLength(buf) >= total) done(buf);
    });
    sock.once('end', () => done(undefined));
  });
}
