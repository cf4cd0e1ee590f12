import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { BaseLogger } from 'pino';
import { TIMED_OUT, beforeDeadline, destroyConnection, openCommitConnection } from './commit-connection.js';
import type { CommitConnection } from './commit-connection.js';
import { CommitQueue } from './commit-queue.js';
import type { Pending } from './commit-queue.js';
import { APPEND_SQL, DEADLINE_PASSED, FENCE_SQL, MAX_ATTEMPTS, QUERY_CANCELED, RETRYABLE, isUnavailableCode } from './commit-sql.js';
import { StoreTimeoutError, StoreUnavailableError } from './errors.js';
import type { AppendResult, NewMessage } from './store.js';

export type { Pending } from './commit-queue.js';

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

/** below this much time left before its deadline, a message is refused rather than sent */
const MIN_WINDOW_MS = 20;

/** A batch whose answer was lost after it was sent: committed or not, decided by the fence. */
interface Unresolved {
  id: string;
  msgs: NewMessage[];
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
  private readonly probeIntervalMs: number;
  private readonly ensureSchema: () => Promise<void>;
  private readonly onBatch: BatchListener | undefined;
  private readonly events: StoreEvents;
  private readonly logger: StoreLogger | undefined;

  private readonly queue: CommitQueue;
  private inFlight = false;
  private scheduled = false;
  /** set by close(): new appends are refused, the queue still drains */
  private closing = false;
  /** set once drained: no connection, no probe */
  private stopped = false;
  private closed: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  private conn: CommitConnection | null = null;
  /** connections being opened, so close() can abort them */
  private readonly connecting = new Set<CommitConnection>();
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
    this.queue = new CommitQueue(opts.maxBatch ?? 1000);
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
    return this.queue.length;
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

  /** Rejects the queued messages whose time is up: they were never sent, so that is definitive. */
  private expire(): void {
    const expired = this.queue.takeOlderThan(Date.now() + MIN_WINDOW_MS - (this.timeoutMs - this.marginMs));
    if (expired.length === 0) return;
    const err = new StoreTimeoutError(this.shard, this.timeoutMs);
    for (const p of expired) p.reject(err);
  }

  private async flush(): Promise<void> {
    if (this.inFlight) return;
    this.expire();
    if (this.pending === 0) {
      this.notifyDrained();
      return;
    }
    this.inFlight = true;
    const batch = this.queue.take();
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
    const conn = await openCommitConnection({
      url: this.url,
      deadline,
      statementTimeoutMs: this.timeoutMs - this.marginMs,
      pending: this.connecting,
      onError: (err) => this.logger?.warn({ err, shard: this.shard }, 'PostgreSQL commit connection failed'),
    });
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

  /** Destroys the connection at once (a graceful end would wait for a hung server). */
  private drop(conn: CommitConnection): void {
    if (this.conn === conn) this.conn = null;
    destroyConnection(conn);
  }

  /** Enters the down state (once) and starts probing. */
  private markDown(cause: Error): void {
    if (this.downState) return;
    this.downState = { since: Date.now(), cause };
    this.logger?.warn({ shard: this.shard, err: cause }, 'shard down: failing its appends at once until it answers');
    this.emit(() => this.events.shardDown?.(this.shard, cause));
    const err = new StoreUnavailableError(this.shard, cause);
    for (const p of this.queue.takeAll()) p.reject(err);
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
    for (const c of this.connecting) destroyConnection(c);
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
