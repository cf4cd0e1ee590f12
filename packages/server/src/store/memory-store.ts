import type {
  AppendResult,
  MessageStore,
  NewMessage,
  RoomCount,
  Selector,
  StoredMessage,
  TargetActivity,
} from './store.js';

/** (seq, time) compared with a selector: negative when before it, 0 on it, positive after. */
function cmp(m: StoredMessage, sel: Selector): number {
  return sel.kind === 'seq' ? m.seq - sel.seq : m.time - sel.time;
}

function limitOf(limit: number): number {
  return Number.isFinite(limit) && limit > 0 ? Math.floor(limit) : 0;
}

/** DM participants from a `dm:a,b` room key; [] for a channel. */
function dmMembers(room: string): string[] {
  return room.startsWith('dm:') ? room.slice(3).split(',') : [];
}

export interface MemoryStoreOptions {
  /** clock in ms since the epoch (default Date.now), for deterministic tests */
  now?: () => number;
}

/**
 * A fault for unit tests of the store's callers: given an append, the error to reject it with
 * (e.g. `new StoreUnavailableError(0)`), or null to store it. Rejected messages are not stored.
 */
export type AppendFault = (msg: NewMessage) => Error | null;

/**
 * MessageStore in memory, with the same semantics as the PostgreSQL store, for unit tests of the
 * modules that use a store. Appends resolve asynchronously, in call order.
 */
export class MemoryStore implements MessageStore {
  private readonly rooms = new Map<string, StoredMessage[]>();
  private readonly now: () => number;
  private closed = false;
  private fault: AppendFault | null = null;

  constructor(opts: MemoryStoreOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Makes the following appends fail as `fault` says (null: back to normal). */
  setFault(fault: AppendFault | null): void {
    this.fault = fault;
  }

  backlog(_room: string): number {
    return 0;
  }

  append(msg: NewMessage): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    if (msg.text.includes('\0')) return Promise.reject(new Error('message contains a NUL character'));
    const err = this.fault?.(msg);
    if (err) return Promise.reject(err);
    let list = this.rooms.get(msg.room);
    if (!list) {
      list = [];
      this.rooms.set(msg.room, list);
    }
    const last = list[list.length - 1];
    const time = Math.max(Math.floor(this.now()), last ? last.time : 0);
    const seq = list.length + 1;
    list.push({ ...msg, tags: msg.tags ? { ...msg.tags } : null, seq, time });
    return Promise.resolve({ seq, time });
  }

  private list(room: string): StoredMessage[] {
    return this.rooms.get(room) ?? [];
  }

  private static copy(ms: StoredMessage[]): StoredMessage[] {
    return ms.map((m) => ({ ...m, tags: m.tags ? { ...m.tags } : null }));
  }

  async latest(room: string, after: Selector | null, limit: number): Promise<StoredMessage[]> {
    const n = limitOf(limit);
    if (n === 0) return [];
    const ms = after ? this.list(room).filter((m) => cmp(m, after) > 0) : this.list(room);
    return MemoryStore.copy(ms.slice(-n));
  }

  async before(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const n = limitOf(limit);
    if (n === 0) return [];
    return MemoryStore.copy(this.list(room).filter((m) => cmp(m, sel) < 0).slice(-n));
  }

  async after(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    return MemoryStore.copy(this.list(room).filter((m) => cmp(m, sel) > 0).slice(0, limitOf(limit)));
  }

  async around(room: string, sel: Selector, limit: number): Promise<StoredMessage[]> {
    const n = limitOf(limit);
    const ms = this.list(room);
    const early = ms.filter((m) => cmp(m, sel) < 0);
    const late = ms.filter((m) => cmp(m, sel) >= 0);
    let nEarly = Math.min(early.length, Math.floor(n / 2));
    const nLate = Math.min(late.length, n - nEarly);
    nEarly = Math.min(early.length, n - nLate);
    return MemoryStore.copy(early.slice(early.length - nEarly).concat(late.slice(0, nLate)));
  }

  async between(room: string, from: Selector, to: Selector, limit: number): Promise<StoredMessage[]> {
    const inside = (m: StoredMessage): boolean =>
      (cmp(m, from) > 0 && cmp(m, to) < 0) || (cmp(m, to) > 0 && cmp(m, from) < 0);
    return MemoryStore.copy(this.list(room).filter(inside).slice(0, limitOf(limit)));
  }

  async targets(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): Promise<TargetActivity[]> {
    const candidates = new Set(rooms);
    if (dmNick !== null) for (const room of this.rooms.keys()) if (dmMembers(room).includes(dmNick)) candidates.add(room);
    const out: TargetActivity[] = [];
    for (const room of candidates) {
      const newest = this.list(room).findLast((m) => m.time > from && m.time < to);
      if (newest) out.push({ room, target: newest.target, latest: newest.time });
    }
    out.sort((a, b) => b.latest - a.latest || (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
    return out.slice(0, limitOf(limit));
  }

  async counts(rooms: string[]): Promise<RoomCount[]> {
    const out: RoomCount[] = [];
    for (const room of new Set(rooms)) {
      const n = this.list(room).length;
      if (n > 0) out.push({ room, messages: n });
    }
    return out;
  }
}
