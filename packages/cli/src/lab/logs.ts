/**
 * `parley logs [service] [-f]`: every process's log from the state directory, each line prefixed
 * by its service and coloured per service. JSON lines (Parley's pino, etcd's zap) are shown as
 * `time level message key=value`. `-f` follows, picking up logs of processes that appear later
 * (a new instance after `scale`).
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import { LabError, checkStateDir, sleep } from './common.js';

export interface LogsOptions {
  stateDir: string;
  follow?: boolean;
  lines: number;
  color?: boolean;
  raw?: boolean;
}

const KIND_ALIASES: Record<string, (name: string) => boolean> = {
  server: isInstance,
  servers: isInstance,
  instance: isInstance,
  instances: isInstance,
  shard: (n) => /^pg\d+$/.test(n),
  shards: (n) => /^pg\d+$/.test(n),
  pg: (n) => /^pg\d+$/.test(n),
  postgres: (n) => /^pg\d+$/.test(n),
  frontdoor: (n) => n === 'haproxy',
  'front-door': (n) => n === 'haproxy',
};

function isInstance(n: string): boolean {
  return !['agent', 'etcd', 'redis', 'haproxy'].includes(n) && !/^pg\d+$/.test(n);
}

/** agent, etcd, redis, shards, front door, then instances; numbers in natural order. */
const rank = (n: string): number => (n === 'agent' ? 0 : n === 'etcd' ? 1 : n === 'redis' ? 2 : /^pg\d+$/.test(n) ? 3 : n === 'haproxy' ? 4 : 5);
const byService = (a: string, b: string): number => rank(a) - rank(b) || a.localeCompare(b, 'en', { numeric: true });

async function services(logsDir: string): Promise<string[]> {
  const files = await fs.readdir(logsDir).catch(() => [] as string[]);
  return files.filter((f) => f.endsWith('.log')).map((f) => f.slice(0, -4)).sort(byService);
}

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92, 94];

export async function runLogs(service: string | undefined, o: LogsOptions): Promise<void> {
  const p = checkStateDir(o.stateDir);
  const all = await services(p.logs);
  let match: (n: string) => boolean;
  if (service === undefined) match = () => true;
  else if (all.includes(service)) match = (n) => n === service;
  else if (KIND_ALIASES[service]) match = KIND_ALIASES[service];
  else throw new LabError(`unknown service '${service}' (known: ${all.join(', ') || 'none yet'}; or a kind: server, shard)`);
  const chosen = all.filter(match);
  if (chosen.length === 0 && !o.follow) throw new LabError(`no ${service} logs in ${p.logs}`);

  const color = o.color ?? (process.stdout.isTTY === true && !process.env.NO_COLOR);
  const width = Math.max(7, ...all.map((s) => s.length));
  const colorOf = (name: string): number => COLORS[[...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % COLORS.length]!;
  const prefix = (name: string): string => {
    const label = `${name.padEnd(width)} |`;
    return color ? `\x1b[${colorOf(name)}m${label}\x1b[0m ` : `${label} `;
  };
  const out = (name: string, line: string): void => {
    process.stdout.write(`${prefix(name)}${o.raw ? line : pretty(line)}\n`);
  };

  const offsets = new Map<string, number>();
  for (const name of chosen) {
    const file = p.log(name);
    const { lines, size } = await tail(file, o.lines);
    for (const l of lines) out(name, l);
    offsets.set(name, size);
  }
  if (!o.follow) return;

  const partial = new Map<string, string>();
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
  });
  while (!stop) {
    for (const name of (await services(p.logs)).filter(match)) {
      const file = p.log(name);
      let size: number;
      try {
        size = fsSync.statSync(file).size;
      } catch {
        continue;
      }
      let from = offsets.get(name) ?? 0;
      if (size < from) from = 0; // truncated or replaced
      if (size === from) {
        offsets.set(name, size);
        continue;
      }
      const buf = await readRange(file, from, size);
      offsets.set(name, size);
      const text = (partial.get(name) ?? '') + buf;
      const parts = text.split('\n');
      partial.set(name, parts.pop() ?? '');
      for (const l of parts) out(name, l);
    }
    await sleep(200);
  }
}

async function tail(file: string, n: number): Promise<{ lines: string[]; size: number }> {
  let size = 0;
  try {
    size = (await fs.stat(file)).size;
  } catch {
    return { lines: [], size: 0 };
  }
  if (n <= 0) return { lines: [], size };
  // Read back far enough for n lines (or the whole file).
  let start = Math.max(0, size - Math.max(64 * 1024, n * 400));
  for (;;) {
    const text = await readRange(file, start, size);
    let lines = text.split('\n');
    if (start > 0) lines = lines.slice(1);
    if (lines[lines.length - 1] === '') lines.pop();
    if (lines.length >= n || start === 0) return { lines: lines.slice(-n), size };
    start = Math.max(0, start - 4 * (size - start));
  }
}

async function readRange(file: string, from: number, to: number): Promise<string> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    await fh.read(buf, 0, buf.length, from);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

const PINO_LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'ts', 'msg', 'pid', 'hostname', 'caller', 'v']);

/** A JSON log line as `HH:MM:SS.mmm LEVEL message key=value ...`; other lines unchanged. */
export function pretty(line: string): string {
  if (!line.startsWith('{')) return line;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const t = typeof j.time === 'number' ? new Date(j.time) : typeof j.ts === 'string' ? new Date(j.ts) : typeof j.ts === 'number' ? new Date(j.ts * 1000) : null;
  const time = t && !Number.isNaN(t.getTime()) ? t.toISOString().slice(11, 23) : '';
  const level = typeof j.level === 'number' ? (PINO_LEVELS[j.level] ?? String(j.level)) : String(j.level ?? '').toUpperCase();
  const rest = Object.entries(j)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return [time, level.padEnd(5), String(j.msg ?? ''), rest].filter((s) => s !== '').join(' ');
}

export const logServices = services;
