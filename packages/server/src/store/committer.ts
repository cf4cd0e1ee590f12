import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { BaseLogger } from 'pino';
import { StoreTimeoutError, StoreUnavailableError } from './errors.js';
import type { AppendResult, NewMessage } from './store.js';

export type StoreLogger = Pick<BaseLogger, 'info' | 'warn' | 'error'>;

/** Called after every committed batch: rows written and wall time of the round trip (ms). */
export type BatchListener = (rows: number, ms: number) => void;

/** What a store reports about its shards' health; listeners must not throw (it is logged if they do). */
export interface StoreEvents {
  /** The shard stopped answering; its appends and reads fail at once until it answers a probe. */
  shardDown?(shard: number, cause: Error): void;
  /** The shard answered a probe again after `downMs`. */
  shardUp?(shard: number, downMs: number): void;
  /**
   * Messages whose appends were rejected because the batch's answer was lost, and which the
   * shard turned out to have committed (found when it answered again). Their senders got an
   * error; the messages are in history. Expected never to happen: the shard would have to stop
   * between the commit-deadline check and the commit record, or the answer be lost for longer
   * than the margin after a commit in time (see docs/architecture.md, "Durability guarantees").
   */
  lateCommit?(shard: number, messages: NewMessage[]): void;
}

/** An append waiting for its batch: the message, when `append` was called, and its promise. */
export interface Pending {
  msg: NewMessage;
  /** Date.now() at the append call: the commit timeout counts from here */
  at: number;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

export interface CommitterOptions {
  shard: number;
  url: string;
  /** every append is answered within this many ms of its call (default 5000) */
  commitTimeoutMs?: number;
  /** most rows per batch statement (default 1000) */
  maxBatch?: number;
  /** pause between probes of a shard that is down (default 500) */
  probeIntervalMs?: number;
  /** applies the schema before the first batch (the shard's migrations) */
  ensureSchema: () => Promise<void>;
  onBatch?: BatchListener;
  events?: StoreEvents;
  logger?: StoreLogger;
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
/** raised by the `batches` trigger when a batch reaches COMMIT after its deadline */
const DEADLINE_PASSED = 'PR001';
const QUERY_CANCELED = '57014'; // statement_timeout
/** below this much time left before its deadline, a message is refused rather than sent */
const MIN_WINDOW_MS = 20;

/**
 * One round trip per batch. Rooms are upserted in sorted order (so two writers lock them in the
 * same order and cannot deadlock), each room's counter moves by its row count, each input row
 * gets the next seq of its room in input order, and all rows of a room share the room's new
 * `last_ts` (the batch clock, or the previous batch's time if that is later). The counter update
 * and the inserts commit together, so a seq is never skipped nor reused by any instance.
 * A `dm:` room's participants are recorded by the batch that creates the room. The `batches`
 * row ($7, deadline $8 in ms on the shard's clock) makes COMMIT fail once the deadline passed.
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
),
batch as (
  insert into batches (id, deadline) values ($7::uuid, to_timestamp($8::float8 / 1000))
)
select seq::float8 as seq, (extract(epoch from ts) * 1000)::float8 as time
from numbered
order by ord`;

/**
 * Marks every listed batch id as aborted unless that batch committed. A batch still in progress
 * (a backend thawing after a freeze) is waited for by the unique index, so the answer is final:
 * the ids returned are fenced (never committed, and never will), the others committed.
 */
const FENCE_SQL = `
insert into batches (id, deadline, aborted)
select unnest($1::uuid[]), 'infinity', true
on conflict (id) do nothing
returning id::text as id`;

/** The dedicated commit connection and the shard's clock relative to this process's. */
interface CommitConnection {
  client: pg.Client;
  /** shard clock minus this process's clock, ms, as measured at connect */
  offsetMs: number;
  /** half the round trip of that measurement: the offset's uncertainty */
  uncertaintyMs: number;
  dead: boolean;
}

/** A batch whose answer was lost after it was sent: committed or not, decided by the fence. */
interface Unresolved {
  id: string;
  msgs: NewMessage[];
}

const TIMED_OUT = Symbol('timed out');

/**
 * Settles with `op`, or with TIMED_OUT once `deadline` (Date.now() scale) passes first, after
 * calling `onTimeout` (which destroys the connection `op` runs on). A late settlement of `op` is
 * ignored.
 */
function beforeDeadline<T>(op: Promise<T>, deadline: number, onTimeout: () => void): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      onTimeout();
      resolve(TIMED_OUT);
    }, Math.max(0, deadline - Date.now()));
    op.then(
      (v) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** SQLSTATEs that mean the server is going away or refusing work: treat the shard as down. */
function isUnavailableCode(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('08') || code.startsWith('53') || /^57P0[1-5]$/.test(code));
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * The group committer of one shard. Appends queue up and go to the database as one statement per
 * batch, at most one batch in flight, on a connection of its own (history reads never hold it),
 * which keeps each room's seqs in call order.
 *
 * Contract: every append settles within `commitTimeoutMs` of its call, and a rejection is
 * definitive. A batch's oldest message fixes its deadline D; the batch row carries D − margin
 * converted to the shard's clock, and the shard's own commit trigger refuses to commit after it.
 * At D the connection is destroyed and the batch rejected: by then the shard has either committed
 * (and its answer was lost, which the fence finds later) or can no longer commit. The shard is
 * then down: queued and new appends fail at once and a probe runs until the shard answers, fences
 * the lost batches and marks the shard up.
 */
export class GroupCommitter {
  readonly shard: number;
  private readonly url: string;
  private readonly timeoutMs: number;
  /** how much earlier than D the shard stops accepting the commit: covers clock drift and the reply's trip */
  private readonly marginMs: number;
  private readonly maxBatch: number;
  private readonly probeIntervalMs: number;
  private readonly ensureSchema: () => Promise<void>;
  private readonly onBatch: BatchListener | undefined;
  private readonly events: StoreEvents;
  private readonly logger: StoreLogger | undefined;

  private queue: Pending[] = [];
  private head = 0;
  private inFlight = false;
  private scheduled = false;
  /** set by close(): new appends are refused, the queue still drains */
  private closing = false;
  /** set once drained: no connection, no probe */
  private stopped = false;
  private closed: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  private conn: CommitConnection | null = null;
  /** clients being connected, so close() can abort them */
  private readonly connecting = new Set<pg.Client>();
  private downState: { since: number; cause: Error } | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
  private unresolved: Unresolved[] = [];
  private readonly flushNow = (): void => {
    this.scheduled = false;
    void this.flush();
  };

  constructor(opts: CommitterOptions) {
    this.shard = opts.shard;
    this.url = opts.url;
    this.timeoutMs = Math.max(100, opts.commitTimeoutMs ?? 5000);
    this.marginMs = Math.min(1000, Math.floor(this.timeoutMs / 5));
    this.maxBatch = opts.maxBatch ?? 1000;
    this.probeIntervalMs = opts.probeIntervalMs ?? 500;
    this.ensureSchema = opts.ensureSchema;
    this.onBatch = opts.onBatch;
    this.events = opts.events ?? {};
    this.logger = opts.logger;
  }

  /** The cause while the shard is down, else null. */
  get down(): Error | null {
    return this.downState?.cause ?? null;
  }

  /** messages waiting for a batch (not counting the one in flight) */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Queues a message for the next batch; resolves once its batch has committed. */
  append(msg: NewMessage, at = Date.now()): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new Error(`shard ${this.shard} is closed`));
    // PostgreSQL text cannot hold NUL; refuse it here rather than fail a whole batch with it.
    if (msg.text.includes('\0') || msg.source.includes('\0') || msg.target.includes('\0')) {
      return Promise.reject(new Error('message contains a NUL character'));
    }
    if (this.downState) return Promise.reject(new StoreUnavailableError(this.shard, this.downState.cause));
    const p = new Promise<AppendResult>(captureResolvers);
    this.queue.push({ msg, at, resolve: capturedResolve!, reject: capturedReject! });
    if (!this.inFlight && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    return p;
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

  /** Rejects the queued messages whose time is up: they were never sent, so that is definitive. */
  private expire(): void {
    const latest = Date.now() + MIN_WINDOW_MS - (this.timeoutMs - this.marginMs);
    let n = 0;
    while (this.head + n < this.queue.length && this.queue[this.head + n]!.at < latest) n++;
    if (n === 0) return;
    const expired = this.queue.slice(this.head, this.head + n);
    this.head += n;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    const err = new StoreTimeoutError(this.shard, this.timeoutMs);
    for (const p of expired) p.reject(err);
  }

  /** Rejects everything queued (not the batch in flight). */
  private rejectQueued(err: Error): void {
    const queued = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const p of queued) p.reject(err);
  }

  private async flush(): Promise<void> {
    if (this.inFlight) return;
    this.expire();
    if (this.pending === 0) {
      this.notifyDrained();
      return;
    }
    this.inFlight = true;
    const batch = this.take();
    try {
      await this.commit(batch);
    } catch (err) {
      // commit() settles its batch itself; this is a bug guard, not a path.
      this.logger?.error({ err, shard: this.shard }, 'commit failed unexpectedly');
      for (const p of batch) p.reject(asError(err));
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

  /** Writes one batch and settles every message of it; never rejects. */
  private async commit(batch: Pending[]): Promise<void> {
    const deadline = batch[0]!.at + this.timeoutMs;
    const timeout = (cause?: unknown): StoreTimeoutError => new StoreTimeoutError(this.shard, this.timeoutMs, cause);
    const rejectAll = (err: Error): void => {
      for (const p of batch) p.reject(err);
    };

    // Nothing is sent before the connection is ready: any failure up to there is definitive.
    try {
      const schema = await beforeDeadline(this.ensureSchema(), deadline, () => {});
      if (schema === TIMED_OUT) return rejectAll(timeout());
    } catch (err) {
      return rejectAll(this.classify(err, 'schema'));
    }
    let conn: CommitConnection;
    try {
      conn = await this.connection(deadline);
    } catch (err) {
      const e = err === TIMED_OUT ? timeout() : new StoreUnavailableError(this.shard, err);
      this.markDown(e);
      return rejectAll(e);
    }

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
    const id = randomUUID();
    // The shard's clock may differ from ours: aim at the earliest shard time that can be D − margin here.
    const guard = deadline - this.marginMs + conn.offsetMs - conn.uncertaintyMs;
    const lost = (): void => {
      this.unresolved.push({ id, msgs: batch.map((p) => p.msg) });
    };
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      let res: pg.QueryResult<{ seq: number; time: number }> | typeof TIMED_OUT;
      try {
        res = await beforeDeadline(
          conn.client.query<{ seq: number; time: number }>({
            name: 'parley_append_v2',
            text: APPEND_SQL,
            values: [rooms, sources, commands, targets, bodies, tags, id, guard],
          }),
          deadline,
          () => this.drop(conn),
        );
      } catch (err) {
        if (err instanceof pg.DatabaseError) {
          // The server answered: the transaction is over and did not commit.
          if (err.code !== undefined && RETRYABLE.has(err.code) && attempt < MAX_ATTEMPTS && Date.now() < deadline) {
            this.logger?.warn({ shard: this.shard, code: err.code, attempt }, 'append batch retried');
            continue;
          }
          return rejectAll(this.classify(err, 'append'));
        }
        // The connection broke with the statement possibly sent: the fence will tell.
        lost();
        this.drop(conn);
        const e = new StoreUnavailableError(this.shard, err);
        this.markDown(e);
        return rejectAll(e);
      }
      if (res === TIMED_OUT) {
        lost();
        const e = timeout();
        this.markDown(e);
        return rejectAll(e);
      }
      if (res.rows.length !== n) {
        this.logger?.error({ shard: this.shard, rows: res.rows.length, n }, 'append returned the wrong row count');
      }
      const ms = performance.now() - started;
      for (let i = 0; i < n; i++) {
        const row = res.rows[i];
        if (row) batch[i]!.resolve({ seq: row.seq, time: row.time });
        else batch[i]!.reject(new Error(`append to shard ${this.shard}: no row returned`));
      }
      try {
        this.onBatch?.(n, ms);
      } catch (err) {
        this.logger?.error({ err }, 'onBatch listener failed');
      }
      return;
    }
  }

  /** The error to reject a batch with after the server answered with an error (or before sending). */
  private classify(err: unknown, what: string): Error {
    // A migration failure arrives wrapped; the server's answer, if any, is its cause.
    const db = err instanceof pg.DatabaseError ? err : (err as { cause?: unknown }).cause;
    const code = db instanceof pg.DatabaseError ? db.code : undefined;
    if (code === DEADLINE_PASSED || code === QUERY_CANCELED) return new StoreTimeoutError(this.shard, this.timeoutMs, err);
    if (isUnavailableCode(code) || !(db instanceof pg.DatabaseError)) {
      const e = new StoreUnavailableError(this.shard, err);
      this.markDown(e);
      return e;
    }
    return new Error(`${what} to shard ${this.shard} failed: ${asError(err).message}`, { cause: err });
  }

  /** The open commit connection, or a new one ready before `deadline` (rejects with TIMED_OUT). */
  private async connection(deadline: number): Promise<CommitConnection> {
    if (this.conn && !this.conn.dead) return this.conn;
    this.conn = null;
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: Math.max(1, deadline - Date.now()),
      // The server-side bound for a statement stuck on a lock or a slow disk; the batch trigger
      // covers the commit itself.
      statement_timeout: this.timeoutMs - this.marginMs,
      application_name: 'parley-commit',
      keepAlive: true,
    });
    const conn: CommitConnection = { client, offsetMs: 0, uncertaintyMs: 0, dead: false };
    // A connection that fails while idle (server restart) is replaced at its next use.
    client.on('error', (err) => {
      if (!conn.dead) this.logger?.warn({ err, shard: this.shard }, 'PostgreSQL commit connection failed');
      conn.dead = true;
    });
    this.connecting.add(client);
    try {
      const ready = await beforeDeadline(
        (async () => {
          await client.connect();
          const sent = Date.now();
          const r = await client.query<{ now: number }>('select (extract(epoch from clock_timestamp()) * 1000)::float8 as now');
          const received = Date.now();
          conn.offsetMs = r.rows[0]!.now - (sent + received) / 2;
          conn.uncertaintyMs = (received - sent) / 2;
        })(),
        deadline,
        () => this.drop(conn),
      );
      if (ready === TIMED_OUT) throw TIMED_OUT;
    } catch (err) {
      this.drop(conn);
      throw err;
    } finally {
      this.connecting.delete(client);
    }
    if (Math.abs(conn.offsetMs) > this.marginMs / 2) {
      this.logger?.warn({ shard: this.shard, offsetMs: Math.round(conn.offsetMs) }, 'shard clock differs from this instance; commit deadlines are converted');
    }
    if (this.stopped) {
      this.drop(conn);
      throw new Error(`shard ${this.shard} is closed`);
    }
    this.conn = conn;
    return conn;
  }

  /** Destroys the socket at once (a graceful end would wait for a hung server). */
  private drop(conn: CommitConnection): void {
    conn.dead = true;
    if (this.conn === conn) this.conn = null;
    conn.client.connection.stream.destroy();
  }

  /** Enters the down state (once) and starts probing. */
  private markDown(cause: Error): void {
    if (this.downState) return;
    this.downState = { since: Date.now(), cause };
    this.logger?.warn({ shard: this.shard, err: cause }, 'shard down: failing its appends at once until it answers');
    this.emit(() => this.events.shardDown?.(this.shard, cause));
    this.rejectQueued(new StoreUnavailableError(this.shard, cause));
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closing || this.stopped || this.probeTimer || this.probing) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      this.probing = this.probe().finally(() => {
        this.probing = null;
        if (this.downState) this.scheduleProbe();
      });
    }, this.probeIntervalMs);
  }

  /** Connects, settles the lost batches with the fence, and marks the shard up; never rejects. */
  private async probe(): Promise<void> {
    if (this.stopped || !this.downState) return;
    // A thawing backend may still hold a lost batch: the fence waits for it, within the same bound.
    const deadline = Date.now() + Math.max(1000, this.timeoutMs);
    let conn: CommitConnection;
    try {
      conn = await this.connection(Math.min(deadline, Date.now() + 1000));
      const lost = this.unresolved;
      if (lost.length > 0) {
        const res = await beforeDeadline(
          conn.client.query<{ id: string }>(FENCE_SQL, [lost.map((b) => b.id)]),
          deadline,
          () => this.drop(conn),
        );
        if (res === TIMED_OUT) return;
        const fenced = new Set(res.rows.map((r) => r.id));
        this.unresolved = this.unresolved.filter((b) => !lost.includes(b));
        const late = lost.filter((b) => !fenced.has(b.id));
        if (late.length > 0) {
          const msgs = late.flatMap((b) => b.msgs);
          this.logger?.error({ shard: this.shard, batches: late.map((b) => b.id), messages: msgs.length }, 'batches rejected as failed were committed');
          this.emit(() => this.events.lateCommit?.(this.shard, msgs));
        }
      }
    } catch (err) {
      // Appends rejected meanwhile carry the latest reason.
      if (err !== TIMED_OUT && this.downState) this.downState.cause = asError(err);
      return;
    }
    if (!this.downState) return;
    const downMs = Date.now() - this.downState.since;
    this.downState = null;
    this.logger?.info({ shard: this.shard, downMs }, 'shard up again');
    this.emit(() => this.events.shardUp?.(this.shard, downMs));
  }

  private emit(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.logger?.error({ err, shard: this.shard }, 'store event listener failed');
    }
  }

  /** Waits for the queue and the batch in flight (each bounded by the commit timeout), then disconnects. */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    if (this.inFlight || this.pending > 0 || this.scheduled) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    this.stopped = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    for (const c of this.connecting) c.connection.stream.destroy();
    await this.probing;
    if (this.unresolved.length > 0) {
      this.logger?.warn({ shard: this.shard, batches: this.unresolved.map((b) => b.id) }, 'closing with batches of unknown outcome');
    }
    const conn = this.conn;
    this.conn = null;
    if (conn && !conn.dead) {
      const ended = await beforeDeadline(conn.client.end(), Date.now() + 1000, () => this.drop(conn));
      if (ended !== TIMED_OUT) conn.dead = true;
    }
  }
}
