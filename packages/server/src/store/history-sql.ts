import type { Selector, StoredMessage } from './store.js';

/**
 * The read queries of a shard, as pure builders so that a test can EXPLAIN exactly what the
 * store runs. Every history query walks one of the two indexes of `messages` in its order and
 * stops after `limit` rows: `(room, seq)` for seq selectors, `(room, ts, seq)` for time
 * selectors (ts is non-decreasing in seq within a room, so both orders agree).
 *
 * ORDER BY names the table's columns qualified (`messages.seq`): an unqualified `seq` would be
 * the output column `seq::float8`, which no index provides, so PostgreSQL would read and sort
 * the whole room for every page.
 */
export interface SqlQuery {
  text: string;
  values: unknown[];
}

const COLUMNS = `room, seq::float8 as seq, (extract(epoch from ts) * 1000)::float8 as time,
  source, command, target, body, tags`;

export interface MessageRow {
  room: string;
  seq: number;
  time: number;
  source: string;
  command: string;
  target: string;
  body: string;
  tags: Record<string, string> | null;
}

export function toStored(r: MessageRow): StoredMessage {
  return {
    room: r.room,
    seq: r.seq,
    time: r.time,
    source: r.source,
    command: r.command,
    target: r.target,
    text: r.body,
    tags: r.tags,
  };
}

/** Parameters of one SQL statement being built. */
class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
  /** `seq <op> $n` or `ts <op> $n` for a selector */
  cond(sel: Selector, op: '<' | '>' | '>='): string {
    return sel.kind === 'seq'
      ? `messages.seq ${op} ${this.add(sel.seq)}`
      : `messages.ts ${op} to_timestamp(${this.add(sel.time)}::float8 / 1000)`;
  }
}

/** Row order: the (room, ts, seq) index when a time selector is involved, else (room, seq). */
function orderBy(dir: 'asc' | 'desc', ...sels: Array<Selector | null>): string {
  return sels.some((s) => s?.kind === 'time')
    ? `messages.ts ${dir}, messages.seq ${dir}`
    : `messages.seq ${dir}`;
}

export function limitOf(limit: number): number {
  return Number.isFinite(limit) && limit > 0 ? Math.floor(limit) : 0;
}

/** a < b for two selectors of the same kind */
function lessThan(a: Selector, b: Selector): boolean {
  return a.kind === 'seq' && b.kind === 'seq' ? a.seq < b.seq : a.kind === 'time' && b.kind === 'time' && a.time < b.time;
}

/** The newest `limit` (after `after` when given), newest first: the caller reverses. */
export function latestQuery(room: string, after: Selector | null, limit: number): SqlQuery {
  const p = new Params();
  const where = [`room = ${p.add(room)}`];
  if (after) where.push(p.cond(after, '>'));
  return {
    text: `select ${COLUMNS} from messages where ${where.join(' and ')} order by ${orderBy('desc', after)} limit ${p.add(limitOf(limit))}`,
    values: p.values,
  };
}

/** Newest first: the caller reverses. */
export function beforeQuery(room: string, sel: Selector, limit: number): SqlQuery {
  const p = new Params();
  return {
    text: `select ${COLUMNS} from messages where room = ${p.add(room)} and ${p.cond(sel, '<')}
       order by ${orderBy('desc', sel)} limit ${p.add(limitOf(limit))}`,
    values: p.values,
  };
}

export function afterQuery(room: string, sel: Selector, limit: number): SqlQuery {
  const p = new Params();
  return {
    text: `select ${COLUMNS} from messages where room = ${p.add(room)} and ${p.cond(sel, '>')}
       order by ${orderBy('asc', sel)} limit ${p.add(limitOf(limit))}`,
    values: p.values,
  };
}

/** Up to `limit` rows on each side of the selector, `early` marking those before it (see centre). */
export function aroundQuery(room: string, sel: Selector, limit: number): SqlQuery {
  const p = new Params();
  const r = p.add(room);
  const l = p.add(limitOf(limit));
  return {
    text: `
      (select ${COLUMNS}, true as early from messages where room = ${r} and ${p.cond(sel, '<')}
        order by ${orderBy('desc', sel)} limit ${l})
      union all
      (select ${COLUMNS}, false as early from messages where room = ${r} and ${p.cond(sel, '>=')}
        order by ${orderBy('asc', sel)} limit ${l})`,
    values: p.values,
  };
}

/** Strictly between the selectors, nearest to the lower bound, ascending (see MessageStore.between). */
export function betweenQuery(room: string, from: Selector, to: Selector, limit: number): SqlQuery {
  const p = new Params();
  const r = p.add(room);
  if (from.kind === 'seq' && to.kind === 'time') return mixedBetween(p, r, from, to, limit);
  if (from.kind === 'time' && to.kind === 'seq') return mixedBetween(p, r, to, from, limit);
  const [lo, hi] = lessThan(from, to) ? [from, to] : [to, from];
  return {
    text: `select ${COLUMNS} from messages where room = ${r} and ${p.cond(lo, '>')} and ${p.cond(hi, '<')}
       order by ${orderBy('asc', from, to)} limit ${p.add(limitOf(limit))}`,
    values: p.values,
  };
}

/**
 * BETWEEN a seq and a time, which cannot be compared up front: either the rows after the seq and
 * before the time, or those after the time and before the seq. As ts is non-decreasing in seq,
 * "ts < time" is "seq < the first seq at or after time" (and "ts > time" is "seq > the last seq
 * at or before time"), so each side is one range of the (room, seq) index, bounded by an index
 * lookup; at most one side has rows.
 */
function mixedBetween(p: Params, r: string, sel: { seq: number }, time: { time: number }, limit: number): SqlQuery {
  const a = p.add(sel.seq);
  const b = `to_timestamp(${p.add(time.time)}::float8 / 1000)`;
  const l = p.add(limitOf(limit));
  const firstAtOrAfter = `coalesce((select m.seq from messages m where m.room = ${r} and m.ts >= ${b}
      order by m.ts, m.seq limit 1), 9223372036854775807)`;
  const lastAtOrBefore = `coalesce((select m.seq from messages m where m.room = ${r} and m.ts <= ${b}
      order by m.ts desc, m.seq desc limit 1), 0)`;
  return {
    text: `select * from (
      (select ${COLUMNS} from messages where room = ${r} and messages.seq > ${a} and messages.seq < ${firstAtOrAfter}
        order by messages.seq limit ${l})
      union all
      (select ${COLUMNS} from messages where room = ${r} and messages.seq > ${lastAtOrBefore} and messages.seq < ${a}
        order by messages.seq limit ${l})) both_sides
      order by seq limit ${l}`,
    values: p.values,
  };
}

/** Rooms among `rooms` (plus `dmNick`'s DM rooms) with messages in (from, to), newest first. */
export function targetsQuery(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): SqlQuery {
  return {
    text: `select c.room, m.target, (extract(epoch from m.ts) * 1000)::float8 as latest
       from (select unnest($1::text[]) as room
             union
             select room from dm_members where nick = $2) c
       cross join lateral (
         select messages.target, messages.ts from messages
         where messages.room = c.room
           and messages.ts > to_timestamp($3::float8 / 1000) and messages.ts < to_timestamp($4::float8 / 1000)
         order by messages.ts desc, messages.seq desc
         limit 1) m
       order by m.ts desc, c.room
       limit $5`,
    values: [rooms, dmNick, from, to, limitOf(limit)],
  };
}

/** Message counts; `last_seq` is the count because seqs are gap-free and never deleted. */
export function countsQuery(rooms: string[]): SqlQuery {
  return {
    text: 'select room, last_seq::float8 as messages from rooms where room = any($1::text[]) and last_seq > 0',
    values: [rooms],
  };
}

/** Picks up to `n` messages centred between `early` (newest first) and `late` (oldest first). */
export function centre(early: StoredMessage[], late: StoredMessage[], n: number): StoredMessage[] {
  let nEarly = Math.min(early.length, Math.floor(n / 2));
  const nLate = Math.min(late.length, n - nEarly);
  nEarly = Math.min(early.length, n - nLate);
  return early.slice(0, nEarly).reverse().concat(late.slice(0, nLate));
}
