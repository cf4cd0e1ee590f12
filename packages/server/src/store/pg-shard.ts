import pg from 'pg';
import type { BaseLogger } from 'pino';
import type { ShardInfo } from './directory.js';
import { migrate } from './migrations.js';
import type {
  AppendResult,
  NewMessage,
  RoomCount,
  Selector,
  StoredMessage,
  TargetActivity,
} from './store.js';

export type StoreLogger = Pick<BaseLogger, 'info' | 'warn' | 'error'>;

/** Called after every committed batch: rows written and wall time of the round trip (ms). */
export type BatchListener = (rows: number, ms: number) => void;

export interface PgShardOptions {
  info: ShardInfo;
  onBatch?: BatchListener;
  logger?: StoreLogger;
  /** most rows per INSERT statement (default 1000) */
  maxBatch?: number;
  /** server-side limit per statement; an aborted statement leaves nothing visible (default 10 s) */
  statementTimeoutMs?: number;
  /** client-side last resort so that nothing hangs forever (default 30 s) */
  queryTimeoutMs?: number;
  /** time to wait for a connection (default 10 s) */
  connectionTimeoutMs?: number;
}

/** An append waiting for its batch: the message and the callbacks of its promise. */
export interface Pending {
  msg: NewMessage;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

// The Promise executor stores its resolvers here synchronously; `append` moves them into the
// queued entry right away. This spares a closure per message on the hot path.
let capturedResolve: ((r: AppendResult) => void) | undefined;
let capturedReject: ((e: Error) => void) | undefined;
function captureResolvers(resolve: (r: AppendResult) => void, reject: (e: Error) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected
const MAX_ATTEMPTS = 5;

/**
 * One round trip per batch. Rooms are upserted in sorted order (so two writers lock them in the
 * same order and cannot deadlock), each room's counter moves by its row count, each input row
 * gets the next seq of its room in input order, and all rows of a room share the room's new
 * `last_ts` (the batch clock, or the previous batch's time if that is later). The counter update
 * and the inserts commit together, so a seq is never skipped nor reused by any instance.
 * A `dm:` room's participants are recorded by the batch that creates the room.
 */
const APPEND_SQL = `
with input as (
  select t.ord, t.room, t.source, t.command, t.target, t.body, t.tags::jsonb as tags
  from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
       with ordinality as t(room, source, command, target, body, tags, ord)
),
per_room as (
  select room, count(*)::bigint as n from input group by room
),
bumped as (
  insert into rooms as r (room, last_seq, last_ts)
  select p.room, p.n, date_trunc('milliseconds', clock_timestamp())
  from per_room p
  order by p.room
  on conflict (room) do update
    set last_seq = r.last_seq + excluded.last_seq,
        last_ts  = greatest(r.last_ts, excluded.last_ts)
  returning r.room, r.last_seq, r.last_ts
),
numbered as (
  select i.ord, i.room, i.source, i.command, i.target, i.body, i.tags, b.last_ts as ts,
         b.last_seq - p.n + row_number() over (partition by i.room order by i.ord) as seq
  from input i
  join per_room p on p.room = i.room
  join bumped b on b.room = i.room
),
inserted as (
  insert into messages (room, seq, ts, source, command, target, body, tags)
  select room, seq, ts, source, command, target, body, tags from numbered
),
dm as (
  insert into dm_members (nick, room)
  select distinct nick, b.room
  from bumped b
  join per_room p on p.room = b.room
  cross join lateral unnest(string_to_array(substr(b.room, 4), ',')) as nick
  where b.last_seq = p.n and b.room like 'dm:%'
  on conflict do nothing
)
select seq::float8 as seq, (extract(epoch from ts) * 1000)::float8 as time
from numbered
order by ord`;

const COLUMNS = `room, seq::float8 as seq, (extract(epoch from ts) * 1000)::float8 as time,
  source, command, target, body, tags`;

interface MessageRow {
  room: string;
  seq: number;
  time: number;
  source: string;
  command: string;
  target: string;
  body: string;
  tags: Record<string, string> | null;
}

function toStored(r: MessageRow): StoredMessage {
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
      ? `seq ${op} ${this.add(sel.seq)}`
      : `ts ${op} to_timestamp(${this.add(sel.time)}::float8 / 1000)`;
  }
}

/** Row order; time selectors walk the (room, ts, seq) index, which yields the same order as seq. */
function orderBy(dir: 'asc' | 'desc', ...sels: Selector[]): string {
  return sels.some((s) => s.kind === 'time') ? `ts ${dir}, seq ${dir}` : `seq ${dir}`;
}

function limitOf(limit: number): number {
  return Number.isFinite(limit) && limit > 0 ? Math.floor(limit) : 0;
}

/** a < b for two selectors of the same kind */
function lessThan(a: Selector, b: Selector): boolean {
  return a.kind === 'seq' && b.kind === 'seq' ? a.seq < b.seq : a.kind === 'time' && b.kind === 'time' && a.time < b.time;
}

/**
 * One PostgreSQL shard: a connection pool and a group committer. Appends queue up and go to the
 * database as one statement per batch, with at most one batch in flight per shard per process,
 * which keeps each room's seqs in call order.
 */
export class PgShard {
  readonly info: ShardInfo;
  readonly pool: pg.Pool;
  private readonly onBatch: BatchListener | undefined;
  private readonly logger: StoreLogger | undefined;
  private readonly maxBatch: number;

  private queue: Pending[] = [];
  private head = 0;
  private inFlight = false;
  private scheduled = false;
  private closing = false;
  private closed: Promise<void> | null = null;
  private migrated: Promise<void> | null = null;
  private drainWaiters: Array<() => void> = [];
  private readonly flushNow = (): void => {
    this.scheduled = false;
    void this.flush();
  };

  constructor(opts: PgShardOptions) {
    this.info = opts.info;
    this.onBatch = opts.onBatch;
    this.logger = opts.logger;
    this.maxBatch = opts.maxBatch ?? 1000;
    this.pool = new pg.Pool({
      connectionString: opts.info.url,
      max: Math.max(1, opts.info.poolSize),
      statement_timeout: opts.statementTimeoutMs ?? 10_000,
      query_timeout: opts.queryTimeoutMs ?? 30_000,
      connectionTimeoutMillis: opts.connectionTimeoutMs ?? 10_000,
      application_name: 'parley',
    });
    // An idle connection that dies (server restart) is reported here; without a listener the
    // pool's 'error' event would crash the process. The pool replaces it on next use.
    this.pool.on('error', (err) => {
      this.logger?.warn({ err, shard: this.info.id }, 'idle PostgreSQL connection failed');
    });
  }

  /** Applies migrations once; a failure is not remembered, so the next call tries again. */
  start(): Promise<void> {
    if (!this.migrated) {
      this.migrated = migrate(this.pool).then(
        (applied) => {
          if (applied.length > 0) this.logger?.info({ shard: this.info.id, applied }, 'shard schema migrated');
        },
        (err: unknown) => {
          this.migrated = null;
          throw new Error(`shard ${this.info.id}: ${(err as Error).message}`, { cause: err });
        },
      );
    }
    return this.migrated;
  }

  /** Queues a message for the next batch; resolves once its batch has committed. */
  append(msg: NewMessage): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new Error(`shard ${this.info.id} is closed`));
    // PostgreSQL text cannot hold NUL; refuse it here rather than fail a whole batch with it.
    if (msg.text.includes('\0') || msg.source.includes('\0') || msg.target.includes('\0')) {
      return Promise.reject(new Error('message contains a NUL character'));
    }
    const p = new Promise<AppendResult>(captureResolvers);
    this.queue.push({ msg, resolve: capturedResolve!, reject: capturedReject! });
    if (!this.inFlight && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    return p;
  }

  /** messages waiting for a batch (not counting the one in flight) */
  get pending(): number {
    return this.queue.length - this.head;
  }

  private take(): Pending[] {
    const available = this.queue.length - this.head;
    if (this.head === 0 && available <= this.maxBatch) {
      const all = this.queue;
      this.queue = [];
      return all;
    }
    const n = Math.min(this.maxBatch, available);
    const batch = this.queue.slice(this.head, this.head + n);
    this.head += n;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 16 * this.maxBatch) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private async flush(): Promise<void> {
    if (this.inFlight) return;
    if (this.pending === 0) {
      this.notifyDrained();
      return;
    }
    this.inFlight = true;
    const batch = this.take();
    try {
      await this.start();
      await this.write(batch);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const p of batch) p.reject(e);
    } finally {
      this.inFlight = false;
      if (this.pending > 0) {
        // Deferred, so that callers resumed by this batch can still join the next one.
        this.scheduled = true;
        setImmediate(this.flushNow);
      } else {
        this.notifyDrained();
      }
    }
  }

  private notifyDrained(): void {
    if (this.drainWaiters.length === 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private async write(batch: Pending[]): Promise<void> {
    const n = batch.length;
    const rooms = new Array<string>(n);
    const sources = new Array<string>(n);
    const commands = new Array<string>(n);
    const targets = new Array<string>(n);
    const bodies = new Array<string>(n);
    const tags = new Array<string | null>(n);
    for (let i = 0; i < n; i++) {
      const m = batch[i]!.msg;
      rooms[i] = m.room;
      sources[i] = m.source;
      commands[i] = m.command;
      targets[i] = m.target;
      bodies[i] = m.text;
      tags[i] = m.tags === null ? null : JSON.stringify(m.tags);
    }
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.pool.query<{ seq: number; time: number }>({
          name: 'parley_append_v1',
          text: APPEND_SQL,
          values: [rooms, sources, commands, targets, bodies, tags],
        });
        if (res.rows.length !== n) throw new Error(`append returned ${res.rows.length} rows for ${n} messages`);
        const ms = performance.now() - started;
        for (let i = 0; i < n; i++) {
          const row = res.rows[i]!;
          batch[i]!.resolve({ seq: row.seq, time: row.time });
        }
        try {
          this.onBatch?.(n, ms);
        } catch (err) {
          this.logger?.error({ err }, 'onBatch listener failed');
        }
        return;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && RETRYABLE.has(code) && attempt < MAX_ATTEMPTS) {
          this.logger?.warn({ shard: this.info.id, code, attempt }, 'append batch retried');
          continue;
        }
        throw new Error(`append to shard ${this.info.id} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  private async select(sql: string, values: unknown[]): Promise<StoredMessage[]> {
    await this.start();
    const res = await this.pool.query<MessageRow>(sql, values);
    return res.rows.map(toStored);
  }

  async latest(room: string, after: Selector | null, limit: number): Promise<StoredMessage[]> {
    const p = new Params();
    const where = [`room = ${p.add(room)}`];
    if (after) where.push(p.cond(after, '>'));
    const order = after ? orderBy('desc', after) : 'seq desc';
    const rows = await this.select(
      `select ${COLUMNS} from messages where ${where.join(' and ')} order by ${order} limit ${p.add(limitOf(limit))}`,
      p.values,
    );
    return rows.reverse();
  }

  async before(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const p = new Params();
    const rows = await this.select(
      `select ${COLUMNS} from messages where room = ${p.add(room)} and ${p.cond(sel, '<')}
       order by ${orderBy('desc', sel)} limit ${p.add(limitOf(limit))}`,
      p.values,
    );
    return rows.reverse();
  }

  async after(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const p = new Params();
    return this.select(
      `select ${COLUMNS} from messages where room = ${p.add(room)} and ${p.cond(sel, '>')}
       order by ${orderBy('asc', sel)} limit ${p.add(limitOf(limit))}`,
      p.values,
    );
  }

  /**
   * Up to `limit` messages with the selector's message (or the first one at/after the time) in
   * the middle: half before it, the rest from it on; a short side lends its share to the other.
   */
  async around(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const n = limitOf(limit);
    if (n === 0) return [];
    const p = new Params();
    const r = p.add(room);
    const l = p.add(n);
    const sql = `
      (select ${COLUMNS}, true as early from messages where room = ${r} and ${p.cond(sel, '<')}
        order by ${orderBy('desc', sel)} limit ${l})
      union all
      (select ${COLUMNS}, false as early from messages where room = ${r} and ${p.cond(sel, '>=')}
        order by ${orderBy('asc', sel)} limit ${l})`;
    await this.start();
    const res = await this.pool.query<MessageRow & { early: boolean }>(sql, p.values);
    const early: StoredMessage[] = []; // newest first
    const late: StoredMessage[] = []; // oldest first
    for (const row of res.rows) (row.early ? early : late).push(toStored(row));
    return centre(early, late, n);
  }

  /**
   * Messages strictly between the two selectors, the `limit` nearest to the lower bound, in
   * ascending order, whichever way round the bounds are given (see MessageStore.between).
   */
  async between(room: string, from: Selector, to: Selector, limit: number): Promise<StoredMessage[]> {
    const p = new Params();
    const r = p.add(room);
    let range: string;
    if (from.kind === to.kind) {
      const [lo, hi] = lessThan(from, to) ? [from, to] : [to, from];
      range = `${p.cond(lo, '>')} and ${p.cond(hi, '<')}`;
    } else {
      // Mixed kinds cannot be compared here; at most one orientation matches any row.
      range = `((${p.cond(from, '>')} and ${p.cond(to, '<')}) or (${p.cond(to, '>')} and ${p.cond(from, '<')}))`;
    }
    return this.select(
      `select ${COLUMNS} from messages where room = ${r} and ${range}
       order by ${orderBy('asc', from, to)} limit ${p.add(limitOf(limit))}`,
      p.values,
    );
  }

  /** Rooms among `rooms` (plus `dmNick`'s DM rooms) with messages in (from, to), newest first. */
  async targets(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): Promise<TargetActivity[]> {
    await this.start();
    const res = await this.pool.query<TargetActivity>(
      `select c.room, m.target, (extract(epoch from m.ts) * 1000)::float8 as latest
       from (select unnest($1::text[]) as room
             union
             select room from dm_members where nick = $2) c
       cross join lateral (
         select target, ts from messages
         where room = c.room
           and ts > to_timestamp($3::float8 / 1000) and ts < to_timestamp($4::float8 / 1000)
         order by ts desc, seq desc
         limit 1) m
       order by m.ts desc, c.room
       limit $5`,
      [rooms, dmNick, from, to, limitOf(limit)],
    );
    return res.rows;
  }

  /** Message counts; `last_seq` is the count because seqs are gap-free and never deleted. */
  async counts(rooms: string[]): Promise<RoomCount[]> {
    await this.start();
    const res = await this.pool.query<RoomCount>(
      'select room, last_seq::float8 as messages from rooms where room = any($1::text[]) and last_seq > 0',
      [rooms],
    );
    return res.rows;
  }

  /** Refuses new appends, waits for the queue and the batch in flight, then ends the pool. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closing = true;
      this.closed = (async () => {
        if (this.inFlight || this.pending > 0 || this.scheduled) {
          await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        }
        await this.pool.end();
      })();
    }
    return this.closed;
  }
}

/** Picks up to `n` messages centred between `early` (newest first) and `late` (oldest first). */
export function centre(early: StoredMessage[], late: StoredMessage[], n: number): StoredMessage[] {
  let nEarly = Math.min(early.length, Math.floor(n / 2));
  const nLate = Math.min(late.length, n - nEarly);
  nEarly = Math.min(early.length, n - nLate);
  return early.slice(0, nEarly).reverse().concat(late.slice(0, nLate));
}
