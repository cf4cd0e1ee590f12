import type {
  ChannelInfo, ClusterState, JoinResult, KickResult, Member, ModeChange, ModeResult, PartResult,
  TopicResult, UserInfo,
} from './state.js';

interface StoredUser {
  nick: string;
  user: string;
  host: string;
  realname: string;
  inst: string;
  server: string;
  /** '' = not away, as in Redis */
  away: string;
  signon: number;
  /** '' = not logged in, as in Redis */
  account: string;
  conn: string;
}

interface StoredMember {
  nick: string;
  op: boolean;
}

/** How long a reap claim holds (the Redis key's EX). */
const REAP_CLAIM_MS = 300_000;

/**
 * The data of one cluster, shared by every MemoryClusterState of the instances in one process
 * (the counterpart of one Redis). Mirrors the Redis key layout of state-redis.ts, so that each
 * operation below can follow its Lua script line by line.
 */
export class MemoryClusterData {
  /** P:nick:<nick> */
  readonly users = new Map<string, StoredUser>();
  /** P:uchans:<nick> */
  readonly userChans = new Map<string, Set<string>>();
  /** P:chan:<chan> */
  readonly chans = new Map<string, ChannelInfo>();
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

/** Resolves with `fn()` run on a later event-loop turn, where it runs alone (atomically). */
function later<T>(data: MemoryClusterData, fn: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    setImmediate(() => {
      if (data.down) {
        reject(new Error('cluster state unreachable (simulated outage)'));
        return;
      }
      try {
        resolve(fn());
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

function setOf<K, V>(m: Map<K, Set<V>>, k: K): Set<V> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  return s;
}

function toUser(u: StoredUser): UserInfo {
  const { account, conn, ...rest } = u;
  // Present only when set, so a user reads back exactly as claimed (as from Redis).
  return { ...rest, away: u.away === '' ? null : u.away, ...(account ? { account } : {}), ...(conn ? { conn } : {}) };
}

/**
 * ClusterState in memory, for unit tests: several instances in one process share one
 * MemoryClusterData. Same results as RedisClusterState, operation for operation (both are checked
 * by test/contract/state.contract.ts): every operation runs atomically on a later event-loop turn,
 * in call order, so concurrent calls from several instances race as they do on Redis.
 */
export class MemoryClusterState implements ClusterState {
  private started = false;
  private closed = false;

  constructor(private readonly data: MemoryClusterData) {}

  private op<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error('cluster state closed'));
    return later(this.data, fn);
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.op(() => undefined);
    this.started = true;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  claimNick(u: UserInfo): Promise<boolean> {
    return this.op(() => {
      const d = this.data;
      const key = u.nick.toLowerCase();
      if (d.users.has(key)) return false;
      d.users.set(key, {
        nick: u.nick, user: u.user, host: u.host, realname: u.realname, inst: u.inst, server: u.server,
        away: '', signon: u.signon, account: u.account ?? '', conn: u.conn ?? '',
      });
      setOf(d.instNicks, u.inst).add(key);
      return true;
    });
  }

  changeNick(oldNick: string, newNick: string, inst: string): Promise<{ kind: 'ok'; channels: string[] } | { kind: 'taken' }> {
    return this.op(() => {
      const d = this.data;
      const old = oldNick.toLowerCase();
      const nw = newNick.toLowerCase();
      const user = d.users.get(old);
      if (!user || user.inst !== inst) return { kind: 'taken' as const };
      if (old !== nw) {
        if (d.users.has(nw)) return { kind: 'taken' as const };
        d.users.delete(old);
        d.users.set(nw, user);
        const chans = d.userChans.get(old);
        if (chans) {
          d.userChans.delete(old);
          d.userChans.set(nw, chans);
        }
        setOf(d.instNicks, inst).delete(old);
        setOf(d.instNicks, inst).add(nw);
      }
      user.nick = newNick;
      const channels = [...(d.userChans.get(nw) ?? [])];
      for (const c of channels) {
        const ms = d.members.get(c);
        const m = ms?.get(old);
        if (ms && m) {
          ms.delete(old);
          ms.set(nw, { nick: newNick, op: m.op });
        }
      }
      return { kind: 'ok' as const, channels };
    });
  }

  releaseUser(nick: string, inst: string): Promise<string[]> {
    return this.op(() => {
      const d = this.data;
      const key = nick.toLowerCase();
      d.instNicks.get(inst)?.delete(key);
      if (d.users.get(key)?.inst !== inst) return [];
      const channels = [...(d.userChans.get(key) ?? [])];
      for (const c of channels) {
        d.members.get(c)?.delete(key);
        this.dropIfEmpty(c);
      }
      d.userChans.delete(key);
      d.users.delete(key);
      return channels;
    });
  }

  getUser(nick: string): Promise<UserInfo | null> {
    return this.op(() => {
      const u = this.data.users.get(nick.toLowerCase());
      return u ? toUser(u) : null;
    });
  }

  getUsers(nicks: string[]): Promise<(UserInfo | null)[]> {
    return this.op(() => nicks.map((n) => {
      const u = this.data.users.get(n.toLowerCase());
      return u ? toUser(u) : null;
    }));
  }

  setAway(nick: string, away: string | null): Promise<void> {
    return this.op(() => {
      const u = this.data.users.get(nick.toLowerCase());
      if (u) u.away = away ?? '';
    });
  }

  setAccount(nick: string, account: string | null): Promise<void> {
    return this.op(() => {
      const u = this.data.users.get(nick.toLowerCase());
      if (u) u.account = account ?? '';
    });
  }

  userChannels(nick: string): Promise<string[]> {
    return this.op(() => [...(this.data.userChans.get(nick.toLowerCase()) ?? [])]);
  }

  join(chanKey: string, chanName: string, nick: string, maxChannels: number): Promise<JoinResult> {
    const now = Date.now();
    return this.op(() => {
      const d = this.data;
      const key = nick.toLowerCase();
      if (d.members.get(chanKey)?.has(key)) return { kind: 'already' as const };
      if ((d.userChans.get(key)?.size ?? 0) >= maxChannels) return { kind: 'too-many' as const };
      let channel = d.chans.get(chanKey);
      const created = !channel;
      if (!channel) {
        channel = { name: chanName, topic: '', topicBy: '', topicAt: 0, modes: 'nt', created: now };
        d.chans.set(chanKey, channel);
      }
      let ms = d.members.get(chanKey);
      if (!ms) d.members.set(chanKey, (ms = new Map()));
      ms.set(key, { nick, op: created });
      setOf(d.userChans, key).add(chanKey);
      return { kind: 'joined' as const, created, op: created, channel: { ...channel } };
    });
  }

  part(chanKey: string, nick: string): Promise<PartResult> {
    return this.op((): PartResult => {
      const d = this.data;
      const key = nick.toLowerCase();
      if (!d.members.get(chanKey)?.delete(key)) return d.chans.has(chanKey) ? 'not-on-channel' : 'no-channel';
      d.userChans.get(key)?.delete(chanKey);
      this.dropIfEmpty(chanKey);
      return 'ok';
    });
  }

  kick(chanKey: string, by: string, target: string): Promise<KickResult> {
    return this.op((): KickResult => {
      const d = this.data;
      if (!d.chans.has(chanKey)) return 'no-channel';
      const ms = d.members.get(chanKey);
      const kicker = ms?.get(by.toLowerCase());
      if (!ms || !kicker) return 'not-on-channel';
      if (!kicker.op) return 'not-op';
      const t = target.toLowerCase();
      if (!ms.delete(t)) return 'target-not-on-channel';
      d.userChans.get(t)?.delete(chanKey);
      this.dropIfEmpty(chanKey);
      return 'ok';
    });
  }

  setTopic(chanKey: string, nick: string, topic: string, setter: string, at: number): Promise<TopicResult> {
    return this.op((): TopicResult => {
      const d = this.data;
      const ch = d.chans.get(chanKey);
      if (!ch) return 'no-channel';
      const m = d.members.get(chanKey)?.get(nick.toLowerCase());
      if (!m) return 'not-on-channel';
      if (ch.modes.includes('t') && !m.op) return 'not-op';
      ch.topic = topic;
      ch.topicBy = setter;
      ch.topicAt = at;
      return 'ok';
    });
  }

  setModes(chanKey: string, nick: string, changes: ModeChange[]): Promise<ModeResult> {
    return this.op((): ModeResult => {
      const d = this.data;
      const ch = d.chans.get(chanKey);
      if (!ch) return { kind: 'no-channel' };
      const ms = d.members.get(chanKey);
      if (!ms?.get(nick.toLowerCase())?.op) return { kind: 'not-op' };
      let modes = ch.modes;
      const applied: ModeChange[] = [];
      const missing: string[] = [];
      for (const c of changes) {
        if (c.mode === 'o') {
          const t = (c.nick ?? '').toLowerCase();
          const m = ms.get(t);
          if (!m) {
            missing.push(t);
          } else if (c.add !== m.op) {
            m.op = c.add;
            applied.push({ add: c.add, mode: 'o', nick: m.nick });
          }
        } else {
          const has = modes.includes(c.mode);
          if (c.add && !has) {
            modes += c.mode;
            applied.push({ add: true, mode: c.mode });
          } else if (!c.add && has) {
            modes = modes.split(c.mode).join('');
            applied.push({ add: false, mode: c.mode });
          }
        }
      }
      ch.modes = modes;
      return { kind: 'ok', applied, missing };
    });
  }

  channel(chanKey: string): Promise<ChannelInfo | null> {
    return this.op(() => {
      const ch = this.data.chans.get(chanKey);
      return ch ? { ...ch } : null;
    });
  }

  channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]> {
    return this.op(() => chanKeys.map((c) => {
      const ch = this.data.chans.get(c);
      return ch ? { ...ch } : null;
    }));
  }

  members(chanKey: string): Promise<Member[]> {
    return this.op(() => [...(this.data.members.get(chanKey)?.values() ?? [])].map((m) => ({ nick: m.nick, op: m.op })));
  }

  memberCounts(chanKeys: string[]): Promise<number[]> {
    return this.op(() => chanKeys.map((c) => this.data.members.get(c)?.size ?? 0));
  }

  isMember(chanKey: string, nick: string): Promise<boolean> {
    return this.op(() => this.data.members.get(chanKey)?.has(nick.toLowerCase()) ?? false);
  }

  listChannels(): Promise<string[]> {
    return this.op(() => [...this.data.chans.keys()]);
  }

  addInstance(inst: string): Promise<void> {
    return this.op(() => {
      this.data.instances.add(inst);
    });
  }

  knownInstances(): Promise<string[]> {
    return this.op(() => [...this.data.instances]);
  }

  claimReap(inst: string): Promise<boolean> {
    return this.op(() => {
      if (this.claimHeld(inst)) return false;
      this.data.reapClaims.set(inst, this.data.now() + REAP_CLAIM_MS);
      return true;
    });
  }

  reapInProgress(inst: string): Promise<boolean> {
    return this.op(() => this.claimHeld(inst));
  }

  instanceUsers(inst: string): Promise<string[]> {
    return this.op(() => [...(this.data.instNicks.get(inst) ?? [])]);
  }

  forgetInstance(inst: string): Promise<void> {
    return this.op(() => {
      this.data.instNicks.delete(inst);
      this.data.instances.delete(inst);
      this.data.reapClaims.delete(inst);
    });
  }

  private claimHeld(inst: string): boolean {
    const until = this.data.reapClaims.get(inst);
    if (until === undefined) return false;
    if (until > this.data.now()) return true;
    this.data.reapClaims.delete(inst);
    return false;
  }

  /** A channel exists while it has members (the Lua scripts' dropIfEmpty). */
  private dropIfEmpty(chanKey: string): void {
    const d = this.data;
    if ((d.members.get(chanKey)?.size ?? 0) > 0) return;
    d.members.delete(chanKey);
    d.chans.delete(chanKey);
  }
}
