import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startOnFreePorts } from './ports.js';
import { removeOnExit, spawnManaged, type ManagedProcess } from './proc.js';

export interface EtcdOptions {
  /** Data directory (created if missing). Default: a fresh temp dir, removed by stop(). */
  dataDir?: string;
  /** Client port on 127.0.0.1. Default: a free port (retried on EADDRINUSE). */
  clientPort?: number;
  /** Peer port on 127.0.0.1. Default: a free port. */
  peerPort?: number;
  /** stdout/stderr go here (appended). Default: kept in memory (last lines). */
  logFile?: string;
  /** etcd binary. Default: $PARLEY_ETCD_BIN or "etcd" on PATH. */
  bin?: string;
  /**
   * Raft timing in ms. Defaults are short (10 / 100) because a single member only has to elect
   * itself: startup drops from ~0.1-1 s to ~0.05-0.1 s. Use etcd's own (100 / 1000) for a real
   * multi-member cluster.
   */
  heartbeatIntervalMs?: number;
  electionTimeoutMs?: number;
  /** Readiness timeout (default 30 s). */
  timeoutMs?: number;
}

export interface EtcdHandle {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  pid: number;
  name: string;
  logFile: string | undefined;
  /** Last lines of etcd's output. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after 10 s. Idempotent; never rejects. */
  stop(): Promise<void>;
}

/** Starts a single-member etcd on loopback and resolves once /health reports healthy. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdHandle> {
  const ownsDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'parley-etcd-')));
  const forget = ownsDir ? removeOnExit(dataDir) : () => {};
  // etcd warns about anything but 0700: its data holds every key, users' password hashes included.
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await fs.chmod(dataDir, 0o700);
  const wasEmpty = (await fs.readdir(dataDir)).length === 0;
  const bin = opts.bin ?? process.env.PARLEY_ETCD_BIN ?? 'etcd';
  // One member name for every attempt: the readiness check tells our member from another etcd.
  const name = `parley-${crypto.randomBytes(4).toString('hex')}`;

  try {
    const { proc, ports } = await startOnFreePorts({
      ports: [opts.clientPort, opts.peerPort],
      spawn: ([clientPort, peerPort]) => {
        const clientUrl = `http://127.0.0.1:${clientPort}`;
        const peerUrl = `http://127.0.0.1:${peerPort}`;
        return spawnManaged({
          name: 'etcd',
          command: bin,
          args: [
            `--name=${name}`,
            `--data-dir=${dataDir}`,
            `--listen-client-urls=${clientUrl}`,
            `--advertise-client-urls=${clientUrl}`,
            `--listen-peer-urls=${peerUrl}`,
            `--initial-advertise-peer-urls=${peerUrl}`,
            `--initial-cluster=${name}=${peerUrl}`,
            `--initial-cluster-token=${name}`,
            '--initial-cluster-state=new',
            `--heartbeat-interval=${opts.heartbeatIntervalMs ?? 10}`,
            `--election-timeout=${opts.electionTimeoutMs ?? 100}`,
            '--logger=zap',
            '--log-outputs=stderr',
          ],
          ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
          env: { ...process.env, ETCDCTL_API: '3' },
        });
      },
      ready: (_proc, [clientPort]) => etcdReady(`http://127.0.0.1:${clientPort}`, name),
      timeoutMs: opts.timeoutMs ?? 30_000,
      stop: (proc) => proc.stop('SIGKILL'),
      // A fresh data dir may now hold a half-made member with the old ports; start clean.
      beforeRetry: async () => {
        if (wasEmpty) await emptyDir(dataDir);
      },
    });
    const [clientPort, peerPort] = ports as [number, number];
    return makeHandle(proc, { clientUrl: `http://127.0.0.1:${clientPort}`, clientPort, peerPort, dataDir, name, ownsDir, forget });
  } catch (err) {
    if (ownsDir) await fs.rm(dataDir, { recursive: true, force: true }).catch(() => {});
    forget();
    throw err;
  }
}

function makeHandle(
  proc: ManagedProcess,
  h: {
    clientUrl: string;
    clientPort: number;
    peerPort: number;
    dataDir: string;
    name: string;
    ownsDir: boolean;
    forget: () => void;
  },
): EtcdHandle {
  let stopping: Promise<void> | undefined;
  return {
    endpoint: h.clientUrl,
    clientPort: h.clientPort,
    peerPort: h.peerPort,
    dataDir: h.dataDir,
    pid: proc.pid,
    name: h.name,
    logFile: proc.logFile,
    logTail: (lines) => proc.logTail(lines),
    stop() {
      stopping ??= (async () => {
        await proc.stop('SIGTERM', 10_000);
        if (h.ownsDir) await fs.rm(h.dataDir, { recursive: true, force: true }).catch(() => {});
        h.forget();
      })();
      return stopping;
    },
  };
}

/**
 * Healthy, and it is our member answering (not some other etcd that already held the port):
 * the member list must contain our unique name.
 */
async function etcdReady(clientUrl: string, name: string): Promise<boolean> {
  const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) return false;
  const body = (await res.json()) as { health?: unknown };
  if (body.health !== 'true' && body.health !== true) return false;
  const list = await fetch(`${clientUrl}/v3/cluster/member/list`, {
    method: 'POST',
    body: '{}',
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(2_000),
  });
  if (!list.ok) return false;
  const members = ((await list.json()) as { members?: Array<{ name?: string }> }).members ?? [];
  return members.some((m) => m.name === name);
}

async function emptyDir(dir: string): Promise<void> {
  for (const entry of await fs.readdir(dir).catch(() => [] as string[])) {
    await fs.rm(path.join(dir, entry), { recursive: true, force: true });
  }
}
