import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { closeRedis } from './broker-redis.js';
import { SCRIPTS, type ScriptName } from './state-redis-scripts.js';
import { channelInfo, member, userInfo } from './state-records.js';
import {
  MAX_LIST_ENTRIES,
  type AccessLevel, type ChannelInfo, type ChannelRegistration, type ClusterState, type InviteResult,
  type JoinCheck, type JoinResult, type KickResult, type ListEntry, type ListMode, type Member,
  type ModeChange, type ModeResult, type PartResult, type RegisterChannelResult, type ServerBan,
  type TopicResult, type UserInfo, type UserUpdate,
} from './state.js';

type Reply = string | number | null | Reply[];

/**
 * ClusterState on Redis: every write that checks and changes together runs as one of the Lua
 * scripts of state-redis-scripts.ts (the key layout is there); reads and simple writes are plain
 * commands.
 */
export class RedisClusterState implements ClusterState {
  private readonly redis: Redis;
  private readonly shas = new Map<ScriptName, string>();
  private started = false;

  /**
   * `commandTimeoutMs` (default 5000) fails a call that Redis does not answer although the
   * connection stays open (a frozen process); a Redis that is gone fails calls after ~3 quick
   * reconnection attempts (`maxRetriesPerRequest`), a short grace for a blip.
   */
  constructor(url: string, private readonly prefix: string, private readonly log: Logger, opts: { commandTimeoutMs?: number } = {}) {
    this.redis = new Redis(url, {
      enableAutoPipelining: true,
      lazyConnect: true,
      maxRetriesPerRequest: 3,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      connectionName: 'parley-state',
    });
    this.redis.on('error', (err: Error) => this.log.warn({ err: err.message }, 'redis state connection error'));
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.redis.connect();
    await this.loadScripts();
  }

  async close(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await closeRedis(this.redis);
  }

  private async loadScripts(): Promise<void> {
    for (const [name, body] of Object.entries(SCRIPTS) as [ScriptName, string][]) {
      this.shas.set(name, (await this.redis.script('LOAD', body)) as string);
    }
  }

  /** EVALSHA with a reload when Redis restarted and forgot the scripts. */
  private async run(name: ScriptName, args: (string | number)[]): Promise<Reply> {
    const sha = this.shas.get(name);
    if (sha) {
      try {
        return (await this.redis.evalsha(sha, 0, this.prefix, ...args)) as Reply;
      } catch (err) {
        if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
      }
    }
    return (await this.redis.eval(SCRIPTS[name], 0, this.prefix, ...args)) as Reply;
  }

  private k(...parts: string[]): string {
    return `${this.prefix}:${parts.join(':')}`;
  }

  async claimNick(u: UserInfo): Promise<boolean> {
    const r = await this.run('claimNick', [u.nick.toLowerCase(), u.nick, u.user, u.host, u.realname, u.inst, u.server, u.signon, u.account ?? '', u.conn ?? '', u.modes ?? '']);
    return r === 1;
  }

  async changeNick(oldNick: string, newNick: string, inst: string): Promise<{ kind: 'ok'; channels: string[] } | { kind: 'taken' }> {
    const r = (await this.run('changeNick', [oldNick.toLowerCase(), newNick.toLowerCase(), newNick, inst])) as Reply[];
    if (r[0] !== 1) return { kind: 'taken' };
    return { kind: 'ok', channels: r.slice(1) as string[] };
  }

  async releaseUser(nick: string, inst: string): Promise<string[]> {
    return (await this.run('releaseUser', [nick.toLowerCase(), inst])) as string[];
  }

  async getUser(nick: string): Promise<UserInfo | null> {
    return toUser(await this.redis.hgetall(this.k('nick', nick.toLowerCase())));
  }

  async getUsers(nicks: string[]): Promise<(UserInfo | null)[]> {
    return Promise.all(nicks.map((n) => this.getUser(n)));
  }

  async setAway(nick: string, away: string | null): Promise<void> {
    // A plain HSET on a user gone meanwhile would leave a stub hash that blocks the nick for good.
    await this.run('setAway', [nick.toLowerCase(), away ?? '']);
  }

  async setAccount(nick: string, account: string | null): Promise<void> {
    await this.run('setAccount', [nick.toLowerCase(), account ?? '']);
  }

  async updateUser(nick: string, update: UserUpdate): Promise<void> {
    const args: string[] = [];
    if (update.realname !== undefined) args.push('real', update.realname);
    if (update.modes !== undefined) args.push('umodes', update.modes);
    if (args.length) await this.run('updateUser', [nick.toLowerCase(), ...args]);
  }

  async userChannels(nick: string): Promise<string[]> {
    return this.redis.smembers(this.k('uchans', nick.toLowerCase()));
  }

  async join(chanKey: string, chanName: string, nick: string, maxChannels: number, check?: JoinCheck): Promise<JoinResult> {
    const r = (await this.run('join', [
      chanKey, chanName, nick.toLowerCase(), nick, Date.now(), maxChannels,
      check ? '1' : '0', check?.source ?? '', (check?.account ?? '').toLowerCase(), check?.key ?? '',
    ])) as Reply[];
    if (r[0] === 0) return { kind: 'already' };
    if (r[0] === -1) return { kind: 'too-many' };
    if (r[0] === -2) return { kind: r[1] as 'banned' | 'invite-only' | 'bad-key' | 'full' };
    const [, created, prefix, name, topic, topicBy, topicAt, modes, createdAt, key, limit] = r as [number, number, string, string, string, string, string, string, string, string, string];
    return {
      kind: 'joined',
      created: created === 1,
      op: prefix.includes('@'),
      voice: prefix.includes('+'),
      channel: channelOf({ name, topic, topicBy, topicAt, modes, created: createdAt, key, limit }),
    };
  }

  async part(chanKey: string, nick: string): Promise<PartResult> {
    return (await this.run('part', [chanKey, nick.toLowerCase()])) as PartResult;
  }

  async kick(chanKey: string, by: string, target: string): Promise<KickResult> {
    return (await this.run('kick', [chanKey, by.toLowerCase(), target.toLowerCase()])) as KickResult;
  }

  async setTopic(chanKey: string, nick: string, topic: string, setter: string, at: number): Promise<TopicResult> {
    return (await this.run('topic', [chanKey, nick.toLowerCase(), topic, setter, at])) as TopicResult;
  }

  async setModes(chanKey: string, nick: string | null, changes: ModeChange[], setter = '*', at = Date.now()): Promise<ModeResult> {
    const args = changes.map((c) => {
      const arg = c.mode === 'o' || c.mode === 'v' ? (c.nick ?? '').toLowerCase() : c.arg;
      return `${c.add ? '+' : '-'}${c.mode}${arg !== undefined ? `:${arg}` : ''}`;
    });
    const r = (await this.run('modes', [chanKey, nick === null ? '' : nick.toLowerCase(), setter, at, MAX_LIST_ENTRIES, ...args])) as string[];
    if (r[0] === 'no-channel') return { kind: 'no-channel' };
    if (r[0] === 'not-op') return { kind: 'not-op' };
    const applied: ModeChange[] = [];
    const missing: string[] = [];
    const full: string[] = [];
    for (const item of r.slice(1)) {
      if (item.startsWith('?')) {
        missing.push(item.slice(1));
        continue;
      }
      if (item.startsWith('!')) {
        full.push(item.slice(1));
        continue;
      }
      const add = item[0] === '+';
      const mode = item[1] as ModeChange['mode'];
      const arg = item.slice(3);
      if (mode === 'o' || mode === 'v') applied.push({ add, mode, nick: arg });
      else if (item.length > 2) applied.push({ add, mode, arg });
      else applied.push({ add, mode });
    }
    return { kind: 'ok', applied, missing, full };
  }

  async listModes(chanKey: string): Promise<ListEntry[]> {
    const modes: ListMode[] = ['b', 'e', 'I'];
    const lists = await Promise.all(modes.map((m) => this.redis.hvals(this.k('list', chanKey, m))));
    return modes.flatMap((mode, i) => (lists[i] ?? []).map((v) => {
      const [mask = '', setBy = '', setAt = '0'] = v.split(' ');
      return { mode, mask, setBy, setAt: Number(setAt) };
    }));
  }

  async invite(chanKey: string, by: string, target: string): Promise<InviteResult> {
    return (await this.run('invite', [chanKey, by.toLowerCase(), target.toLowerCase()])) as InviteResult;
  }

  async registerChannel(chanKey: string, nick: string, account: string, at: number): Promise<RegisterChannelResult> {
    return (await this.run('registerChannel', [chanKey, nick.toLowerCase(), account.toLowerCase(), at])) as RegisterChannelResult;
  }

  async registration(chanKey: string): Promise<ChannelRegistration | null> {
    const [reg, access] = await Promise.all([this.redis.hgetall(this.k('reg', chanKey)), this.redis.hgetall(this.k('access', chanKey))]);
    if (!reg.founder) return null;
    const levels: Record<string, AccessLevel> = {};
    for (const [acct, level] of Object.entries(access)) if (level === 'op' || level === 'voice') levels[acct] = level;
    return { founder: reg.founder, registeredAt: Number(reg.registered ?? 0), access: levels };
  }

  async setAccess(chanKey: string, account: string, level: AccessLevel | null): Promise<boolean> {
    return (await this.run('setAccess', [chanKey, account.toLowerCase(), level ?? ''])) === 1;
  }

  async dropRegistration(chanKey: string): Promise<boolean> {
    return (await this.run('dropRegistration', [chanKey])) === 1;
  }

  async addServerBan(ban: ServerBan): Promise<boolean> {
    const v = `${ban.setAt} ${ban.setBy} ${ban.mask} ${ban.reason}`;
    return (await this.redis.hsetnx(this.k('klines'), ban.mask.toLowerCase(), v)) === 1;
  }

  async removeServerBan(mask: string): Promise<boolean> {
    return (await this.redis.hdel(this.k('klines'), mask.toLowerCase())) === 1;
  }

  async serverBans(): Promise<ServerBan[]> {
    const all = await this.redis.hvals(this.k('klines'));
    return all.map((v) => {
      const [setAt = '0', setBy = '', mask = '', ...reason] = v.split(' ');
      return { mask, setBy, setAt: Number(setAt), reason: reason.join(' ') };
    });
  }

  async channel(chanKey: string): Promise<ChannelInfo | null> {
    return toChannel(await this.redis.hgetall(this.k('chan', chanKey)));
  }

  async channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]> {
    return Promise.all(chanKeys.map((c) => this.channel(c)));
  }

  async members(chanKey: string): Promise<Member[]> {
    const all = await this.redis.hvals(this.k('members', chanKey));
    return all.map(memberOf);
  }

  async memberCounts(chanKeys: string[]): Promise<number[]> {
    return Promise.all(chanKeys.map((c) => this.redis.hlen(this.k('members', c))));
  }

  async isMember(chanKey: string, nick: string): Promise<boolean> {
    return (await this.redis.hexists(this.k('members', chanKey), nick.toLowerCase())) === 1;
  }

  async listChannels(): Promise<string[]> {
    return this.redis.smembers(this.k('chans'));
  }

  async addInstance(inst: string): Promise<void> {
    await this.redis.sadd(this.k('instances'), inst);
  }

  async knownInstances(): Promise<string[]> {
    return this.redis.smembers(this.k('instances'));
  }

  async claimReap(inst: string): Promise<boolean> {
    return (await this.redis.set(this.k('reap', inst), '1', 'EX', 300, 'NX')) === 'OK';
  }

  async reapInProgress(inst: string): Promise<boolean> {
    return (await this.redis.exists(this.k('reap', inst))) === 1;
  }

  async instanceUsers(inst: string): Promise<string[]> {
    return this.redis.smembers(this.k('inst', inst, 'nicks'));
  }

  async forgetInstance(inst: string): Promise<void> {
    // The reap claim goes too, so that a later process reusing the id can be cleaned up again.
    await this.redis.multi().del(this.k('inst', inst, 'nicks')).srem(this.k('instances'), inst).del(this.k('reap', inst)).exec();
  }
}

/** A user hash as UserInfo (null when there is none). */
function toUser(h: Record<string, string>): UserInfo | null {
  if (!h.nick) return null;
  return userInfo({
    nick: h.nick,
    user: h.user ?? '',
    host: h.host ?? '',
    realname: h.real ?? '',
    inst: h.inst ?? '',
    server: h.server ?? '',
    away: h.away ?? '',
    signon: Number(h.signon ?? 0),
    account: h.acct ?? '',
    conn: h.conn ?? '',
    modes: h.umodes ?? '',
  });
}

/** `@+Nick` → a member with its statuses. */
function memberOf(v: string): Member {
  let i = 0;
  while (v[i] === '@' || v[i] === '+') i++;
  const pre = v.slice(0, i);
  return member(v.slice(i), pre.includes('@'), pre.includes('+'));
}

function toChannel(h: Record<string, string>): ChannelInfo | null {
  return h.name ? channelOf(h) : null;
}

/** A channel hash (or the fields the join script returns) as ChannelInfo. */
function channelOf(h: Record<string, string | undefined>): ChannelInfo {
  return channelInfo({
    name: h.name ?? '',
    topic: h.topic ?? '',
    topicBy: h.topicBy ?? '',
    topicAt: Number(h.topicAt ?? 0),
    modes: h.modes ?? '',
    created: Number(h.created ?? 0),
    key: h.key ?? '',
    limit: Number(h.limit ?? 0),
  });
}
