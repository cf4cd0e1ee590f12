import type { Redis } from 'ioredis';
import type { TokenBuckets, TokenGrant, TokenRequest } from './buckets.js';

/**
 * One request, atomically, with the arithmetic of `grant()` in buckets.ts (keep the two in step;
 * the unit tests check the TS one, the integration test this one). The clock is Redis's own
 * (`TIME`, allowed in a script that writes since Redis 7 replicates scripts by their effects), so
 * the instances' clocks do not matter.
 *
 * KEYS[1] room bucket, KEYS[2] shard bucket; ARGV: n, room rate, room burst, shard rate (0 = none),
 * shard burst, debit. A bucket is its TAT in µs (a string), expiring when it would be full again.
 * Returns {granted, retry-after µs, left}.
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local d = tonumber(ARGV[6])
local function tatOf(key, rate)
  if rate <= 0 then return 0 end
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  return tat + d * 1000000 / rate
end
local function avail(tat, rate, burst, want)
  if rate <= 0 then return want end
  local per = 1000000 / rate
  local k = math.floor((now + burst * per - tat) / per + 1e-9)
  if k < 0 then k = 0 end
  if k > want then k = want end
  return k
end
local rr, rb = tonumber(ARGV[2]), tonumber(ARGV[3])
local sr, sb = tonumber(ARGV[4]), tonumber(ARGV[5])
local tr, ts = tatOf(KEYS[1], rr), tatOf(KEYS[2], sr)
local kr, ks = avail(tr, rr, rb, n), avail(ts, sr, sb, n)
local k = kr
if ks < k then k = ks end
local retry = 0
if k < n then
  if k == kr and rr > 0 then
    local per = 1000000 / rr
    local r = tr + k * per + per - rb * per - now
    if r > retry then retry = r end
  end
  if k == ks and sr > 0 then
    local per = 1000000 / sr
    local r = ts + k * per + per - sb * per - now
    if r > retry then retry = r end
  end
end
if rr > 0 then tr = tr + k * 1000000 / rr end
if sr > 0 then ts = ts + k * 1000000 / sr end
if k + d > 0 then
  if rr > 0 then redis.call('SET', KEYS[1], string.format('%.0f', tr), 'PX', math.floor((tr - now) / 1000) + 1) end
  if sr > 0 then redis.call('SET', KEYS[2], string.format('%.0f', ts), 'PX', math.floor((ts - now) / 1000) + 1) end
end
local left = avail(tr, rr, rb, 1000000000)
local ls = avail(ts, sr, sb, 1000000000)
if ls < left then left = ls end
return {k, math.ceil(retry), left}
`;

interface QosRedis extends Redis {
  qosTake(roomKey: string, shardKey: string, n: number, rate: number, burst: number, shardRate: number, shardBurst: number, debit: number): Promise<[number, number, number]>;
}

/**
 * The buckets of the whole cluster in Redis: `<prefix>:qb:r:<room>` and `<prefix>:qb:s:<shard>`.
 * All requests of one `take` leave as one pipeline (one round trip); each is one script call
 * (EVALSHA, ioredis falls back to EVAL when Redis does not know the script). The connection is
 * the caller's (it decides timeouts and reconnection); `close` does not close it.
 */
export class RedisTokenBuckets implements TokenBuckets {
  private readonly redis: QosRedis;

  constructor(redis: Redis, private readonly prefix: string) {
    if (!('qosTake' in redis)) redis.defineCommand('qosTake', { numberOfKeys: 2, lua: TAKE });
    this.redis = redis as QosRedis;
  }

  async take(requests: readonly TokenRequest[]): Promise<(TokenGrant | Error)[]> {
    const p = this.redis.pipeline() as unknown as QosPipeline;
    const shardless = `${this.prefix}:qb:s:none`;
    for (const r of requests) {
      p.qosTake(
        `${this.prefix}:qb:r:${r.room}`,
        r.shard === null ? shardless : `${this.prefix}:qb:s:${r.shard}`,
        r.n, r.rate, r.burst, r.shard === null ? 0 : r.shardRate, r.shardBurst, r.debit,
      );
    }
    const res = await p.exec();
    if (!res) throw new Error('redis: the QoS pipeline was discarded');
    return res.map(([err, value], i): TokenGrant | Error => {
      if (err) return err;
      const [granted, retryUs, left] = value as [number, number, number];
      const n = requests[i]?.n ?? 0;
      return { granted, retryAfterMs: granted < n ? Math.max(1, Math.ceil(retryUs / 1000)) : 0, left };
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface QosPipeline {
  qosTake(roomKey: string, shardKey: string, n: number, rate: number, burst: number, shardRate: number, shardBurst: number, debit: number): QosPipeline;
  exec(): Promise<[Error | null, unknown][] | null>;
}
