/**
 * `parley provision shards --count N`: makes shards 0..N-1 exist on a host. It adds the missing
 * ones to the host's plan (each with its port and QoS class; the agent copies the template, writes
 * its postgresql.conf from the class, starts and supervises it), waits for each to be ready, and
 * then registers it through the REST API (`PUT /api/shards/{id}` with the admin token), so that no
 * room is pinned to a shard before it runs. Idempotent: shards that exist keep their data, port and
 * entry (room pins are never touched); a larger N only adds. A live progress bar follows the
 * agent's status (created / initialised / started / ready), a summary gives time, memory and disk.
 */
import { execFile } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import cliProgress from 'cli-progress';
import { QosClassNameSchema, type HostPlan, type ShardPlan } from '@parley/contracts';
import { Limiter, readStatus, SHARD_ROLE, type AgentStatus, type ProcessStatus } from '@parley/agent';
import { LabError, etcdClient, fmtDuration, openLab, readPlan, updatePlan, type Lab } from '../lab/common.js';
import { restCall, type RestAnswer } from '../rest.js';
import { classOf, readQosFrom, type QosFrom } from './qos-from.js';

const execFileP = promisify(execFile);
const say = (s: string): void => void process.stdout.write(`${s}\n`);

export interface ProvisionOptions {
  stateDir: string;
  count: number;
  basePort?: number;
  qos?: string;
  qosFrom?: string;
  /** host name in the plan key (default: the state directory's host) */
  host?: string;
  /** REST API base URL (default: the front door's HTTP address) */
  api?: string;
  timeout: number;
  /** false: no live bar, a line every few seconds instead */
  progress: boolean;
}

export const MAX_PROVISION = 5_000;
/** Where a free port range is looked for by default: below the kernel's ephemeral ports. */
export const DEFAULT_PORT_SEARCH = { from: 20_000, to: 32_767 } as const;
const STANDARD_PORTS = [2379, 2380, 5432, 6379];

export async function runProvisionShards(o: ProvisionOptions): Promise<void> {
  const t0 = Date.now();
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > MAX_PROVISION) throw new LabError(`--count must be an integer from 1 to ${MAX_PROVISION}, got ${o.count}`);
  if (o.qos !== undefined && o.qosFrom !== undefined) throw new LabError('give --qos CLASS or --qos-from FILE, not both');
  if (o.qos !== undefined && !QosClassNameSchema.safeParse(o.qos).success) throw new LabError(`--qos ${o.qos}: a class name is 1-40 of a-z, 0-9, _ and -, starting with a letter or digit`);
  const mapping: QosFrom | undefined = o.qosFrom !== undefined ? await readQosFrom(o.qosFrom) : o.qos !== undefined ? { default: o.qos, ranges: [] } : undefined;

  const lab = await openLab(o.stateDir);
  const host = o.host ?? lab.host.host;
  const local = host === lab.host.host;
  const api = new AdminApi(o.api ?? apiFromStatus(lab), await readToken(lab));
  await api.checkClasses(mapping);

  const client = etcdClient(lab.host);
  try {
    const hostFile = { ...lab.host, host };
    const before = (await readPlan(client, hostFile)).plan;
    const ids = Array.from({ length: o.count }, (_, i) => i);
    const known = new Map(before.shards.map((s) => [s.id, s]));
    const added = ids.filter((id) => !known.has(id));
    const ports = await choosePorts(lab, before, added, o.basePort, local);
    const classOfId = (id: number): string | undefined => (mapping ? classOf(mapping, id) : known.get(id)?.qos);
    const reclassed = ids.filter((id) => known.has(id) && mapping !== undefined && known.get(id)!.qos !== classOfId(id));

    const { plan, revision, changed } = await updatePlan(client, hostFile, (p) => {
      for (const s of p.shards) if (s.id < o.count && mapping !== undefined) setQos(s, classOfId(s.id));
      for (const id of added) {
        if (p.shards.some((s) => s.id === id)) continue;
        const s: ShardPlan = { id, port: ports.get(id)!, database: 'parley', generation: 0, register: false };
        setQos(s, classOfId(id));
        p.shards.push(s);
      }
      p.shards.sort((a, b) => a.id - b.id);
      return p;
    });
    const planBytes = Buffer.byteLength(JSON.stringify(plan));
    const beyond = before.shards.filter((s) => s.id >= o.count).length;
    say(`${added.length ? `adding shards ${range(added)}` : 'no shard to add'}${reclassed.length ? `; new class for ${range(reclassed)} (restarted)` : ''}${added.length ? ` on ports ${range(added.map((id) => ports.get(id)!))}` : ''}; plan ${changed ? 'written' : 'unchanged'} (${fmtBytes(planBytes)}${beyond ? `; ${beyond} more shard(s) beyond --count are kept` : ''})`);

    const targets = ids.map((id) => plan.shards.find((s) => s.id === id)!);
    const watch = local ? new LocalProgress(lab, targets, revision) : new RemoteProgress(host, targets);
    const registered = new Set<number>();
    const limiter = new Limiter(8);
    const registering = new Map<number, Promise<void>>();
    let regError: Error | null = null;
    const bar = new Bar(o.count, o.progress);
    const deadline = Date.now() + o.timeout * 1000;
    try {
      for (;;) {
        const view = await watch.next(Math.max(0, deadline - Date.now()));
        for (const r of view.ready) {
          if (registering.has(r.id)) continue;
          const s = targets.find((x) => x.id === r.id)!;
          const job = limiter.run(() => (regError ? Promise.resolve() : api.putShard(s, r.url, host))).then(
            () => {
              registered.add(r.id);
              bar.update(view.counts, registered.size);
            },
            (err: Error) => {
              regError ??= err;
              watch.poke();
            },
          );
          registering.set(r.id, job);
        }
        bar.update(view.counts, registered.size);
        if (regError) throw regError;
        if (view.failing) throw new LabError(view.failing);
        if (view.counts.ready === o.count) {
          await Promise.all(registering.values());
          if (regError) throw regError;
          break;
        }
        if (Date.now() >= deadline) throw new LabError(`not ready after ${o.timeout} s: ${o.count - view.counts.ready} shard(s) not ready yet (parley status, parley logs pg<N>)`);
      }
    } finally {
      bar.stop(registered.size);
      watch.close();
      await Promise.allSettled(registering.values());
    }
    const ms = Date.now() - t0;
    const usage = local ? await shardUsage(lab, targets) : null;
    say(`${o.count} shard(s) ready and registered (${added.length} new) in ${fmtDuration(ms)}.`);
    if (usage) {
      say(`  memory: ${fmtBytes(usage.pss)} PSS (${fmtBytes(usage.rss)} RSS) in ${usage.processes} PostgreSQL processes, ${fmtBytes(usage.pss / Math.max(1, usage.shards))} a shard`);
      say(`  disk:   ${fmtBytes(usage.disk)} (du of ${usage.shards} data directories), ${fmtBytes(usage.disk / Math.max(1, usage.shards))} a shard`);
    }
    const classes = new Map<string, number>();
    for (const s of targets) classes.set(s.qos ?? '(none)', (classes.get(s.qos ?? '(none)') ?? 0) + 1);
    say(`  classes: ${[...classes].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  } finally {
    client.close();
  }
}

function setQos(s: ShardPlan, qos: string | undefined): void {
  if (qos === undefined) delete s.qos;
  else s.qos = qos;
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/**
 * Ports of the added shards, `base + id` each. With --base-port every one must be free (the first
 * that is not is refused in one line); without it, the lowest base from 20000 up whose ports are
 * all free and not planned for anything else (ports of existing shards stay as they are).
 */
async function choosePorts(lab: Lab, plan: HostPlan, added: number[], basePort: number | undefined, local: boolean): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (added.length === 0) return out;
  const taken = new Set<number>([...plan.shards.map((s) => s.port).filter((p) => p > 0), ...plannedPorts(lab)]);
  const maxId = Math.max(...added);
  const check = async (base: number): Promise<string | null> => {
    if (base + maxId > 65535) return `shard ${maxId} would need port ${base + maxId}, above 65535`;
    for (const id of added) {
      const port = base + id;
      if (taken.has(port)) return `port ${port} (shard ${id}) is already planned for another process of this host`;
    }
    if (!local) return null;
    const busy = await firstBusy(added.map((id) => base + id));
    return busy === null ? null : `port ${busy} (shard ${busy - base}) is in use by another program`;
  };
  if (basePort !== undefined) {
    const why = await check(basePort);
    if (why) throw new LabError(`${why}; choose another --base-port (or leave it out: a free range is chosen)`);
  } else {
    const prior = existingBase(plan);
    const candidates = [...(prior !== undefined ? [prior] : [])];
    for (let b = DEFAULT_PORT_SEARCH.from; b + maxId <= DEFAULT_PORT_SEARCH.to && candidates.length < 64; b += maxId + 1) candidates.push(b);
    let found: number | undefined;
    for (const base of candidates) {
      if (STANDARD_PORTS.some((p) => added.some((id) => base + id === p))) continue;
      if ((await check(base)) === null) {
        found = base;
        break;
      }
    }
    if (found === undefined) throw new LabError(`no free range of ports for shards ${range(added)} between ${DEFAULT_PORT_SEARCH.from} and ${DEFAULT_PORT_SEARCH.to}; give one with --base-port`);
    for (const id of added) out.set(id, found + id);
    return out;
  }
  for (const id of added) out.set(id, basePort + id);
  return out;
}

/** The base of earlier provisioned shards when every one of them sits at base + id. */
function existingBase(plan: HostPlan): number | undefined {
  const fixed = plan.shards.filter((s) => s.port > 0);
  if (fixed.length === 0) return undefined;
  const base = fixed[0]!.port - fixed[0]!.id;
  return fixed.every((s) => s.port - s.id === base) ? base : undefined;
}

/** Ports the agent of this state directory uses or keeps (ports.json, running processes). */
function plannedPorts(lab: Lab): number[] {
  const out: number[] = [];
  try {
    const picked = JSON.parse(fsSync.readFileSync(lab.paths.portsFile, 'utf8')) as Record<string, number>;
    out.push(...Object.values(picked).filter((n) => typeof n === 'number'));
  } catch {
    // none picked yet
  }
  for (const p of lab.status?.processes ?? []) out.push(...Object.values(p.ports));
  if (lab.host.etcd.managed) out.push(lab.host.etcd.clientPort, lab.host.etcd.peerPort);
  return out;
}

/** The first port of `ports` something listens on (or cannot be bound) on 127.0.0.1, or null. */
async function firstBusy(ports: number[]): Promise<number | null> {
  const limiter = new Limiter(64);
  const busy = await Promise.all(ports.map((p) => limiter.run(() => portBusy(p))));
  const i = busy.findIndex(Boolean);
  return i < 0 ? null : ports[i]!;
}

function portBusy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(true));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(false)));
  });
}

// ---------------------------------------------------------------------------------------------
// Following the agent
// ---------------------------------------------------------------------------------------------

export interface Counts {
  created: number;
  initialised: number;
  started: number;
  ready: number;
}

interface View {
  counts: Counts;
  ready: Array<{ id: number; url: string }>;
  /** a shard that keeps failing to start: why */
  failing: string | null;
}

interface Progress {
  /** the next view: after the agent's status changed (or `maxMs`) */
  next(maxMs: number): Promise<View>;
  /** ends a pending next() now (something else happened) */
  poke(): void;
  close(): void;
}

const PHASE_RANK: Record<string, number> = { created: 1, initialised: 2, started: 3 };

/**
 * Reads the agent's status.json each time it is rewritten (the kernel tells: fs.watch on the
 * state directory); the agent rewrites it on every change of a process, at most twice a second
 * for a thousand of them, and every 2 s anyway.
 */
class LocalProgress implements Progress {
  private readonly watcher: fsSync.FSWatcher;
  private wake: (() => void) | null = null;
  private changed = true;

  constructor(private readonly lab: Lab, private readonly targets: ShardPlan[], private readonly revision: number) {
    this.watcher = fsSync.watch(lab.paths.root, { persistent: false }, (_e, file) => {
      if (file !== path.basename(lab.paths.statusFile)) return;
      this.changed = true;
      this.wake?.();
    });
  }

  async next(maxMs: number): Promise<View> {
    if (!this.changed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(maxMs, 2_500));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
    this.changed = false;
    const st = await readStatus(this.lab.paths);
    return st ? this.view(st) : { counts: { created: 0, initialised: 0, started: 0, ready: 0 }, ready: [], failing: null };
  }

  private view(st: AgentStatus): View {
    const counts: Counts = { created: 0, initialised: 0, started: 0, ready: 0 };
    const ready: View['ready'] = [];
    if (st.agent.state !== 'running') return { counts, ready, failing: `the agent is ${st.agent.state}` };
    if (st.agent.planError) return { counts, ready, failing: `the agent refused the plan: ${st.agent.planError}` };
    if ((st.agent.planRevision ?? 0) < this.revision) return { counts, ready, failing: null };
    const byName = new Map<string, ProcessStatus>(st.processes.map((p) => [p.name, p]));
    let failing: string | null = null;
    for (const s of this.targets) {
      const p = byName.get(`pg${s.id}`);
      if (!p) continue;
      const current = p.state === 'running' && p.ports.pg === (s.port || p.ports.pg) && (p.info.qos ?? undefined) === s.qos;
      const rank = current ? 4 : p.state === 'starting' ? (PHASE_RANK[p.phase ?? ''] ?? 0) : 0;
      if (rank >= 1) counts.created++;
      if (rank >= 2) counts.initialised++;
      if (rank >= 3) counts.started++;
      if (rank >= 4) {
        counts.ready++;
        ready.push({ id: s.id, url: String(p.info.url) });
      }
      if (p.state === 'backoff' && p.failures >= 3 && p.lastError && !failing) failing = `pg${s.id} cannot start: ${p.lastError} (log: ${p.log})`;
    }
    return { counts, ready, failing };
  }

  poke(): void {
    this.wake?.();
  }

  close(): void {
    this.watcher.close();
    this.wake?.();
  }
}

/**
 * Another host's shards: its agent's status is not here, so each shard is ready once it accepts
 * a TCP connection on its port, tried once per round with a growing pause (1 s up to 5 s).
 */
class RemoteProgress implements Progress {
  private readonly done = new Set<number>();
  private pause = 1_000;
  private first = true;

  constructor(private readonly host: string, private readonly targets: ShardPlan[]) {}

  async next(maxMs: number): Promise<View> {
    if (!this.first) {
      await new Promise((r) => setTimeout(r, Math.min(maxMs, this.pause)));
      this.pause = Math.min(5_000, this.pause * 1.5);
    }
    this.first = false;
    const limiter = new Limiter(32);
    await Promise.all(this.targets.filter((s) => !this.done.has(s.id)).map((s) => limiter.run(async () => {
      if (await connects(this.host, s.port)) this.done.add(s.id);
    })));
    const n = this.done.size;
    return {
      counts: { created: n, initialised: n, started: n, ready: n },
      ready: this.targets.filter((s) => this.done.has(s.id)).map((s) => ({ id: s.id, url: `postgres://${SHARD_ROLE}@${this.host}:${s.port}/${s.database}` })),
      failing: null,
    };
  }

  poke(): void {}

  close(): void {}
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(1_000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------
// The REST API
// ---------------------------------------------------------------------------------------------

async function readToken(lab: Lab): Promise<string> {
  try {
    return (await fs.readFile(lab.paths.adminToken, 'utf8')).trim();
  } catch {
    throw new LabError(`no admin token in ${lab.paths.adminToken}: it is made by parley up (run it once more to make one)`);
  }
}

function apiFromStatus(lab: Lab): string {
  const http = lab.status?.frontDoor?.http;
  if (!http) throw new LabError('this cluster has no front door to reach the REST API through; give its address with --api http://HOST:PORT');
  return `http://${http}`;
}

/** The few REST calls provisioning makes, each failure one clear line. */
class AdminApi {
  constructor(private readonly base: string, private readonly token: string) {}

  /**
   * One REST call. Every call provisioning makes is idempotent (PUT, GET), so a transport failure
   * or a 502/503 from the front door (an instance restarting under the load of a thousand new
   * shards) is tried again, up to 4 times with a growing pause, before it is reported.
   */
  private async call(method: string, route: string, body?: unknown): Promise<RestAnswer> {
    try {
      return await restCall(this.base, this.token, method, route, body, {
        attempts: 4,
        pauseMs: (attempt) => 250 * 2 ** attempt,
        timeoutMs: 10_000,
        retryStatus: (status) => status === 502 || status === 503,
      });
    } catch (err) {
      throw new LabError(`the REST API at ${this.base} does not answer (${(err as Error).message}); is the cluster up (parley status)?`);
    }
  }

  private fail(what: string, r: { status: number; json: unknown }): never {
    const msg = (r.json as { error?: unknown } | null)?.error;
    const hint = r.status === 401 || r.status === 403 ? ' (the instances read the admin token at start; after a new token: parley restart --rolling)' : r.status === 404 ? ' (do the instances run a version with the REST API?)' : '';
    throw new LabError(`${what}: HTTP ${r.status}${typeof msg === 'string' ? `: ${msg}` : ''}${hint}`);
  }

  /** Every class the mapping names must exist. */
  async checkClasses(m: QosFrom | undefined): Promise<void> {
    if (!m) return;
    const names = new Set([...(m.default ? [m.default] : []), ...m.ranges.map((r) => r.class)]);
    if (names.size === 0) return;
    const r = await this.call('GET', '/api/qos/classes');
    if (r.status !== 200) this.fail('GET /api/qos/classes', r);
    const have = new Set(((r.json as { classes?: Array<{ name: string }> }).classes ?? []).map((c) => c.name));
    const missing = [...names].filter((n) => !have.has(n));
    if (missing.length) throw new LabError(`no QoS class ${missing.map((n) => `"${n}"`).join(', ')} in the cluster; create it first (PUT /api/qos/classes/<name>)`);
  }

  async putShard(s: ShardPlan, url: string, host: string): Promise<void> {
    const body = { url, host, port: s.port || Number(new URL(url).port), ...(s.qos !== undefined ? { qos: s.qos } : {}) };
    const r = await this.call('PUT', `/api/shards/${s.id}`, body);
    if (r.status !== 200 && r.status !== 201) this.fail(`PUT /api/shards/${s.id}`, r);
  }
}

// ---------------------------------------------------------------------------------------------
// Progress bar and summary
// ---------------------------------------------------------------------------------------------

class Bar {
  private readonly bar: cliProgress.SingleBar | null;
  private lastLine = 0;
  private last = '';

  constructor(private readonly total: number, live: boolean) {
    this.bar = live && process.stdout.isTTY
      ? new cliProgress.SingleBar({
          format: 'shards {bar} {value}/{total} ready | created {created} | initialised {initialised} | started {started} | registered {registered} | {duration_formatted}',
          hideCursor: true,
          barsize: 30,
        }, cliProgress.Presets.shades_classic)
      : null;
    this.bar?.start(total, 0, { created: 0, initialised: 0, started: 0, registered: 0 });
  }

  update(c: Counts, registered: number): void {
    if (this.bar) {
      this.bar.update(c.ready, { ...c, registered });
      return;
    }
    const line = `created ${c.created}, initialised ${c.initialised}, started ${c.started}, ready ${c.ready}, registered ${registered} of ${this.total}`;
    if (line !== this.last && (Date.now() - this.lastLine > 2_000 || registered === this.total)) {
      say(line);
      this.last = line;
      this.lastLine = Date.now();
    }
  }

  stop(registered: number): void {
    if (this.bar) {
      this.bar.update({ registered });
      this.bar.stop();
    }
  }
}

interface Usage {
  shards: number;
  processes: number;
  pss: number;
  rss: number;
  disk: number;
}

/** RAM (PSS and RSS from /proc of every process of each shard) and disk (du) of the shards. */
export async function shardUsage(lab: Lab, shards: ShardPlan[]): Promise<Usage> {
  const st = await readStatus(lab.paths);
  const ids = new Set(shards.map((s) => `pg${s.id}`));
  const pids = (st?.processes ?? []).filter((p) => ids.has(p.name) && p.pid !== null).map((p) => p.pid!);
  let pss = 0;
  let rss = 0;
  let processes = 0;
  for (const pid of pids) {
    for (const q of [pid, ...childrenOf(pid)]) {
      const m = memoryOf(q);
      if (!m) continue;
      processes++;
      pss += m.pss;
      rss += m.rss;
    }
  }
  const dirs = shards.map((s) => lab.paths.pgData(s.id)).filter((d) => fsSync.existsSync(d));
  let disk = 0;
  for (let i = 0; i < dirs.length; i += 200) {
    const { stdout } = await execFileP('du', ['-sck', ...dirs.slice(i, i + 200)], { maxBuffer: 16 * 1024 * 1024 });
    disk += Number(/(\d+)\s+total\s*$/.exec(stdout)?.[1] ?? 0) * 1024;
  }
  return { shards: pids.length, processes, pss, rss, disk };
}

function childrenOf(pid: number): number[] {
  try {
    return fsSync.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function memoryOf(pid: number): { pss: number; rss: number } | null {
  try {
    const text = fsSync.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { pss: kb('Pss'), rss: kb('Rss') };
  } catch {
    return null;
  }
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** `3-7, 9` for a sorted list of numbers. */
export function range(xs: number[]): string {
  const sorted = [...xs].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.length > 6 ? `${parts.slice(0, 3).join(', ')}, … ${parts.slice(-2).join(', ')}` : parts.join(', ');
}
