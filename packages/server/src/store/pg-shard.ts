import pg from 'pg';
import type { ShardInfo } from './directory.js';
import { GroupCommitter } from './committer.js';
import { GATE_TIMED_OUT } from './connect-gate.js';
import type { ConnectGate } from './connect-gate.js';
import type { BatchListener, StoreEvents, StoreLogger } from './events.js';
import { StoreTimeoutError, StoreUnavailableError } from './errors.js';
import {
  aroundQuery,
  afterQuery,
  beforeQuery,
  betweenQuery,
  centre,
  countsQuery,
  latestQuery,
  limitOf,
  targetsQuery,
  toStored,
} from './history-sql.js';
import type { MessageRow, SqlQuery } from './history-sql.js';
import { migrate } from './migrations.js';
import { isConnectTimeout, serverAnswer } from './commit-sql.js';
import type {
  AppendResult,
  NewMessage,
  RoomCount,
  Selector,
  StoredMessage,
  TargetActivity,
} from './store.js';
import { urlWithPassword } from '../secrets.js';

export type { Pending } from './committer.js';
export type { BatchListener, StoreEvents, StoreLogger } from './events.js';

export interface PgShardOptions {
  info: ShardInfo;
  onBatch?: BatchListener;
  events?: StoreEvents;
  logger?: StoreLogger;
  /** most rows per INSERT statement (default 1000) */
  maxBatch?: number;
  /**
   * Every append settles within this many ms of its call (default 5000); a rejection is
   * definitive (see GroupCommitter).
   */
  commitTimeoutMs?: number;
  /** a history read fails after this many ms, waiting for a connection included (default 5000) */
  readTimeoutMs?: number;
  /** pause between probes of a shard that is down (default 500) */
  probeIntervalMs?: number;
  /**
   * The commit connection is closed after this many ms without an append, a read connection
   * after this many ms unused (default 60000; 0 = never). The next use opens them again.
   */
  idleMs?: number;
  /**
   * Connections to open to the shard (the commit connection and `size − 1` readers, at least
   * one), asked each time the read pool opens from nothing; default `info.poolSize`.
   */
  poolSize?: () => number;
  /**
   * The password of the user in the shard's URL, when the URL has none (the shard map in etcd
   * never carries one): added to the connection string of every connection, nowhere else.
   */
  password?: string;
  /**
   * Bounds the connections the process opens at once, over all its shards (commit connections
   * and first-use migrations; shared by every shard of a store).
   */
  gate?: ConnectGate;
}

/** Rows of `batches` older than this are deleted: a lost batch is settled long before. */
const BATCH_ROWS_KEPT = "interval '1 hour'";
const PRUNE_EVERY_MS = 10 * 60_000;
const MIGRATION_STEP_MS = 60_000;

/**
 * One PostgreSQL shard, opened lazily: nothing connects before the first append or read. A group
 * committer with a connection of its own, and a pool of `poolSize − 1` connections (at least one)
 * for history reads, so reads can never take the connection a commit needs; migrations run once,
 * on first use, on a connection of their own. Connections unused for `idleMs` are closed. While
 * the committer reports the shard down, reads fail at once too.
 */
export class PgShard {
  readonly info: ShardInfo;
  /** the URL connections are made with (with the password); never logged */
  private readonly connectUrl: string;
  private readPool: pg.Pool | null = null;
  private readonly committer: GroupCommitter;
  private readonly logger: StoreLogger | undefined;
  private closed: Promise<void> | null = null;
  private migrated: Promise<void> | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  /** committed batch count at the last prune: an idle shard is not woken up to prune */
  private prunedAt = 0;
  private readonly readTimeoutMs: number;
  private readonly idleMs: number;
  private readonly poolSize: () => number;
  private readonly events: StoreEvents | undefined;
  private readonly gate: ConnectGate | undefined;

  constructor(opts: PgShardOptions) {
    this.gate = opts.gate;
    this.info = opts.info;
    this.connectUrl = urlWithPassword(opts.info.url, opts.password);
    this.logger = opts.logger;
    this.readTimeoutMs = opts.readTimeoutMs ?? 5000;
    this.idleMs = opts.idleMs ?? 60_000;
    this.poolSize = opts.poolSize ?? (() => opts.info.poolSize);
    this.events = opts.events;
    this.committer = new GroupCommitter({
      shard: opts.info.id,
      url: this.connectUrl,
      idleMs: this.idleMs,
      ensureSchema: () => this.start(),
      onIdleClosed: () => this.maybeIdle(),
      ...(opts.commitTimeoutMs !== undefined ? { commitTimeoutMs: opts.commitTimeoutMs } : {}),
      ...(opts.gate ? { gate: opts.gate } : {}),
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.probeIntervalMs !== undefined ? { probeIntervalMs: opts.probeIntervalMs } : {}),
      ...(opts.onBatch ? { onBatch: opts.onBatch } : {}),
      ...(opts.events ? { events: opts.events } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }

  /**
   * The read pool, made at first use. Its size follows `poolSize()` whenever it holds no
   * connection (at first use and after its connections idled out), so a changed pool size takes
   * effect without a restart and never drops a connection in use.
   */
  private get pool(): pg.Pool {
    if (this.readPool) {
      if (this.readPool.totalCount === 0) this.readPool.options.max = this.readers();
      return this.readPool;
    }
    const pool = new pg.Pool({
      connectionString: this.connectUrl,
      max: this.readers(),
      statement_timeout: this.readTimeoutMs,
      query_timeout: this.readTimeoutMs,
      connectionTimeoutMillis: this.readTimeoutMs,
      // 0 = never; pg's own default (10 s) would apply to undefined.
      idleTimeoutMillis: this.idleMs,
      application_name: 'parley',
    });
    // An idle connection that dies (server restart) is reported here; without a listener the
    // pool's 'error' event would crash the process. The pool replaces it on next use.
    pool.on('error', (err) => {
      this.logger?.warn({ err, shard: this.info.id }, 'idle PostgreSQL connection failed');
    });
    // Emitted once the connection has ended (idle timeout, or failure).
    pool.on('remove', () => this.maybeIdle());
    this.readPool = pool;
    return pool;
  }

  /** Reports the shard idle once its last connection closed while it answers and is not closing. */
  private maybeIdle(): void {
    if (this.closed || this.committer.down) return;
    const c = this.connections;
    if (c.commit + c.read > 0) return;
    this.logger?.debug({ shard: this.info.id }, 'shard idle: its connections are closed');
    try {
      this.events?.shardIdle?.(this.info.id);
    } catch (err) {
      this.logger?.error({ err, shard: this.info.id }, 'store event listener failed');
    }
  }

  private readers(): number {
    return Math.max(1, this.poolSize() - 1);
  }

  /** Connections this instance holds to the shard now: commit (0 or 1), reads. */
  get connections(): { commit: number; read: number } {
    return { commit: this.committer.connected ? 1 : 0, read: this.readPool?.totalCount ?? 0 };
  }

  /**
   * Applies migrations once, at the shard's first use (an append or a read); a failure is not
   * remembered, so the next use tries again. They run on a connection of their own, under the
   * shard's advisory lock, with a longer bound than reads (MIGRATION_STEP_MS per statement: a
   * migration may build an index), so a hung shard fails its first use instead of hanging it.
   */
  start(): Promise<void> {
    if (!this.migrated) {
      const run = (): Promise<number[]> => {
        const pool = new pg.Pool({
          connectionString: this.connectUrl,
          max: 1,
          connectionTimeoutMillis: this.readTimeoutMs,
          query_timeout: MIGRATION_STEP_MS,
          application_name: 'parley-migrate',
        });
        pool.on('error', () => {}); // an idle connection failing between the steps: the migration reports it
        return migrate(pool).finally(() => pool.end());
      };
      // A first use waits for its turn to connect like a commit connection does (within the read
      // bound); no turn in time says nothing about the shard: a StoreTimeoutError, not "down".
      const migrating = this.gate
        ? this.gate.run(Date.now() + this.readTimeoutMs, run).catch((err: unknown) => {
            throw err === GATE_TIMED_OUT ? new StoreTimeoutError(this.info.id, this.readTimeoutMs) : err;
          })
        : run();
      this.migrated = migrating.then(
        (applied) => {
          if (applied.length > 0) this.logger?.info({ shard: this.info.id, applied }, 'shard schema migrated');
          this.schedulePrune();
        },
        (err: unknown) => {
          this.migrated = null;
          if (err instanceof StoreTimeoutError) throw err;
          throw new Error(`shard ${this.info.id}: ${(err as Error).message}`, { cause: err });
        },
      );
    }
    return this.migrated;
  }

  private schedulePrune(): void {
    if (this.pruneTimer || this.closed) return;
    this.pruneTimer = setInterval(() => {
      if (this.committer.down || this.committer.batches === this.prunedAt) return;
      this.prunedAt = this.committer.batches;
      this.pool.query(`delete from batches where created_at < now() - ${BATCH_ROWS_KEPT}`).catch((err: unknown) => {
        this.logger?.warn({ err, shard: this.info.id }, 'pruning old batch ids failed');
      });
    }, PRUNE_EVERY_MS);
    this.pruneTimer.unref();
  }

  /**
   * Queues a message for the next batch; resolves once its batch has committed. `at` is when the
   * caller's append began (the commit timeout counts from there), default now.
   */
  append(msg: NewMessage, at?: number): Promise<AppendResult> {
    return this.committer.append(msg, at);
  }

  /** messages waiting for a batch (not counting the one in flight) */
  get pending(): number {
    return this.committer.pending;
  }

  /** why the shard is down, or null while it answers */
  get down(): Error | null {
    return this.committer.down;
  }

  private async rows<T extends pg.QueryResultRow>(q: SqlQuery): Promise<T[]> {
    const down = this.committer.down;
    if (down) throw new StoreUnavailableError(this.info.id, down);
    try {
      await this.start();
    } catch (err) {
      // First use of a shard that does not answer: the same error as a read would give.
      if (serverAnswer(err) || err instanceof StoreTimeoutError) throw err;
      throw this.unanswered(err);
    }
    try {
      return (await this.pool.query<T>(q.text, q.values)).rows;
    } catch (err) {
      if (err instanceof pg.DatabaseError) throw err;
      throw this.unanswered(err);
    }
  }

  /**
   * No answer from the server, in the store's terms. Refused or broken: the shard is down until a
   * probe gets an answer. Not connected in time: hung or only slow (many first uses on a busy
   * machine), so it is checked before it counts as down, and this read is out of time.
   */
  private unanswered(err: unknown): Error {
    if (isConnectTimeout(err)) {
      const e = new StoreTimeoutError(this.info.id, this.readTimeoutMs, err);
      this.committer.suspect(e);
      return e;
    }
    this.committer.markDown(err as Error);
    return new StoreUnavailableError(this.info.id, err);
  }

  private async messages(q: SqlQuery): Promise<StoredMessage[]> {
    return (await this.rows<MessageRow>(q)).map(toStored);
  }

  async latest(room: string, after: Selector | null, limit: number): Promise<StoredMessage[]> {
    return (await this.messages(latestQuery(room, after, limit))).reverse();
  }

  async before(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return (await this.messages(beforeQuery(room, sel, limit))).reverse();
  }

  async after(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return this.messages(afterQuery(room, sel, limit));
  }

  /**
   * Up to `limit` messages with the selector's message (or the first one at/after the time) in
   * the middle: half before it, the rest from it on; a short side lends its share to the other.
   */
  async around(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const n = limitOf(limit);
    if (n === 0) return [];
    const early: StoredMessage[] = []; // newest first
    const late: StoredMessage[] = []; // oldest first
    for (const row of await this.rows<MessageRow & { early: boolean }>(aroundQuery(room, sel, n))) {
      (row.early ? early : late).push(toStored(row));
    }
    return centre(early, late, n);
  }

  /**
   * Messages strictly between the two selectors, the `limit` nearest to the lower bound, in
   * ascending order, whichever way round the bounds are given (see MessageStore.between).
   */
  async between(room: string, from: Selector, to: Selector, limit: number): Promise<StoredMessage[]> {
    return this.messages(betweenQuery(room, from, to, limit));
  }

  /** Rooms among `rooms` (plus `dmNick`'s DM rooms) with messages in (from, to), newest first. */
  async targets(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): Promise<TargetActivity[]> {
    return this.rows<TargetActivity & pg.QueryResultRow>(targetsQuery(rooms, dmNick, from, to, limit));
  }

  async counts(rooms: string[]): Promise<RoomCount[]> {
    return this.rows<RoomCount & pg.QueryResultRow>(countsQuery(rooms));
  }

  /** Refuses new appends, waits for the queue and the batch in flight, then ends the pool. */
  close(): Promise<void> {
    if (!this.closed) {
      if (this.pruneTimer) clearInterval(this.pruneTimer);
      this.closed = (async () => {
        await this.committer.close();
        await this.readPool?.end();
      })();
    }
    return this.closed;
  }
}
