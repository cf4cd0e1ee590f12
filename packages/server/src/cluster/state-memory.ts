import { maskMatches } from './masks.js';
import {
  MAX_LIST_ENTRIES, secretModes,
  type AccessLevel, type ChannelInfo, type ChannelRegistration, type ClusterState, type InviteResult,
  type JoinCheck, type JoinResult, type KickResult, type ListEntry, type ListMode, type Member,
  type ModeChange, type ModeResult, type PartResult, type RegisterChannelResult, type ServerBan,
  type TopicResult, type UserInfo, type UserUpdate,
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
  /** '' = no user modes, as in Redis */
  modes: string;
}

interface StoredMember {
  nick: string;
  op: boolean;
  voice: boolean;
}

/** P:chan:<chan>: key '' and limit 0 when unset, as in Redis */
interface StoredChannel {
  name: string;
  topic: string;
  topicBy: string;
  topicAt: number;
  modes: string;
  created: number;
  key: string;
  limit: number;
}

/** P:reg:<chan> */
interface StoredRegistration {
  founder: string;
  registered: number;
  name: string;
  /** what the channel had when it last became empty */
  saved: Omit<StoredChannel, 'name' | 'created'> | null;
}

function channelInfo(c: StoredChannel): ChannelInfo {
  const { key, limit, ...rest } = c;
  const ch: ChannelInfo = { ...rest };
  if (key) ch.key = key;
  if (limit > 0) ch.limit = limit;
  if (secretModes(c.modes)) ch.secret = true;
  return ch;
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
  const { account, conn, modes, ...rest } = u;
  // Present only when set, so a user reads back exactly as claimed (as from Redis).
  return {
    ...rest, away: u.away === '' ? null : u.away, ...(account ? { account } : {}), ...(conn ? { conn } : {}),
    ...(modes ? { modes } : {}),
  };
}

function toMember(m: StoredMember): Member {
  return m.voice ? { nick: m.nick, op: m.op, voice: true } : { nick: m.nick, op: m.op };
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
        away: '', signon: u.signon, account: u.account ?? '', conn: u.conn ?? '', modes: u.modes ?? '',
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
          ms.set(nw, { nick: newNick, op: m.op, voice: m.voice });
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

  updateUser(nick: string, update: UserUpdate): Promise<void> {
    return this.op(() => {
      const u = this.data.users.get(nick.toLowerCase());
      if (!u) return;
      if (update.realname !== undefined) u.realname = update.realname;
      if (update.modes !== undefined) u.modes = update.modes;
    });
  }

  userChannels(nick: string): Promise<string[]> {
    return this.op(() => [...(this.data.userChans.get(nick.toLowerCase()) ?? [])]);
  }

  join(chanKey: string, chanName: string, nick: string, maxChannels: number, check?: JoinCheck): Promise<JoinResult> {
    const now = Date.now();
    return this.op((): JoinResult => {
      const d = this.data;
      const key = nick.toLowerCase();
      if (d.members.get(chanKey)?.has(key)) return { kind: 'already' };
      if ((d.userChans.get(key)?.size ?? 0) >= maxChannels) return { kind: 'too-many' };
      let channel = d.chans.get(chanKey);
      const reg = d.regs.get(chanKey);
      const acct = (check?.account ?? '').toLowerCase();
      let level = '';
      if (reg && acct) level = reg.founder === acct ? 'op' : d.access.get(chanKey)?.get(acct) ?? '';
      const rules = channel ?? (reg ? { modes: 'nt', key: '', limit: 0, ...reg.saved } : null);
      const invites = d.invites.get(chanKey);
      if (check && rules && level !== 'op') {
        const listed = (m: ListMode): boolean => [...(d.lists.get(`${chanKey} ${m}`)?.values() ?? [])].some((e) => maskMatches(e.mask, check.source, acct || null));
        if (rules.limit > 0 && (d.members.get(chanKey)?.size ?? 0) >= rules.limit) return { kind: 'full' };
        if (rules.key && check.key !== rules.key) return { kind: 'bad-key' };
        const invited = (invites?.has(key) ?? false) || listed('I');
        if (rules.modes.includes('i') && !invited) return { kind: 'invite-only' };
        if (!invited && listed('b') && !listed('e')) return { kind: 'banned' };
      }
      invites?.delete(key);
      const created = !channel;
      let op = false;
      if (!channel) {
        channel = reg
          ? { name: reg.name, topic: '', topicBy: '', topicAt: 0, modes: 'nt', key: '', limit: 0, ...reg.saved, created: now }
          : { name: chanName, topic: '', topicBy: '', topicAt: 0, modes: 'nt', created: now, key: '', limit: 0 };
        op = !reg;
        d.chans.set(chanKey, channel);
      }
      if (level === 'op') op = true;
      const voice = level === 'voice';
      let ms = d.members.get(chanKey);
      if (!ms) d.members.set(chanKey, (ms = new Map()));
      ms.set(key, { nick, op, voice });
      setOf(d.userChans, key).add(chanKey);
      return { kind: 'joined', created, op, voice, channel: channelInfo(channel) };
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

  setModes(chanKey: string, nick: string | null, changes: ModeChange[], setter = '*', at = Date.now()): Promise<ModeResult> {
    return this.op((): ModeResult => {
      const d = this.data;
      const ch = d.chans.get(chanKey);
      if (!ch) return { kind: 'no-channel' };
      const ms = d.members.get(chanKey);
      if (nick !== null && !ms?.get(nick.toLowerCase())?.op) return { kind: 'not-op' };
      const applied: ModeChange[] = [];
      const missing: string[] = [];
      const full: string[] = [];
      const flag = (m: string, on: boolean): void => {
        const has = ch.modes.includes(m);
        if (on && !has) ch.modes += m;
        else if (!on && has) ch.modes = ch.modes.split(m).join('');
      };
      for (const c of changes) {
        if (c.mode === 'o' || c.mode === 'v') {
          const t = (c.nick ?? '').toLowerCase();
          const m = ms?.get(t);
          if (!m) {
            missing.push(t);
          } else if ((c.mode === 'o' ? m.op : m.voice) !== c.add) {
            if (c.mode === 'o') m.op = c.add;
            else m.voice = c.add;
            applied.push({ add: c.add, mode: c.mode, nick: m.nick });
          }
        } else if (c.mode === 'b' || c.mode === 'e' || c.mode === 'I') {
          const lk = `${chanKey} ${c.mode}`;
          let list = d.lists.get(lk);
          const mask = c.arg ?? '';
          const field = mask.toLowerCase();
          if (c.add) {
            if (list?.has(field)) continue;
            if ((list?.size ?? 0) >= MAX_LIST_ENTRIES) {
              full.push(mask);
              continue;
            }
            if (!list) d.lists.set(lk, (list = new Map()));
            list.set(field, { mode: c.mode, mask, setBy: setter, setAt: at });
            applied.push({ add: true, mode: c.mode, arg: mask });
          } else {
            const e = list?.get(field);
            if (!e) continue;
            list?.delete(field);
            applied.push({ add: false, mode: c.mode, arg: e.mask });
          }
        } else if (c.mode === 'k') {
          if (c.add) {
            ch.key = c.arg ?? '';
            flag('k', true);
            applied.push({ add: true, mode: 'k', arg: ch.key });
          } else if (ch.key) {
            ch.key = '';
            flag('k', false);
            applied.push({ add: false, mode: 'k', arg: '*' });
          }
        } else if (c.mode === 'l') {
          if (c.add) {
            const n = Number(c.arg);
            if (ch.limit !== n) {
              ch.limit = n;
              flag('l', true);
              applied.push({ add: true, mode: 'l', arg: c.arg ?? '' });
            }
          } else if (ch.modes.includes('l')) {
            ch.limit = 0;
            flag('l', false);
            applied.push({ add: false, mode: 'l' });
          }
        } else if (ch.modes.includes(c.mode) !== c.add) {
          flag(c.mode, c.add);
          applied.push({ add: c.add, mode: c.mode });
        }
      }
      return { kind: 'ok', applied, missing, full };
    });
  }

  listModes(chanKey: string): Promise<ListEntry[]> {
    return this.op(() => (['b', 'e', 'I'] as const).flatMap((m) => [...(this.data.lists.get(`${chanKey} ${m}`)?.values() ?? [])].map((e) => ({ ...e }))));
  }

  invite(chanKey: string, by: string, target: string): Promise<InviteResult> {
    return this.op((): InviteResult => {
      const d = this.data;
      const ch = d.chans.get(chanKey);
      if (!ch) return 'no-channel';
      const ms = d.members.get(chanKey);
      const inviter = ms?.get(by.toLowerCase());
      if (!inviter) return 'not-on-channel';
      const t = target.toLowerCase();
      if (ms?.has(t)) return 'already-on';
      if (ch.modes.includes('i') && !inviter.op) return 'not-op';
      setOf(d.invites, chanKey).add(t);
      return 'ok';
    });
  }

  registerChannel(chanKey: string, nick: string, account: string, at: number): Promise<RegisterChannelResult> {
    return this.op((): RegisterChannelResult => {
      const d = this.data;
      const ch = d.chans.get(chanKey);
      if (!ch) return 'no-channel';
      if (!d.members.get(chanKey)?.get(nick.toLowerCase())?.op) return 'not-op';
      if (d.regs.has(chanKey)) return 'exists';
      d.regs.set(chanKey, { founder: account.toLowerCase(), registered: at, name: ch.name, saved: null });
      return 'ok';
    });
  }

  registration(chanKey: string): Promise<ChannelRegistration | null> {
    return this.op(() => {
      const reg = this.data.regs.get(chanKey);
      if (!reg) return null;
      return { founder: reg.founder, registeredAt: reg.registered, access: Object.fromEntries(this.data.access.get(chanKey) ?? []) };
    });
  }

  setAccess(chanKey: string, account: string, level: AccessLevel | null): Promise<boolean> {
    return this.op(() => {
      const d = this.data;
      if (!d.regs.has(chanKey)) return false;
      let a = d.access.get(chanKey);
      if (!a) d.access.set(chanKey, (a = new Map()));
      if (level) a.set(account.toLowerCase(), level);
      else a.delete(account.toLowerCase());
      return true;
    });
  }

  dropRegistration(chanKey: string): Promise<boolean> {
    return this.op(() => {
      const d = this.data;
      if (!d.regs.delete(chanKey)) return false;
      d.access.delete(chanKey);
      if (!d.chans.has(chanKey)) this.dropLists(chanKey);
      return true;
    });
  }

  addServerBan(ban: ServerBan): Promise<boolean> {
    return this.op(() => {
      const k = ban.mask.toLowerCase();
      if (this.data.klines.has(k)) return false;
      this.data.klines.set(k, { ...ban });
      return true;
    });
  }

  removeServerBan(mask: string): Promise<boolean> {
    return this.op(() => this.data.klines.delete(mask.toLowerCase()));
  }

  serverBans(): Promise<ServerBan[]> {
    return this.op(() => [...this.data.klines.values()].map((b) => ({ ...b })));
  }

  channel(chanKey: string): Promise<ChannelInfo | null> {
    return this.op(() => {
      const ch = this.data.chans.get(chanKey);
      return ch ? channelInfo(ch) : null;
    });
  }

  channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]> {
    return this.op(() => chanKeys.map((c) => {
      const ch = this.data.chans.get(c);
      return ch ? channelInfo(ch) : null;
    }));
  }

  members(chanKey: string): Promise<Member[]> {
    return this.op(() => [...(this.data.members.get(chanKey)?.values() ?? [])].map(toMember));
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

  /**
   * A channel exists while it has members (the Lua scripts' dropIfEmpty); a registered one keeps
   * its modes, topic and lists for when someone joins again.
   */
  private dropIfEmpty(chanKey: string): void {
    const d = this.data;
    if ((d.members.get(chanKey)?.size ?? 0) > 0) return;
    const reg = d.regs.get(chanKey);
    const ch = d.chans.get(chanKey);
    if (reg && ch) reg.saved = { topic: ch.topic, topicBy: ch.topicBy, topicAt: ch.topicAt, modes: ch.modes, key: ch.key, limit: ch.limit };
    else if (!reg) this.dropLists(chanKey);
    d.members.delete(chanKey);
    d.chans.delete(chanKey);
    d.invites.delete(chanKey);
  }

  private dropLists(chanKey: string): void {
    for (const m of ['b', 'e', 'I']) this.data.lists.delete(`${chanKey} ${m}`);
  }
}
