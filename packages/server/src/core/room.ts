import type { Outgoing } from './outgoing.js';
import type { Session } from './session.js';

/** How long a message that arrives ahead of a missing sequence number waits for it. */
const REORDER_WAIT_MS = 250;

interface Held {
  out: Outgoing;
  sender: Session | null;
  echo: string | null;
}

/**
 * This instance's local view of a channel: the local members, and the delivery order of its
 * stored messages. Messages of a room reach an instance from several publishers (each instance
 * publishes what it committed), so one that arrives ahead of a gap is held briefly until the
 * missing sequence numbers arrive; after REORDER_WAIT_MS it is delivered anyway (the client sees
 * the gap in the msgid and can fill it with CHATHISTORY). Nothing is ever dropped: a late
 * message is delivered late.
 */
export class LocalRoom {
  readonly members = new Set<Session>();
  /** resolves once the room is subscribed and knows its sequence position */
  ready: Promise<void> = Promise.resolve();
  /** highest sequence number delivered here; -1 while unknown */
  private lastSeq = -1;
  private held: Map<number, Held> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly key: string,
    public name: string,
    /** counts deliveries; called once per message with the number of recipients */
    private readonly onDelivered: (out: Outgoing, recipients: number) => void,
  ) {}

  /**
   * Delivers a stored message in sequence order to every member; the local sender gets `echo`
   * instead (its acknowledgement, null when it did not ask for echoes), in the same order.
   */
  accept(seq: number, out: Outgoing, sender: Session | null, echo: string | null): void {
    if (this.lastSeq < 0 || seq === this.lastSeq + 1 || seq <= this.lastSeq) {
      this.deliver(out, sender, echo);
      if (seq > this.lastSeq) this.lastSeq = seq;
      if (this.held) this.drain();
      return;
    }
    (this.held ??= new Map()).set(seq, { out, sender, echo });
    if (!this.timer) {
      this.timer = setTimeout(() => this.release(), REORDER_WAIT_MS);
      this.timer.unref();
    }
  }

  /**
   * Sets where the room's sequence stood when this instance opened it (from the store), unless
   * messages have arrived meanwhile and set it already.
   */
  startAt(lastSeq: number): void {
    if (this.lastSeq < 0) this.lastSeq = lastSeq;
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
    this.onDelivered(out, n);
  }

  private drain(): void {
    const held = this.held;
    if (!held) return;
    let next = held.get(this.lastSeq + 1);
    while (next) {
      held.delete(this.lastSeq + 1);
      this.deliver(next.out, next.sender, next.echo);
      this.lastSeq++;
      next = held.get(this.lastSeq + 1);
    }
    if (held.size === 0) this.clearHeld();
  }

  /** The wait for a gap is over: deliver everything held, in order. */
  private release(): void {
    this.timer = null;
    const held = this.held;
    if (!held) return;
    const seqs = [...held.keys()].sort((a, b) => a - b);
    for (const s of seqs) {
      const h = held.get(s);
      if (h) this.deliver(h.out, h.sender, h.echo);
      if (s > this.lastSeq) this.lastSeq = s;
    }
    this.clearHeld();
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
