import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Services } from './index.js';
import { LogWatch } from './logs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliMain = path.join(root, 'packages/cli/src/main.ts');
const tsxLoader = `file://${path.join(root, 'node_modules/tsx/dist/loader.mjs')}`;

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export interface ParleyProcess {
  id: string;
  pid: number;
  tcpPort: number;
  wsPort: number;
  /** everything the process printed so far */
  output(): string;
  /** its JSON log lines, parsed, with a wait on a given line */
  logs: LogWatch;
  /** resolves with the exit code or signal once the process is gone */
  exited: Promise<string>;
  /** the process has not exited */
  alive(): boolean;
  /** SIGKILL, no clean-up: what a crash looks like */
  kill9(): Promise<void>;
  /** SIGTERM and wait: a clean shutdown */
  stop(): Promise<void>;
  /** GET on the instance's HTTP port; resolves with the status and body text */
  http(path: string): Promise<{ status: number; body: string }>;
  /** the Prometheus text of /metrics */
  metrics(): Promise<string>;
}

export interface SpawnOptions {
  id: string;
  prefix: string;
  /** PostgreSQL database URLs to register as shards */
  pg: string[];
  leaseSeconds?: number;
  extraArgs?: string[];
}

/** Runs `parley server` as a real child process on free ports; resolves once it listens. */
export async function spawnParley(services: Services, o: SpawnOptions): Promise<ParleyProcess> {
  if (!services.etcd || !services.redis) throw new Error('spawnParley needs etcd and Redis');
  // PARLEY_SERVER_NODE_ARGS: extra Node options for every instance (e.g. `--cpu-prof
  // --cpu-prof-dir=/tmp/prof` to profile the servers of a benchmark), split on spaces.
  const nodeArgs = (process.env.PARLEY_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const args = [
    ...nodeArgs,
    '--import', tsxLoader, cliMain, 'server',
    '--id', o.id, '--prefix', o.prefix, '--tcp-port', '0', '--ws-port', '0',
    '--etcd', services.etcd.endpoint, '--redis', services.redis.url,
    '--lease-seconds', String(o.leaseSeconds ?? 2), '--log-level', 'info',
    ...o.pg.flatMap((u) => ['--pg', u]),
    ...(o.extraArgs ?? []),
  ];
  const logPath = path.join(services.dir, `parley-${o.id}.log`);
  const log = fs.createWriteStream(logPath, { flags: 'a' });
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  running.add(child);
  let out = '';
  const logs = new LogWatch();
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      log.end();
      resolve(signal ?? String(code));
    });
  });
  const ready = new Promise<{ tcpPort: number; wsPort: number }>((resolve, reject) => {
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      log.write(chunk);
      logs.write(chunk);
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.includes('"listening"')) continue;
        try {
          const j = JSON.parse(line) as { tcpPort: number; wsPort: number };
          resolve({ tcpPort: j.tcpPort, wsPort: j.wsPort });
        } catch {
          /* not the line we wait for */
        }
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      log.write(chunk);
    });
    void exited.then((how) => reject(new Error(`parley ${o.id} exited (${how}) before listening:\n${out.slice(-3000)}`)));
  });
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  let ports;
  try {
    ports = await ready;
  } finally {
    clearTimeout(t);
  }
  const http = async (p: string) => {
    const res = await fetch(`http://127.0.0.1:${ports.wsPort}${p}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  };
  return {
    id: o.id,
    pid: child.pid ?? -1,
    ...ports,
    output: () => out,
    logs,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    http,
    metrics: async () => (await http('/metrics')).body,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const k = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(k);
    },
  };
}
