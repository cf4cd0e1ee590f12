import type { Logger } from 'pino';
import type { Admission, Refusal } from '../core/admission.js';
import type { TokenBuckets, TokenGrant, TokenRequest } from './buckets.js';
import type { QosDirectory, RoomQos } from './directory.js';

/** What QosAdmission reports (the instance's Prometheus metrics, or nothing in tests). */
export interface QosAdmissionMetrics {
  /** messages admitted without a QoS answer (the buckets could not be consulted) */
  failOpen(n: number): void;
  /** one `take` round trip, in seconds, with the number of rooms it carried */
  took(seconds: number, rooms: number): void;
}

export interface QosAdmissionOptions {
  directory: QosDirectory;
  buckets: TokenBuckets;
  /**
   * The check composed after QoS (the store backlog, BacklogAdmission): asked first too, so a
   * message already over the backlog takes no token.
   */
  backlog: { admit(room: string): Refusal | null };
  metrics?: QosAdmissionMetrics;
  log: Logger;
  /**
   * Debits (messages admitted on the fast path) reach the buckets at most this long after the
   * admission, with a request of their own unless one for an exact-path message goes first
   * (default 1000). Longer means fewer script calls for many quiet rooms; the fast path's bound
   * (FAST_SHARE of the headroom last reported) holds whatever it is.
   */
  debitFlushMs?: number;
}

/**
 * Of the headroom the buckets last reported for a room ("n more would fit now"), the part this
 * instance may use without asking before it hears from the buckets again. With N instances using
 * the fast path on one room at once, each spends at most this share of a headroom that the others
 * share too: the bucket can be overdrawn by at most (N × FAST_SHARE − 1) × that headroom, so not
 * at all with two instances; the next answers report the headroom gone and the room goes exact.
 */
const FAST_SHARE = 0.5;

/**
 * Per-room QoS, cluster-wide, off the per-message round trip. A message of a room without a
 * limit (no class applies and no shard budget) is answered at once, exactly as the backlog check
 * alone would.
 *
 * A limited room has two paths. Near its limit (exact path), `admit` only counts the message on
 * the room's `RoomQos` and returns a promise; once per event-loop tick (setImmediate) every room
 * asked during that tick takes its tokens: one request per room with the count of its messages,
 * all rooms in one `take` (one pipelined round trip to Redis). The first k of the room's n
 * messages of the tick are admitted, in order, and the rest refused with the retry-after the
 * buckets computed. Far from its limit (fast path), when the last answer said that many more
 * messages would fit and none of the room's messages is waiting for an answer, a message is
 * admitted at once and its token is taken afterwards (a debit sent with the next request, within
 * `debitFlushMs`), spending at most FAST_SHARE of the reported headroom; so a room under its limit
 * does not wait for Redis, and a room at its limit is held to it exactly.
 *
 * The store backlog is checked before (no token for a message already over it) and again by
 * `confirm`, right before each append that waited for an answer.
 *
 * When the buckets cannot be consulted (Redis unreachable or not answering within its command
 * timeout) the tick's messages are admitted (fail open) and counted: a Redis outage must not stop
 * rooms that are otherwise working.
 */
export class QosAdmission implements Admission {
  private batch: RoomQos[] = [];
  private immediate = false;
  private timer: NodeJS.Timeout | null = null;
  private failingOpen = false;
  private readonly debitFlushMs: number;

  constructor(private readonly o: QosAdmissionOptions) {
    this.debitFlushMs = o.debitFlushMs ?? 1000;
  }

  admit(room: string): Refusal | null | Promise<Refusal | null> {
    const before = this.o.backlog.admit(room);
    if (before !== null) return before;
    const q = this.o.directory.room(room);
    if (q.unlimited) return null;
    if (q.allowance > 0 && q.waiting === 0) {
      q.allowance--;
      q.debit++;
      if (!q.queued) this.enqueue(q);
      if (!this.immediate && this.timer === null) this.timer = setTimeout(this.flush, this.debitFlushMs);
      return null;
    }
    if (!q.queued) this.enqueue(q);
    if (!this.immediate) {
      this.immediate = true;
      setImmediate(this.flush);
    }
    q.asked++;
    q.waiting++;
    return new Promise<Refusal | null>((resolve) => q.answers.push(resolve));
  }

  confirm(room: string): Refusal | null {
    return this.o.backlog.admit(room);
  }

  private enqueue(q: RoomQos): void {
    q.queued = true;
    this.batch.push(q);
  }

  private readonly flush = (): void => {
    // One flush serves both schedules; a pending one of the other kind finds nothing to do.
    this.immediate = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const rooms = this.batch;
    if (rooms.length === 0) return;
    this.batch = [];
    const requests: TokenRequest[] = new Array<TokenRequest>(rooms.length);
    const answers: ((r: Refusal | null) => void)[][] = new Array<((r: Refusal | null) => void)[]>(rooms.length);
    const gens: number[] = new Array<number>(rooms.length);
    for (let i = 0; i < rooms.length; i++) {
      const q = rooms[i] as RoomQos;
      requests[i] = { room: q.room, shard: q.shard, n: q.asked, debit: q.debit, rate: q.rate, burst: q.burst, shardRate: q.shardRate, shardBurst: q.shardBurst };
      answers[i] = q.answers;
      gens[i] = q.gen;
      q.inflightDebit += q.debit;
      q.answers = [];
      q.asked = 0;
      q.debit = 0;
      q.queued = false;
    }
    const started = performance.now();
    let taking: Promise<(TokenGrant | Error)[]>;
    try {
      taking = this.o.buckets.take(requests);
    } catch (err) {
      taking = Promise.reject(err as Error);
    }
    taking.then(
      (grants) => {
        this.o.metrics?.took((performance.now() - started) / 1000, rooms.length);
        let failed = 0;
        let firstError: Error | null = null;
        for (let i = 0; i < requests.length; i++) {
          const q = rooms[i] as RoomQos;
          const r = requests[i] as TokenRequest;
          const g = grants[i];
          const waiting = answers[i] as ((r: Refusal | null) => void)[];
          q.waiting -= r.n;
          q.inflightDebit -= r.debit;
          if (g === undefined || g instanceof Error) {
            firstError ??= g ?? new Error('no answer for this room');
            failed += waiting.length;
            for (const a of waiting) a(null);
            continue;
          }
          // The headroom is the buckets' word after this request; what was admitted since
          // (debits not yet counted there) is already spent from it.
          if (gens[i] === q.gen) q.allowance = Math.max(0, Math.floor(g.left * FAST_SHARE) - q.inflightDebit - q.debit);
          settle(waiting, g);
        }
        if (failed > 0) this.openFail(failed, firstError);
        else this.failingOpen = false;
      },
      (err: unknown) => {
        let n = 0;
        for (let i = 0; i < rooms.length; i++) {
          const q = rooms[i] as RoomQos;
          const r = requests[i] as TokenRequest;
          q.waiting -= r.n;
          q.inflightDebit -= r.debit;
          const waiting = answers[i] as ((r: Refusal | null) => void)[];
          n += waiting.length;
          for (const a of waiting) a(null);
        }
        this.openFail(n, err);
      },
    );
  };

  private openFail(n: number, err: unknown): void {
    if (n > 0) this.o.metrics?.failOpen(n);
    // One line per outage, not one per tick.
    if (this.failingOpen) return;
    this.failingOpen = true;
    this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'QoS buckets unreachable: messages are admitted without a rate limit until they answer');
  }
}

/** The first `granted` answers admit, the rest share one refusal. */
function settle(waiting: ((r: Refusal | null) => void)[], g: TokenGrant): void {
  const k = g.granted;
  for (let i = 0; i < k && i < waiting.length; i++) (waiting[i] as (r: Refusal | null) => void)(null);
  if (k >= waiting.length) return;
  const refusal: Refusal = {
    code: 'RATE_LIMITED',
    reason: 'qos',
    retryAfterMs: g.retryAfterMs,
    text: `Rate limited: message not stored, retry in ${g.retryAfterMs} ms`,
  };
  for (let i = k; i < waiting.length; i++) (waiting[i] as (r: Refusal | null) => void)(refusal);
}
