import { BatchWriter } from './commit-batch.js';
import { CommitSlot } from './commit-connection.js';
import { CommitQueue } from './commit-queue.js';
import type { ConnectGate } from './connect-gate.js';
import type { Pending } from './commit-queue.js';
import { StoreTimeoutError, StoreUnavailableError } from './errors.js';
import { asError } from './events.js';
import type { BatchListener, StoreEvents, StoreLogger } from './events.js';
import { ShardHealth } from './shard-health.js';
import type { AppendResult, NewMessage } from './store.js';

export type { Pending } from './commit-queue.js';
export type { BatchListener, StoreEvents, StoreLogger } from './events.js';

export interface CommitterOptions {
  shard: number;
  url: string;
  /** every append is answered within this many ms of its call (default 5000) */
  commitTimeoutMs?: number;
  /** most rows per batch statement (default 1000) */
  maxBatch?: number;
  /** pause between probes of a shard that is down (default 500) */
  probeIntervalMs?: number;
  /** the commit connection is closed after this many ms without an append (default 60000; 0 = never) */
  idleMs?: number;
  /** applies the schema before the first batch (the shard's migrations) */
  ensureSchema: () => Promise<void>;
  /** bounds the connections the process opens at once */
  gate?: ConnectGate;
  /** the commit connection was closed for being idle (called once it is gone) */
  onIdleClosed?: () => void;
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

/**
 * The group committer of one shard. Appends queue up and go to the database as one statement per
 * batch, at most one batch in flight, on a connection of its own (history reads never hold it),
 * which keeps each room's seqs in call order. The connection is opened by the first batch and
 * closed after `idleMs` without appends; the next append opens it again.
 *
 * Contract: every append settles within `commitTimeoutMs` of its call, and a rejection is
 * definitive. A batch's oldest message fixes its deadline D; the batch row carries D − margin
 * converted to the shard's clock, and the shard's own commit trigger refuses to commit after it
 * (BatchWriter). At D the connection is destroyed and the batch rejected: by then the shard has
 * either committed (and its answer was lost, which the fence finds later) or can no longer commit.
 * The shard is then checked (ShardHealth: connect and fence within the commit timeout, appends
 * going on meanwhile, each bounded by its own deadline); if it does not answer it is down: queued
 * and new appends fail at once and a probe runs until the shard answers, fences the lost batches
 * and marks the shard up. A refused or broken connection makes it down at once.
 */
export class GroupCommitter {
  readonly shard: number;
  private readonly timeoutMs: number;
  /** how much earlier than D the shard stops accepting the commit: covers clock drift and the reply's trip */
  private readonly marginMs: number;
  private readonly idleMs: number;
  private readonly onIdleClosed: (() => void) | undefined;
  private readonly logger: StoreLogger | undefined;
  private readonly queue: CommitQueue;
  private readonly slot: CommitSlot;
  private readonly health: ShardHealth;
  private readonly writer: BatchWriter;

  private inFlight = false;
  private scheduled = false;
  /** set by close(): new appends are refused, the queue still drains */
  private closing = false;
  private closed: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  /** Date.now() of the latest append */
  private lastUse = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  /** batches committed so far */
  batches = 0;
  private readonly flushNow = (): void => {
    this.scheduled = false;
    void this.flush();
  };

  constructor(opts: CommitterOptions) {
    this.shard = opts.shard;
    this.timeoutMs = Math.max(100, opts.commitTimeoutMs ?? 5000);
    this.marginMs = Math.min(1000, Math.floor(this.timeoutMs / 5));
    this.idleMs = opts.idleMs ?? 60_000;
    this.onIdleClosed = opts.onIdleClosed;
    this.logger = opts.logger;
    this.queue = new CommitQueue(opts.maxBatch ?? 1000);
    this.slot = new CommitSlot({
      shard: opts.shard,
      url: opts.url,
      statementTimeoutMs: this.timeoutMs - this.marginMs,
      offsetWarnMs: this.marginMs / 2,
      onOpen: () => this.armIdle(this.idleMs),
      gate: opts.gate,
      logger: opts.logger,
    });
    this.health = new ShardHealth({
      shard: opts.shard,
      slot: this.slot,
      timeoutMs: this.timeoutMs,
      probeIntervalMs: opts.probeIntervalMs ?? 500,
      onDown: (cause) => {
        const err = new StoreUnavailableError(this.shard, cause);
        for (const p of this.queue.takeAll()) p.reject(err);
      },
      events: opts.events ?? {},
      logger: opts.logger,
    });
    const onBatch = opts.onBatch;
    this.writer = new BatchWriter({
      shard: opts.shard,
      slot: this.slot,
      health: this.health,
      timeoutMs: this.timeoutMs,
      marginMs: this.marginMs,
      ensureSchema: opts.ensureSchema,
      onBatch: (rows, ms) => {
        this.batches++;
        onBatch?.(rows, ms);
      },
      logger: opts.logger,
    });
  }

  /** The cause while the shard is down, else null. */
  get down(): Error | null {
    return this.health.down;
  }

  /**
   * A read (or a first use) found the shard unreachable: appends and reads fail at once until a
   * probe gets an answer, exactly as when a commit finds it down.
   */
  markDown(cause: Error): void {
    this.health.markDown(cause);
  }

  /**
   * A read could not connect in time: the shard may be hung or only slow; it is checked (see
   * ShardHealth.suspect) and is down only if the check fails.
   */
  suspect(cause: Error): void {
    this.health.suspect(cause);
  }

  /** messages waiting for a batch (not counting the one in flight) */
  get pending(): number {
    return this.queue.length;
  }

  /** the commit connection is open (or opening) */
  get connected(): boolean {
    return this.slot.open;
  }

  /** Queues a message for the next batch; resolves once its batch has committed. */
  append(msg: NewMessage, at = Date.now()): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new Error(`shard ${this.shard} is closed`));
    // PostgreSQL text cannot hold NUL; refuse it here rather than fail a whole batch with it.
    if (msg.text.includes('\0') || msg.source.includes('\0') || msg.target.includes('\0')) {
      return Promise.reject(new Error('message contains a NUL character'));
    }
    const down = this.health.down;
    if (down) return Promise.reject(new StoreUnavailableError(this.shard, down));
    this.lastUse = at;
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
      await this.writer.write(batch);
    } catch (err) {
      // write() settles its batch itself; this is a bug guard, not a path.
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

  /**
   * One timer per open connection, re-armed for the remaining time when appends came meanwhile
   * (rather than reset by every append, which would cost a timer per batch).
   */
  private armIdle(ms: number): void {
    if (this.idleMs <= 0 || this.idleTimer || this.closing) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.closeIfIdle();
    }, ms);
    this.idleTimer.unref();
  }

  private closeIfIdle(): void {
    if (!this.slot.open || this.closing) return;
    const left = this.lastUse + this.idleMs - Date.now();
    // Busy, down (the probe owns the connection) or holding batches of unknown outcome: later.
    if (left > 0 || this.inFlight || this.scheduled || this.pending > 0 || this.health.down || this.health.unsettled) {
      this.armIdle(Math.max(left, this.idleMs / 4, 10));
      return;
    }
    this.logger?.debug({ shard: this.shard, idleMs: this.idleMs }, 'commit connection idle: closed');
    this.slot.end().then(
      () => this.onIdleClosed?.(),
      (err: unknown) => this.logger?.warn({ err, shard: this.shard }, 'closing an idle commit connection failed'),
    );
  }

  /** Waits for the queue and the batch in flight (each bounded by the commit timeout), then disconnects. */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.inFlight || this.pending > 0 || this.scheduled) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    // Stops the probe timer at once; a probe in progress fails on the aborted connection.
    const probing = this.health.close();
    this.slot.abort();
    await probing;
    await this.slot.end();
  }
}
