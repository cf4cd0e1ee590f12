import type { Outgoing } from './outgoing.js';
import type { Session } from './session.js';

/** How long a message that arrives ahead of a missing sequence number waits for it. */
export const REORDER_WAIT_MS = 250;
/** Sequence numbers skipped by a forced release that are still expected late (bounded memory). */
const MAX_SKIPPED = 10_000;

interface Held {
  out: Outgoing;
  sender: Session | null;
  echo: string | null;
}

/** Receives what a room does, so the room itself stays free of I/O. */
export interface RoomEvents {
  /** counts deliveries; called once per message with the number of recipients */
  delivered(out: Outgoing, recipients: number): void;
  /**
   * Sequence numbers `from`..`to` have been missing for REORDER_WAIT_MS while later ones wait.
   * The listener fetches them from the store, `accept`s them and then calls `release()`; without
   * a listener (or when the fetch fails) `release()` delivers what is held, in order, anyway.
   */
  gap(room: LocalRoom, from: number, to: number): void;
}

/**
 * This instance's local view of a channel: the local members, and the delivery of its stored
 * messages in sequence order, each exactly once. Messages reach an instance from several
 * publishers (each publishes what it committed) and from the store (gap fills), in any order and
 * possibly twice; one that arrives ahead of a gap is held until the gap is filled. A sequence
 * number already delivered is not delivered again (its sender still gets its echo).
 */
export class LocalRoom {
  readonly members = new Set<Session>();
  /** resolves once the room is subscribed and knows its sequence position */
  ready: Promise<void> = Promise.resolve();
  /** every seq up to this one was delivered (or given up on); -1 while unknown */
  private delivered = -1;
  /** highest seq seen (delivered or held) */
  private maxSeen = -1;
  private held: Map<number, Held> | null = null;
  /** seqs below `delivered` that a forced release skipped: still delivered if they come */
  private skipped: Set<number> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private filling = false;
  /** the room's msgid tag, computed once */
  tag = '';

  constructor(
    readonly key: string,
    public name: string,
    private readonly events: RoomEvents,
  ) {}

  /** every seq up to this one has been delivered here */
  get deliveredSeq(): number {
    return this.delivered;
  }

  get highestSeq(): number {
    return this.maxSeen;
  }

  /**
   * Delivers a stored message in sequence order to every member; the local sender gets `echo`
   * instead (its acknowledgement, null when it did not ask for echoes), in the same order.
   */
  accept(seq: number, out: Outgoing, sender: Session | null, echo: string | null): void {
    if (seq > this.maxSeen) this.maxSeen = seq;
    const d = this.delivered;
    if (d < 0 || seq === d + 1) {
      this.deliver(out, sender, echo);
      this.delivered = seq;
      if (this.held) this.drain();
      return;
    }
    if (seq <= d) {
      if (this.skipped?.delete(seq)) this.deliver(out, sender, echo);
      else if (echo !== null && sender && !sender.closed) sender.write(echo);
      return;
    }
    const held = (this.held ??= new Map());
    const prev = held.get(seq);
    if (prev) {
      // Seen twice (published and filled from the store): keep the one that carries the echo.
      if (echo !== null && prev.echo === null) held.set(seq, { out, sender, echo });
      return;
    }
    held.set(seq, { out, sender, echo });
    if (!this.timer && !this.filling) {
      this.timer = setTimeout(this.onTimer, REORDER_WAIT_MS);
      this.timer.unref();
    }
  }

  /**
   * Sets where the room's sequence stood when this instance opened it (from the store), unless
   * messages have arrived meanwhile and set it already.
   */
  startAt(lastSeq: number): void {
    if (this.delivered < 0) this.delivered = lastSeq;
    if (lastSeq > this.maxSeen) this.maxSeen = lastSeq;
  }

  /** Delivers a line that has no room sequence number (JOIN, PART, TOPIC ...). */
  broadcast(out: Outgoing, exclude: Session | null): void {
    this.deliver(out, exclude, null);
  }

  private deliver(out: Outgoing, sender: Session | null, echo: string | null): void {
    let n = 0;
    for (const m of this.members) {
      if (m === sender) continue;
      m.write(out.lineFor(m.caps));
      n++;
    }
    if (echo !== null && sender && !sender.closed) sender.write(echo);
    this.events.delivered(out, n);
  }

  private drain(): void {
    const held = this.held;
    if (!held) return;
    let next = held.get(this.delivered + 1);
    while (next) {
      held.delete(this.delivered + 1);
      this.deliver(next.out, next.sender, next.echo);
      this.delivered++;
      next = held.get(this.delivered + 1);
    }
    if (held.size === 0) this.clearHeld();
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    const held = this.held;
    if (!held || held.size === 0) return;
    let first = Infinity;
    for (const s of held.keys()) if (s < first) first = s;
    this.filling = true;
    this.events.gap(this, this.delivered + 1, first - 1);
  };

  /** The wait for a gap is over: deliver everything held, in order; what is still missing may come late. */
  release(): void {
    this.filling = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const held = this.held;
    if (!held) return;
    const seqs = [...held.keys()].sort((a, b) => a - b);
    for (const s of seqs) {
      const h = held.get(s);
      if (!h) continue;
      for (let missing = this.delivered + 1; missing < s; missing++) this.skip(missing);
      this.deliver(h.out, h.sender, h.echo);
      if (s > this.delivered) this.delivered = s;
    }
    this.held = null;
  }

  private skip(seq: number): void {
    const skipped = (this.skipped ??= new Set());
    if (skipped.size >= MAX_SKIPPED) {
      const oldest = skipped.values().next().value;
      if (oldest !== undefined) skipped.delete(oldest);
    }
    skipped.add(seq);
  }

  private clearHeld(): void {
    this.held = null;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  dispose(): void {
    this.release();
  }
}
