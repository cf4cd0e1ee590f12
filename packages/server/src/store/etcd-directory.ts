import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { etcdKeys, jsonObject, RoomPinSchema, ShardEntrySchema, withPin, describeZodError, type EtcdKeys, type RoomPin, type ShardEntry } from '@parley/contracts';
import type { ShardDirectory, ShardInfo } from './directory.js';
import type { StoreLogger } from './pg-shard.js';
import { pickShard } from './static-directory.js';

/** The shard entry and the room pin are cluster contracts (@parley/contracts); re-exported for the store's users. */
export { ShardEntrySchema, type ShardEntry };

export interface EtcdShardDirectoryOptions {
  client: Etcd3;
  /** the cluster's etcd prefix (`parley` or `/parley`), default `parley` */
  prefix?: string;
  /** pool size for shards whose entry has none (default 4) */
  defaultPoolSize?: number;
  logger?: StoreLogger;
  /** called after the watch has changed the shard map (not for the initial load) */
  onShardsChanged?: (shards: ShardInfo[]) => void;
}

const MAX_PIN_ATTEMPTS = 5;

interface KnownShard extends ShardInfo {
  state: 'active' | 'draining';
  /** the shard's QoS class, if its entry names one */
  qos: string | undefined;
}

/**
 * Shard map in etcd, watched live. A room is pinned to a shard the first time any instance
 * resolves it: the pin is written with a compare-and-swap on the key's revision, so of several
 * instances racing on a new room exactly one choice wins and all of them use it. Pins are never
 * rewritten, so adding shards (or draining one) only affects rooms not seen before.
 */
export class EtcdShardDirectory implements ShardDirectory {
  private readonly client: Etcd3;
  private readonly keys: EtcdKeys;
  private readonly defaultPoolSize: number;
  private readonly logger: StoreLogger | undefined;
  private readonly onShardsChanged: ((shards: ShardInfo[]) => void) | undefined;
  private readonly known = new Map<number, KnownShard>();
  /** room -> pinned shard id; rooms never move while running */
  private readonly pins = new Map<string, number>();
  private readonly lookups = new Map<string, Promise<number>>();
  private watcher: Watcher | null = null;
  private starting: Promise<void> | null = null;
  private closed = false;

  constructor(opts: EtcdShardDirectoryOptions) {
    this.client = opts.client;
    this.keys = etcdKeys(opts.prefix ?? 'parley');
    this.defaultPoolSize = opts.defaultPoolSize ?? 4;
    this.logger = opts.logger;
    this.onShardsChanged = opts.onShardsChanged;
  }

  private get shardsPrefix(): string {
    return this.keys.shards;
  }

  roomKey(room: string): string {
    return this.keys.room(room);
  }

  /** Loads the shard map and watches it from the revision it was read at. Idempotent. */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.load().catch((err: unknown) => {
        this.starting = null;
        throw new Error(`etcd: cannot load the shard map under ${this.shardsPrefix}: ${(err as Error).message}`, {
          cause: err,
        });
      });
    }
    return this.starting;
  }

  private async load(): Promise<void> {
    const res = await this.client.getAll().prefix(this.shardsPrefix).exec();
    for (const kv of res.kvs) this.apply(kv);
    const watcher = await this.client
      .watch()
      .prefix(this.shardsPrefix)
      .startRevision(String(BigInt(res.header.revision) + 1n))
      .create();
    watcher.on('put', (kv) => {
      if (this.apply(kv)) this.changed();
    });
    watcher.on('delete', (kv) => {
      if (this.remove(kv)) this.changed();
    });
    watcher.on('error', (err) => this.logger?.error({ err }, 'etcd shard map watch failed'));
    if (this.closed) {
      await watcher.cancel();
      return;
    }
    this.watcher = watcher;
  }

  private changed(): void {
    try {
      this.onShardsChanged?.(this.shards());
    } catch (err) {
      this.logger?.error({ err }, 'shard map listener failed');
    }
  }

  /** Adds or updates a shard from its etcd entry; false when the entry is invalid. */
  private apply(kv: IKeyValue): boolean {
    const key = kv.key.toString();
    const parsed = ShardEntrySchema.safeParse(jsonObject(kv.value.toString()));
    if (!parsed.success) {
      this.logger?.warn({ key, error: describeZodError(parsed.error) }, 'invalid shard entry skipped');
      return false;
    }
    const entry = parsed.data;
    if (key !== this.keys.shard(entry.id)) {
      this.logger?.warn({ key, id: entry.id }, 'shard entry id does not match its key; skipped');
      return false;
    }
    this.known.set(entry.id, {
      id: entry.id,
      url: entry.url,
      poolSize: entry.poolSize ?? this.defaultPoolSize,
      state: entry.state ?? 'active',
      qos: entry.qos,
    });
    return true;
  }

  private remove(kv: IKeyValue): boolean {
    const ref = this.keys.parse(kv.key.toString());
    const id = ref?.kind === 'shard' ? ref.id : -1;
    if (!this.known.delete(id)) return false;
    this.logger?.warn({ shard: id }, 'shard removed from the shard map');
    return true;
  }

  /** The room's shard if this instance resolved the room before (no round trip); else undefined. */
  pinnedShard(room: string): number | undefined {
    return this.pins.get(room);
  }

  /** The QoS class named in the shard's entry (undefined: none, or no such shard). */
  shardClass(id: number): string | undefined {
    return this.known.get(id)?.qos;
  }

  shards(): ShardInfo[] {
    return [...this.known.values()].sort((a, b) => a.id - b.id).map(({ id, url, poolSize }) => ({ id, url, poolSize }));
  }

  resolve(room: string): Promise<ShardInfo> {
    const pinned = this.pins.get(room);
    if (pinned !== undefined) return this.infoOf(room, pinned);
    let lookup = this.lookups.get(room);
    if (!lookup) {
      lookup = this.pin(room).then(
        (id) => {
          this.pins.set(room, id);
          this.lookups.delete(room);
          return id;
        },
        (err: unknown) => {
          this.lookups.delete(room);
          throw new Error(`etcd: cannot resolve the shard of room ${room}: ${(err as Error).message}`, { cause: err });
        },
      );
      this.lookups.set(room, lookup);
    }
    return lookup.then((id) => this.infoOf(room, id));
  }

  private infoOf(room: string, id: number): Promise<ShardInfo> {
    const s = this.known.get(id);
    if (!s) return Promise.reject(new Error(`room ${room} is pinned to shard ${id}, which is not in the shard map`));
    return Promise.resolve({ id: s.id, url: s.url, poolSize: s.poolSize });
  }

  /** Reads the room's pin, or writes one if the key has none, retrying when another writer won. */
  private async pin(room: string): Promise<number> {
    await this.start();
    const key = this.roomKey(room);
    for (let attempt = 0; attempt < MAX_PIN_ATTEMPTS; attempt++) {
      const res = await this.client.get(key).exec();
      const kv = res.kvs[0];
      let existing: RoomPin = {};
      if (kv) {
        const parsed = RoomPinSchema.safeParse(safeJson(kv.value.toString()));
        if (!parsed.success) throw new Error(`invalid room entry at ${key}: ${describeZodError(parsed.error)}`);
        if (parsed.data.shard !== undefined) return parsed.data.shard;
        existing = parsed.data;
      }
      const active = [...this.known.values()].filter((s) => s.state === 'active');
      if (active.length === 0) throw new Error(`no active shard under ${this.shardsPrefix}`);
      const chosen = pickShard(room, active).id;
      // Revision 0 means "key absent"; otherwise the key must be exactly what we just read.
      const txn = await this.client
        .if(key, 'Mod', '==', kv ? kv.mod_revision : 0)
        .then(this.client.put(key).value(JSON.stringify(withPin(existing, chosen))))
        .commit();
      if (txn.succeeded) {
        this.logger?.info({ room, shard: chosen }, 'room pinned to shard');
        return chosen;
      }
    }
    throw new Error(`could not pin ${key} after ${MAX_PIN_ATTEMPTS} attempts`);
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.watcher;
    this.watcher = null;
    if (w) await w.cancel();
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
