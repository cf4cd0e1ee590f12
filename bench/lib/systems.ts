/**
 * The systems a benchmark compares, each started on free loopback ports and stopped again:
 * Parley (N real `parley server` processes on the harness's etcd, Redis and PostgreSQL, flood
 * limit off), the InspIRCd peer (one process, no persistence), the Socket.IO baseline (N instances
 * with the Redis adapter on the same Redis) and the bare `ws` broadcast server (one process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { etcdKeys, type QosClass } from '@parley/contracts';
import { uniqueName, type Services } from '../../test/harness/index.js';
import { spawnParley, type ParleyProcess } from '../../test/harness/parley.js';
import { startInspircd } from './inspircd.js';
import type { ProcGroup } from './proc.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tsxLoader = `file://${path.join(repoRoot, 'node_modules/tsx/dist/loader.mjs')}`;

export type SystemKind = 'parley' | 'inspircd' | 'socketio' | 'ws';

export interface System {
  kind: SystemKind;
  /** what the table calls it */
  label: string;
  /** host:port of every instance for a transport (Parley, InspIRCd: tcp = IRC port, ws = WebSocket port) */
  targets(transport: 'tcp' | 'ws'): string[];
  /** the server processes, and what else to account CPU to */
  groups: ProcGroup[];
  /** pids of the chat server processes themselves (for memory) */
  serverPids: number[];
  /** Parley only: the instances' HTTP ports (for /api/stats, /metrics) */
  httpPorts: number[];
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/**
 * "QoS on" for a benchmark: a `default` class so far above any offered rate that nothing is
 * refused, so every message goes through the QoS path (a room far from its limit: admitted at
 * once, its tokens taken afterwards) and the run measures what QoS costs, not what it refuses.
 */
export const BENCH_QOS_CLASS: QosClass = { rate: 1_000_000, burst: 1_000_000, description: 'bench: QoS on, nothing refused' };

export interface ParleyOptions {
  /** a `default` QoS class for every room (null: no class, rooms have no limit) */
  qos?: QosClass | null;
}

/**
 * Parley's flood limit and per-address door limits off in `/<prefix>/config` (benches open
 * thousands of connections, from several loopback addresses with `--source-ips`), the `default`
 * QoS class if given, then `n` instances.
 */
export async function startParley(services: Services, n: number, o: ParleyOptions = {}): Promise<System> {
  const prefix = uniqueName('bench');
  const dbUrl = await services.postgres!.createDatabase(prefix);
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  try {
    await etcd.put(`/${prefix}/config`).value(JSON.stringify({ flood: { linesPerSecond: 0 }, door: { connectionsPerIp: 0, connectsPerIpPerMinute: 0 } }));
    if (o.qos) await etcd.put(etcdKeys(prefix).qosClass('default')).value(JSON.stringify(o.qos));
  } finally {
    etcd.close();
  }
  const ids = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26)) + (i >= 26 ? String(i) : ''));
  // The production default lease (5 s), not the tests' 2 s: a CPU-starved instance that misses
  // its keep-alives is reaped by the others, users and all (see docs/load.md).
  const settled = await Promise.allSettled(ids.map((id) => spawnParley(services, { id, prefix, pg: [dbUrl], leaseSeconds: 5 })));
  const inst = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  const stop = async (): Promise<void> => {
    await Promise.allSettled(inst.map((p: ParleyProcess) => p.stop()));
  };
  if (failed) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  return {
    kind: 'parley',
    label: `Parley (${n} instances, PostgreSQL${services.postgres ? '' : '?'} + Redis${o.qos ? `, QoS class default ${o.qos.rate}/s` : ''})`,
    targets: (t) => inst.map((p) => `127.0.0.1:${t === 'tcp' ? p.tcpPort : p.wsPort}`),
    groups: [
      { name: 'servers', pids: inst.map((p) => p.pid) },
      { name: 'postgres', pids: services.postgres ? [services.postgres.pid] : [], tree: true },
      { name: 'redis', pids: services.redis ? [services.redis.pid] : [] },
    ],
    serverPids: inst.map((p) => p.pid),
    httpPorts: inst.map((p) => p.wsPort),
    stop,
  };
}

/** Spawns a baseline script and waits for its {"listening":port} line. */
async function spawnBaseline(script: string, args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', tsxLoader, path.join(repoRoot, 'bench/baselines', script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: repoRoot,
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${script} did not start within 20 s:\n${out.slice(-2000)}`)), 20_000);
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /\{"listening":(\d+)\}/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`${script} exited (${sig ?? code}) before listening:\n${out.slice(-2000)}`));
    });
  });
  return { child, port };
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const k = setTimeout(() => c.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(k);
}

/** `n` Socket.IO instances with the Redis adapter on the harness's Redis. */
export async function startSocketIo(services: Services, n: number): Promise<System> {
  const key = uniqueName('sio');
  const started = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => spawnBaseline('socketio-server.ts', ['--port', '0', '--redis', services.redis!.url, '--id', String.fromCharCode(97 + i), '--key', key])),
  );
  const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.allSettled(ok.map((s) => stopChild(s.child)));
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  return {
    kind: 'socketio',
    label: `Socket.IO (${n} instances, Redis adapter, no database)`,
    targets: () => ok.map((s) => `127.0.0.1:${s.port}`),
    groups: [
      { name: 'servers', pids: ok.map((s) => s.child.pid ?? -1) },
      { name: 'postgres', pids: [] },
      { name: 'redis', pids: services.redis ? [services.redis.pid] : [] },
    ],
    serverPids: ok.map((s) => s.child.pid ?? -1),
    httpPorts: [],
    stop,
  };
}

/** One bare `ws` broadcast process. */
export async function startWsBroadcast(): Promise<System> {
  const s = await spawnBaseline('ws-broadcast.ts', ['--port', '0']);
  return {
    kind: 'ws',
    label: 'bare ws broadcast (1 process, in memory)',
    targets: () => [`127.0.0.1:${s.port}`],
    groups: [
      { name: 'servers', pids: [s.child.pid ?? -1] },
      { name: 'postgres', pids: [] },
      { name: 'redis', pids: [] },
    ],
    serverPids: [s.child.pid ?? -1],
    httpPorts: [],
    stop: () => stopChild(s.child),
  };
}

/** One InspIRCd process (bench/lib/inspircd.ts). */
export async function startInspircdSystem(): Promise<System> {
  const p = await startInspircd();
  return {
    kind: 'inspircd',
    label: `InspIRCd (${p.version.replace(/^InspIRCd-/, '')}, 1 process, no database)`,
    targets: (t) => [`127.0.0.1:${t === 'tcp' ? p.tcpPort : p.wsPort}`],
    groups: [
      { name: 'servers', pids: [p.pid] },
      { name: 'postgres', pids: [] },
      { name: 'redis', pids: [] },
    ],
    serverPids: [p.pid],
    httpPorts: [],
    stop: p.stop,
  };
}
