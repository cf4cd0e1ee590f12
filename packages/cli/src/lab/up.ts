/**
 * `parley up`: the whole cluster on this machine. Makes sure the host's agent runs (starting it
 * in the background if needed; it starts etcd from host.json), writes this host's plan into etcd
 * (Redis, N shards, M instances, the front door) and waits until the agent has made it so. The
 * agent does all process work; `up` is only "write the plan and run the agent". Run again, it
 * adopts the running agent and changes the plan if the counts changed.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Etcd3 } from 'etcd3';
import { etcdKeys } from '@parley/contracts';
import {
  certificatePaths,
  defaultHostName,
  ensureSecrets,
  LAB_USERS,
  freePort,
  initStateDir,
  liveAgent,
  pgBinaries,
  pidAlive,
  readStatus,
  sameProcess,
  writeJsonAtomic,
  type HostFile,
  type HostPlan,
  type StatePaths,
} from '@parley/agent';
import {
  LabError,
  MAX_INSTANCES,
  MAX_SHARDS,
  agentLastWords,
  checkStateDir,
  etcdClient,
  fmtDuration,
  parleyArgv,
  readHostFile,
  readPlan,
  repoRoot,
  sleep,
  updatePlan,
  waitConverged,
  type Lab,
} from './common.js';
import { stopLab } from './down.js';

/** Counts and ports left undefined keep what the plan has (or the defaults, for a new plan). */
export interface UpOptions {
  stateDir: string;
  instances?: number;
  shards?: number;
  ircPort?: number;
  httpPort?: number;
  bind?: string;
  /** true: TLS (lab CA, instances' TLS ports, the front door's TLS frontends); false: off; undefined: as the plan has it */
  tls?: boolean;
  /** front door: IRC over TLS (with TLS) */
  tlsIrcPort?: number;
  /** front door: HTTPS and WSS (with TLS) */
  httpsPort?: number;
  timeout: number;
}

export const UP_DEFAULTS = { instances: 2, shards: 4, ircPort: 6667, httpPort: 8080, tlsIrcPort: 6697, httpsPort: 8443, bind: '127.0.0.1' } as const;

const say = (s: string): void => void process.stdout.write(`${s}\n`);

export async function runUp(o: UpOptions): Promise<void> {
  const t0 = Date.now();
  if (o.instances !== undefined) checkCount('--instances', o.instances, MAX_INSTANCES);
  if (o.shards !== undefined) checkCount('--shards', o.shards, MAX_SHARDS);
  if ((o.tlsIrcPort !== undefined || o.httpsPort !== undefined) && o.tls === false) throw new LabError('--tls-irc-port and --https-port are front-door TLS ports: they do not go with --no-tls');
  checkBinaries(o.tls === true);
  const paths = checkStateDir(o.stateDir, true);
  // The state directory is the owner's only (host file, secrets, the agent's log it opens).
  process.umask(0o077);

  let live = await liveAgent(paths);
  let startedAgent = false;
  /** the admin token when this run made it (printed once), else null */
  let newToken: string | null = null;
  let host: HostFile;
  if (live) {
    host = (await readHostFile(paths))!;
    if (!live.fresh) live = await waitFresh(paths, live.pid);
    say(`adopting the running cluster in ${paths.root} (agent pid ${live.pid})`);
    newToken = await ensureAdminToken(paths);
    if (newToken !== null) say('note: made an admin token; running instances read it at their next restart (parley restart --rolling)');
  } else {
    const fresh = !(await readHostFile(paths));
    await checkFrontDoorPorts(o, fresh);
    await initStateDir(paths.root);
    await clearLeftovers(paths);
    await ensureSecrets(paths.root);
    host = await prepareHostFile(paths);
    newToken = await ensureAdminToken(paths);
    say(`starting Parley in ${paths.root} ...`);
    await startAgent(paths);
    startedAgent = true;
  }

  const lab: Lab = { paths, host, agentPid: 0, status: undefined };
  let client: Etcd3 | undefined;
  try {
    client = await waitEtcd(lab);
    const current = await readPlan(client, host);
    if (current.modRevision > 0 && o.shards !== undefined && o.shards < current.plan.shards.length) {
      throw new LabError(`cannot go from ${current.plan.shards.length} shards to ${o.shards}: rooms are pinned to their shard (history would be lost); keep --shards ${current.plan.shards.length} or start over with parley clean`);
    }
    const { plan, revision, changed } = await updatePlan(client, host, (p) => shapePlan(p, o));
    if (changed && !startedAgent) say(`plan changed: ${plan.instances.length} instance(s), ${plan.shards.length} shard(s)`);
    const done = await waitConverged(lab, client, plan, revision, o.timeout * 1000);
    printUp(paths, host, plan, done.status.frontDoor, Date.now() - t0);
    if (newToken !== null) {
      say(`  admin token:        ${newToken}`);
      say(`                      (shown once; kept in ${paths.adminToken}, mode 0600: REST API writes need it as Authorization: Bearer <token>)`);
    }
  } catch (err) {
    if (startedAgent) {
      // Nothing half-started stays behind.
      await stopLab(paths, { quiet: true }).catch(() => undefined);
    }
    throw err;
  } finally {
    client?.close();
  }
}

function checkCount(flag: string, n: number, max: number): void {
  if (!Number.isInteger(n) || n < 1 || n > max) throw new LabError(`${flag} must be an integer from 1 to ${max}, got ${n}`);
}

/** Every binary the cluster needs, before anything starts. */
function checkBinaries(tls: boolean): void {
  const onPath = (name: string, env: string | undefined, extra: string[] = []): boolean => {
    const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...extra];
    const candidates = env ? [env] : dirs.map((d) => path.join(d, name));
    return candidates.some((c) => {
      try {
        fsSync.accessSync(c, fsSync.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  };
  const missing: string[] = [];
  if (!onPath('etcd', process.env.PARLEY_ETCD_BIN)) missing.push('etcd (Debian package etcd-server)');
  if (!onPath('redis-server', process.env.PARLEY_REDIS_BIN)) missing.push('redis-server (redis-server)');
  if (!onPath('haproxy', process.env.PARLEY_HAPROXY_BIN, ['/usr/sbin', '/usr/local/sbin'])) missing.push('haproxy (haproxy)');
  try {
    pgBinaries();
  } catch {
    missing.push('PostgreSQL server binaries (postgresql)');
  }
  if (tls && !onPath('openssl', undefined)) missing.push('openssl (openssl), which makes the lab\'s certificates');
  if (missing.length) throw new LabError(`missing: ${missing.join(', ')}; install them (./parley runs scripts/setup, which does) and try again`);
}

/** Processes recorded by an agent that is gone (killed without clean-up): stop them first. */
async function clearLeftovers(p: StatePaths): Promise<void> {
  const pidText = await fs.readFile(p.pidFile, 'utf8').catch(() => undefined);
  const status = await readStatus(p);
  if (pidText !== undefined) {
    say(`note: removed a stale pid file (agent pid ${pidText.trim()} is not running)`);
    await fs.rm(p.pidFile, { force: true });
  }
  for (const proc of status?.processes ?? []) {
    if (!sameProcess(proc.pid, proc.startTicks)) continue;
    say(`note: stopping ${proc.name} (pid ${proc.pid}), left running by an earlier agent`);
    try {
      process.kill(proc.pid!, proc.kind === 'shard' ? 'SIGQUIT' : 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    for (let i = 0; i < 50 && pidAlive(proc.pid!); i++) await sleep(100);
  }
}

/**
 * The REST API's admin token: 32 random bytes in hex, made once per state directory (mode 0600,
 * created exclusively so two `up`s never make two). Resolves to the token when this call made it.
 */
export async function ensureAdminToken(p: StatePaths): Promise<string | null> {
  const token = crypto.randomBytes(32).toString('hex');
  try {
    await fs.writeFile(p.adminToken, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw err;
  }
}

/** host.json: made on first use; its etcd ports are kept, unless another program took them. */
async function prepareHostFile(p: StatePaths): Promise<HostFile> {
  const existing = await readHostFile(p);
  if (existing && !existing.etcd.managed) return existing;
  let clientPort = existing?.etcd.managed ? existing.etcd.clientPort : 0;
  let peerPort = existing?.etcd.managed ? existing.etcd.peerPort : 0;
  if (clientPort && !(await portFree(clientPort))) {
    const next = await freePort();
    say(`note: etcd's port ${clientPort} is in use by another program; etcd moves to ${next}`);
    clientPort = next;
  }
  if (peerPort && !(await portFree(peerPort))) peerPort = 0;
  if (!clientPort) clientPort = await freePort();
  while (!peerPort || peerPort === clientPort) peerPort = await freePort();
  const host: HostFile = {
    version: 1, host: existing?.host ?? defaultHostName(), prefix: existing?.prefix ?? 'parley', etcd: { managed: true, clientPort, peerPort },
    // The agent turns etcd's authentication on at its start and logs in as root, like the CLI.
    etcdAuth: { user: LAB_USERS.etcdRoot, passwordFile: p.secret('etcd-root') },
  };
  if (JSON.stringify(host) !== JSON.stringify(existing)) await writeJsonAtomic(p.hostFile, host);
  return host;
}

/**
 * Before anything starts: the front-door ports asked for (or the defaults, on a new state
 * directory) must be free. Ports kept from an earlier plan are checked by the front door itself.
 */
async function checkFrontDoorPorts(o: UpOptions, fresh: boolean): Promise<void> {
  const irc = o.ircPort ?? (fresh ? UP_DEFAULTS.ircPort : undefined);
  const http = o.httpPort ?? (fresh ? UP_DEFAULTS.httpPort : undefined);
  const tlsIrc = o.tlsIrcPort ?? (fresh && o.tls ? UP_DEFAULTS.tlsIrcPort : undefined);
  const https = o.httpsPort ?? (fresh && o.tls ? UP_DEFAULTS.httpsPort : undefined);
  const wanted = [[irc, 'IRC', '--irc-port'], [http, 'HTTP/WebSocket', '--http-port'], [tlsIrc, 'IRC over TLS', '--tls-irc-port'], [https, 'HTTPS/WSS', '--https-port']] as const;
  for (const [port, what, flag] of wanted) {
    if (port !== undefined && port !== 0 && !(await portFree(port, o.bind ?? UP_DEFAULTS.bind))) {
      throw new LabError(`port ${port} (${what} front door) is in use by another program; stop it or choose another port with ${flag}`);
    }
  }
  const named = wanted.filter(([port]) => port !== undefined && port !== 0);
  for (const [i, [port, , flag]] of named.entries()) {
    const other = named.slice(i + 1).find(([p]) => p === port);
    if (other) throw new LabError(`${flag} and ${other[2]} must differ`);
  }
}

export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Starts `parley agent` detached (its own session), logging to logs/agent.log. */
async function startAgent(p: StatePaths): Promise<void> {
  await fs.mkdir(p.logs, { recursive: true });
  const fd = fsSync.openSync(p.log('agent'), 'a', 0o600);
  fsSync.fchmodSync(fd, 0o600);
  const argv = parleyArgv('agent', '--state-dir', p.root);
  let child;
  try {
    child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], cwd: repoRoot });
  } finally {
    fsSync.closeSync(fd);
  }
  child.unref();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const live = await liveAgent(p);
    if (live?.fresh && live.pid === child.pid) return;
    const gone = await Promise.race([exited.then(() => true), sleep(100).then(() => false)]);
    if (gone) throw new LabError(`the agent did not start: ${await agentLastWords(p)}`);
    if (Date.now() > deadline) throw new LabError(`the agent did not start within 20 s (log: ${p.log('agent')})`);
  }
}

async function waitFresh(p: StatePaths, pid: number): Promise<{ pid: number; fresh: boolean; status: undefined }> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const live = await liveAgent(p);
    if (!live) break;
    if (live.fresh) return { pid: live.pid, fresh: true, status: undefined };
    await sleep(200);
  }
  throw new LabError(`the agent (pid ${pid}) runs but reports no status; see ${p.log('agent')}, or stop it with parley down`);
}

/** Waits until the agent reports etcd running, then connects (a client made too early backs off for seconds). */
async function waitEtcd(lab: Lab): Promise<Etcd3> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const live = await liveAgent(lab.paths);
    if (!live) throw new LabError(`the agent stopped: ${await agentLastWords(lab.paths)}`);
    const st = await readStatus(lab.paths);
    const etcd = st?.processes.find((x) => x.name === 'etcd');
    if (etcd && etcd.state === 'backoff' && etcd.failures >= 2) throw new LabError(`etcd cannot start: ${etcd.lastError} (log: ${etcd.log})`);
    if (etcd?.state === 'running' || !lab.host.etcd.managed) {
      const client = etcdClient(lab.host);
      try {
        await client.get(etcdKeys(lab.host.prefix).hostPlan(lab.host.host)).exec();
        return client;
      } catch {
        client.close();
      }
    }
    if (Date.now() > deadline) throw new LabError(`etcd did not come up within 30 s (log: ${lab.paths.log('etcd')})`);
    await sleep(50);
  }
}

/** The lab plan: Redis, shards 0..N-1, instances i1..iM (kept by id), the front door. */
export function shapePlan(p: HostPlan, o: Pick<UpOptions, 'instances' | 'shards' | 'ircPort' | 'httpPort' | 'bind' | 'tls' | 'tlsIrcPort' | 'httpsPort'>): HostPlan {
  const fresh = p.instances.length === 0 && p.shards.length === 0;
  const shards = o.shards ?? (fresh ? UP_DEFAULTS.shards : p.shards.length);
  const instances = o.instances ?? (fresh || p.instances.length === 0 ? UP_DEFAULTS.instances : p.instances.length);
  p.redis ??= { port: 0, persist: true, generation: 0 };
  for (let id = 0; p.shards.length < shards; id++) {
    if (!p.shards.some((s) => s.id === id)) p.shards.push({ id, port: 0, database: 'parley', generation: 0 });
  }
  p.instances = resizeInstances(p, instances);
  const fd = p.frontDoor ?? { slots: MAX_INSTANCES, generation: 0, bind: UP_DEFAULTS.bind, ircPort: UP_DEFAULTS.ircPort, httpPort: UP_DEFAULTS.httpPort };
  p.frontDoor = { ...fd, bind: o.bind ?? fd.bind, ircPort: o.ircPort ?? fd.ircPort, httpPort: o.httpPort ?? fd.httpPort };
  // TLS: on with --tls (kept by a later `up` without the flag), off with --no-tls.
  if (o.tls === true) p.tls ??= { stsDurationSeconds: 3600, generation: 0 };
  if (o.tls === false) p.tls = null;
  if (!p.tls && (o.tlsIrcPort !== undefined || o.httpsPort !== undefined)) throw new LabError('--tls-irc-port and --https-port need --tls (the lab runs without TLS)');
  if (p.tls) {
    p.frontDoor.tlsIrcPort = o.tlsIrcPort ?? p.frontDoor.tlsIrcPort ?? UP_DEFAULTS.tlsIrcPort;
    p.frontDoor.httpsPort = o.httpsPort ?? p.frontDoor.httpsPort ?? UP_DEFAULTS.httpsPort;
  } else {
    delete p.frontDoor.tlsIrcPort;
    delete p.frontDoor.httpsPort;
  }
  return p;
}

/** Keeps existing instances; adds the lowest free numbers i<n>, or removes the highest. */
export function resizeInstances(p: HostPlan, count: number): HostPlan['instances'] {
  const list = [...p.instances];
  const num = (id: string): number => Number(/^i(\d+)$/.exec(id)?.[1] ?? Number.MAX_SAFE_INTEGER);
  while (list.length > count) {
    let victim = 0;
    for (let i = 1; i < list.length; i++) if (num(list[i]!.id) >= num(list[victim]!.id)) victim = i;
    list.splice(victim, 1);
  }
  for (let n = 1; list.length < count; n++) {
    const id = `i${n}`;
    if (list.some((i) => i.id === id)) continue;
    list.push({ id, serverName: `${id}.parley.local`, host: '127.0.0.1', tcpPort: 0, wsPort: 0, logLevel: 'info', generation: 0 });
  }
  return list.sort((a, b) => num(a.id) - num(b.id) || a.id.localeCompare(b.id));
}

/** Whether the instances serve a browser client at `/` (an HTML page), through the front door. */
function printUp(p: StatePaths, host: HostFile, plan: HostPlan, fd: { irc: string; http: string; tlsIrc?: string; https?: string } | null, ms: number): void {
  const etcd = host.etcd.managed ? `http://127.0.0.1:${host.etcd.clientPort}` : host.etcd.endpoints.join(',');
  const irc = fd?.irc ?? '-';
  const http = fd?.http ?? '-';
  const [ircHost, ircPort] = splitHostPort(irc);
  const rel = path.relative(process.cwd(), p.root) || '.';
  const sd = rel === '.parley' ? '' : ` --state-dir ${rel.startsWith('..') ? p.root : rel}`;
  say('');
  say(`Parley is up: ${plan.instances.length} instance(s), ${plan.shards.length} shard(s), in ${fmtDuration(ms)}.`);
  say(`  Web client:         http://${http}/          dashboard: http://${http}/dashboard.html`);
  say(`  IRC (TCP):          irc://${irc}      e.g. irssi -c ${ircHost} -p ${ircPort}`);
  say(`  IRC over WebSocket: ws://${http}/      (subprotocol text.ircv3.net)`);
  say(`  HTTP API:           http://${http}/api/stats   /api/rooms   /metrics   /healthz`);
  if (plan.tls) printTls(p, fd);
  say(`  etcd:               ${etcd}`);
  say(`  state and logs:     ${p.root}`);
  say(`  credentials:        ${p.secrets}/ (mode 0600; etcd, Redis and PostgreSQL refuse connections without them)`);
  say(`Next: parley status${sd} | parley logs -f${sd} | parley scale server=<K>${sd} | parley down${sd}`);
}

/** The TLS addresses and how to trust the lab's CA (its key stays in the state directory). */
function printTls(p: StatePaths, fd: { tlsIrc?: string; https?: string } | null): void {
  const ca = certificatePaths(p.tlsDir).ca;
  const [host, port] = splitHostPort(fd?.tlsIrc ?? '-');
  say(`  IRC over TLS:       ircs://${fd?.tlsIrc ?? '-'}     e.g. irssi -c ${host} -p ${port} -tls -tls_cafile ${ca}`);
  say(`  HTTPS and WSS:      https://${fd?.https ?? '-'}/    wss://${fd?.https ?? '-'}/    e.g. curl --cacert ${ca} https://${fd?.https ?? '-'}/healthz`);
  say(`  TLS:                passed through to the instances (their keys stay there); plain IRC clients are told to move (sts)`);
  say(`  trust the lab's CA: ${ca}  (browsers: import it as an authority; its key never leaves ${p.tlsDir})`);
}

function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}
