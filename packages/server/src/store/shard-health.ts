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
 * Whether a shard answers, as one instance sees it. Down is entered on the first sign (a refused
 * or broken connection, a commit that ran out of time) and left only when a probe has connected
 * and fenced every batch whose outcome was lost, so that "up" always means "nothing of unknown
 * outcome remains". While down, a probe runs every `probeIntervalMs`.
 */
export class ShardHealth {
  private state: { since: number; cause: Error } | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
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
    const { slot } = this.o;
    // A thawing backend may still hold a lost batch: the fence waits for it, within the same bound.
    const deadline = Date.now() + Math.max(1000, this.o.timeoutMs);
    let conn: CommitConnection;
    try {
      conn = await slot.get(Math.min(deadline, Date.now() + 1000));
      const lost = this.unresolved;
      if (lost.length > 0) {
        const res = await beforeDeadline(
          conn.client.query<{ id: string }>(FENCE_SQL, [lost.map((b) => b.id)]),
          deadline,
          () => slot.drop(conn),
        );
        if (res === TIMED_OUT) return;
        const fenced = new Set(res.rows.map((r) => r.id));
        this.unresolved = this.unresolved.filter((b) => !lost.includes(b));
        const late = lost.filter((b) => !fenced.has(b.id));
        if (late.length > 0) {
          const msgs = late.flatMap((b) => b.msgs);
          this.o.logger?.error({ shard: this.o.shard, batches: late.map((b) => b.id), messages: msgs.length }, 'batches rejected as failed were committed');
          this.emit(() => this.o.events.lateCommit?.(this.o.shard, msgs));
        }
      }
    } catch (err) {
      // Appends rejected meanwhile carry the latest reason.
      if (err !== TIMED_OUT && err !== GATE_TIMED_OUT && this.state) this.state.cause = asError(err);
      return;
    }
    if (!this.state) return;
    const downMs = Date.now() - this.state.since;
    this.state = null;
    this.o.logger?.info({ shard: this.o.shard, downMs }, 'shard up again');
    this.emit(() => this.o.events.shardUp?.(this.o.shard, downMs));
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
    if (this.unresolved.length > 0) {
      this.o.logger?.warn({ shard: this.o.shard, batches: this.unresolved.map((b) => b.id) }, 'closing with batches of unknown outcome');
    }
  }
}
