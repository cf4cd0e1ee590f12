import { resolveQosClass, type QosClass, type RoomPin } from '@parley/contracts';
import type { Refusal } from '../core/admission.js';
import { shardBurstOf } from './buckets.js';

/** What the QoS directory needs to know about shards (the store's shard map provides it). */
export interface ShardClasses {
  /** the room's shard when it is known here without a round trip (pinned before); else undefined */
  pinnedShard(room: string): number | undefined;
  /** the QoS class named in the shard's entry, if any */
  shardClass(id: number): string | undefined;
}

/** Per-shard label children of `parley_shard_messages_total`, indexed like QOS_COUNTERS. */
export interface ShardSeries {
  readonly shard: number | null;
  readonly counters: readonly { inc(n?: number): void }[];
}

/**
 * A room's QoS, resolved and cached: its shard, its class and the limits that follow. The object
 * of a room is kept (and updated in place) while it is in the cache, so the message path can keep
 * per-room state on it without a second look-up: the admission's requests of the current tick and
 * the accounting's label children.
 */
export class RoomQos {
  /** the directory generation it was resolved at (-1: re-resolve on next use) */
  gen = -1;
  shard: number | null = null;
  /** the class that applies, null when none (no limit) */
  className: string | null = null;
  /** messages/s and bucket size of the room; rate 0 = no limit */
  rate = 0;
  burst = 0;
  /** the shard's write budget (rows/s) and its bucket size; 0 = none */
  shardRate = 0;
  shardBurst = 0;
  /** admission: messages asked in the current tick, and their answers, in order */
  asked = 0;
  answers: ((r: Refusal | null) => void)[] = [];
  /** admission: in the batch being gathered */
  queued = false;
  /** admission: messages of the room waiting for an answer (asked this tick or in flight) */
  waiting = 0;
  /** admission: messages this instance may still admit without asking (far from the limit) */
  allowance = 0;
  /** admission: messages admitted without asking, not yet sent / sent and not yet answered */
  debit = 0;
  inflightDebit = 0;
  /** accounting: the label children of the room's shard (null until first counted) */
  series: ShardSeries | null = null;

  constructor(readonly room: string) {}

  /** no bucket applies: admission skips QoS for it */
  get unlimited(): boolean {
    return this.rate === 0 && this.shardRate === 0;
  }
}

/** Above this many cached rooms the cache starts over (re-resolving is a few map look-ups). */
const MAX_CACHED_ROOMS = 100_000;

/**
 * The QoS classes of the cluster and which one each room has, on every instance: classes and
 * room overrides are put in by a feed (`EtcdQosFeed` from etcd, or a test), shards' classes come
 * from the shard map. `room()` is the message path's one look-up per message: a cached `RoomQos`,
 * re-resolved only after something it depends on changed (a class or shard change makes every
 * room stale at once by bumping the generation; a room entry change makes only that room stale).
 *
 * Resolution (`resolveQosClass`): the room's override, else its shard's class, else `default`,
 * else no limit. A room whose shard is not known yet (no instance has resolved it) gets its
 * override or `default` until its pin is seen. The shard budget is the shard's class's (its own,
 * else `default`'s) `shardWriteBudget`.
 */
export class QosDirectory {
  private readonly classMap = new Map<string, QosClass>();
  /** rooms with an entry in etcd: their pin and override */
  private readonly roomMap = new Map<string, { shard?: number; qos?: string }>();
  private readonly cache = new Map<string, RoomQos>();
  private gen = 0;

  constructor(private readonly shards: ShardClasses) {}

  /** The room's QoS, resolved (one map look-up when nothing changed). */
  room(room: string): RoomQos {
    let q = this.cache.get(room);
    if (q === undefined) {
      if (this.cache.size >= MAX_CACHED_ROOMS) this.cache.clear();
      q = new RoomQos(room);
      this.cache.set(room, q);
    }
    if (q.gen !== this.gen) this.resolve(q);
    return q;
  }

  private resolve(q: RoomQos): void {
    const entry = this.roomMap.get(q.room);
    const shard = entry?.shard ?? this.shards.pinnedShard(q.room);
    const shardClass = shard === undefined ? undefined : this.shards.shardClass(shard);
    const own = resolveQosClass(this.classMap, entry?.qos, shardClass);
    q.shard = shard ?? null;
    q.className = own.cls ? own.name : null;
    q.rate = own.cls?.rate ?? 0;
    q.burst = own.cls?.burst ?? 0;
    const budget = shard === undefined ? undefined : resolveQosClass(this.classMap, undefined, shardClass).cls?.shardWriteBudget;
    q.shardRate = budget ?? 0;
    q.shardBurst = budget ? shardBurstOf(budget) : 0;
    if (q.series && q.series.shard !== q.shard) q.series = null;
    // What was allowed under the previous limits is not allowed under the new ones.
    q.allowance = 0;
    // A room whose shard is not known yet is looked at again on its next use.
    q.gen = shard === undefined ? -1 : this.gen;
  }

  /** the classes known now, by name */
  get classes(): ReadonlyMap<string, QosClass> {
    return this.classMap;
  }

  /** the room's override as last seen, if any */
  override(room: string): string | undefined {
    return this.roomMap.get(room)?.qos;
  }

  putClass(name: string, cls: QosClass): void {
    this.classMap.set(name, cls);
    this.gen++;
  }

  deleteClass(name: string): void {
    if (this.classMap.delete(name)) this.gen++;
  }

  /** A room entry was written (or deleted: undefined). */
  putRoom(room: string, entry: RoomPin | undefined): void {
    if (entry && (entry.shard !== undefined || entry.qos !== undefined)) this.roomMap.set(room, { shard: entry.shard, qos: entry.qos });
    else this.roomMap.delete(room);
    const q = this.cache.get(room);
    if (q) q.gen = -1;
  }

  /** The shard map changed (a shard's class, a new shard): every room is re-resolved. */
  shardsChanged(): void {
    this.gen++;
  }
}
