import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { TIMED_OUT, beforeDeadline } from './commit-connection.js';
import { GATE_TIMED_OUT } from './connect-gate.js';
import type { CommitConnection, CommitSlot } from './commit-connection.js';
import type { Pending } from './commit-queue.js';
import { APPEND_SQL, DEADLINE_PASSED, MAX_ATTEMPTS, QUERY_CANCELED, RETRYABLE, isConnectTimeout, isUnavailableCode, serverAnswer } from './commit-sql.js';
import { StoreTimeoutError, StoreUnavailableError } from './errors.js';
import { asError } from './events.js';
import type { BatchListener, StoreLogger } from './events.js';
import type { ShardHealth } from './shard-health.js';

export interface BatchWriterOptions {
  shard: number;
  slot: CommitSlot;
  health: ShardHealth;
  timeoutMs: number;
  /** how much earlier than the deadline the shard stops accepting the commit */
  marginMs: number;
  /** applies the schema before the first batch (the shard's migrations) */
  ensureSchema: () => Promise<void>;
  onBatch: BatchListener | undefined;
  logger: StoreLogger | undefined;
}

/**
 * Writes one batch: one statement, its deadline enforced twice (the shard refuses to COMMIT after
 * deadline − margin on its own clock; here the connection is destroyed at the deadline), and every
 * message of the batch settled with a definitive answer. An answer that was lost (broken
 * connection, deadline) leaves the batch to the fence (ShardHealth); a broken connection marks the
 * shard down, a deadline makes it suspect (checked at once, down only if the check fails).
 */
export class BatchWriter {
  constructor(private readonly o: BatchWriterOptions) {}

  /** Writes `batch` and settles every message of it; never rejects. */
  async write(batch: Pending[]): Promise<void> {
    const { shard, slot, health, timeoutMs } = this.o;
    const deadline = batch[0]!.at + timeoutMs;
    const timeout = (cause?: unknown): StoreTimeoutError => new StoreTimeoutError(shard, timeoutMs, cause);
    const rejectAll = (err: Error): void => {
      for (const p of batch) p.reject(err);
    };

    // Nothing is sent before the connection is ready: any failure up to there is definitive.
    try {
      const schema = await beforeDeadline(this.o.ensureSchema(), deadline, () => {});
      if (schema === TIMED_OUT) return rejectAll(timeout());
    } catch (err) {
      // No turn to connect for the migration in time (many first uses at once): not a sign of the shard.
      if (err instanceof StoreTimeoutError) return rejectAll(timeout(err));
      return rejectAll(this.classify(err, 'schema'));
    }
    let conn: CommitConnection;
    try {
      // The attempt may be shared with a health check whose deadline is later than ours.
      const got = await beforeDeadline(slot.get(deadline), deadline, () => {});
      if (got === TIMED_OUT) return rejectAll(timeout());
      conn = got;
    } catch (err) {
      // Waiting for a turn to connect (many first uses at once) says nothing about the shard.
      if (err === GATE_TIMED_OUT) return rejectAll(timeout());
      if (err === TIMED_OUT || isConnectTimeout(err)) {
        // Hung or only slow: checked before it counts as down.
        const e = timeout(err === TIMED_OUT ? undefined : err);
        health.suspect(e);
        return rejectAll(e);
      }
      const e = new StoreUnavailableError(shard, err);
      health.markDown(e);
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
    const guard = deadline - this.o.marginMs + conn.offsetMs - conn.uncertaintyMs;
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
          () => slot.drop(conn),
        );
      } catch (err) {
        if (err instanceof pg.DatabaseError) {
          // The server answered: the transaction is over and did not commit.
          if (err.code !== undefined && RETRYABLE.has(err.code) && attempt < MAX_ATTEMPTS && Date.now() < deadline) {
            this.o.logger?.warn({ shard, code: err.code, attempt }, 'append batch retried');
            continue;
          }
          return rejectAll(this.classify(err, 'append'));
        }
        // The connection broke with the statement possibly sent: the fence will tell.
        health.lost(id, batch.map((p) => p.msg));
        slot.drop(conn);
        const e = new StoreUnavailableError(shard, err);
        health.markDown(e);
        return rejectAll(e);
      }
      if (res === TIMED_OUT) {
        health.lost(id, batch.map((p) => p.msg));
        const e = timeout();
        // Hung or only slow: checked (connect, fence) before it counts as down.
        health.suspect(e);
        return rejectAll(e);
      }
      if (res.rows.length !== n) {
        this.o.logger?.error({ shard, rows: res.rows.length, n }, 'append returned the wrong row count');
      }
      const ms = performance.now() - started;
      for (let i = 0; i < n; i++) {
        const row = res.rows[i];
        if (row) batch[i]!.resolve({ seq: row.seq, time: row.time });
        else batch[i]!.reject(new Error(`append to shard ${shard}: no row returned`));
      }
      try {
        this.o.onBatch?.(n, ms);
      } catch (err) {
        this.o.logger?.error({ err }, 'onBatch listener failed');
      }
      return;
    }
  }

  /** The error to reject a batch with after the server answered with an error (or before sending). */
  private classify(err: unknown, what: string): Error {
    const { shard, timeoutMs } = this.o;
    const db = serverAnswer(err);
    const code = db?.code;
    if (code === DEADLINE_PASSED || code === QUERY_CANCELED) return new StoreTimeoutError(shard, timeoutMs, err);
    if (!db && isConnectTimeout(err)) {
      // A first use whose migration could not connect in time: hung or only slow, checked.
      const e = new StoreTimeoutError(shard, timeoutMs, err);
      this.o.health.suspect(e);
      return e;
    }
    if (isUnavailableCode(code) || !db) {
      const e = new StoreUnavailableError(shard, err);
      this.o.health.markDown(e);
      return e;
    }
    return new Error(`${what} to shard ${shard} failed: ${asError(err).message}`, { cause: err });
  }
}
