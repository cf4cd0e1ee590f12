/**
 * Scenario (d): many idle connections: server memory per connection. Connections are added in
 * steps by `parley load --rate 0` child processes (idle users: connected, registered, in no room);
 * after each step the resident memory (VmRSS from /proc) of the server processes, of Redis and of
 * the load processes is read, and the growth per connection is fitted over the steps.
 *
 *   node --import tsx bench/idle.ts [--max 20000] [--step 5000] [--transport tcp|ws]
 *        [--systems parley,socketio,ws] [--per-process 18000]
 *
 * Every process here has the same file-descriptor limit (`ulimit -n`; Node cannot raise it), so
 * one process holds at most --per-process connections (default: the limit less 2000): Parley and
 * Socket.IO get ceil(max / per-process) instances (at least 2), the load runs in as many child
 * processes, and connections are bound to 127.0.0.2-127.0.0.9 (--source-ips) so that the ~28k
 * ephemeral ports of one source address are no limit. The bare ws server is one process, so its
 * maximum is --per-process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { readFdLimit } from '../packages/cli/src/load/limits.js';
import { startServices, type Services } from '../test/harness/index.js';
import { benchArgs } from './lib/compare.js';
import { cores, rssBytes } from './lib/proc.js';
import { repoRoot, startParley, startSocketIo, startWsBroadcast, type System, type SystemKind } from './lib/systems.js';

const USAGE = 'usage: node --import tsx bench/idle.ts [--max 20000] [--step 5000] [--transport tcp|ws] [--systems parley,socketio,ws] [--per-process N]';
const fdSoft = readFdLimit()?.soft ?? 1024;
const a = benchArgs(process.argv.slice(2), { max: '20000', step: '5000', transport: 'tcp', systems: 'parley,socketio,ws', 'per-process': String(Math.max(100, Math.min(fdSoft - 2000, 50_000))) }, USAGE);

const MAX = Number(a.max);
const STEP = Number(a.step);
const PER = Number(a['per-process']);
const transport = a.transport === 'ws' ? 'ws' : 'tcp';
if (!Number.isInteger(MAX) || MAX < 1 || !Number.isInteger(STEP) || STEP < 1 || !Number.isInteger(PER) || PER < 1 || PER > fdSoft - 100) {
  console.error(`idle: --max, --step and --per-process must be positive integers, --per-process below the fd limit ${fdSoft}; ${USAGE}`);
  process.exit(1);
}
const kinds = a.systems!.split(',').filter(Boolean) as SystemKind[];
if (kinds.some((k) => !['parley', 'socketio', 'ws'].includes(k))) {
  console.error(`idle: --systems takes parley, socketio, ws; ${USAGE}`);
  process.exit(1);
}

const SOURCE_IPS = '127.0.0.2-127.0.0.9';
// Every process started from here (servers, load processes) collects garbage on SIGUSR2.
const GC_PRELOAD = pathToFileURL(path.join(repoRoot, 'bench/lib/gc-preload.mjs')).href;
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --expose-gc --import ${GC_PRELOAD}`.trim();
const tsxLoader = `file://${path.join(repoRoot, 'node_modules/tsx/dist/loader.mjs')}`;
const cliMain = path.join(repoRoot, 'packages/cli/src/main.ts');
const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Loader {
  child: ChildProcess;
  users: number;
  connected: Promise<{ connected: number; failed: number; seconds: number } | { exited: string }>;
  lastLines: string[];
}

const loaders = new Set<Loader>();

function spawnLoader(sys: System, users: number, k: number): Loader {
  const args = [
    '--import', tsxLoader, cliMain, 'load',
    '--driver', sys.kind, '--transport', sys.kind === 'parley' ? transport : 'ws', '--target', sys.targets(transport).join(','),
    '--users', String(users), '--rooms', '0', '--rate', '0', '--duration', '86400',
    '--source-ips', SOURCE_IPS, '--nick-prefix', `i${k}x`, '--connect-timeout', '120', '--connect-concurrency', '100',
  ];
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  const lastLines: string[] = [];
  const connected = new Promise<{ connected: number; failed: number; seconds: number } | { exited: string }>((resolve) => {
    let buf = '';
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lastLines.push(line);
        if (lastLines.length > 5) lastLines.shift();
        const m = /connected (\d+) of (\d+) users \((\d+) failed\) in ([\d.]+) s/.exec(line);
        if (m) resolve({ connected: Number(m[1]), failed: Number(m[3]), seconds: Number(m[4]) });
      }
    });
    child.once('exit', (code, sig) => resolve({ exited: `${sig ?? code}: ${lastLines.join(' | ')}` }));
  });
  const l: Loader = { child, users, connected, lastLines };
  loaders.add(l);
  child.once('exit', () => loaders.delete(l));
  return l;
}

async function stopLoaders(): Promise<void> {
  await Promise.all(
    [...loaders].map(async (l) => {
      if (l.child.exitCode !== null || l.child.signalCode !== null) return;
      const gone = new Promise<void>((r) => l.child.once('exit', () => r()));
      l.child.kill('SIGINT');
      const t = setTimeout(() => l.child.kill('SIGKILL'), 30_000);
      await gone;
      clearTimeout(t);
    }),
  );
}

process.on('exit', () => {
  for (const l of loaders) l.child.kill('SIGKILL');
});

async function serverConnections(sys: System): Promise<number | null> {
  if (sys.httpPorts.length === 0) return null;
  let n = 0;
  for (const port of sys.httpPorts) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/stats`, { signal: AbortSignal.timeout(10_000) });
      const j = (await res.json()) as { instance?: { connections?: number } };
      n += j.instance?.connections ?? 0;
    } catch {
      return null;
    }
  }
  return n;
}

async function heapUsed(sys: System): Promise<number | null> {
  if (sys.httpPorts.length === 0) return null;
  let n = 0;
  for (const port of sys.httpPorts) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      n += Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? NaN);
    } catch {
      return null;
    }
  }
  return n;
}

interface Step {
  connections: number;
  /** what the servers report (Parley's /api/stats), null where they cannot tell */
  serverConnections: number | null;
  /** server processes still running */
  alive: number;
  serverRss: number;
  perInstanceMax: number;
  heap: number | null;
  redisRss: number;
  loaderRss: number;
  connectSeconds: number;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((s, v) => s + v, 0) / n;
  const my = ys.reduce((s, v) => s + v, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

async function measureSystem(services: Services, kind: SystemKind): Promise<{ label: string; instances: number; steps: Step[]; stop: string; max: number }> {
  const max = kind === 'ws' ? Math.min(MAX, PER) : MAX;
  const instances = kind === 'ws' ? 1 : Math.max(2, Math.ceil(max / PER));
  const sys = kind === 'parley' ? await startParley(services, instances) : kind === 'socketio' ? await startSocketIo(services, instances) : await startWsBroadcast();
  const label = kind === 'parley' ? `Parley ${transport}` : kind === 'socketio' ? 'Socket.IO' : 'bare ws';
  const steps: Step[] = [];
  let stop = max < MAX ? `one process, capped at --per-process ${PER}` : 'reached --max';
  try {
    await sleep(3000);
    const sample = async (connections: number, connectSeconds: number): Promise<Step> => {
      // A full collection in every server first, so the heap holds what is live, not what is due.
      for (const pid of sys.serverPids) {
        try {
          process.kill(pid, 'SIGUSR2');
        } catch {
          /* gone: counted as not alive below */
        }
      }
      await sleep(1500);
      const rss = sys.serverPids.map(rssBytes);
      return {
        connections,
        serverConnections: await serverConnections(sys),
        alive: rss.filter((v) => v > 0).length,
        serverRss: rss.reduce((s, v) => s + v, 0),
        perInstanceMax: Math.max(...rss),
        heap: await heapUsed(sys),
        redisRss: kind === 'ws' || !services.redis ? 0 : rssBytes(services.redis.pid),
        loaderRss: [...loaders].reduce((s, l) => s + rssBytes(l.child.pid ?? -1), 0),
        connectSeconds,
      };
    };
    steps.push(await sample(0, 0));
    let total = 0;
    let k = 0;
    while (total < max) {
      const add = Math.min(STEP, max - total);
      const batch: Loader[] = [];
      for (let left = add; left > 0; left -= PER) batch.push(spawnLoader(sys, Math.min(PER, left), k++));
      const t0 = Date.now();
      const outcomes = await Promise.all(batch.map((l) => l.connected));
      const seconds = (Date.now() - t0) / 1000;
      let got = 0;
      let problem = '';
      for (const o of outcomes) {
        if ('exited' in o) problem ||= `a load process exited: ${o.exited}`;
        else {
          got += o.connected;
          if (o.failed > 0) problem ||= `${o.failed} connections failed (${batch.flatMap((l) => l.lastLines).filter((x) => /warning|failed/.test(x)).slice(-1)[0] ?? 'see the load output'})`;
        }
      }
      total += got;
      // Let the servers finish registering and settle before reading their memory.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const n = await serverConnections(sys);
        if (n === null || n >= total || Date.now() > deadline) break;
        await sleep(500);
      }
      await sleep(2000);
      const st = await sample(total, seconds);
      steps.push(st);
      console.error(
        `[idle] ${label}: ${total.toLocaleString('en-US')} connections (+${got} in ${seconds.toFixed(1)} s), servers ${(st.serverRss / MiB).toFixed(0)} MiB${st.heap !== null ? `, heap ${(st.heap / MiB).toFixed(0)} MiB` : ''}, Redis ${(st.redisRss / MiB).toFixed(0)} MiB, load processes ${(st.loaderRss / MiB).toFixed(0)} MiB`,
      );
      if (st.alive < sys.serverPids.length) problem ||= `${sys.serverPids.length - st.alive} server process(es) died`;
      if (st.serverConnections !== null && st.serverConnections < total) problem ||= `the servers see ${st.serverConnections.toLocaleString('en-US')} connections, not ${total.toLocaleString('en-US')}`;
      if (problem) {
        stop = `stopped at ${total.toLocaleString('en-US')}: ${problem}`;
        break;
      }
    }
  } finally {
    await stopLoaders();
    await sys.stop();
  }
  return { label, instances, steps, stop, max };
}

async function main(): Promise<void> {
  let services: Services | undefined;
  const onSignal = (): void => {
    void stopLoaders().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const all: Array<Awaited<ReturnType<typeof measureSystem>>> = [];
  try {
    services = await startServices({ pgFsync: false });
    for (const kind of kinds) all.push(await measureSystem(services, kind));
  } finally {
    await stopLoaders();
    await services?.stop();
  }

  const out: string[] = [''];
  out.push(`(d) idle connections: memory per connection, up to ${MAX.toLocaleString('en-US')} connections in steps of ${STEP.toLocaleString('en-US')} (${transport === 'tcp' ? 'Parley over TCP' : 'Parley over WebSocket'}; baselines over WebSocket)`);
  out.push(`  load: parley load --rate 0 --rooms 0 --source-ips ${SOURCE_IPS} in child processes of at most ${PER.toLocaleString('en-US')} connections (ulimit -n ${fdSoft}); users registered, in no room; ${cores} cores`);
  for (const s of all) {
    out.push('');
    out.push(`${s.label}, ${s.instances} instance${s.instances > 1 ? 's' : ''} (${s.stop})`);
    const header = ['connections', 'servers see', 'alive', 'servers RSS MiB', 'largest instance MiB', 'JS heap MiB', 'Redis RSS MiB', 'load RSS MiB', 'connect s'];
    const rows = s.steps.map((st) => [
      st.connections.toLocaleString('en-US'),
      st.serverConnections === null ? '-' : st.serverConnections.toLocaleString('en-US'),
      `${st.alive}/${s.instances}`,
      (st.serverRss / MiB).toFixed(1),
      (st.perInstanceMax / MiB).toFixed(1),
      st.heap === null ? '-' : (st.heap / MiB).toFixed(1),
      // Socket.IO keeps nothing per connection in Redis; only Parley's Redis figure means something.
      s.label.startsWith('Parley') ? (st.redisRss / MiB).toFixed(1) : '-',
      (st.loaderRss / MiB).toFixed(1),
      st.connections === 0 ? '-' : st.connectSeconds.toFixed(1),
    ]);
    const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    out.push(header.map((h, i) => h.padStart(w[i]!)).join('  '));
    for (const r of rows) out.push(r.map((c, i) => c.padStart(w[i]!)).join('  '));
    const xs = s.steps.map((st) => st.connections);
    const kib = (ys: number[]): string => {
      const v = slope(xs, ys) / 1024;
      return Number.isFinite(v) ? `${v.toFixed(1)} KiB` : '-';
    };
    out.push(
      `  per connection (least-squares slope over the steps): servers ${kib(s.steps.map((st) => st.serverRss))}` +
        (s.steps[0]?.heap !== null ? `, of which JS heap ${kib(s.steps.map((st) => st.heap ?? 0))}` : '') +
        (s.label.startsWith('Parley') ? `; Redis ${kib(s.steps.map((st) => st.redisRss))}` : '') +
        `; load generator ${loadPerConnection(s.steps)} (each load process also has its own ~70 MiB base)`,
    );
  }
  out.push('');
  out.push('  RSS is the kernel\'s resident memory of the processes, read after each step settled and a full garbage collection in every server (SIGUSR2 with bench/lib/gc-preload.mjs); the slope is the figure to use.');
  console.log(out.join('\n'));
  const dir = path.join(repoRoot, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `idle-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ scenario: 'idle', max: MAX, step: STEP, transport, perProcess: PER, fdLimit: fdSoft, cores, systems: all }, null, 2) + '\n');
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`);
}

/** Load-generator memory per connection at the last step, its processes' base memory included. */
function loadPerConnection(steps: Step[]): string {
  const last = steps[steps.length - 1];
  return last && last.connections > 0 ? `${(last.loaderRss / last.connections / 1024).toFixed(1)} KiB` : '-';
}

main().catch((err: unknown) => {
  console.error(`idle: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
