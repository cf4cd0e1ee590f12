import os from 'node:os';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { InstanceOptions } from './config.js';
import { EtcdRegistry, EtcdUnavailableError, InvalidConfigError } from './cluster/registry.js';
import { RedisClusterState } from './cluster/state-redis.js';
import { COMMANDS } from './core/commands/table.js';
import { ChatNode } from './core/node.js';
import { Metrics } from './metrics.js';
import { guardProcess, unguardProcess } from './process-guard.js';
import { createHttpServer, createHttpsListener } from './net/http.js';
import { AdminAuth } from './net/api/index.js';
import { InstanceSampler } from './net/api/instances.js';
import { createTcpServer } from './net/tcp.js';
import { Door } from './net/door.js';
import type { TlsFiles } from './net/tls.js';
import { EtcdShardDirectory, type ShardedStore } from './store/index.js';
import { PgAccountStore } from './accounts/store-pg.js';
import { BacklogAdmission } from './core/admission.js';
import { closeRedis } from './cluster/broker-redis.js';
import { QosAdmission } from './qos/admission.js';
import { RedisTokenBuckets } from './qos/buckets-redis.js';
import { RedisQosCounters, type QosCounterStore } from './qos/counters.js';
import { QosDirectory } from './qos/directory.js';
import { EtcdQosFeed } from './qos/directory-etcd.js';
import { QosOutcomes } from './qos/outcomes.js';
import type { Redis } from 'ioredis';
import { urlWithPassword } from './secrets.js';
import { StartupError, firstLine, readStartupFiles } from './startup.js';
import { createBroker, createStore, qosConnection } from './wiring.js';
import { registerShards as registerShardUrls, withTimeout } from '@parley/contracts';

const REGISTRY_UPDATE_MS = 5000;
const RECONCILE_EVERY = 6; // registry updates, i.e. every 30 s

/**
 * One Parley instance: wires the registry (etcd), cluster state and broker (Redis), the message
 * store (PostgreSQL shards) and the chat node to the TCP and HTTP/WebSocket listeners (the
 * backends are built in wiring.ts, the files read at start in startup.ts).
 * `start` and `close` are idempotent; `close` stops accepting, tells clients to reconnect,
 * releases their nicks and channels, deregisters, and closes the backends in that order.
 */
export class ParleyServer {
  readonly id: string;
  readonly log: Logger;
  readonly metrics = new Metrics();
  private registry!: EtcdRegistry;
  private state!: RedisClusterState;
  private store!: ShardedStore;
  private accounts: PgAccountStore | null = null;
  private directory!: EtcdShardDirectory;
  /** shards the store reports down (id → why), for the API's shard list */
  private readonly downShards = new Map<number, string>();
  node!: ChatNode;
  /** QoS: every room's class and limits (live from etcd) and the cluster-wide message counters */
  qos!: { directory: QosDirectory; counters: QosCounterStore };
  private qosFeed: EtcdQosFeed | null = null;
  private qosRedis: Redis | null = null;
  private tcp!: net.Server;
  /** IRC over TLS and HTTPS/WSS listeners, when configured */
  private tlsServers: net.Server[] = [];
  private tlsFiles: TlsFiles | null = null;
  private door: Door | null = null;
  private http!: FastifyInstance;
  private timer: NodeJS.Timeout | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private ready = false;
  tcpPort = 0;
  wsPort = 0;
  /** 0 when not listening */
  tlsPort = 0;
  httpsPort = 0;

  constructor(readonly opts: InstanceOptions, log?: Logger) {
    this.id = opts.id ?? `${os.hostname().replace(/[^A-Za-z0-9_.-]/g, '')}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    this.log = (log ?? pino({ level: opts.logLevel })).child({ instance: this.id });
  }

  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const o = this.opts;
    guardProcess(this.metrics, this.log);
    const { adminToken, secrets, clusterKey, tlsFiles } = readStartupFiles(o, this.log, (pair) => {
      for (const set of this.tlsContexts) set(pair);
    });
    this.tlsFiles = tlsFiles;
    const redisUrl = urlWithPassword(o.redis, secrets.redis);
    const etcdPrefix = `/${o.prefix}`;
    this.registry = new EtcdRegistry(o.etcd, etcdPrefix, o.leaseSeconds, {
      config: (cfg) => this.node?.applyConfig(cfg),
      instanceGone: (id) => this.reap(id),
      registeredAgain: () => {
        this.node?.reassert().catch((err: Error) => this.log.error({ err: err.message }, 'putting local users back failed'));
      },
    }, this.log, secrets.etcd !== undefined ? { username: o.etcdUser, password: secrets.etcd } : undefined);
    let config;
    try {
      config = await this.registry.loadConfig(o.etcdTimeoutSeconds * 1000);
    } catch (err) {
      this.registry.client.close();
      if (err instanceof InvalidConfigError) throw new StartupError(err.message);
      const why = err instanceof EtcdUnavailableError ? `within ${o.etcdTimeoutSeconds}s` : `(${firstLine(err)})`;
      throw new StartupError(`cannot reach etcd at ${o.etcd.join(',')} ${why}; is it running?`);
    }

    const directory = (this.directory = new EtcdShardDirectory({
      client: this.registry.client, prefix: etcdPrefix, defaultPoolSize: o.pgPoolSize, logger: this.log,
      onShardsChanged: (shards) => {
        qosDirectory.shardsChanged();
        this.store?.shardsChanged(shards);
      },
    }));
    const qosDirectory = new QosDirectory(directory);
    this.qosFeed = new EtcdQosFeed(this.registry.client, etcdPrefix, qosDirectory, this.log);
    try {
      await this.registerShards();
      await directory.start();
      await this.qosFeed.start();
    } catch (err) {
      throw new StartupError(`etcd: cannot read or write the shard map: ${firstLine(err)}`);
    }
    if (directory.shards().length === 0) {
      throw new StartupError(`no PostgreSQL shard is configured under ${etcdPrefix}/shards/: pass --pg URL (or put a shard entry in etcd)`);
    }
    this.store = createStore({
      directory, qosDirectory, opts: o, password: secrets.pg, metrics: this.metrics, downShards: this.downShards, log: this.log,
    });
    try {
      await this.store.start();
    } catch (err) {
      throw new StartupError(`PostgreSQL: ${(err as Error).message}`);
    }

    this.state = new RedisClusterState(redisUrl, o.prefix, this.log);
    const qosRedis = (this.qosRedis = qosConnection(redisUrl, this.log));
    const counters = new RedisQosCounters(qosRedis, o.prefix, { log: this.log });
    this.qos = { directory: qosDirectory, counters };
    const admission = new QosAdmission({
      directory: qosDirectory,
      buckets: new RedisTokenBuckets(qosRedis, o.prefix),
      backlog: new BacklogAdmission(this.store, () => this.node.config.limits.storeBacklog),
      metrics: {
        failOpen: (n) => this.metrics.qosFailOpen.inc(n),
        took: (seconds) => this.metrics.qosTake.observe(seconds),
      },
      log: this.log,
    });
    this.node = new ChatNode({
      instanceId: this.id, serverName: o.serverName, config, state: this.state, store: this.store,
      // Accounts are pinned to shards like rooms (`acct:<name>`), through the same directory.
      accounts: (this.accounts = new PgAccountStore({ directory, ...(secrets.pg !== undefined ? { password: secrets.pg } : {}) })),
      broker: createBroker({ redisUrl, prefix: o.prefix, clusterKey, instanceId: this.id, metrics: this.metrics, log: this.log }),
      commands: COMMANDS, metrics: this.metrics, log: this.log,
      admission, outcomes: new QosOutcomes(qosDirectory, counters, (shard) => this.metrics.shardSeries(shard)),
    });
    try {
      await withTimeout(Promise.all([this.state.start(), this.node.start(), qosRedis.connect()]), 5000, 'no answer within 5s');
    } catch (err) {
      throw new StartupError(`cannot reach Redis at ${o.redis} (${firstLine(err)})`);
    }
    await this.node.recoverOwnId();

    const door = (this.door = new Door({
      config: () => this.node.config, redis: qosRedis, prefix: o.prefix, instanceId: this.id,
      clusterKey, trustedProxies: o.trustedProxies, log: this.log,
    }));
    this.tcp = createTcpServer({ node: this.node, door }).server;
    this.http = createHttpServer({
      node: this.node, door, ready: () => this.ready, clusterStats: () => this.clusterStats(),
      api: {
        etcd: this.registry.client, prefix: o.prefix, counters, auth: new AdminAuth(adminToken),
        shardDown: (id) => this.downShards.get(id) ?? null,
      },
    });
    try {
      await new Promise<void>((resolve, reject) => {
        this.tcp.once('error', reject);
        this.tcp.listen(o.tcpPort, o.host, () => resolve());
      });
      await this.http.listen({ port: o.wsPort, host: o.host });
      if (tlsFiles !== null) {
        const context = () => tlsFiles.current;
        const listeners = [
          ...(o.tlsPort !== undefined ? [{ port: o.tlsPort, l: createTcpServer({ node: this.node, door, tls: { context } }), which: 'tls' as const }] : []),
          ...(o.httpsPort !== undefined ? [{ port: o.httpsPort, l: createHttpsListener(this.http, door, context), which: 'https' as const }] : []),
        ];
        for (const { port, l, which } of listeners) {
          this.tlsServers.push(l.server);
          this.tlsContexts.push(l.setSecureContext);
          await new Promise<void>((resolve, reject) => {
            l.server.once('error', reject);
            l.server.listen(port, o.host, () => resolve());
          });
          const bound = (l.server.address() as AddressInfo).port;
          if (which === 'tls') this.tlsPort = bound;
          else this.httpsPort = bound;
        }
        tlsFiles.watch();
      }
    } catch (err) {
      throw new StartupError(`cannot listen on ${o.host}: ${(err as Error).message}`);
    }
    this.tcpPort = (this.tcp.address() as AddressInfo).port;
    this.wsPort = (this.http.server.address() as AddressInfo).port;
    // IRCv3 STS: plain IRC clients are sent to the TLS port (the front door's, when it says so).
    if (this.tlsPort && o.sts) this.node.sts = { port: o.stsPort ?? this.tlsPort, duration: o.stsDuration };

    await this.state.addInstance(this.id);
    // The record carries the instance's own counters (the dashboard reads every instance's there).
    const sampler = new InstanceSampler({ stats: this.node.stats, persistLatency: this.metrics.persistLatency, fanoutLatency: this.metrics.fanoutLatency });
    await this.registry.register({
      id: this.id, serverName: o.serverName, host: o.advertiseHost ?? o.host, tcpPort: this.tcpPort, wsPort: this.wsPort,
      // The front door's TLS backends route to these (pass-through: the keys stay here).
      ...(this.tlsPort ? { tlsPort: this.tlsPort } : {}), ...(this.httpsPort ? { httpsPort: this.httpsPort } : {}),
      pid: process.pid, startedAt: Date.now(), connections: 0, state: 'ready', stats: await sampler.sample(),
    });
    await this.registry.watch();
    await this.reconcile();
    let n = 0;
    this.timer = setInterval(() => {
      void sampler.sample().then(
        (stats) => this.registry.update({ connections: this.node.sessions.size, stats }),
        (err: Error) => this.log.warn({ err: err.message }, 'sampling the instance counters failed'),
      );
      if (++n % RECONCILE_EVERY === 0) void this.reconcile();
    }, REGISTRY_UPDATE_MS);
    this.timer.unref();
    this.ready = true;
    this.log.info({ tcpPort: this.tcpPort, wsPort: this.wsPort, ...(this.tlsPort ? { tlsPort: this.tlsPort } : {}), ...(this.httpsPort ? { httpsPort: this.httpsPort } : {}), host: o.host }, 'listening');
  }

  /**
   * Shards given on the command line (`--pg`, in order: shard 0, 1, ...) are registered in etcd
   * (one merge rule, `@parley/contracts`): an existing entry keeps its other fields and follows
   * the URL of the command line.
   */
  private async registerShards(): Promise<void> {
    const { pg, prefix, pgPoolSize } = this.opts;
    await registerShardUrls(this.registry.client, prefix, pg, pgPoolSize, this.log);
  }

  private readonly tlsContexts: ((pair: { cert: Buffer; key: Buffer }) => void)[] = [];

  private reap(id: string): void {
    this.node.reapInstance(id).catch((err: Error) => this.log.error({ err: err.message, instance: id }, 'clean-up of a lost instance failed'));
  }

  /**
   * Instances Redis still knows but etcd no longer lists died while nobody watched: clean up. Nicks
   * Redis lists for this instance that no local session holds are released.
   */
  private async reconcile(): Promise<void> {
    try {
      const [known, live] = await Promise.all([this.state.knownInstances(), this.registry.liveInstances()]);
      const alive = new Set(live.map((r) => r.id));
      // One whose registration lapsed less than a lease ago may still come back (see EtcdRegistry).
      for (const id of known) if (!alive.has(id) && id !== this.id && !this.registry.lapsed(id)) this.reap(id);
      await this.node.reconcileUsers();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reconcile failed');
    }
  }

  private async clusterStats(): Promise<Record<string, unknown>> {
    const [instances, channels] = await Promise.all([this.registry.liveInstances(), this.state.listChannels()]);
    return {
      instances: instances.map((i) => ({ id: i.id, serverName: i.serverName, host: i.host, tcpPort: i.tcpPort, wsPort: i.wsPort, connections: i.connections, state: i.state })),
      channels: channels.length,
      shards: this.directory.shards().length,
    };
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.ready = false;
    if (this.timer) clearInterval(this.timer);
    // The front door takes a draining instance out before its clients are told to reconnect
    // (waiting at most half a second for etcd to take the news).
    if (this.node) this.node.draining = true;
    if (this.registry) await Promise.race([this.registry.update({ state: 'draining' }), new Promise((r) => setTimeout(r, 500).unref())]);
    if (this.tcp?.listening) this.tcp.close();
    for (const t of this.tlsServers) if (t.listening) t.close();
    this.tlsFiles?.close();
    this.door?.close();
    // Clients are dropped, their QUITs published and the bus flushed before Redis closes.
    await this.node?.close();
    await this.http?.close().catch(() => undefined);
    await this.state?.forgetInstance(this.id).catch(() => undefined);
    await this.node?.bus.close();
    await this.qos?.counters.close();
    if (this.qosRedis) await closeRedis(this.qosRedis);
    await this.state?.close();
    await this.store?.close();
    await this.accounts?.close();
    await this.directory?.close();
    await this.qosFeed?.close();
    await this.registry?.close();
    unguardProcess(this.metrics);
    this.log.info('closed');
  }
}
