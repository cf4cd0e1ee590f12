import * as channels from './state-memory-channels.js';
import { setOf, type MemoryClusterData } from './state-memory-data.js';
import { channelInfo, member, userInfo } from './state-records.js';
import type {
  AccessLevel, ChannelInfo, ChannelRegistration, ClusterState, InviteResult, JoinCheck, JoinResult,
  KickResult, ListEntry, Member, ModeChange, ModeResult, PartResult, RegisterChannelResult, ServerBan,
  TopicResult, UserInfo, UserUpdate,
} from './state.js';

export { MemoryClusterData } from './state-memory-data.js';

/** How long a reap claim holds (the Redis key's EX). */
const REAP_CLAIM_MS = 300_000;

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

/**
 * ClusterState in memory, for unit tests: several instances in one process share one
 * MemoryClusterData. Same results as RedisClusterState, operation for operation (both are checked
 * by test/contract/state.contract.ts): every operation runs atomically on a later event-loop turn,
 * in call order, so concurrent calls from several instances race as they do on Redis. The channel
 * operations are in state-memory-channels.ts.
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
      const chans = [...(d.userChans.get(key) ?? [])];
      for (const c of chans) {
        d.members.get(c)?.delete(key);
        channels.dropIfEmpty(d, c);
      }
      d.userChans.delete(key);
      d.users.delete(key);
      return chans;
    });
  }

  getUser(nick: string): Promise<UserInfo | null> {
    return this.op(() => {
      const u = this.data.users.get(nick.toLowerCase());
      return u ? userInfo(u) : null;
    });
  }

  getUsers(nicks: string[]): Promise<(UserInfo | null)[]> {
    return this.op(() => nicks.map((n) => {
      const u = this.data.users.get(n.toLowerCase());
      return u ? userInfo(u) : null;
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
    return this.op(() => channels.joinChannel(this.data, chanKey, chanName, nick, maxChannels, check, now));
  }

  part(chanKey: string, nick: string): Promise<PartResult> {
    return this.op(() => channels.partChannel(this.data, chanKey, nick));
  }

  kick(chanKey: string, by: string, target: string): Promise<KickResult> {
    return this.op(() => channels.kickMember(this.data, chanKey, by, target));
  }

  setTopic(chanKey: string, nick: string, topic: string, setter: string, at: number): Promise<TopicResult> {
    return this.op(() => channels.setTopic(this.data, chanKey, nick, topic, setter, at));
  }

  setModes(chanKey: string, nick: string | null, changes: ModeChange[], setter = '*', at = Date.now()): Promise<ModeResult> {
    return this.op(() => channels.setModes(this.data, chanKey, nick, changes, setter, at));
  }

  listModes(chanKey: string): Promise<ListEntry[]> {
    return this.op(() => channels.listModes(this.data, chanKey));
  }

  invite(chanKey: string, by: string, target: string): Promise<InviteResult> {
    return this.op(() => channels.invite(this.data, chanKey, by, target));
  }

  registerChannel(chanKey: string, nick: string, account: string, at: number): Promise<RegisterChannelResult> {
    return this.op(() => channels.registerChannel(this.data, chanKey, nick, account, at));
  }

  registration(chanKey: string): Promise<ChannelRegistration | null> {
    return this.op(() => channels.registration(this.data, chanKey));
  }

  setAccess(chanKey: string, account: string, level: AccessLevel | null): Promise<boolean> {
    return this.op(() => channels.setAccess(this.data, chanKey, account, level));
  }

  dropRegistration(chanKey: string): Promise<boolean> {
    return this.op(() => channels.dropRegistration(this.data, chanKey));
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
    return this.op(() => [...(this.data.members.get(chanKey)?.values() ?? [])].map((m) => member(m.nick, m.op, m.voice)));
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
}
