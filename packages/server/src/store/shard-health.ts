import { TIMED_OUT, beforeDeadline } from './commit-connection.js';
import { GATE_TIMED_OUT } from './connect-gate.js';
import type { CommitConnection, CommitSlot } from './commit-connection.js';
import { FENCE_SQL } from './commit-sql.js';
import { asError } from './events.js';
import type { StoreEvents, StoreLogger } from './events.js';
import type { NewMessage } from './store.js';

/** A batch whose answer was lost after it was sent: committed or not, decided by the fence. */
interface Unresolved {
  id: string;
  msgs: NewMessage[];
}

export interface HealthOptions {
  shard: number;
  slot: CommitSlot;
  /** the commit timeout: bounds the fence's wait for a thawing backend */
  timeoutMs: number;
  /** pause between probes while down */
  probeIntervalMs: number;
  /** called once on entering the down state, before the event: fail what is queued */
  onDown: (err: Error) => void;
  events: StoreEvents;
  logger: StoreLogger | undefined;
}

/**
 * Whether a shard answers, as one instance sees it. Down is entered on a refused or broken
 * connection, and left only when a probe has connected and fenced every batch whose outcome was
 * lost, so that "up" always means "nothing of unknown outcome remains". While down, a probe runs
 * every `probeIntervalMs`.
 *
 * A commit or a connection that ran out of time is only a suspicion: a hung shard and a shard
 * that is merely slow (a burst of first uses on a busy machine) look the same at first. The shard
 * is checked at once (connect and fence, within the commit timeout) while appends go on as usual
 * (each still bounded by its own deadline); it is down only if that check fails.
 */
export class ShardHealth {
  private state: { since: number; cause: Error } | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
  /** the check after a timeout, while it runs */
  private checking: Promise<void> | null = null;
  private unresolved: Unresolved[] = [];
  private stopped = false;

  constructor(private readonly o: HealthOptions) {}

  /** The cause while the shard is down, else null. */
  get down(): Error | null {
    return this.state?.cause ?? null;
  }

  /** batches of unknown outcome wait for the fence */
  get unsettled(): boolean {
    return this.unresolved.length > 0;
  }

  /** Records a batch whose statement may have reached the shard but whose answer was lost. */
  lost(id: string, msgs: NewMessage[]): void {
    this.unresolved.push({ id, msgs });
  }

  /**
   * A commit or connection ran out of time: checks at once whether the shard answers (connects
   * and fences the lost batches within the commit timeout) and marks it down only if it does not.
   */
  suspect(cause: Error): void {
    if (this.state || this.checking || this.stopped) return;
    this.o.logger?.warn({ shard: this.o.shard, err: cause }, 'shard slow: checking whether it answers');
    this.checking = this.settle(this.o.timeoutMs)
      .then((answered) => {
        if (answered) this.o.logger?.info({ shard: this.o.shard }, 'shard slow but answering: not down');
        // null: no turn to connect came in time, which says nothing; the next timeout checks again.
        else if (answered === false) this.markDown(cause);
        if (answered !== null) this.emit(() => this.o.events.shardChecked?.(this.o.shard, answered));
      })
      .finally(() => {
        this.checking = null;
      });
  }

  /** Enters the down state (once) and starts probing. */
  markDown(cause: Error): void {
    if (this.state) return;
    this.state = { since: Date.now(), cause };
    this.o.logger?.warn({ shard: this.o.shard, err: cause }, 'shard down: failing its appends at once until it answers');
    this.o.onDown(cause);
    this.emit(() => this.o.events.shardDown?.(this.o.shard, cause));
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.stopped || this.probeTimer || this.probing) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      this.probing = this.probe().finally(() => {
        this.probing = null;
        if (this.state) this.scheduleProbe();
      });
    }, this.o.probeIntervalMs);
  }

  /** Connects, settles the lost batches with the fence, and marks the shard up; never rejects. */
  private async probe(): Promise<void> {
    if (this.stopped || !this.state) return;
    if (!(await this.settle(1000))) return;
    if (!this.state) return;
    const downMs = Date.now() - this.state.since;
    this.state = null;
    this.o.logger?.info({ shard: this.o.shard, downMs }, 'shard up again');
    this.emit(() => this.o.events.shardUp?.(this.o.shard, downMs));
  }

  /**
   * Connects within `connectMs` and fences every batch of unknown outcome (a thawing backend may
   * still hold one: the fence waits for it, within the commit timeout). True when both were done,
   * false when the shard did not answer, null when no turn to connect came in time (ConnectGate);
   * never rejects.
   */
  private async settle(connectMs: number): Promise<boolean | null> {
    const { slot } = this.o;
    const deadline = Date.now() + Math.max(1000, this.o.timeoutMs);
    let conn: CommitConnection;
    try {
      conn = await slot.get(Math.min(deadline, Date.now() + connectMs));
      const lost = this.unresolved;
      if (lost.length > 0) {
        const res = await beforeDeadline(
          conn.client.query<{ id: string }>(FENCE_SQL, [lost.map((b) => b.id)]),
          deadline,
          () => slot.drop(conn),
        );
        if (res === TIMED_OUT) return false;
        const fenced = new Set(res.rows.map((r) => r.id));
        this.unresolved = this.unresolved.filter((b) => !lost.includes(b));
        const late = lost.filter((b) => !fenced.has(b.id));
        if (late.length > 0) {
          const msgs = late.flatMap((b) => b.msgs);
          this.o.logger?.error({ shard: this.o.shard, batches: late.map((b) => b.id), messages: msgs.length }, 'batches rejected as failed were committed');
          this.emit(() => this.o.events.lateCommit?.(this.o.shard, msgs));
        }
      }
      return true;
    } catch (err) {
      if (err === GATE_TIMED_OUT) return null;
      // Appends rejected meanwhile carry the latest reason.
      if (err !== TIMED_OUT && this.state) this.state.cause = asError(err);
      return false;
    }
  }

  private emit(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.o.logger?.error({ err, shard: this.o.shard }, 'store event listener failed');
    }
  }

  /** Stops probing and waits for a probe in progress. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    await this.probing;
    await this.checking;
    if (this.unresolved.length > 0) {
      this.o.logger?.warn({ shard: this.o.shard, batches: this.unresolved.map((b) => b.id) }, 'closing with batches of unknown outcome');
    }
  }
}
