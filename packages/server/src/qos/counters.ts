import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { QOS_COUNTERS, zeroCounts, type QosCounter, type QosCounts } from '@parley/contracts';

/**
 * Message counters per room and per shard, cluster-wide (every instance adds to the same totals).
 * Contract: `add` is cheap (it runs once per message) and never throws: additions are gathered in
 * memory and written in batches, so a read sees another instance's additions after at most that
 * instance's flush interval; an instance's own additions are written before its own reads. An
 * addition that cannot be written (Redis away) is kept and written with the next batch.
 */
export interface QosCounterStore {
  /** adds n to a counter of `room` and of its shard (shard null when not known); cheap, batched internally */
  add(room: string, shard: number | null, counter: QosCounter, n?: number): void;
  /** cluster-wide totals of every room that has any (one or a few Redis round trips for 10,000 rooms) */
  rooms(): Promise<Map<string, QosCounts>>;
  /** cluster-wide totals per shard */
  shards(): Promise<Map<number, QosCounts>>;
  close(): Promise<void>;
}

/** Position of each counter in the per-room arrays (QOS_COUNTERS order). */
export const COUNTER_INDEX: Readonly<Record<QosCounter, number>> = { accepted: 0, refusedQos: 1, refusedBacklog: 2, failed: 3 };

const zeros = (): number[] => [0, 0, 0, 0];

/** Counters in memory: one store shared by the nodes of a unit test is "cluster-wide". */
export class MemoryQosCounters implements QosCounterStore {
  private readonly byRoom = new Map<string, QosCounts>();
  private readonly byShard = new Map<number, QosCounts>();

  add(room: string, shard: number | null, counter: QosCounter, n = 1): void {
    let r = this.byRoom.get(room);
    if (!r) this.byRoom.set(room, (r = zeroCounts()));
    r[counter] += n;
    if (shard === null) return;
    let s = this.byShard.get(shard);
    if (!s) this.byShard.set(shard, (s = zeroCounts()));
    s[counter] += n;
  }

  rooms(): Promise<Map<string, QosCounts>> {
    return Promise.resolve(new Map([...this.byRoom].map(([k, v]) => [k, { ...v }])));
  }

  shards(): Promise<Map<number, QosCounts>> {
    return Promise.resolve(new Map([...this.byShard].map(([k, v]) => [k, { ...v }])));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface RedisQosCountersOptions {
  /** ms between two batches of additions (default 200) */
  flushMs?: number;
  log?: Logger;
}

/**
 * Counters in Redis, one hash per counter: `<prefix>:qc:<counter>` → {room: n} and
 * `<prefix>:qcs:<counter>` → {shard: n}. Additions are summed in memory and written every
 * `flushMs` as HINCRBYs in one pipeline (one round trip, whatever the number of messages); a
 * read is four HGETALLs in one pipeline. The connection is the caller's.
 */
export class RedisQosCounters implements QosCounterStore {
  private pendingRooms = new Map<string, number[]>();
  private pendingShards = new Map<number, number[]>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private failing = false;
  private closed = false;

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly opts: RedisQosCountersOptions = {}) {
    this.timer = setInterval(() => void this.flush(), opts.flushMs ?? 200);
    this.timer.unref();
  }

  add(room: string, shard: number | null, counter: QosCounter, n = 1): void {
    const i = COUNTER_INDEX[counter];
    let r = this.pendingRooms.get(room);
    if (r === undefined) this.pendingRooms.set(room, (r = zeros()));
    (r[i] as number) += n;
    if (shard === null) return;
    let s = this.pendingShards.get(shard);
    if (s === undefined) this.pendingShards.set(shard, (s = zeros()));
    (s[i] as number) += n;
  }

  /** Writes what was added so far (after any write in progress). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.write());
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.pendingRooms.size === 0 && this.pendingShards.size === 0) return;
    const rooms = this.pendingRooms;
    const shards = this.pendingShards;
    this.pendingRooms = new Map();
    this.pendingShards = new Map();
    const p = this.redis.pipeline();
    for (const [room, c] of rooms) {
      for (let i = 0; i < 4; i++) if (c[i]) p.hincrby(`${this.prefix}:qc:${QOS_COUNTERS[i]}`, room, c[i] as number);
    }
    for (const [shard, c] of shards) {
      for (let i = 0; i < 4; i++) if (c[i]) p.hincrby(`${this.prefix}:qcs:${QOS_COUNTERS[i]}`, String(shard), c[i] as number);
    }
    try {
      const res = await p.exec();
      const err = res?.find(([e]) => e)?.[0];
      if (!res) throw new Error('pipeline discarded');
      // A pipeline is not atomic: on a partial failure the written part stays written, and only
      // an all-or-nothing failure (nothing reached Redis) is retried, so nothing counts twice.
      if (err && res.every(([e]) => e)) throw err;
      if (err) this.opts.log?.warn({ err: err.message }, 'some QoS counter additions were not written');
      this.failing = false;
    } catch (err) {
      this.merge(rooms, shards);
      if (!this.failing) this.opts.log?.warn({ err: (err as Error).message }, 'QoS counters not written (kept for the next batch)');
      this.failing = true;
    }
  }

  private merge(rooms: Map<string, number[]>, shards: Map<number, number[]>): void {
    for (const [room, c] of rooms) for (let i = 0; i < 4; i++) if (c[i]) this.add(room, null, QOS_COUNTERS[i] as QosCounter, c[i]);
    for (const [shard, c] of shards) {
      let s = this.pendingShards.get(shard);
      if (s === undefined) this.pendingShards.set(shard, (s = zeros()));
      for (let i = 0; i < 4; i++) (s[i] as number) += c[i] as number;
    }
  }

  private async read<K>(hash: 'qc' | 'qcs', key: (field: string) => K | undefined): Promise<Map<K, QosCounts>> {
    await this.flush();
    const p = this.redis.pipeline();
    for (const c of QOS_COUNTERS) p.hgetall(`${this.prefix}:${hash}:${c}`);
    const res = await p.exec();
    if (!res) throw new Error('redis: the counter read was discarded');
    const out = new Map<K, QosCounts>();
    res.forEach(([err, value], i) => {
      if (err) throw err;
      const counter = QOS_COUNTERS[i] as QosCounter;
      for (const [field, n] of Object.entries(value as Record<string, string>)) {
        const k = key(field);
        if (k === undefined) continue;
        let counts = out.get(k);
        if (!counts) out.set(k, (counts = zeroCounts()));
        counts[counter] = Number(n);
      }
    });
    return out;
  }

  rooms(): Promise<Map<string, QosCounts>> {
    return this.read('qc', (f) => f);
  }

  shards(): Promise<Map<number, QosCounts>> {
    return this.read('qcs', (f) => (/^\d+$/.test(f) ? Number(f) : undefined));
  }

  /** Stops the timer and writes what is left (once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }
}
