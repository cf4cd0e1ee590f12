import type { Etcd3, Lease, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { etcdKeys, readInstances, withTimeout, type EtcdKeys, type InstanceRecord } from '@parley/contracts';
import { createEtcdClient, type EtcdAuth } from './etcd-client.js';
import { type ClusterConfig, defaultClusterConfig, parseClusterConfig } from '../config.js';

/** What an instance publishes about itself: `InstanceRecordSchema` in @parley/contracts. */
export type { InstanceRecord };

export interface RegistryEvents {
  /** the cluster configuration changed (already validated) */
  config(cfg: ClusterConfig): void;
  /** an instance's registration disappeared: it stopped or its lease expired */
  instanceGone(id: string): void;
  /**
   * This instance registered again after losing its lease: meanwhile the others may have taken
   * it for dead and released its users.
   */
  registeredAgain(): void;
}

export class EtcdUnavailableError extends Error {}
export class InvalidConfigError extends Error {}

/**
 * The instance's view of etcd: its own registration under a lease (re-granted when lost), the
 * live cluster configuration, and departures of other instances. While etcd is unreachable the
 * instance keeps its last configuration; the etcd3 client reconnects by itself.
 */
export class EtcdRegistry {
  readonly client: Etcd3;
  private readonly keys: EtcdKeys;
  private lease: Lease | null = null;
  private record: InstanceRecord | null = null;
  private watchers: Watcher[] = [];
  private closed = false;
  private regrantTimer: NodeJS.Timeout | null = null;
  /** instances whose registration disappeared, waiting one lease before they count as gone */
  private readonly gone = new Map<string, NodeJS.Timeout>();
  config: ClusterConfig = defaultClusterConfig();

  constructor(
    endpoints: string[],
    readonly prefix: string,
    private readonly leaseSeconds: number,
    private readonly events: RegistryEvents,
    private readonly log: Logger,
    auth?: EtcdAuth,
  ) {
    this.client = createEtcdClient(endpoints, auth);
    this.keys = etcdKeys(prefix);
  }

  get configKey(): string {
    return this.keys.config;
  }

  get instancesPrefix(): string {
    return this.keys.instances;
  }

  /** Reads the configuration; throws EtcdUnavailableError when etcd does not answer in time. */
  async loadConfig(timeoutMs: number): Promise<ClusterConfig> {
    const text = await withTimeout(this.client.get(this.configKey).string(), timeoutMs, () => new EtcdUnavailableError('etcd did not answer'));
    if (text === null) return (this.config = defaultClusterConfig());
    const r = parseClusterConfig(text);
    // At start an invalid configuration is fatal (fail fast); later, the last good one is kept.
    if (!r.ok) throw new InvalidConfigError(`invalid configuration at ${this.configKey}: ${r.error}`);
    return (this.config = r.config);
  }

  private parseOrKeep(text: string | null, when: string): ClusterConfig {
    if (text === null) return defaultClusterConfig();
    const r = parseClusterConfig(text);
    if (r.ok) return r.config;
    this.log.error({ key: this.configKey, error: r.error, when }, 'invalid cluster configuration in etcd; keeping the previous one');
    return this.config;
  }

  async watch(): Promise<void> {
    const cfg = await this.client.watch().key(this.configKey).create();
    const reread = () => {
      this.client.get(this.configKey).exec().then(
        (res) => {
          const kv = res.kvs[0];
          this.applyConfig(kv ? kv.value.toString() : null, kv ? kv.mod_revision : res.header.revision);
        },
        (err: Error) => this.log.warn({ err: err.message }, 'config re-read failed'),
      );
    };
    cfg.on('put', (kv) => this.applyConfig(kv.value.toString(), kv.mod_revision));
    cfg.on('delete', (kv) => this.applyConfig(null, kv.mod_revision));
    // After a reconnect the watch resumes from its last revision, but re-reading is cheap and
    // closes any window.
    cfg.on('connected', reread);
    cfg.on('error', (err: Error) => this.log.warn({ err: err.message }, 'config watch error'));
    const inst = await this.client.watch().prefix(this.instancesPrefix).create();
    inst.on('delete', (kv) => {
      const ref = this.keys.parse(kv.key.toString());
      if (ref?.kind === 'instance' && ref.id !== this.record?.id) this.goneSoon(ref.id);
    });
    inst.on('put', (kv) => {
      const ref = this.keys.parse(kv.key.toString());
      if (ref?.kind === 'instance') this.cancelGone(ref.id);
    });
    inst.on('error', (err: Error) => this.log.warn({ err: err.message }, 'instance watch error'));
    this.watchers.push(cfg, inst);
  }

  /**
   * Applies the configuration of etcd revision `revision`. Every revision seen is logged, changed
   * or not ('cluster configuration changed' / 'cluster configuration unchanged', with the
   * revision), in the tick it takes effect: tests and operators can wait for their own put.
   */
  private applyConfig(text: string | null, revision: string): void {
    const next = this.parseOrKeep(text, 'watch');
    if (JSON.stringify(next) === JSON.stringify(this.config)) {
      this.log.info({ revision: Number(revision) }, 'cluster configuration unchanged');
      return;
    }
    this.config = next;
    this.events.config(next);
    this.log.info({ revision: Number(revision) }, 'cluster configuration changed');
  }

  async register(rec: InstanceRecord): Promise<void> {
    this.record = rec;
    await this.grant();
  }

  private async grant(): Promise<void> {
    if (this.closed || !this.record) return;
    const lease = this.client.lease(this.leaseSeconds, { autoKeepAlive: true });
    lease.on('lost', (err: Error) => {
      if (this.closed || this.lease !== lease) return;
      this.log.warn({ err: err.message }, 'registry lease lost; registering again');
      this.lease = null;
      this.scheduleRegrant();
    });
    this.lease = lease;
    await lease.put(this.instanceKey(this.record.id)).value(JSON.stringify(this.record));
  }

  private scheduleRegrant(): void {
    if (this.regrantTimer || this.closed) return;
    this.regrantTimer = setTimeout(() => {
      this.regrantTimer = null;
      this.grant().then(() => this.events.registeredAgain(), (err: Error) => {
        this.log.warn({ err: err.message }, 'registering again failed; will retry');
        this.lease = null;
        this.scheduleRegrant();
      });
    }, 1000);
    this.regrantTimer.unref();
  }

  /**
   * An instance's registration went away. It is taken for gone only if it has not registered
   * again one lease later: an instance that missed its keep-alives because its machine stalled
   * (a busy machine) registers again within about a second, and reaping it meanwhile would QUIT
   * all its connected users and drop their memberships. So a dead instance is cleaned up about
   * two leases after it died (three with the lease's own expiry).
   */
  private goneSoon(id: string): void {
    if (this.closed || this.gone.has(id)) return;
    const timer = setTimeout(() => {
      this.gone.delete(id);
      if (this.closed) return;
      this.client.get(this.instanceKey(id)).string().then(
        (back) => {
          if (back !== null || this.closed) return;
          this.events.instanceGone(id);
        },
        // etcd unreachable: the periodic reconcile cleans up once it answers.
        (err: Error) => this.log.warn({ err: err.message, instance: id }, 'could not confirm that an instance is gone'),
      );
    }, this.leaseSeconds * 1000);
    timer.unref();
    this.gone.set(id, timer);
  }

  /** The instance's registration disappeared less than a lease ago: not taken for gone yet. */
  lapsed(id: string): boolean {
    return this.gone.has(id);
  }

  private cancelGone(id: string): void {
    const timer = this.gone.get(id);
    if (!timer) return;
    clearTimeout(timer);
    this.gone.delete(id);
    this.log.info({ instance: id }, 'an instance whose registration lapsed registered again: not cleaned up');
  }

  private instanceKey(id: string): string {
    return this.keys.instance(id);
  }

  /** Updates the published record (connection count, state); errors are logged, never thrown. */
  async update(patch: Partial<InstanceRecord>): Promise<void> {
    if (!this.record) return;
    this.record = { ...this.record, ...patch };
    const lease = this.lease;
    if (!lease) return;
    await lease.put(this.instanceKey(this.record.id)).value(JSON.stringify(this.record)).then(
      () => undefined,
      (err: Error) => this.log.debug({ err: err.message }, 'registry update failed'),
    );
  }

  liveInstances(): Promise<InstanceRecord[]> {
    return readInstances(this.client, this.prefix, (key, error) => this.log.warn({ key, error }, 'unreadable instance record in etcd'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.regrantTimer) clearTimeout(this.regrantTimer);
    for (const t of this.gone.values()) clearTimeout(t);
    this.gone.clear();
    await Promise.allSettled(this.watchers.map((w) => w.cancel()));
    if (this.lease) await withTimeout(this.lease.revoke(), 2000, 'lease revoke').catch(() => undefined);
    this.client.close();
  }
}
