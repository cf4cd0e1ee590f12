/**
 * What the lab commands share: locating the state directory, its agent and its etcd, reading and
 * writing the host plan (compare-and-swap on the key's revision), and waiting until the host
 * runs what its plan says (agent status, registry, front door).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Etcd3 } from 'etcd3';
import { describeZodError, emptyPlan, etcdKeys, parsePlan, readInstances, type HostPlan, type InstanceRecord } from '@parley/contracts';
import {
  HostFileSchema,
  StateDirError,
  etcdEndpoints,
  haproxyStats,
  liveAgent,
  planUnitNames,
  readSecretFile,
  SecretError,
  readJsonFile,
  readStatus,
  stateDirKind,
  statePaths,
  type AgentStatus,
  type HostFile,
  type StatePaths,
} from '@parley/agent';

/** A failure the user can act on: printed as one line, exit code 1. */
export class LabError extends Error {}

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const cliMain = path.join(repoRoot, 'packages/cli/src/main.ts');
export const tsxLoader = pathToFileURL(path.join(repoRoot, 'node_modules/tsx/dist/loader.mjs')).href;

/** argv that runs this CLI with the given arguments. */
export const parleyArgv = (...args: string[]): string[] => [process.execPath, '--import', tsxLoader, cliMain, ...args];

export const MAX_INSTANCES = 32;
export const MAX_SHARDS = 256;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The state directory must be one of ours (or absent, when `allowMissing`). */
export function checkStateDir(dir: string, allowMissing = false): StatePaths {
  const p = statePaths(dir);
  const kind = stateDirKind(p.root);
  if (kind === 'parley') return p;
  if ((kind === 'missing' || kind === 'empty') && allowMissing) return p;
  if (kind === 'missing' || kind === 'empty') throw new LabError(`Parley is not set up in ${p.root} (start it with: parley up --state-dir ${dir})`);
  if (kind === 'legacy') throw new LabError(`${p.root} was made by the single-process \`parley up\` of an earlier release; remove it with \`parley clean --state-dir ${dir}\``);
  throw new LabError(`${p.root} is not a Parley state directory (no parley-state.json); check --state-dir`);
}

export async function readHostFile(p: StatePaths): Promise<HostFile | undefined> {
  let raw: unknown;
  try {
    raw = await readJsonFile(p.hostFile);
  } catch (err) {
    throw new LabError(`corrupt state directory ${p.root}: ${(err as Error).message}; run \`parley clean --state-dir ${p.root}\` to start over`);
  }
  if (raw === undefined) return undefined;
  const r = HostFileSchema.safeParse(raw);
  if (!r.success) throw new LabError(`corrupt state directory ${p.root}: host.json: ${describeZodError(r.error)}; run \`parley clean --state-dir ${p.root}\` to start over`);
  return r.data;
}

export interface Lab {
  paths: StatePaths;
  host: HostFile;
  agentPid: number;
  status: AgentStatus | undefined;
}

/** The running lab of a state directory, or a LabError saying it is not running. */
export async function openLab(dir: string): Promise<Lab> {
  const paths = checkStateDir(dir);
  const host = await readHostFile(paths);
  if (!host) throw new LabError(`Parley is not set up in ${paths.root} (start it with: parley up --state-dir ${dir})`);
  const live = await liveAgent(paths);
  if (!live) throw new LabError(`Parley is not running in ${paths.root} (start it with: parley up --state-dir ${dir})`);
  return { paths, host, agentPid: live.pid, status: live.status };
}

/**
 * A client of the host's etcd, logged in as the user the host file names (`root` in the lab; its
 * password is read from the file the host file names, never taken from the command line).
 */
export function etcdClient(host: HostFile): Etcd3 {
  return new Etcd3({ hosts: etcdEndpoints(host), dialTimeout: 2_000, ...etcdAuthOf(host) });
}

/** The etcd login of a host file, or nothing (etcd without authentication). */
export function etcdAuthOf(host: HostFile): { auth?: { username: string; password: string } } {
  if (!host.etcdAuth) return {};
  try {
    return { auth: { username: host.etcdAuth.user, password: readSecretFile(host.etcdAuth.passwordFile, 'etcd password') } };
  } catch (err) {
    if (err instanceof SecretError) throw new LabError(err.message);
    throw err;
  }
}

export interface StoredPlan {
  plan: HostPlan;
  /** mod revision of the key, 0 if absent */
  modRevision: number;
}

export async function readPlan(client: Etcd3, host: HostFile): Promise<StoredPlan> {
  const key = etcdKeys(host.prefix).hostPlan(host.host);
  const res = await client.get(key).exec();
  const kv = res.kvs[0];
  if (!kv) return { plan: emptyPlan(), modRevision: 0 };
  const r = parsePlan(kv.value.toString());
  if (!r.ok) throw new LabError(`the plan in etcd (${key}) is invalid: ${r.error}`);
  return { plan: r.plan, modRevision: Number(kv.mod_revision) };
}

/**
 * Reads the plan, applies `change`, and writes it back if the key did not change meanwhile
 * (retried on a conflict). Resolves to the new plan and the revision it was written at
 * (the old revision when nothing changed).
 */
export async function updatePlan(client: Etcd3, host: HostFile, change: (p: HostPlan) => HostPlan): Promise<{ plan: HostPlan; revision: number; changed: boolean }> {
  const key = etcdKeys(host.prefix).hostPlan(host.host);
  for (let attempt = 0; attempt < 10; attempt++) {
    const cur = await readPlan(client, host);
    const next = change(structuredClone(cur.plan));
    if (JSON.stringify(next) === JSON.stringify(cur.plan) && cur.modRevision > 0) return { plan: cur.plan, revision: cur.modRevision, changed: false };
    const res = await client
      .if(key, 'Mod', '==', cur.modRevision)
      .then(client.put(key).value(JSON.stringify(next)))
      .commit();
    if (res.succeeded) return { plan: next, revision: Number(res.header.revision), changed: true };
  }
  throw new LabError(`the plan at ${key} keeps changing under us; try again`);
}

/** A registry entry as the server publishes it. */
export type InstanceView = InstanceRecord;

/** The registry; unreadable entries are left out (the servers report them themselves). */
export function registry(client: Etcd3, prefix: string): Promise<InstanceView[]> {
  return readInstances(client, prefix);
}

export interface Convergence {
  status: AgentStatus;
  instances: InstanceView[];
}

/**
 * Waits until the host runs its plan: the agent applied revision `minRevision` or later, every
 * planned process runs and nothing unplanned does, every planned instance is ready in the
 * registry (the process the agent started), and the front door has each of them UP. Fails early
 * with the reason when a process keeps failing to start or the agent exits.
 */
export async function waitConverged(lab: Lab, client: Etcd3, plan: HostPlan, minRevision: number, timeoutMs: number, progress?: (what: string) => void): Promise<Convergence> {
  const deadline = Date.now() + timeoutMs;
  const wantUnits = new Set(planUnitNames(plan));
  if (lab.host.etcd.managed) wantUnits.add('etcd');
  const wantIds = plan.instances.map((i) => i.id);
  let waitingFor = 'the agent';
  let lastSaid = '';
  for (;;) {
    const live = await liveAgent(lab.paths);
    if (!live) throw new LabError(`the agent stopped: ${await agentLastWords(lab.paths)}`);
    const status = await readStatus(lab.paths);
    if (status && status.agent.pid === live.pid) {
      if (status.agent.planError) throw new LabError(`the agent refused the plan: ${status.agent.planError}`);
      const failing = status.processes.find((p) => wantUnits.has(p.name) && p.state === 'backoff' && p.failures >= 2 && p.lastError);
      if (failing) throw new LabError(`${failing.name} cannot start: ${failing.lastError} (log: ${failing.log})`);
      waitingFor = await (async () => {
        if ((status.agent.planRevision ?? 0) < minRevision) return 'the agent to read the plan';
        const byName = new Map(status.processes.map((p) => [p.name, p]));
        const notRunning = [...wantUnits].filter((n) => byName.get(n)?.state !== 'running');
        if (notRunning.length) return `${notRunning.join(', ')} to start`;
        const extra = status.processes.filter((p) => !wantUnits.has(p.name)).map((p) => p.name);
        if (extra.length) return `${extra.join(', ')} to stop`;
        const reg = await registry(client, lab.host.prefix).catch(() => null);
        if (!reg) return 'etcd';
        const notReady = wantIds.filter((id) => {
          const r = reg.find((x) => x.id === id);
          return !r || r.state !== 'ready' || r.pid !== byName.get(id)?.pid;
        });
        if (notReady.length) return `${notReady.join(', ')} to register`;
        if (plan.frontDoor && wantIds.length) {
          const members = status.frontDoor?.members ?? [];
          const rows = await haproxyStats(lab.paths.haproxySocket, 1_000).catch(() => null);
          if (!rows) return 'the front door';
          const notUp = wantIds.filter((id) => {
            const m = members.find((x) => x.id === id && x.state === 'ready');
            const r = reg.find((x) => x.id === id);
            if (!m || !r || m.tcpPort !== r.tcpPort || m.tlsPort !== r.tlsPort) return true;
            // With TLS planned, an instance is in rotation once its TLS backends are UP too.
            if (plan.tls && plan.frontDoor && (plan.frontDoor.tlsIrcPort !== undefined || plan.frontDoor.httpsPort !== undefined) && r.tlsPort === undefined) return true;
            const proxies = ['irc', 'web', ...(plan.tls && plan.frontDoor?.tlsIrcPort !== undefined ? ['irc-tls'] : []), ...(plan.tls && plan.frontDoor?.httpsPort !== undefined ? ['web-tls'] : [])];
            return !proxies.every((px) => rows.find((row) => row.proxy === px && row.server === m.slot)?.status.startsWith('UP'));
          });
          if (notUp.length) return `the front door to put ${notUp.join(', ')} in rotation`;
          const stale = members.filter((m) => m.state === 'ready' && !wantIds.includes(m.id));
          if (stale.length) return `the front door to drop ${stale.map((m) => m.id).join(', ')}`;
        }
        return '';
      })();
      if (waitingFor === '') return { status, instances: await registry(client, lab.host.prefix) };
    }
    if (progress && waitingFor !== lastSaid) {
      progress(waitingFor);
      lastSaid = waitingFor;
    }
    if (Date.now() > deadline) throw new LabError(`not ready after ${Math.round(timeoutMs / 1000)} s: waiting for ${waitingFor} (see parley status, parley logs)`);
    await sleep(100);
  }
}

/** The agent's last error line from its log, for "the agent stopped". */
export async function agentLastWords(p: StatePaths): Promise<string> {
  const text = await fs.readFile(p.log('agent'), 'utf8').catch(() => '');
  const lines = text.trim().split('\n').filter(Boolean);
  const said = [...lines].reverse().find((l) => l.startsWith('parley: '));
  if (said) return said.slice('parley: '.length);
  return `${lines.slice(-1)[0] ?? 'no output'} (log: ${p.log('agent')})`;
}

export function fmtDuration(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export { StateDirError };
