import type { ServerResponse } from 'node:http';
import type { Etcd3 } from 'etcd3';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { QOS_COUNTERS, zeroCounts, type InstanceRecord, type QosCounts } from '@parley/contracts';
import type { QosCounterStore } from '../../qos/counters.js';
import { InstanceViewSchema, readInstanceViews } from './instances.js';
import { route } from './route.js';
import { QosCountsSchema } from './schemas.js';

/**
 * `GET /api/live`: the dashboard's feed. Once a second, and only while someone listens, ONE
 * computation shared by every subscriber of this instance reads the cluster-wide room counters
 * (Redis), the registry (etcd: every instance's own counters) and the shard list; every few
 * seconds it also reads the room list (shard, class, limit of each room, through `GET
 * /api/rooms`, so a room's view has one definition). Subscribers get server-sent events:
 *
 * - `rooms`: every room's metadata, on connect and whenever it changed;
 * - `tick`: the time, per-room counters and rates (only the rooms whose counters changed since
 *   the previous tick, all of them in a subscriber's first tick: `full`), cluster totals and
 *   rates, latency, instances and shards.
 *
 * The same string is written to every subscriber, so a subscriber costs one socket write a
 * second. A subscriber that does not read (more than 8 MiB buffered) is disconnected.
 */

const RoomMetaSchema = z.object({
  room: z.string(),
  shard: z.number().int().nullable(),
  class: z.string(),
  override: z.string().nullable(),
  rate: z.number().nullable(),
  burst: z.number().int().nullable(),
});
export type RoomMeta = z.infer<typeof RoomMetaSchema>;

const RoomPageSchema = z.object({ rooms: z.array(RoomMetaSchema), nextCursor: z.string().nullable() });

const ShardSchema = z.object({
  id: z.number().int(),
  state: z.enum(['active', 'draining']),
  qos: z.string().nullable(),
  down: z.boolean(),
  downReason: z.string().optional(),
  counts: QosCountsSchema,
});
type Shard = z.infer<typeof ShardSchema>;
const ShardListSchema = z.object({ shards: z.array(ShardSchema) });

/** `[room, accepted, refusedQos, refusedBacklog, failed, accepted per s, refused per s]` */
const RoomTickSchema = z.tuple([z.string(), z.number(), z.number(), z.number(), z.number(), z.number(), z.number()]);
type RoomTick = z.infer<typeof RoomTickSchema>;

const RatesSchema = z.object({ accepted: z.number(), refusedQos: z.number(), refusedBacklog: z.number(), failed: z.number() });

export const TickSchema = z.object({
  /** ms since the epoch */
  t: z.number().int(),
  /** seconds since the previous tick (0: the first one, no rates yet) */
  dt: z.number(),
  /** `rooms` lists every room (a subscriber's first tick), not only the changed ones */
  full: z.boolean(),
  rooms: z.array(RoomTickSchema),
  /** rooms with counters */
  roomCount: z.number().int(),
  totals: QosCountsSchema,
  /** cluster-wide per second since the previous tick */
  rates: RatesSchema,
  /** the highest p99 among the instances' last samples (ms; null: nothing measured) */
  latency: z.object({ commitP99Ms: z.number().nullable(), fanoutP99Ms: z.number().nullable() }),
  instances: z.array(InstanceViewSchema),
  shards: z.array(ShardSchema),
});
type Tick = z.infer<typeof TickSchema>;

const LiveSnapshotSchema = z.object({ rooms: z.array(RoomMetaSchema), tick: TickSchema });

export interface LiveDeps {
  etcd: Etcd3;
  prefix: string;
  counters: QosCounterStore;
  /** answers a GET of a JSON route of this instance's API (the room and shard lists) */
  get(url: string): Promise<unknown>;
  warn(err: string, msg: string): void;
  /** ms between ticks (default 1000) */
  intervalMs?: number;
  /** ms between two reads of the room list (default 5000; at once when a room without metadata gets counters) */
  metaEveryMs?: number;
}

interface Subscriber {
  res: ServerResponse;
  /** has had its full tick */
  synced: boolean;
}

const MAX_BUFFERED = 8 * 1024 * 1024;

function sse(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}

export class LiveFeed {
  private readonly subs = new Set<Subscriber>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private meta: RoomMeta[] | null = null;
  private metaText = '';
  private metaAt = 0;
  private known = new Set<string>();
  /** rooms with counters but no entry at the last read of the list: not a reason to read it again */
  private unlisted = new Set<string>();
  private counts = new Map<string, QosCounts>();
  private rates = new Map<string, [number, number]>();
  private last: Tick | null = null;
  private prevTotals: QosCounts | null = null;
  private prevAt = 0;
  private closed = false;

  constructor(private readonly d: LiveDeps) {}

  get subscribers(): number {
    return this.subs.size;
  }

  /** Adds an SSE response (headers not sent yet); the feed starts with its first subscriber. */
  subscribe(res: ServerResponse): void {
    if (this.closed) {
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'shutting down', statusCode: 503 }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // Tells EventSource how long to wait before reconnecting, and flushes the headers.
    res.write('retry: 2000\n\n');
    const sub: Subscriber = { res, synced: false };
    this.subs.add(sub);
    res.on('close', () => this.unsubscribe(sub));
    if (this.last && this.meta) this.sync(sub);
    if (!this.timer) this.start();
  }

  /** The current state at once: the last tick when the feed runs, else one computed now. */
  async snapshot(): Promise<{ rooms: RoomMeta[]; tick: Tick }> {
    if (this.timer) await this.running;
    // While the feed runs its own ticks own the rates; a computation here is only for a feed at rest.
    if (!this.timer || !this.last) await this.compute();
    return { rooms: this.meta ?? [], tick: this.fullTick() };
  }

  close(): void {
    this.closed = true;
    this.stop();
    for (const s of this.subs) s.res.end();
    this.subs.clear();
  }

  private start(): void {
    this.reset();
    this.timer = setInterval(() => this.tick(), this.d.intervalMs ?? 1000);
    this.timer.unref();
    this.tick();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A feed started again computes its rates afresh (the old counters are too old to subtract). */
  private reset(): void {
    this.counts = new Map();
    this.rates = new Map();
    this.prevTotals = null;
    this.last = null;
    this.metaAt = 0;
  }

  private unsubscribe(sub: Subscriber): void {
    if (!this.subs.delete(sub)) return;
    if (this.subs.size === 0) this.stop();
  }

  /** One computation at a time: a tick that comes while the previous one still reads is skipped. */
  private tick(): void {
    if (this.running) return;
    this.running = this.compute()
      .then((delta) => this.broadcast(delta))
      .catch((err: unknown) => {
        const msg = err instanceof Error ? err.message : String(err);
        this.d.warn(msg, 'live feed: reading the cluster failed');
        this.write(sse('failure', JSON.stringify({ error: 'reading the cluster failed; retrying', at: Date.now() })));
      })
      .finally(() => {
        this.running = null;
      });
  }

  private write(text: string): void {
    for (const s of this.subs) this.send(s, text);
  }

  private send(s: Subscriber, text: string): void {
    if (s.res.writableLength > MAX_BUFFERED) {
      s.res.destroy();
      this.unsubscribe(s);
      return;
    }
    s.res.write(text);
  }

  private sync(s: Subscriber): void {
    this.send(s, sse('rooms', this.metaText));
    this.send(s, sse('tick', JSON.stringify(this.fullTick())));
    s.synced = true;
  }

  private broadcast(delta: { metaChanged: boolean }): void {
    if (!this.last) return;
    const tickText = sse('tick', JSON.stringify(this.last));
    const metaText = delta.metaChanged ? sse('rooms', this.metaText) : '';
    for (const s of this.subs) {
      if (!s.synced) this.sync(s);
      else this.send(s, metaText + tickText);
    }
  }

  private fullTick(): Tick {
    const base = this.last ?? this.emptyTick();
    const rooms: RoomTick[] = [];
    for (const [room, c] of this.counts) {
      const r = this.rates.get(room) ?? [0, 0];
      rooms.push([room, c.accepted, c.refusedQos, c.refusedBacklog, c.failed, r[0], r[1]]);
    }
    return { ...base, full: true, rooms };
  }

  private emptyTick(): Tick {
    return {
      t: Date.now(), dt: 0, full: true, rooms: [], roomCount: 0, totals: zeroCounts(),
      rates: { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 0 }, latency: { commitP99Ms: null, fanoutP99Ms: null }, instances: [], shards: [],
    };
  }

  private async readMeta(): Promise<RoomMeta[]> {
    const out: RoomMeta[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
      const page = RoomPageSchema.parse(await this.d.get(`/api/rooms?limit=1000&sort=name${q}`));
      for (const r of page.rooms) out.push({ room: r.room, shard: r.shard, class: r.class, override: r.override, rate: r.rate, burst: r.burst });
      cursor = page.nextCursor;
    } while (cursor !== null);
    return out;
  }

  private async readShards(): Promise<Shard[]> {
    return ShardListSchema.parse(await this.d.get('/api/shards')).shards;
  }

  private async compute(): Promise<{ metaChanged: boolean }> {
    const now = Date.now();
    const metaDue = this.meta === null || now - this.metaAt >= (this.d.metaEveryMs ?? 5000);
    const [counts, instances, shards, listed] = await Promise.all([
      this.d.counters.rooms(),
      readInstanceViews(this.d.etcd, this.d.prefix),
      this.readShards(),
      metaDue ? this.readMeta() : Promise.resolve(null),
    ]);
    // A room new since the last read of the list is read with this tick, so that its first
    // counters never come without its shard, class and limit.
    const meta = listed ?? ([...counts.keys()].some((r) => !this.known.has(r) && !this.unlisted.has(r)) ? await this.readMeta() : null);
    let metaChanged = false;
    if (meta) {
      this.metaAt = now;
      const text = JSON.stringify({ rooms: meta });
      metaChanged = text !== this.metaText;
      this.meta = meta;
      this.metaText = text;
      this.known = new Set(meta.map((m) => m.room));
      this.unlisted = new Set([...counts.keys()].filter((r) => !this.known.has(r)));
    }

    const first = this.prevTotals === null;
    const dt = first ? 0 : Math.max(0.001, (now - this.prevAt) / 1000);
    const per = (n: number): number => (dt > 0 ? Math.round((Math.max(0, n) / dt) * 10) / 10 : 0);
    const changed: RoomTick[] = [];
    const totals = zeroCounts();
    const rates = new Map<string, [number, number]>();
    for (const [room, c] of counts) {
      for (const k of QOS_COUNTERS) totals[k] += c[k];
      const p = this.counts.get(room);
      if (p && p.accepted === c.accepted && p.refusedQos === c.refusedQos && p.refusedBacklog === c.refusedBacklog && p.failed === c.failed) continue;
      const r: [number, number] = first || !p ? [0, 0] : [per(c.accepted - p.accepted), per(c.refusedQos + c.refusedBacklog - p.refusedQos - p.refusedBacklog)];
      // A room seen for the first time after the first tick: its counters came within this interval.
      if (!first && !p) {
        r[0] = per(c.accepted);
        r[1] = per(c.refusedQos + c.refusedBacklog);
      }
      if (r[0] > 0 || r[1] > 0) rates.set(room, r);
      changed.push([room, c.accepted, c.refusedQos, c.refusedBacklog, c.failed, r[0], r[1]]);
    }
    const pt = this.prevTotals ?? totals;
    this.counts = counts;
    this.rates = rates;
    this.prevTotals = totals;
    this.prevAt = now;
    this.last = {
      t: now,
      dt,
      full: first,
      rooms: changed,
      roomCount: counts.size,
      totals,
      rates: {
        accepted: per(totals.accepted - pt.accepted),
        refusedQos: per(totals.refusedQos - pt.refusedQos),
        refusedBacklog: per(totals.refusedBacklog - pt.refusedBacklog),
        failed: per(totals.failed - pt.failed),
      },
      latency: latency(instances, now),
      instances,
      shards,
    };
    return { metaChanged };
  }
}

/** The worst p99 among the samples of the last 15 s (older ones belong to a stalled instance). */
function latency(instances: InstanceRecord[], now: number): Tick['latency'] {
  let commit: number | null = null;
  let fanout: number | null = null;
  for (const i of instances) {
    const s = i.stats;
    if (!s || now - s.at > 15_000) continue;
    if (s.commitP99Ms !== null) commit = Math.max(commit ?? 0, s.commitP99Ms);
    if (s.fanoutP99Ms !== null) fanout = Math.max(fanout ?? 0, s.fanoutP99Ms);
  }
  return { commitP99Ms: commit, fanoutP99Ms: fanout };
}

/** Registers `GET /api/live` on `app` for `feed`. */
export function liveRoute(app: FastifyInstance, feed: LiveFeed): void {
  route(app, null, {
    method: 'GET',
    url: '/api/live',
    summary: "The dashboard's live feed: server-sent events once a second, or one JSON snapshot",
    description:
      'With `Accept: text/event-stream`: a stream of `rooms` events (every room: shard, class, limit; on connect and when it changes) and `tick` events (the TickSchema, once a second; per-room counters of the rooms that changed). Without it: the current state as one JSON object `{rooms, tick}`. One computation a second per instance, shared by every subscriber.',
    tags: ['instance'],
    responses: { 200: { description: 'the current state (or, with Accept: text/event-stream, the stream)', schema: LiveSnapshotSchema } },
    handler: async ({ headers }, reply) => {
      if (headers.accept?.includes('text/event-stream')) {
        void reply.hijack();
        feed.subscribe(reply.raw);
        return reply;
      }
      return feed.snapshot();
    },
  });
}
