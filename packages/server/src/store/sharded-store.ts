import type { ShardDirectory, ShardInfo } from './directory.js';
import { ConnectGate } from './connect-gate.js';
import { PgShard } from './pg-shard.js';
import type { PgShardOptions } from './pg-shard.js';
import type { BatchListener, Pending, StoreEvents, StoreLogger } from './pg-shard.js';
import { StoreUnavailableError } from './errors.js';
import type {
  AppendResult,
  MessageStore,
  NewMessage,
  RoomCount,
  Selector,
  StoredMessage,
  TargetActivity,
} from './store.js';

export interface ShardedStoreOptions {
  directory: ShardDirectory;
  /** called with the number of rows and the round-trip time of every committed batch */
  onBatch?: BatchListener;
  logger?: StoreLogger;
  /**
   * Whether `start`/`close` also start and close the directory (default true; both are
   * idempotent, so a directory shared with other components is still safe to start here).
   */
  ownsDirectory?: boolean;
  /** most rows per batch statement (default 1000) */
  maxBatch?: number;
  /**
   * Every append settles within this many ms of its call, also when a shard hangs (default
   * 5000). A rejection is definitive: the message is not stored and cannot be later.
   */
  commitTimeoutMs?: number;
  /** a history read fails after this many ms (default 5000) */
  readTimeoutMs?: number;
  /** pause between probes of a shard that is down (default 500) */
  probeIntervalMs?: number;
  /** shard down/up and late-commit reports */
  events?: StoreEvents;
  /**
   * A shard's connections unused for this many ms are closed (its commit connection after that
   * long without an append, each read connection after that long unused); the next use opens
   * them again. Default 60000; 0 = never.
   */
  idleMs?: number;
  /**
   * The pool size of a shard's QoS class, when its class sets one; asked whenever the shard's
   * read pool opens from nothing. Undefined (or no hook) = the shard entry's `poolSize`, which
   * the directory already defaults to the instance's `--pg-pool-size`.
   */
  classPoolSize?: (shard: ShardInfo) => number | undefined;
  /** the password of the user in the shards' URLs (`--pg-password-file`), for URLs without one */
  password?: string;
  /**
   * Most connections opened at once over all shards (commit connections and first-use
   * migrations; default 8): a thousand rooms' first messages then open their shards' connections
   * a few at a time instead of a thousand at once. Read pools are not counted.
   */
  connectConcurrency?: number;
}

/** Connections an instance holds to its shards, for tests and operators. */
export interface ConnectionCount {
  /** shards with at least one open connection */
  shards: number;
  commit: number;
  read: number;
}

/** Appends that arrived while their room's shard was still being resolved, in call order. */
type Waiting = Pending;

/** A MessageStore over PostgreSQL shards, a room's shard given by the directory. */
export class ShardedStore implements MessageStore {
  private readonly directory: ShardDirectory;
  private readonly ownsDirectory: boolean;
  private readonly shardOptions: Omit<PgShardOptions, 'info' | 'poolSize' | 'gate'>;
  private readonly gate: ConnectGate;
  private readonly classPoolSize: ((shard: ShardInfo) => number | undefined) | undefined;
  private readonly byId = new Map<number, PgShard>();
  /** the directory's latest word on each shard (pool size, class), fed by shardsChanged() */
  private readonly infos = new Map<number, ShardInfo>();
  /** room -> its shard, or the appends waiting for the room's first resolution */
  private readonly routes = new Map<string, PgShard | Waiting[]>();
  /** first resolutions of rooms still in progress; close() lets them hand over their appends */
  private readonly resolving = new Set<Promise<void>>();
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private shardsClosed = false;

  constructor(opts: ShardedStoreOptions) {
    this.directory = opts.directory;
    this.ownsDirectory = opts.ownsDirectory ?? true;
    const { directory: _directory, ownsDirectory: _owns, classPoolSize, connectConcurrency, ...shardOptions } = opts;
    this.shardOptions = shardOptions;
    this.gate = new ConnectGate(Math.max(1, connectConcurrency ?? 8));
    this.classPoolSize = classPoolSize;
  }

  /**
   * Starts the directory. No shard is touched: each one is connected and migrated at its first
   * use, so a shard that is down fails only its own rooms and never the start.
   */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = (async () => {
        if (this.ownsDirectory) await this.directory.start();
      })().catch((err: unknown) => {
        this.starting = null;
        throw err;
      });
    }
    return this.starting;
  }

  /** Migrates every shard the directory knows now (tools and tests; instances migrate on first use). */
  async migrateAll(): Promise<void> {
    await this.start();
    await Promise.all(this.directory.shards().map((info) => this.shard(info).start()));
  }

  /** Tells the store the directory's current shard entries (a changed pool size or class). */
  shardsChanged(shards: readonly ShardInfo[]): void {
    for (const info of shards) this.infos.set(info.id, info);
  }

  private shard(info: ShardInfo): PgShard {
    let s = this.byId.get(info.id);
    if (!s) {
      if (this.shardsClosed) throw new Error('store is closed');
      const poolSize = (): number => {
        const current = this.infos.get(info.id) ?? info;
        return this.classPoolSize?.(current) ?? current.poolSize;
      };
      s = new PgShard({ info, poolSize, gate: this.gate, ...this.shardOptions });
      this.byId.set(info.id, s);
    }
    return s;
  }

  /** Connections held now, over every shard this store has used. */
  connections(): ConnectionCount {
    const out: ConnectionCount = { shards: 0, commit: 0, read: 0 };
    for (const s of this.byId.values()) {
      const c = s.connections;
      if (c.commit + c.read > 0) out.shards++;
      out.commit += c.commit;
      out.read += c.read;
    }
    return out;
  }

  backlog(room: string): number {
    const route = this.routes.get(room);
    return route instanceof PgShard ? route.pending : 0;
  }

  append(msg: NewMessage): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new Error('store is closed'));
    const route = this.routes.get(msg.room);
    if (route instanceof PgShard) return route.append(msg);
    return new Promise<AppendResult>((resolve, reject) => {
      if (route) {
        route.push({ msg, at: Date.now(), resolve, reject });
        return;
      }
      const waiting: Waiting[] = [{ msg, at: Date.now(), resolve, reject }];
      this.routes.set(msg.room, waiting);
      const done = this.directory.resolve(msg.room).then(
        (info) => {
          // Hand the waiting appends over in call order, in the same tick that switches the
          // route, so no later append can overtake them.
          let shard: PgShard;
          try {
            shard = this.shard(info);
          } catch (err) {
            this.routes.delete(msg.room);
            for (const w of waiting) w.reject(err as Error);
            return;
          }
          this.routes.set(msg.room, shard);
          for (const w of waiting) shard.append(w.msg, w.at).then(w.resolve, w.reject);
        },
        (err: unknown) => {
          this.routes.delete(msg.room);
          const e = err instanceof Error ? err : new Error(String(err));
          for (const w of waiting) w.reject(e);
        },
      );
      this.resolving.add(done);
      void done.finally(() => this.resolving.delete(done));
    });
  }

  private async shardOf(room: string): Promise<PgShard> {
    const route = this.routes.get(room);
    if (route instanceof PgShard) return route;
    return this.shard(await this.directory.resolve(room));
  }

  async latest(room: string, after: Selector | null, limit: number): Promise<StoredMessage[]> {
    return (await this.shardOf(room)).latest(room, after, limit);
  }

  async before(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return (await this.shardOf(room)).before(room, sel, limit);
  }

  async after(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return (await this.shardOf(room)).after(room, sel, limit);
  }

  async around(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return (await this.shardOf(room)).around(room, sel, limit);
  }

  async between(room: string, from: Selector, to: Selector, limit: number): Promise<StoredMessage[]> {
    return (await this.shardOf(room)).between(room, from, to, limit);
  }

  /** Groups rooms by shard. */
  private async group(rooms: string[]): Promise<Map<PgShard, string[]>> {
    const shards = await Promise.all(rooms.map((r) => this.shardOf(r)));
    const groups = new Map<PgShard, string[]>();
    shards.forEach((s, i) => {
      const list = groups.get(s);
      if (list) list.push(rooms[i]!);
      else groups.set(s, [rooms[i]!]);
    });
    return groups;
  }

  async targets(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): Promise<TargetActivity[]> {
    const groups = await this.group([...new Set(rooms)]);
    const sweep: PgShard[] = [];
    if (dmNick !== null) {
      // A nick's DM rooms may be on any shard.
      for (const info of this.directory.shards()) {
        const s = this.shard(info);
        if (!groups.has(s)) sweep.push(s);
      }
    }
    // A shard visited only for DM rooms that is down leaves its DMs out rather than failing the
    // listing: only the rooms asked for by name fail with their shard.
    const parts = await Promise.all([
      ...[...groups].map(([s, rs]) => s.targets(rs, dmNick, from, to, limit)),
      ...sweep.map((s) =>
        s.targets([], dmNick, from, to, limit).catch((err: unknown) => {
          if (err instanceof StoreUnavailableError) return [];
          throw err;
        }),
      ),
    ]);
    const seen = new Set<string>();
    const merged: TargetActivity[] = [];
    for (const t of parts.flat().sort((a, b) => b.latest - a.latest || (a.room < b.room ? -1 : a.room > b.room ? 1 : 0))) {
      if (seen.has(t.room)) continue;
      seen.add(t.room);
      merged.push(t);
      if (merged.length >= limit) break;
    }
    return merged;
  }

  async counts(rooms: string[]): Promise<RoomCount[]> {
    const groups = await this.group([...new Set(rooms)]);
    const parts = await Promise.all([...groups].map(([s, rs]) => s.counts(rs)));
    return parts.flat();
  }

  /** Refuses new appends, drains every shard's pending batches, ends the pools. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        // Appends still waiting for their room's shard are handed over before the shards drain.
        await Promise.allSettled([...this.resolving]);
        this.shardsClosed = true;
        await Promise.all([...this.byId.values()].map((s) => s.close()));
        if (this.ownsDirectory) await this.directory.close();
      })();
    }
    return this.closing;
  }
}
