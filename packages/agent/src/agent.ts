/**
 * The per-host agent (`parley agent`): starts etcd from the local host file (etcd cannot come from
 * the plan it stores), then watches `/<prefix>/hosts/<host>/plan` and makes the host run what it
 * says: Redis, PostgreSQL shards (initdb once into a template, then copies; each gets its database
 * and its `/<prefix>/shards/<n>` entry), Parley instances and the HAProxy front door, whose backend
 * list follows the registry. Dead processes are restarted with backoff; everything is recorded in
 * the state directory's status.json, which `parley status` reads.
 *
 * SIGTERM/SIGINT stop everything in order: instances (they drain), the front door, shards, Redis,
 * etcd; then the agent exits.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { startEtcd } from './etcd.js';
import { ensureEtcdAuth } from './etcd-auth.js';
import { FrontDoorController } from './frontdoor.js';
import { startHaproxy } from './haproxy.js';
import { ensureCertificates, type LabCertificates } from './tls-certs.js';
import { describeZodError, withTimeout, etcdKeys, parseInstanceRecord, putShardEntry, QosClassSchema, ShardEntryError, type EtcdKeys, type PostgresSettings } from '@parley/contracts';
import { etcdEndpoints, emptyPlan, HostFileSchema, parsePlan, type HostFile, type HostPlan, type InstancePlan, type ShardPlan } from './plan.js';
import { freePort, looksLikeAddrInUse } from './ports.js';
import { pgRunAs } from './postgres.js';
import { runningProcesses, spawnManaged, type ExitInfo, type ManagedProcess } from './proc.js';
import {
  checkNoPostmaster,
  createShardDataDir,
  ensureShardRole,
  initShardTemplate,
  Limiter,
  renderShardConf,
  SHARD_ROLE,
  shardRoleCurrent,
  startShardProcess,
  superuserClient,
  templateHasDatabase,
  writeShardConf,
  writeShardHba,
  type ShardSocket,
} from './shards.js';
import { labAclUsers, startRedis } from './redis.js';
import { ensureSecrets, LAB_USERS, readSecret, readSecretFile, type SecretName } from './secrets.js';
import {
  initStateDir,
  liveAgent,
  lockDir,
  procStartTicks,
  readJsonFile,
  statePaths,
  StateDirError,
  writeJsonAtomic,
  type AgentStatus,
  type StatePaths,
} from './statedir.js';
import { Supervisor, type Running, type UnitSpec } from './supervisor.js';

export interface AgentOptions {
  stateDir: string;
  /** argv that runs `parley server` (options are appended), e.g. [node, --import, tsx, main.ts, server] */
  serverCommand: string[];
  log?: (line: string) => void;
  /**
   * Shards being created and started at a time (template copy, start, readiness); the others
   * wait their turn. Default 16, or $PARLEY_SHARD_START_CONCURRENCY.
   */
  shardStartConcurrency?: number;
}

export class AgentError extends Error {}

const STOP_ORDER = [['server'], ['haproxy'], ['shard'], ['redis'], ['etcd']] as const;

export class Agent {
  readonly paths: StatePaths;
  private host!: HostFile;
  private readonly sup: Supervisor;
  private client: Etcd3 | null = null;
  private planWatch: Watcher | null = null;
  private plan: HostPlan = emptyPlan();
  private planRevision: number | null = null;
  private planError: string | null = null;
  private frontDoor: FrontDoorController | null = null;
  private frontDoorKey = '';
  private ports: Record<string, number> = {};
  private portLock: Promise<unknown> = Promise.resolve();
  private applying: Promise<void> = Promise.resolve();
  private readonly startedAt = Date.now();
  private state: AgentStatus['agent']['state'] = 'running';
  private statusTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly ticks = new Map<number, number | null>();
  private stopping: Promise<void> | undefined;
  private readonly log: (line: string) => void;
  private readonly stopped: Promise<void>;
  private resolveStopped!: () => void;
  private readonly shardStarts: Limiter;
  private discarding = false;

  constructor(private readonly o: AgentOptions) {
    this.paths = statePaths(o.stateDir);
    this.log = o.log ?? ((line) => process.stdout.write(`${new Date().toISOString()} ${line}\n`));
    this.sup = new Supervisor({ log: this.log });
    const n = o.shardStartConcurrency ?? Number(process.env.PARLEY_SHARD_START_CONCURRENCY ?? 16);
    this.shardStarts = new Limiter(Number.isInteger(n) && n > 0 ? n : 16);
    this.sup.on('change', () => this.scheduleStatus());
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  /** Starts and returns once the agent runs; `done` resolves after stop(). */
  async start(): Promise<void> {
    // Whatever the agent and its children create (status, AOF, etcd's files, configs) is the owner's
    // only; the few directories PostgreSQL must pass through get their modes explicitly (lockDir).
    process.umask(0o077);
    await initStateDir(this.paths.root);
    await lockDir(this.paths.haproxyDir);
    const raw = await readJsonFile(this.paths.hostFile);
    if (raw === undefined) throw new AgentError(`no host file ${this.paths.hostFile}: run \`parley up\` (or write it) first`);
    const hf = HostFileSchema.safeParse(raw);
    if (!hf.success) throw new StateDirError(`${this.paths.hostFile} is invalid: ${describeZodError(hf.error)}`);
    this.host = hf.data;
    // Every managed backend gets credentials; made here too, for an agent started without `up`.
    const made = await ensureSecrets(this.paths.root);
    if (made.length > 0) this.log(`made secrets: ${made.join(', ')} (in ${this.paths.secrets}, mode 0600)`);
    this.ports = ((await readJsonFile(this.paths.portsFile).catch(() => undefined)) ?? {}) as Record<string, number>;
    await this.takePidFile();
    this.log(`agent ${process.pid} for host ${this.host.host}, state ${this.paths.root}, etcd ${etcdEndpoints(this.host).join(',')}`);

    this.heartbeat = setInterval(() => this.scheduleStatus(), 2_000);
    await this.applySpecs();
    this.connectEtcd().then(() => this.watchPlan()).catch((err: Error) => this.log(`plan watch failed: ${err.stack ?? err.message}`));
    await this.writeStatus();
  }

  get done(): Promise<void> {
    return this.stopped;
  }

  private async takePidFile(): Promise<void> {
    const live = await liveAgent(this.paths);
    if (live && live.pid !== process.pid) throw new AgentError(`another agent (pid ${live.pid}) already runs for ${this.paths.root}`);
    await fs.rm(this.paths.pidFile, { force: true });
    try {
      await fs.writeFile(this.paths.pidFile, `${process.pid}\n`, { flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AgentError(`another agent is starting for ${this.paths.root}`);
      throw err;
    }
  }

  // ---- the plan ----------------------------------------------------------------------------

  private get prefix(): string {
    return this.host.prefix;
  }

  private get keys(): EtcdKeys {
    return etcdKeys(this.host.prefix);
  }

  /**
   * The etcd client is made once our etcd runs: a gRPC channel that first fails to connect backs
   * off for seconds, which would delay everything after it.
   */
  private async connectEtcd(): Promise<void> {
    if (this.host.etcd.managed) await this.sup.when(() => this.sup.isRunning('etcd') || this.stopping !== undefined);
    const auth = this.host.etcdAuth;
    this.client = new Etcd3({
      hosts: etcdEndpoints(this.host),
      dialTimeout: 2_000,
      ...(auth ? { auth: { username: auth.user, password: readSecretFile(auth.passwordFile, 'etcd password') } } : {}),
    });
  }

  private secret(name: SecretName): string {
    return readSecret(this.paths.root, name);
  }

  /** etcd with authentication: the host file names the agent's etcd user (`parley up` writes it). */
  private get etcdAuthOn(): boolean {
    return this.host.etcdAuth !== undefined;
  }

  private async watchPlan(): Promise<void> {
    if (this.stopping) return;
    const key = this.keys.hostPlan(this.host.host);
    const client = this.client!;
    const onKv = (kv: IKeyValue | undefined): void => {
      if (!kv) {
        this.enqueuePlan(emptyPlan(), null);
        return;
      }
      const r = parsePlan(kv.value.toString());
      if (!r.ok) {
        this.planError = r.error;
        this.log(`plan ${key} is invalid; keeping the previous one: ${r.error}`);
        this.scheduleStatus();
        return;
      }
      this.enqueuePlan(r.plan, Number(kv.mod_revision));
    };
    const reread = async (): Promise<void> => {
      const res = await client.get(key).exec();
      onKv(res.kvs[0]);
    };
    for (;;) {
      if (this.stopping) return;
      try {
        await reread();
        break;
      } catch {
        await new Promise<void>((r) => setTimeout(r, 300).unref());
      }
    }
    try {
      const w = await client.watch().key(key).create();
      if (this.stopping) {
        await w.cancel();
        return;
      }
      this.planWatch = w;
      w.on('put', (kv: IKeyValue) => onKv(kv));
      w.on('delete', () => onKv(undefined));
      w.on('connected', () => void reread().catch(() => undefined));
      w.on('error', (err: Error) => this.log(`plan watch error: ${err.message}`));
    } catch (err) {
      this.log(`cannot watch ${key}: ${(err as Error).message}`);
    }
  }

  private enqueuePlan(plan: HostPlan, revision: number | null): void {
    this.applying = this.applying.then(async () => {
      if (this.stopping) return;
      if (revision !== null && this.planRevision !== null && revision < this.planRevision) return;
      this.plan = plan;
      this.planRevision = revision;
      this.planError = null;
      this.log(`applying plan (revision ${revision ?? 'none'}): redis ${plan.redis ? 'yes' : 'no'}, ${plan.shards.length} shard(s), ${plan.instances.length} instance(s), front door ${plan.frontDoor ? 'yes' : 'no'}`);
      await this.applySpecs();
    }).catch((err: Error) => {
      this.planError = err.message;
      this.log(`applying the plan failed: ${err.stack ?? err.message}`);
    });
  }

  /** Re-applies the current plan (e.g. after an auto-picked port turned out taken). */
  private reapply(): void {
    this.enqueuePlan(this.plan, this.planRevision);
  }

  private async applySpecs(): Promise<void> {
    const specs: UnitSpec[] = [];
    if (this.host.etcd.managed) specs.push(this.etcdSpec());
    const p = this.plan;
    const redisPort = p.redis ? await this.pickPort('redis', p.redis.port) : 0;
    if (p.redis) specs.push(this.redisSpec(redisPort));
    // The user goes in the URL, the password in a file the instance reads (--redis-password-file).
    const redisUrl = p.redis ? `redis://${LAB_USERS.redisInstance}@127.0.0.1:${redisPort}` : p.redisUrl;
    for (const s of p.shards) specs.push(this.shardSpec(s, await this.pickPort(`pg${s.id}`, s.port)));
    // The certificates before anything that serves them (a failure is the plan's error: no openssl).
    const certs = p.tls ? await this.ensureTls(p) : null;
    let stsPort: number | undefined;
    if (p.frontDoor) {
      const irc = await this.pickPort('frontdoor.irc', p.frontDoor.ircPort);
      const http = await this.pickPort('frontdoor.http', p.frontDoor.httpPort);
      const tlsIrc = p.tls && p.frontDoor.tlsIrcPort !== undefined ? await this.pickPort('frontdoor.tls-irc', p.frontDoor.tlsIrcPort) : undefined;
      const https = p.tls && p.frontDoor.httpsPort !== undefined ? await this.pickPort('frontdoor.https', p.frontDoor.httpsPort) : undefined;
      specs.push(await this.haproxySpec(irc, http, tlsIrc, https));
      stsPort = tlsIrc;
    } else {
      await this.stopFrontDoor();
    }
    if (redisUrl !== undefined) for (const i of p.instances) specs.push(this.instanceSpec(i, redisUrl, certs, stsPort));
    this.sup.apply(specs);
    this.scheduleStatus();
  }

  /**
   * The lab's CA and server certificate in `<state>/tls/`, for every name a client of this host
   * may use (localhost, the host name, loopback, the front door's address): kept while valid for
   * those names, else a new server certificate from the same CA (the instances reload it).
   */
  private async ensureTls(p: HostPlan): Promise<LabCertificates> {
    const ips = new Set(['127.0.0.1', '::1']);
    for (const a of [p.frontDoor?.bind, ...p.instances.map((i) => i.host)]) {
      if (a !== undefined && net.isIP(a) !== 0 && a !== '0.0.0.0' && a !== '::') ips.add(a);
    }
    const dns = [...new Set(['localhost', os.hostname()])];
    const { certs, made } = await ensureCertificates(this.paths.tlsDir, { dns, ips: [...ips] });
    if (made) this.log(`made the server certificate (${made}) for ${[...dns, ...ips].join(', ')}, signed by ${certs.ca}`);
    return certs;
  }

  // ---- ports ------------------------------------------------------------------------------

  /** A planned port, or (for 0) the one picked before if still free, else a new free one. */
  private pickPort(key: string, planned: number): Promise<number> {
    if (planned > 0) return Promise.resolve(planned);
    const job = this.portLock.then(async () => {
      const known = this.ports[key];
      const mine = this.sup.snapshot().some((u) => Object.values(u.ports).includes(known ?? -1));
      if (known !== undefined && (mine || (await portFree(known)))) return known;
      const taken = new Set(Object.values(this.ports));
      let port = await freePort();
      while (taken.has(port)) port = await freePort();
      if (known !== undefined) this.log(`${key}: port ${known} is in use by another program; using ${port}`);
      this.ports[key] = port;
      await writeJsonAtomic(this.paths.portsFile, this.ports);
      return port;
    });
    this.portLock = job.catch(() => undefined);
    return job;
  }

  /**
   * After "address in use" on auto-picked ports (`[key, planned port]`, 0 = auto): forget them and
   * plan again (new ports, a new spec). A planned port is the plan's to change, not ours.
   */
  private portTaken(err: unknown, ...ports: Array<[key: string, planned: number]>): void {
    if (!looksLikeAddrInUse(String((err as Error)?.message ?? err))) return;
    const auto = ports.filter(([key, planned]) => planned === 0 && key in this.ports);
    for (const [key] of auto) delete this.ports[key];
    if (auto.length > 0) this.reapply();
  }

  // ---- units ------------------------------------------------------------------------------

  private etcdSpec(): UnitSpec {
    const e = this.host.etcd;
    if (!e.managed) throw new Error('unreachable');
    return {
      name: 'etcd',
      kind: 'etcd',
      hash: JSON.stringify(e),
      deps: [],
      log: this.paths.log('etcd'),
      start: async () => {
        const h = await startEtcd({ dataDir: this.paths.etcdData, clientPort: e.clientPort, peerPort: e.peerPort, logFile: this.paths.log('etcd') });
        if (this.etcdAuthOn) {
          try {
            await ensureEtcdAuth({
              endpoints: [h.endpoint], prefix: this.prefix, log: this.log,
              rootPassword: readSecretFile(this.host.etcdAuth!.passwordFile, 'etcd root password'),
              instancePassword: this.secret('etcd-parley'),
            });
          } catch (err) {
            await h.stop();
            throw err;
          }
        }
        return { pid: h.pid, exited: exitedOf(h.pid), stop: () => h.stop(), ports: { client: e.clientPort, peer: e.peerPort }, info: { endpoint: h.endpoint } };
      },
    };
  }

  private redisSpec(port: number): UnitSpec {
    const r = this.plan.redis!;
    return {
      name: 'redis',
      kind: 'redis',
      hash: JSON.stringify({ r, port }),
      deps: [],
      log: this.paths.log('redis'),
      start: async () => {
        try {
          const settings: Record<string, string> = r.persist ? { appendonly: 'yes', appendfsync: 'everysec' } : {};
          const admin = this.secret('redis-admin');
          const h = await startRedis({
            dir: this.paths.redisDir, port, logFile: this.paths.log('redis'), settings,
            aclUsers: labAclUsers(this.prefix, { admin, parley: this.secret('redis-parley') }),
            auth: { username: LAB_USERS.redisAdmin, password: admin },
          });
          return { pid: h.pid, exited: exitedOf(h.pid), stop: () => h.stop(), ports: { redis: port }, info: { url: h.url } };
        } catch (err) {
          this.portTaken(err, ['redis', r.port]);
          throw err;
        }
      },
    };
  }

  private shardSpec(s: ShardPlan, port: number): UnitSpec {
    const name = `pg${s.id}`;
    return {
      name,
      kind: 'shard',
      hash: JSON.stringify({ s, port }),
      deps: this.host.etcd.managed ? ['etcd'] : [],
      log: this.paths.log(name),
      start: (progress) =>
        this.shardStarts.run(async () => {
          const dataDir = this.paths.pgData(s.id);
          const rolePassword = this.secret('pg-parley');
          let proc: ManagedProcess;
          try {
            await this.letPostgresIn();
            const template = await initShardTemplate(this.paths.pgTemplate, { rolePassword });
            await checkNoPostmaster(dataDir);
            await lockDir(path.dirname(dataDir), { postgres: true });
            await createShardDataDir(template, dataDir);
            progress('created');
            await writeShardConf(dataDir, renderShardConf({ port, socketDir: this.paths.pgSockets, ...(await this.shardClass(s)) }));
            await writeShardHba(dataDir);
            progress('initialised');
            proc = await startShardProcess({ name, dataDir, port, logFile: this.paths.log(name), timeoutMs: 60_000, onSpawn: () => progress('started') });
          } catch (err) {
            this.portTaken(err, [name, s.port]);
            throw err;
          }
          try {
            const sock: ShardSocket = { socketDir: this.paths.pgSockets, port };
            const created = !(await templateHasDatabase(dataDir, s.database)) && (await ensureDatabase(sock, s.database));
            // A copy of a template made before roles (or with another password): brought in line once.
            if (created || !(await shardRoleCurrent(dataDir, rolePassword))) await ensureShardRole(sock, dataDir, [s.database], rolePassword);
            // No password in the URL (it is in etcd for every instance to read): instances take it from --pg-password-file.
            const url = `postgres://${SHARD_ROLE}@127.0.0.1:${port}/${s.database}`;
            if (s.register !== false) await this.registerShard(s, url);
            return {
              pid: proc.pid,
              exited: proc.exited,
              // Fast shutdown (a checkpoint, so the next start needs no recovery), then immediate.
              stop: async () => {
                await proc.stop(this.discarding ? ['SIGQUIT'] : ['SIGINT', 'SIGQUIT'], 10_000);
              },
              ports: { pg: port },
              info: { url, ...(s.qos !== undefined ? { qos: s.qos } : {}) },
            } satisfies Running;
          } catch (err) {
            await proc.stop(['SIGQUIT'], 5_000);
            throw err;
          }
        }),
    };
  }

  /**
   * The shard's QoS class, for its postgresql.conf: read from etcd at each start (so a class
   * changed since applies at the next restart). A class that is missing or invalid leaves the
   * profile alone, said in the file and the log.
   */
  private async shardClass(s: ShardPlan): Promise<{ className?: string; classSettings?: PostgresSettings; classNote?: string }> {
    if (s.qos === undefined) return {};
    const key = this.keys.qosClass(s.qos);
    const text = await withTimeout(this.client!.get(key).string(), 5_000, `etcd did not answer for ${key}`);
    if (text === null) {
      this.log(`pg${s.id}: QoS class "${s.qos}" does not exist (${key}); the shard runs with the profile alone`);
      return { className: s.qos, classNote: 'does not exist; profile alone' };
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      raw = undefined;
    }
    const r = QosClassSchema.safeParse(raw);
    if (!r.success) {
      this.log(`pg${s.id}: QoS class "${s.qos}" is invalid (${r.error ? describeZodError(r.error) : 'not JSON'}); the shard runs with the profile alone`);
      return { className: s.qos, classNote: 'invalid; profile alone' };
    }
    return { className: s.qos, classSettings: r.data.postgres ?? {} };
  }

  /**
   * PostgreSQL runs as its own user (when we are root) and must be able to pass through the state
   * directory to its data and its socket: the directories on the way are 0710 with its group (see
   * lockDir), closed to everyone else. The socket directory is its own, 0700. The state
   * directory's parents are the user's business; startPostgres names the one in the way.
   */
  private async letPostgresIn(): Promise<void> {
    if (this.letIn) return;
    for (const dir of [this.paths.root, this.paths.run, path.dirname(this.paths.pgTemplate)]) await lockDir(dir, { postgres: true });
    await fs.mkdir(this.paths.pgSockets, { recursive: true, mode: 0o700 });
    await fs.chmod(this.paths.pgSockets, 0o700);
    const who = pgRunAs();
    if (who) await fs.chown(this.paths.pgSockets, who.uid, who.gid);
    this.letIn = true;
  }

  private letIn = false;

  /**
   * The shard's entry (`mergeShardEntry`: created, or its URL and the plan's pool size written,
   * other fields kept). Retried while etcd comes up.
   */
  private async registerShard(s: ShardPlan, url: string): Promise<void> {
    const client = this.client!;
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const w = await putShardEntry(client, this.prefix, { id: s.id, url, ...(s.poolSize !== undefined ? { poolSize: s.poolSize } : {}) });
        if (w.outcome === 'replaced') this.log(`shard entry ${w.key} was not a JSON object; rewrote it`);
        if (w.outcome !== 'unchanged') this.log(`shard ${s.id} registered at ${w.key}: ${url}`);
        return;
      } catch (err) {
        if (err instanceof ShardEntryError) throw err;
        if (Date.now() > deadline) throw new Error(`cannot register shard ${s.id} in etcd: ${(err as Error).message}`);
        await new Promise<void>((r) => setTimeout(r, 300).unref());
      }
    }
  }

  /**
   * `certs`: the instance serves IRC over TLS and HTTPS/WSS on ports of its own (any free; the
   * front door reads them from the registry); `stsPort`: the front door's TLS port, which `sts`
   * sends plain IRC clients to (without it, the instance's own).
   */
  private instanceSpec(i: InstancePlan, redisUrl: string, certs: LabCertificates | null, stsPort: number | undefined): UnitSpec {
    const tls = this.plan.tls;
    const etcd = etcdEndpoints(this.host);
    const deps = [
      ...(this.host.etcd.managed ? ['etcd'] : []),
      ...(this.plan.redis ? ['redis'] : []),
      ...this.plan.shards.map((s) => `pg${s.id}`),
    ];
    const args = [
      '--id', i.id, '--server-name', i.serverName, '--host', i.host,
      '--tcp-port', String(i.tcpPort), '--ws-port', String(i.wsPort),
      '--etcd', etcd.join(','), '--redis', redisUrl, '--prefix', this.prefix, '--log-level', i.logLevel,
      ...(i.leaseSeconds !== undefined ? ['--lease-seconds', String(i.leaseSeconds)] : []),
      // The REST API's write token: `parley up` makes the file; without one, writes are refused.
      ...(fsSync.existsSync(this.paths.adminToken) ? ['--admin-token-file', this.paths.adminToken] : []),
      // Credentials as files (a command line is visible to every local user in `ps`).
      ...(this.plan.redis ? ['--redis-password-file', this.paths.secret('redis-parley')] : []),
      ...(this.plan.shards.length > 0 ? ['--pg-password-file', this.paths.secret('pg-parley')] : []),
      ...(this.host.etcd.managed && this.etcdAuthOn ? ['--etcd-user', LAB_USERS.etcdInstance, '--etcd-password-file', this.paths.secret('etcd-parley')] : []),
      // Payloads on the bus are signed with it; a forged PUBLISH never reaches a client.
      '--cluster-key-file', this.paths.secret('cluster-key'),
      // The front door (HAProxy, connecting from loopback) names each client's address: a PROXY
      // header on IRC and TLS, X-Forwarded-For on HTTP. So per-address limits and cloaks see clients.
      ...(this.plan.frontDoor ? ['--trusted-proxies', '127.0.0.1'] : []),
      ...(certs && tls
        ? [
            '--tls-cert', certs.cert, '--tls-key', certs.key, '--tls-port', '0', '--https-port', '0',
            '--sts-duration', String(tls.stsDurationSeconds), ...(stsPort !== undefined ? ['--sts-port', String(stsPort)] : []),
          ]
        : []),
    ];
    const [command, ...baseArgs] = this.o.serverCommand;
    return {
      name: i.id,
      kind: 'server',
      hash: JSON.stringify({ i, etcd, redisUrl, prefix: this.prefix, cmd: this.o.serverCommand, proxied: this.plan.frontDoor !== null, tls, stsPort }),
      deps,
      log: this.paths.log(i.id),
      start: async () => {
        const env: NodeJS.ProcessEnv = {};
        // The instance gets its options from the plan only, not from the agent's environment.
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PARLEY_')) env[k] = v;
        const proc = spawnManaged({ name: i.id, command: command!, args: [...baseArgs, ...args], logFile: this.paths.log(i.id), env });
        let ports: Record<string, number> = {};
        try {
          await proc.waitReady(async () => {
            const text = await this.client!.get(this.keys.instance(i.id)).string();
            const r = text === null ? undefined : parseInstanceRecord(text);
            if (!r?.ok || r.value.pid !== proc.pid || r.value.state !== 'ready') return false;
            ports = {
              tcp: r.value.tcpPort, ws: r.value.wsPort,
              ...(r.value.tlsPort !== undefined ? { tls: r.value.tlsPort } : {}), ...(r.value.httpsPort !== undefined ? { https: r.value.httpsPort } : {}),
            };
            return true;
          }, 60_000);
        } catch (err) {
          await proc.stop('SIGKILL');
          // The server's own last words (one line, `parley: ...`) say more than a timeout.
          const said = proc.logTail(30).split('\n').reverse().find((l) => l.startsWith('parley: '));
          throw said ? new Error(`${i.id}: ${said.slice('parley: '.length)}`) : err;
        }
        return {
          pid: proc.pid,
          exited: proc.exited,
          // SIGTERM drains: clients are told to reconnect (through the front door) and released.
          stop: async () => {
            await proc.stop('SIGTERM', 15_000);
          },
          ports,
          info: { serverName: i.serverName },
        } satisfies Running;
      },
    };
  }

  private async haproxySpec(ircPort: number, httpPort: number, tlsIrcPort: number | undefined, httpsPort: number | undefined): Promise<UnitSpec> {
    const fd = this.plan.frontDoor!;
    const tls = { irc: tlsIrcPort !== undefined, https: httpsPort !== undefined };
    const key = JSON.stringify({ slots: fd.slots, prefix: this.prefix, tls });
    if (this.frontDoor && this.frontDoorKey !== key) await this.stopFrontDoor();
    if (!this.frontDoor) {
      this.frontDoorKey = key;
      const ctl = new FrontDoorController({ client: this.client!, prefix: this.prefix, slots: fd.slots, tls, log: this.log, onChange: () => this.scheduleStatus() });
      this.frontDoor = ctl;
      void ctl.start();
    }
    const ctl = this.frontDoor;
    return {
      name: 'haproxy',
      kind: 'haproxy',
      hash: JSON.stringify({ fd, ircPort, httpPort, tlsIrcPort, httpsPort }),
      deps: [],
      log: this.paths.log('haproxy'),
      start: async () => {
        try {
          const h = await startHaproxy({
            bind: fd.bind, ircPort, httpPort, socket: this.paths.haproxySocket, slots: ctl.slotConfigs(),
            ...(tlsIrcPort !== undefined ? { tlsIrcPort } : {}), ...(httpsPort !== undefined ? { httpsPort } : {}),
            cfgFile: this.paths.haproxyCfg, logFile: this.paths.log('haproxy'),
          });
          await ctl.attach(this.paths.haproxySocket);
          void h.proc.exited.then(() => ctl.detach());
          const ports = { irc: ircPort, http: httpPort, ...(tlsIrcPort !== undefined ? { tlsIrc: tlsIrcPort } : {}), ...(httpsPort !== undefined ? { https: httpsPort } : {}) };
          return { pid: h.pid, exited: h.proc.exited, stop: () => h.stop(), ports, info: { bind: fd.bind } };
        } catch (err) {
          this.portTaken(err, ['frontdoor.irc', fd.ircPort], ['frontdoor.http', fd.httpPort], ['frontdoor.tls-irc', fd.tlsIrcPort ?? -1], ['frontdoor.https', fd.httpsPort ?? -1]);
          throw err;
        }
      },
    };
  }

  private async stopFrontDoor(): Promise<void> {
    const fd = this.frontDoor;
    this.frontDoor = null;
    await fd?.close();
  }

  // ---- status -----------------------------------------------------------------------------

  /**
   * Coalesces status writes: 50 ms apart for a small host, up to 500 ms for a thousand processes
   * (the file is then ~1 MB, and a thousand starting shards change it thousands of times).
   */
  private scheduleStatus(): void {
    if (this.statusTimer) return;
    const n = this.sup.size;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      void this.writeStatus();
    }, n > 100 ? Math.min(500, n / 2) : 50);
    this.statusTimer.unref();
  }

  private ticksOf(pid: number | null): number | null {
    if (pid === null) return null;
    if (!this.ticks.has(pid)) this.ticks.set(pid, procStartTicks(pid));
    return this.ticks.get(pid) ?? null;
  }

  status(): AgentStatus {
    const fd = this.plan.frontDoor;
    const hap = this.sup.snapshot().find((u) => u.name === 'haproxy');
    return {
      agent: {
        pid: process.pid,
        startTicks: this.ticksOf(process.pid),
        host: this.host.host,
        prefix: this.prefix,
        etcd: etcdEndpoints(this.host),
        startedAt: this.startedAt,
        updatedAt: Date.now(),
        state: this.state,
        planRevision: this.planRevision,
        planError: this.planError,
      },
      processes: this.sup.snapshot().map((u) => ({ ...u, startTicks: this.ticksOf(u.pid) })),
      frontDoor: fd && this.frontDoor
        ? {
            socket: this.paths.haproxySocket,
            irc: `${fd.bind}:${hap?.ports.irc ?? this.ports['frontdoor.irc'] ?? fd.ircPort}`,
            http: `${fd.bind}:${hap?.ports.http ?? this.ports['frontdoor.http'] ?? fd.httpPort}`,
            ...(this.plan.tls && fd.tlsIrcPort !== undefined ? { tlsIrc: `${fd.bind}:${hap?.ports.tlsIrc ?? this.ports['frontdoor.tls-irc'] ?? fd.tlsIrcPort}` } : {}),
            ...(this.plan.tls && fd.httpsPort !== undefined ? { https: `${fd.bind}:${hap?.ports.https ?? this.ports['frontdoor.https'] ?? fd.httpsPort}` } : {}),
            members: this.frontDoor.memberList(),
          }
        : null,
    };
  }

  private writing: Promise<void> = Promise.resolve();

  private writeStatus(): Promise<void> {
    this.writing = this.writing.then(() => writeJsonAtomic(this.paths.statusFile, this.status())).catch((err: Error) => {
      this.log(`cannot write ${this.paths.statusFile}: ${err.message}`);
    });
    return this.writing;
  }

  // ---- stop -------------------------------------------------------------------------------

  /**
   * Stops everything. `discard`: the data is about to be removed (`parley clean`), so shards stop
   * at once (immediate shutdown, no checkpoint) instead of cleanly.
   */
  stop(o: { discard?: boolean } = {}): Promise<void> {
    if (o.discard) this.discarding = true;
    this.stopping ??= (async () => {
      this.log('stopping: instances, front door, shards, Redis, etcd');
      this.state = 'stopping';
      await this.writeStatus();
      await this.planWatch?.cancel().catch(() => undefined);
      await this.sup.shutdown(STOP_ORDER.map((g) => [...g]));
      await this.stopFrontDoor();
      this.client?.close();
      clearInterval(this.heartbeat);
      clearTimeout(this.statusTimer);
      this.state = 'stopped';
      await this.writeStatus();
      await fs.rm(this.paths.pidFile, { force: true });
      this.log('stopped');
      this.resolveStopped();
    })();
    return this.stopping;
  }
}

/** The exit promise of a process started by one of the start* helpers (found by pid). */
function exitedOf(pid: number): Promise<ExitInfo> {
  const p = runningProcesses().find((x) => x.pid === pid);
  return p ? p.exited : Promise.resolve({ code: null, signal: null });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Creates the database unless it exists (as the superuser, over the private socket); resolves to whether it did. */
async function ensureDatabase(sock: ShardSocket, name: string): Promise<boolean> {
  const client = await superuserClient(sock);
  try {
    const r = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (r.rowCount !== 0) return false;
    await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    return true;
  } finally {
    await client.end().catch(() => {});
  }
}
