// The dashboard's state: every room (metadata from the feed's `rooms` events, counters and rates
// from its `tick` events), and the view of it the page draws: filtered, sorted, grouped. Pure (no
// DOM), so the unit tests run it in Node.

/** The wire format of `GET /api/live` (see docs/http-api.md). */
export interface RoomMeta {
  room: string;
  shard: number | null;
  class: string;
  override: string | null;
  rate: number | null;
  burst: number | null;
}
export type RoomTick = [room: string, accepted: number, refusedQos: number, refusedBacklog: number, failed: number, acceptedPerSecond: number, refusedPerSecond: number];
export interface Counts {
  accepted: number;
  refusedQos: number;
  refusedBacklog: number;
  failed: number;
}
export interface InstanceView {
  id: string;
  serverName: string;
  host: string;
  tcpPort: number;
  wsPort: number;
  connections: number;
  state: string;
  stats?: {
    at: number;
    messagesIn: number;
    messagesStored: number;
    messagesInPerSecond: number;
    storedPerSecond: number;
    deliveriesPerSecond: number;
    commitP99Ms: number | null;
    fanoutP99Ms: number | null;
  };
}
export interface ShardView {
  id: number;
  state: string;
  qos: string | null;
  down: boolean;
  downReason?: string;
  counts: Counts;
}
export interface Tick {
  t: number;
  dt: number;
  full: boolean;
  rooms: RoomTick[];
  roomCount: number;
  totals: Counts;
  rates: Counts;
  latency: { commitP99Ms: number | null; fanoutP99Ms: number | null };
  instances: InstanceView[];
  shards: ShardView[];
}

export interface Room extends Counts {
  name: string;
  shard: number | null;
  cls: string;
  override: string | null;
  /** the class's sustained limit (msg/s); null: none */
  limit: number | null;
  burst: number | null;
  /** messages stored per second over the last tick */
  rate: number;
  /** messages refused per second over the last tick */
  refusedRate: number;
  /** false until the room list names it (it has counters but no entry yet) */
  listed: boolean;
}

export const refused = (r: Counts): number => r.refusedQos + r.refusedBacklog;

export type SortKey = 'busiest' | 'refused' | 'name';
export type GroupKey = 'none' | 'shard' | 'class';

export interface Filter {
  q: string;
  /** '' = every shard; 'none' = not pinned yet */
  shard: string;
  /** '' = every class */
  cls: string;
  sort: SortKey;
  group: GroupKey;
}

export interface Group {
  key: string;
  label: string;
  rooms: Room[];
  rate: number;
  refusedRate: number;
}

export class Model {
  readonly rooms = new Map<string, Room>();
  /** rooms whose rates are not zero, so that a tick resets only those */
  private moving = new Set<Room>();
  last: Tick | null = null;

  private get(name: string): Room {
    let r = this.rooms.get(name);
    if (!r) {
      r = { name, shard: null, cls: '', override: null, limit: null, burst: null, accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 0, rate: 0, refusedRate: 0, listed: false };
      this.rooms.set(name, r);
    }
    return r;
  }

  /** A `rooms` event: the whole list. Rooms no longer listed and without counters go. */
  setMeta(list: RoomMeta[]): void {
    const seen = new Set<string>();
    for (const m of list) {
      const r = this.get(m.room);
      r.shard = m.shard;
      r.cls = m.class;
      r.override = m.override;
      r.limit = m.rate;
      r.burst = m.burst;
      r.listed = true;
      seen.add(m.room);
    }
    for (const [name, r] of this.rooms) {
      if (seen.has(name)) continue;
      if (r.accepted + refused(r) + r.failed === 0) this.rooms.delete(name);
      else r.listed = false;
    }
  }

  /** A `tick` event: the rooms it names changed; the others did not move during its interval. */
  applyTick(t: Tick): void {
    this.last = t;
    for (const r of this.moving) {
      r.rate = 0;
      r.refusedRate = 0;
    }
    this.moving.clear();
    for (const [name, accepted, refusedQos, refusedBacklog, failed, rate, refusedRate] of t.rooms) {
      const r = this.get(name);
      r.accepted = accepted;
      r.refusedQos = refusedQos;
      r.refusedBacklog = refusedBacklog;
      r.failed = failed;
      r.rate = rate;
      r.refusedRate = refusedRate;
      if (rate > 0 || refusedRate > 0) this.moving.add(r);
    }
  }

  classes(): string[] {
    const s = new Set<string>();
    for (const r of this.rooms.values()) if (r.cls) s.add(r.cls);
    return [...s].sort();
  }

  shards(): number[] {
    const s = new Set<number>();
    for (const r of this.rooms.values()) if (r.shard !== null) s.add(r.shard);
    for (const sh of this.last?.shards ?? []) s.add(sh.id);
    return [...s].sort((a, b) => a - b);
  }

  /** The rooms the filter keeps, sorted, in groups (one group when not grouping). */
  view(f: Filter): Group[] {
    const q = f.q.trim().toLowerCase();
    const kept: Room[] = [];
    for (const r of this.rooms.values()) {
      if (q && !r.name.includes(q)) continue;
      if (f.shard === 'none' ? r.shard !== null : f.shard !== '' && String(r.shard) !== f.shard) continue;
      if (f.cls !== '' && r.cls !== f.cls) continue;
      kept.push(r);
    }
    kept.sort(comparator(f.sort));
    if (f.group === 'none') return [group('all', `${kept.length} rooms`, kept)];
    const by = new Map<string, Room[]>();
    for (const r of kept) {
      const k = f.group === 'shard' ? (r.shard === null ? '' : String(r.shard)) : r.cls;
      let list = by.get(k);
      if (!list) by.set(k, (list = []));
      list.push(r);
    }
    const keys = [...by.keys()].sort(f.group === 'shard' ? (a, b) => (a === '' ? 1 : b === '' ? -1 : Number(a) - Number(b)) : undefined);
    return keys.map((k) => {
      const rooms = by.get(k) ?? [];
      const label = f.group === 'shard' ? (k === '' ? 'not pinned yet' : `shard ${k}`) : `class ${k || '(none)'}`;
      return group(k, `${label} · ${rooms.length} rooms`, rooms);
    });
  }
}

function group(key: string, label: string, rooms: Room[]): Group {
  let rate = 0;
  let refusedRate = 0;
  for (const r of rooms) {
    rate += r.rate;
    refusedRate += r.refusedRate;
  }
  return { key, label, rooms, rate, refusedRate };
}

const byName = (a: Room, b: Room): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Busiest: rate now, then messages so far. Most refused: refusals now, then refusals so far. */
export function comparator(sort: SortKey): (a: Room, b: Room) => number {
  if (sort === 'busiest') return (a, b) => b.rate - a.rate || b.accepted - a.accepted || byName(a, b);
  if (sort === 'refused') return (a, b) => b.refusedRate - a.refusedRate || refused(b) - refused(a) || b.rate - a.rate || byName(a, b);
  return byName;
}

/**
 * The colour of a rate on the heat map: dark when idle, then blue → green → yellow → red on a
 * log scale reaching red at `top` msg/s.
 */
export function heat(rate: number, top = 1000): string {
  if (rate <= 0) return '#2b303b';
  const t = Math.min(1, Math.log10(1 + rate) / Math.log10(1 + top));
  const stops: Array<[number, number, number]> = [
    [44, 123, 182],
    [0, 166, 140],
    [171, 221, 93],
    [253, 208, 60],
    [244, 109, 67],
    [215, 25, 28],
  ];
  const x = t * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i] ?? [0, 0, 0];
  const b = stops[i + 1] ?? a;
  const c = (k: 0 | 1 | 2): number => Math.round(a[k] + (b[k] - a[k]) * f);
  return `rgb(${c(0)},${c(1)},${c(2)})`;
}

/** 1234567 → "1.2M"; small numbers as they are. */
export function compact(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
