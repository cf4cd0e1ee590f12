import type { StoredChannel, StoredUser } from './state-records.js';
import type { AccessLevel, ListEntry, ServerBan } from './state.js';

export interface StoredMember {
  nick: string;
  op: boolean;
  voice: boolean;
}

/** P:reg:<chan> */
export interface StoredRegistration {
  founder: string;
  registered: number;
  name: string;
  /** what the channel had when it last became empty */
  saved: Omit<StoredChannel, 'name' | 'created'> | null;
}

/**
 * The data of one cluster, shared by every MemoryClusterState of the instances in one process
 * (the counterpart of one Redis). Mirrors the Redis key layout of state-redis-scripts.ts, so that
 * each operation on it can follow its Lua script line by line.
 */
export class MemoryClusterData {
  /** P:nick:<nick> */
  readonly users = new Map<string, StoredUser>();
  /** P:uchans:<nick> */
  readonly userChans = new Map<string, Set<string>>();
  /** P:chan:<chan> */
  readonly chans = new Map<string, StoredChannel>();
  /** P:list:<chan>:<mode>, keyed `<chan> <mode>`, lower-case mask → entry */
  readonly lists = new Map<string, Map<string, ListEntry>>();
  /** P:inv:<chan> */
  readonly invites = new Map<string, Set<string>>();
  /** P:reg:<chan> */
  readonly regs = new Map<string, StoredRegistration>();
  /** P:access:<chan> */
  readonly access = new Map<string, Map<string, AccessLevel>>();
  /** P:klines, lower-case mask → ban */
  readonly klines = new Map<string, ServerBan>();
  /** P:members:<chan>, lower-case nick → member */
  readonly members = new Map<string, Map<string, StoredMember>>();
  /** P:inst:<id>:nicks */
  readonly instNicks = new Map<string, Set<string>>();
  /** P:instances */
  readonly instances = new Set<string>();
  /** P:reap:<id> → when the claim expires (ms) */
  readonly reapClaims = new Map<string, number>();
  private isDown = false;

  constructor(readonly now: () => number = Date.now) {}

  get down(): boolean {
    return this.isDown;
  }

  /** Outage: while down every operation of every MemoryClusterState on this data rejects. */
  setDown(down: boolean): void {
    this.isDown = down;
  }
}

/** The set under `k`, created empty if absent (as SADD creates a Redis set). */
export function setOf<K, V>(m: Map<K, Set<V>>, k: K): Set<V> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  return s;
}
