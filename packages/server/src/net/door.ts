import { createHash, createHmac } from 'node:crypto';
import net from 'node:net';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config.js';

/**
 * What an instance lets in at its door (docs/security.md "At the door"): which browser origins may
 * open a WebSocket, how many connections one address may hold and open per minute (cluster-wide,
 * counted in Redis), the cloak users see instead of an address, the request budget of the HTTP
 * API's read routes, and which peers may say whose connection they carry (a PROXY header or
 * `X-Forwarded-For` from the front door). Every limit is read from the live configuration.
 */

// ---- origins -----------------------------------------------------------------------------------

/**
 * May a page from `origin` open a WebSocket? No `Origin` header: not a browser (a native client, a
 * bot), allowed. `null` (a sandboxed page, a file) and anything unparsable: refused unless `*` is
 * listed. Entries are exact origins or `scheme://host:*` (any port).
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (allowed.includes('*')) return true;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if (u.origin === 'null') return false;
  for (const a of allowed) {
    if (a.endsWith(':*')) {
      if (`${u.protocol}//${u.hostname}` === a.slice(0, -2).toLowerCase()) return true;
    } else {
      try {
        if (new URL(a).origin === u.origin) return true;
      } catch {
        // the schema only lets origins through; nothing to match
      }
    }
  }
  return false;
}

// ---- cloaks ------------------------------------------------------------------------------------

/**
 * The key of every cloak of a cluster: derived from the cluster key, so every instance cloaks an
 * address alike and nobody without the key can test guesses. Without a cluster key (development),
 * from the prefix: then the 2^32 IPv4 addresses can be tried against a cloak (docs/security.md).
 */
export function cloakKey(clusterKey: Buffer | null, prefix: string): Buffer {
  return clusterKey !== null
    ? createHmac('sha256', clusterKey).update('parley host cloak').digest()
    : createHash('sha256').update(`parley host cloak:${prefix}`).digest();
}

/** `parley-<8 hex>.ip`: the same for one address everywhere in the cluster, the address not in it. */
export function cloakHost(key: Buffer, address: string): string {
  return `parley-${createHmac('sha256', key).update(address).digest('hex').slice(0, 8)}.ip`;
}

// ---- who is connecting -------------------------------------------------------------------------

/** The address with an IPv4-mapped IPv6 prefix removed (`::ffff:1.2.3.4` → `1.2.3.4`). */
export function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/**
 * A PROXY protocol v1 header (`PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, at most 107 bytes) at
 * the start of `buf`: the client's address and the header's length; `unknown` (HAProxy's health
 * checks) gives no address. null: not a header (or not a whole one yet: `incomplete`).
 */
export function parseProxyV1(buf: Buffer): { address: string | null; length: number } | 'incomplete' | null {
  const sig = 'PROXY ';
  for (let i = 0; i < Math.min(buf.length, sig.length); i++) if (buf[i] !== sig.charCodeAt(i)) return null;
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length < 108 ? 'incomplete' : null;
  if (end > 105) return null;
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { address: null, length: end + 2 };
  const src = parts[2];
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || src === undefined || net.isIP(src) === 0) return null;
  return { address: src, length: end + 2 };
}

/**
 * The client's address for a request that came through `peer`: the last `X-Forwarded-For` entry
 * (the one the front door added) when the peer is a trusted proxy, else the peer itself.
 */
export function forwardedAddress(peer: string, xff: string | string[] | undefined, trusted: ReadonlySet<string>): string {
  const p = plainAddress(peer);
  if (!trusted.has(p) || xff === undefined) return p;
  const header = Array.isArray(xff) ? xff.join(',') : xff;
  const last = header.split(',').pop()?.trim() ?? '';
  return net.isIP(last) !== 0 ? plainAddress(last) : p;
}

// ---- the HTTP API's read budget ----------------------------------------------------------------

/** Per-address token buckets in memory (one instance's share of a client's requests). */
export class RequestBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * Takes one token for `key`: 0 when allowed, else the seconds until one is back. A rate of 0
   * allows everything. Buckets that are full again are forgotten (the map stays small).
   */
  take(key: string, rate: number, burst: number, now = Date.now()): number {
    if (rate <= 0) return 0;
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= 100_000) this.sweep(rate, burst, now);
      b = { tokens: burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / rate));
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(rate: number, burst: number, now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * rate >= burst) this.buckets.delete(k);
  }
}

// ---- connections per address, cluster-wide -----------------------------------------------------

/**
 * One connection attempt from one address, atomically. KEYS[1] a hash `instance → "<open>:<unix
 * seconds>"` (each instance writes its own count of the address's open connections; counts older
 * than ARGV[4] are from an instance that died and are ignored), KEYS[2] the address's connection
 * counter of this minute. ARGV: instance, this instance's open count before this one, now (s),
 * oldest fresh (s), max open (0: none), max per minute (0: none), ttl (s).
 * Returns {0} admitted, {1, open} too many open, {2, attempts} too many this minute.
 */
const ADMIT = `
local total = tonumber(ARGV[2])
local maxOpen = tonumber(ARGV[5])
if maxOpen > 0 then
  local v = redis.call('HGETALL', KEYS[1])
  local fresh = tonumber(ARGV[4])
  for i = 1, #v, 2 do
    if v[i] ~= ARGV[1] then
      local c, t = string.match(v[i + 1], '^(%d+):(%d+)$')
      if c and tonumber(t) >= fresh then total = total + tonumber(c) end
    end
  end
  if total >= maxOpen then return {1, total} end
end
local perMin = tonumber(ARGV[6])
if perMin > 0 then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], 120) end
  if n > perMin then return {2, n} end
end
redis.call('HSET', KEYS[1], ARGV[1], (tonumber(ARGV[2]) + 1) .. ':' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return {0}
`;

/** How often an instance rewrites its counts (so they stay fresh), and when a count is stale. */
const REFRESH_MS = 20_000;
const STALE_S = 60;
const TTL_S = 120;

export type Refusal = 'too-many' | 'too-fast';

/** The `ERROR :Closing Link` reasons of a refused connection. */
export const REFUSAL_TEXT: Record<Refusal, string> = {
  'too-many': 'Too many connections from your address',
  'too-fast': 'Too many connection attempts from your address, try again in a minute',
};

type AdmitReply = [number, number?];

interface DoorRedis extends Redis {
  doorAdmit(k1: string, k2: string, ...args: (string | number)[]): Promise<AdmitReply>;
}

export interface DoorOptions {
  config: () => ClusterConfig;
  /** the connection the counts go through (no offline queue, short timeout: fail open); null: this instance's counts only */
  redis: Redis | null;
  prefix: string;
  instanceId: string;
  /** the cluster key (cloaks are derived from it); null: none */
  clusterKey: Buffer | null;
  /** addresses whose PROXY header or X-Forwarded-For is believed (the front door) */
  trustedProxies: readonly string[];
  log: Logger;
}

/**
 * The per-address limits and what goes with them. `admit` counts a connection cluster-wide (one
 * Redis script call) and refuses past `door.connectionsPerIp` open or `door.connectsPerIpPerMinute`
 * new ones; the returned release is called once when it closes. When Redis does not answer, a
 * connection is admitted on this instance's own count (fail open, like QoS).
 */
export class Door {
  readonly trusted: ReadonlySet<string>;
  readonly api = new RequestBuckets();
  private readonly cloakKey: Buffer;
  private readonly redis: DoorRedis | null;
  /** open connections per address on this instance (exempt addresses are not counted) */
  private readonly open = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private failOpenLogged = false;

  constructor(private readonly o: DoorOptions) {
    this.trusted = new Set(o.trustedProxies.map(plainAddress));
    this.cloakKey = cloakKey(o.clusterKey, o.prefix);
    const r = o.redis as DoorRedis | null;
    if (r !== null && (r as Partial<DoorRedis>).doorAdmit === undefined) r.defineCommand('doorAdmit', { numberOfKeys: 2, lua: ADMIT });
    this.redis = r;
  }

  private get cfg(): ClusterConfig['door'] {
    return this.o.config().door;
  }

  originAllowed(origin: string | undefined): boolean {
    return originAllowed(origin, this.cfg.wsOrigins);
  }

  /** What other users see instead of `address` (the address itself when cloaking is off). */
  displayHost(address: string): string {
    return this.cfg.cloakHosts ? cloakHost(this.cloakKey, address) : address;
  }

  exempt(address: string): boolean {
    return this.cfg.exemptIps.includes(address);
  }

  /** The HTTP API's read budget: 0 when `address` may make a request now, else seconds to wait. */
  apiRetryAfter(address: string): number {
    if (this.exempt(address)) return 0;
    return this.api.take(address, this.cfg.apiReadsPerSecond, this.cfg.apiReadBurst);
  }

  /** Admits a connection from `address`: its release (call once, when it closes), or why not. */
  async admit(address: string): Promise<{ release: () => void } | { refused: Refusal }> {
    const { connectionsPerIp: maxOpen, connectsPerIpPerMinute: perMin } = this.cfg;
    if ((maxOpen === 0 && perMin === 0) || this.exempt(address)) return { release: () => undefined };
    const before = this.open.get(address) ?? 0;
    if (maxOpen > 0 && before >= maxOpen) return { refused: 'too-many' };
    this.open.set(address, before + 1);
    this.ensureTimer();
    const verdict = await this.ask(address, before, maxOpen, perMin);
    if (verdict !== null) {
      this.dec(address, false);
      return { refused: verdict };
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.dec(address, true);
      },
    };
  }

  private async ask(address: string, before: number, maxOpen: number, perMin: number): Promise<Refusal | null> {
    if (this.redis === null) return null;
    const now = Math.floor(Date.now() / 1000);
    try {
      const [code] = await this.redis.doorAdmit(
        this.key(address, 'c'), this.key(address, `r:${Math.floor(now / 60)}`),
        this.o.instanceId, before, now, now - STALE_S, maxOpen, perMin, TTL_S,
      );
      this.failOpenLogged = false;
      return code === 1 ? 'too-many' : code === 2 ? 'too-fast' : null;
    } catch (err) {
      if (!this.failOpenLogged) {
        this.failOpenLogged = true;
        this.o.log.warn({ err: (err as Error).message }, 'per-address connection counts unavailable (Redis): admitting on this instance\'s counts');
      }
      return null;
    }
  }

  /** `<prefix>:door:{<address>}:<what>`: both keys of an address in one Redis Cluster slot. */
  private key(address: string, what: string): string {
    return `${this.o.prefix}:door:{${address}}:${what}`;
  }

  private dec(address: string, write: boolean): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n > 0) this.open.set(address, n);
    else this.open.delete(address);
    if (write) this.write(address, n);
  }

  /** This instance's count of `address` in Redis (errors only logged: the count expires anyway). */
  private write(address: string, n: number): void {
    if (this.redis === null) return;
    const k = this.key(address, 'c');
    const p = n > 0 ? this.redis.hset(k, this.o.instanceId, `${n}:${Math.floor(Date.now() / 1000)}`) : this.redis.hdel(k, this.o.instanceId);
    p.catch((err: Error) => this.o.log.debug({ err: err.message }, 'writing a per-address count failed'));
  }

  private ensureTimer(): void {
    if (this.timer !== null || this.redis === null) return;
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  /** Rewrites this instance's counts with the current time, so other instances keep counting them. */
  private refresh(): void {
    const r = this.redis;
    if (r === null) return;
    if (this.open.size === 0) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const p = r.pipeline();
    for (const [address, n] of this.open) {
      const k = this.key(address, 'c');
      p.hset(k, this.o.instanceId, `${n}:${now}`).expire(k, TTL_S);
    }
    p.exec().catch((err: Error) => this.o.log.debug({ err: err.message }, 'refreshing per-address counts failed'));
  }

  /** open connections from `address` on this instance (tests, metrics) */
  openFrom(address: string): number {
    return this.open.get(address) ?? 0;
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
