import pg from 'pg';
import { GATE_TIMED_OUT } from './connect-gate.js';
import type { ConnectGate } from './connect-gate.js';
import type { StoreLogger } from './events.js';

/** The dedicated commit connection of a shard, and the shard's clock relative to this process's. */
export interface CommitConnection {
  client: pg.Client;
  /** shard clock minus this process's clock, ms, as measured at connect */
  offsetMs: number;
  /** half the round trip of that measurement: the offset's uncertainty */
  uncertaintyMs: number;
  dead: boolean;
}

export const TIMED_OUT = Symbol('timed out');

/**
 * Below this much time left before its deadline (or a quarter of the statement timeout, when
 * that is less), a new connection is not attempted (GATE_TIMED_OUT).
 */
export const MIN_CONNECT_MS = 500;

/**
 * Settles with `op`, or with TIMED_OUT once `deadline` (Date.now() scale) passes first, after
 * calling `onTimeout` (which destroys the connection `op` runs on). A late settlement of `op` is
 * ignored.
 *
 * The deadline is decided one event-loop turn after the timer fires (setImmediate runs after the
 * poll phase): when the process itself stalled past the deadline (a busy machine), Node runs the
 * expired timer before it reads the sockets, and an answer already waiting there would be thrown
 * away: a commit the shard made in time would be answered as failed (a "late commit").
 */
export function beforeDeadline<T>(op: Promise<T>, deadline: number, onTimeout: () => void): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const decide = (): void => {
      if (settled) return;
      settled = true;
      onTimeout();
      resolve(TIMED_OUT);
    };
    const timer = setTimeout(() => {
      if (!settled) setImmediate(decide);
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
        // The store's own markers (TIMED_OUT, GATE_TIMED_OUT) pass as they are.
        reject(err instanceof Error || typeof err === 'symbol' ? err : new Error(String(err)));
      },
    );
  });
}

/** Destroys the socket at once: a graceful end would wait for a hung server. */
export function destroyConnection(conn: CommitConnection): void {
  conn.dead = true;
  conn.client.connection.stream.destroy();
}

export interface OpenOptions {
  url: string;
  /** Date.now() by which the connection must be ready, else it is destroyed and TIMED_OUT thrown */
  deadline: number;
  /** the server-side bound of every statement on it */
  statementTimeoutMs: number;
  /** holds the connection while it connects, so that a closing owner can destroy it */
  pending: Set<CommitConnection>;
  /** an error of the connection while it was alive (it is dead afterwards) */
  onError: (err: Error) => void;
}

/**
 * Connects and measures the shard's clock offset (one round trip) before `deadline`. Rejects with
 * TIMED_OUT, or with the connection's error.
 */
export async function openCommitConnection(o: OpenOptions): Promise<CommitConnection> {
  const client = new pg.Client({
    connectionString: o.url,
    connectionTimeoutMillis: Math.max(1, o.deadline - Date.now()),
    // The server-side bound for a statement stuck on a lock or a slow disk; the batch trigger
    // covers the commit itself.
    statement_timeout: o.statementTimeoutMs,
    application_name: 'parley-commit',
    keepAlive: true,
  });
  const conn: CommitConnection = { client, offsetMs: 0, uncertaintyMs: 0, dead: false };
  // A connection that fails while idle (server restart) is replaced at its next use.
  client.on('error', (err) => {
    if (!conn.dead) o.onError(err);
    conn.dead = true;
  });
  o.pending.add(conn);
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
      o.deadline,
      () => destroyConnection(conn),
    );
    if (ready === TIMED_OUT) throw TIMED_OUT;
  } catch (err) {
    destroyConnection(conn);
    throw err;
  } finally {
    o.pending.delete(conn);
  }
  return conn;
}

export interface SlotOptions {
  shard: number;
  url: string;
  /** the server-side bound of every statement on the connection */
  statementTimeoutMs: number;
  /** a measured clock offset above this is logged (it is converted either way) */
  offsetWarnMs: number;
  /** called each time a new connection is ready (the owner starts its idle clock) */
  onOpen?: () => void;
  /** bounds the connections the process opens at once (a new connection waits for a turn) */
  gate?: ConnectGate | undefined;
  logger?: StoreLogger | undefined;
}

/**
 * The one commit connection of a shard: opened on demand, replaced when it broke, ended when the
 * owner finds it idle (and opened again by the next use), destroyed for good by `close`.
 */
export class CommitSlot {
  private conn: CommitConnection | null = null;
  /** the attempt to open a connection, while it runs (shared by concurrent askers) */
  private opening: Promise<CommitConnection> | null = null;
  /** connections being opened, so close() can abort them */
  private readonly connecting = new Set<CommitConnection>();
  private closed = false;

  constructor(private readonly o: SlotOptions) {}

  /** a live connection is held (or being opened) */
  get open(): boolean {
    return (this.conn !== null && !this.conn.dead) || this.connecting.size > 0;
  }

  /**
   * The open connection, or a new one ready before `deadline`: rejects with TIMED_OUT (the shard
   * did not answer in time) or GATE_TIMED_OUT (no turn to connect came in time: nothing was tried).
   */
  async get(deadline: number): Promise<CommitConnection> {
    if (this.conn && !this.conn.dead) return this.conn;
    this.conn = null;
    if (this.closed) throw new Error(`shard ${this.o.shard} is closed`);
    // One connection at a time: a batch and a health check asking together share the attempt
    // (whose deadline is the first asker's; later askers bound their own wait).
    this.opening ??= this.openNew(deadline).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async openNew(deadline: number): Promise<CommitConnection> {
    const open = (): Promise<CommitConnection> => {
      // A turn that comes too late to connect in time is no attempt: trying would time out and
      // read as "the shard is down" when only the wait for a turn was long.
      if (deadline - Date.now() < Math.min(MIN_CONNECT_MS, this.o.statementTimeoutMs / 4)) return Promise.reject(GATE_TIMED_OUT);
      return openCommitConnection({
        url: this.o.url,
        deadline,
        statementTimeoutMs: this.o.statementTimeoutMs,
        pending: this.connecting,
        onError: (err) => this.o.logger?.warn({ err, shard: this.o.shard }, 'PostgreSQL commit connection failed'),
      });
    };
    const conn = await (this.o.gate ? this.o.gate.run(deadline, open) : open());
    if (Math.abs(conn.offsetMs) > this.o.offsetWarnMs) {
      this.o.logger?.warn({ shard: this.o.shard, offsetMs: Math.round(conn.offsetMs) }, 'shard clock differs from this instance; commit deadlines are converted');
    }
    if (this.closed) {
      destroyConnection(conn);
      throw new Error(`shard ${this.o.shard} is closed`);
    }
    this.conn = conn;
    this.o.onOpen?.();
    return conn;
  }

  /** Destroys the connection at once (a graceful end would wait for a hung server). */
  drop(conn: CommitConnection): void {
    if (this.conn === conn) this.conn = null;
    destroyConnection(conn);
  }

  /**
   * Ends the held connection gracefully, destroying it if the server does not answer within a
   * second. The slot stays usable: the next `get` opens a new connection.
   */
  async end(): Promise<void> {
    const conn = this.conn;
    this.conn = null;
    if (!conn || conn.dead) return;
    conn.dead = true;
    await beforeDeadline(conn.client.end(), Date.now() + 1000, () => destroyConnection(conn)).catch(() => undefined);
  }

  /** Aborts connections being opened; `get` fails from now on. */
  abort(): void {
    this.closed = true;
    for (const c of this.connecting) destroyConnection(c);
  }

  /** `abort`, then ends the held connection. */
  async close(): Promise<void> {
    this.abort();
    await this.end();
  }
}
