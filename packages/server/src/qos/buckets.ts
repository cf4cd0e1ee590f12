/**
 * Token buckets as GCRA (generic cell rate algorithm): a bucket is one number, its "theoretical
 * arrival time" (TAT, µs): the time at which it would be full again. Taking k messages at time
 * `now` moves it to max(TAT, now) + k·T (T = 1/rate); that is allowed while the result is at most
 * `burst`·T ahead of now. So a full bucket lets `burst` messages through at once, and after that
 * one every T.
 *
 * One request asks for n messages of one room; the answer grants the first k of them (0 ≤ k ≤ n,
 * in order) against the room's bucket and, in the same step, against its shard's bucket (the
 * shard's write budget over all its rooms): k is the smallest of the two, and only k is taken
 * from either. For the refused rest the answer says when one more message would fit.
 */

/** A rate of 0 means "no limit" for that bucket. */
export interface TokenRequest {
  room: string;
  /** the room's shard; null when not known (no shard bucket then) */
  shard: number | null;
  /** messages asked for (≥ 0); the first k of them are granted */
  n: number;
  /**
   * messages already admitted without asking (the caller's fast path while far from the limit):
   * taken from both buckets unconditionally, before the n are considered
   */
  debit: number;
  /** the room's sustained rate (messages/s) and bucket size */
  rate: number;
  burst: number;
  /** the shard's write budget (rows/s) and bucket size */
  shardRate: number;
  shardBurst: number;
}

export interface TokenGrant {
  /** the first `granted` messages of the request may be written */
  granted: number;
  /** when granted < n: ms until one more message would be granted (≥ 1); else 0 */
  retryAfterMs: number;
  /** messages that would still fit at once after this request (room and shard; large when unlimited) */
  left: number;
}

/** `left` of a bucket without a limit. */
export const UNLIMITED_LEFT = 1e9;

/**
 * Where the buckets live. Contract: `take` answers every request of the array, in order, each
 * against the state left by the ones before it; a room's and a shard's buckets are shared by every
 * caller (cluster-wide for the Redis one). A rejection means the buckets could not be consulted
 * (the caller decides what that means).
 */
export interface TokenBuckets {
  take(requests: readonly TokenRequest[]): Promise<(TokenGrant | Error)[]>;
  close(): Promise<void>;
}

/** The bucket size of a shard budget: one second of it. */
export function shardBurstOf(budget: number): number {
  return Math.max(1, Math.ceil(budget));
}

/** One GCRA step: how many of `n` fit, given the stored TAT (µs), at `now` (µs). */
export function gcraAvailable(tat: number, now: number, rate: number, burst: number, n: number): number {
  if (rate <= 0) return n;
  const t = 1e6 / rate;
  const base = tat > now ? tat : now;
  const k = Math.floor((now + burst * t - base) / t + 1e-9);
  return k < 0 ? 0 : k > n ? n : k;
}

/** µs from `now` until one more message fits after `k` were taken from a bucket at `tat`. */
export function gcraRetry(tat: number, now: number, rate: number, burst: number, k: number): number {
  if (rate <= 0) return 0;
  const t = 1e6 / rate;
  const next = (tat > now ? tat : now) + k * t;
  return next + t - burst * t - now;
}

/** The state after taking k: the new TAT (unchanged when k is 0). */
export function gcraTake(tat: number, now: number, rate: number, k: number): number {
  if (rate <= 0 || k <= 0) return tat;
  return (tat > now ? tat : now) + (k * 1e6) / rate;
}

/** The answer to one request, from the two TATs (µs) at `now`; also the new TATs. */
export function grant(req: TokenRequest, roomTat0: number, shardTat0: number, now: number): { grant: TokenGrant; roomTat: number; shardTat: number } {
  const shardRate = req.shard === null ? 0 : req.shardRate;
  const roomTat = gcraTake(roomTat0, now, req.rate, req.debit);
  const shardTat = gcraTake(shardTat0, now, shardRate, req.debit);
  const kRoom = gcraAvailable(roomTat, now, req.rate, req.burst, req.n);
  const kShard = gcraAvailable(shardTat, now, shardRate, req.shardBurst, req.n);
  const k = kRoom < kShard ? kRoom : kShard;
  let retryUs = 0;
  if (k < req.n) {
    if (k === kRoom) retryUs = Math.max(retryUs, gcraRetry(roomTat, now, req.rate, req.burst, k));
    if (k === kShard) retryUs = Math.max(retryUs, gcraRetry(shardTat, now, shardRate, req.shardBurst, k));
  }
  const roomAfter = gcraTake(roomTat, now, req.rate, k);
  const shardAfter = gcraTake(shardTat, now, shardRate, k);
  const left = Math.min(gcraAvailable(roomAfter, now, req.rate, req.burst, UNLIMITED_LEFT), gcraAvailable(shardAfter, now, shardRate, req.shardBurst, UNLIMITED_LEFT));
  return {
    grant: { granted: k, retryAfterMs: k < req.n ? Math.max(1, Math.ceil(retryUs / 1000)) : 0, left },
    roomTat: roomAfter,
    shardTat: shardAfter,
  };
}

/**
 * Buckets in memory, for unit tests (and a single process): the same arithmetic as the Redis
 * script, on an injectable clock (µs).
 */
export class MemoryTokenBuckets implements TokenBuckets {
  private readonly rooms = new Map<string, number>();
  private readonly shards = new Map<number, number>();
  /** calls of `take`, with their requests: tests check the batching */
  readonly calls: TokenRequest[][] = [];
  /** when set, `take` rejects with it (a Redis that is away) */
  fault: Error | null = null;
  private callWaiters: ((requests: TokenRequest[]) => void)[] = [];

  constructor(private readonly nowUs: () => number = () => Date.now() * 1000) {}

  /** Resolves with the requests of the next `take`. */
  nextCall(): Promise<TokenRequest[]> {
    return new Promise((resolve) => this.callWaiters.push(resolve));
  }

  take(requests: readonly TokenRequest[]): Promise<(TokenGrant | Error)[]> {
    this.calls.push([...requests]);
    for (const w of this.callWaiters.splice(0)) w([...requests]);
    if (this.fault) return Promise.reject(this.fault);
    const now = this.nowUs();
    const out = requests.map((r) => {
      const g = grant(r, this.rooms.get(r.room) ?? 0, r.shard === null ? 0 : this.shards.get(r.shard) ?? 0, now);
      this.rooms.set(r.room, g.roomTat);
      if (r.shard !== null) this.shards.set(r.shard, g.shardTat);
      return g.grant;
    });
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
