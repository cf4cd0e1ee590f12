import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { closeRedis } from './broker-redis.js';
import { LUA_MASKS } from './masks.js';
import {
  MAX_LIST_ENTRIES, secretModes,
  type AccessLevel, type ChannelInfo, type ChannelRegistration, type ClusterState, type InviteResult,
  type JoinCheck, type JoinResult, type KickResult, type ListEntry, type ListMode, type Member,
  type ModeChange, type ModeResult, type PartResult, type RegisterChannelResult, type ServerBan,
  type TopicResult, type UserInfo, type UserUpdate,
} from './state.js';

/*
 * Key layout (P = prefix):
 *   P:nick:<nick>        hash  nick user host real inst server away signon acct conn umodes
 *   P:uchans:<nick>      set   channel keys the user is in
 *   P:chan:<chan>        hash  name topic topicBy topicAt modes created key limit
 *   P:members:<chan>     hash  nick -> status prefixes ('@' operator, '+' voice, in that order) + Nick
 *   P:list:<chan>:<b|e|I> hash lower-case mask -> 'mask setBy setAt'
 *   P:inv:<chan>         set   nicks invited (used up by their JOIN; gone with the channel)
 *   P:reg:<chan>         hash  founder registered name, and while empty: modes topic topicBy topicAt key limit
 *   P:access:<chan>      hash  account -> 'op' | 'voice'
 *   P:klines             hash  lower-case mask -> 'setAt setBy mask reason'
 *   P:chans              set   channel keys
 *   P:inst:<id>:nicks    set   nicks held by an instance
 *   P:instances          set   instance ids ever registered and not yet reaped
 *   P:reap:<id>          string, SET NX: who cleans up a dead instance
 * The scripts build key names from the prefix, which is fine on one Redis; on Redis Cluster the
 * per-channel and per-user keys would need hash tags (see docs/architecture.md).
 */

/*
 * A channel exists while it has members. A registered one keeps its modes, topic and lists in
 * P:reg / P:list while empty, and gets them back when someone joins again.
 */
const DROP_CHANNEL_IF_EMPTY = `
local function dropIfEmpty(P, c)
  if redis.call('HLEN', P..':members:'..c) == 0 then
    local ck = P..':chan:'..c
    local rk = P..':reg:'..c
    if redis.call('EXISTS', rk) == 1 then
      local i = redis.call('HMGET', ck, 'modes', 'topic', 'topicBy', 'topicAt', 'key', 'limit')
      redis.call('HSET', rk, 'modes', i[1] or 'nt', 'topic', i[2] or '', 'topicBy', i[3] or '', 'topicAt', i[4] or '0', 'key', i[5] or '', 'limit', i[6] or '0')
    else
      redis.call('DEL', P..':list:'..c..':b', P..':list:'..c..':e', P..':list:'..c..':I')
    end
    redis.call('DEL', ck, P..':inv:'..c)
    redis.call('SREM', P..':chans', c)
  end
end
`;

/** Splits a members-hash value into its status prefixes and the display nick. */
const MEMBER_VALUE = `
local function splitMember(v)
  local pre = string.match(v, '^[@+]*')
  return pre, string.sub(v, #pre + 1)
end
`;

const SCRIPTS = {
  claimNick: `
local P = ARGV[1]
local k = P..':nick:'..ARGV[2]
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'nick', ARGV[3], 'user', ARGV[4], 'host', ARGV[5], 'real', ARGV[6], 'inst', ARGV[7], 'server', ARGV[8], 'signon', ARGV[9], 'away', '', 'acct', ARGV[10] or '', 'conn', ARGV[11] or '', 'umodes', ARGV[12] or '')
redis.call('SADD', P..':inst:'..ARGV[7]..':nicks', ARGV[2])
return 1`,
  changeNick: MEMBER_VALUE + `
local P = ARGV[1]
local old, new, disp, inst = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ok = P..':nick:'..old
local nk = P..':nick:'..new
-- only the instance holding the old nick renames it: a nick reaped meanwhile, or claimed again by
-- another instance, is not this caller's to rename
if redis.call('HGET', ok, 'inst') ~= inst then return {-1} end
if old ~= new then
  if redis.call('EXISTS', nk) == 1 then return {0} end
  redis.call('RENAME', ok, nk)
  if redis.call('EXISTS', P..':uchans:'..old) == 1 then redis.call('RENAME', P..':uchans:'..old, P..':uchans:'..new) end
  redis.call('SREM', P..':inst:'..inst..':nicks', old)
  redis.call('SADD', P..':inst:'..inst..':nicks', new)
end
redis.call('HSET', nk, 'nick', disp)
local chans = redis.call('SMEMBERS', P..':uchans:'..new)
for _, c in ipairs(chans) do
  local mk = P..':members:'..c
  local v = redis.call('HGET', mk, old)
  if v then
    local prefix = splitMember(v)
    redis.call('HDEL', mk, old)
    redis.call('HSET', mk, new, prefix..disp)
  end
end
local res = {1}
for _, c in ipairs(chans) do res[#res + 1] = c end
return res`,
  setAway: `
local k = ARGV[1]..':nick:'..ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HSET', k, 'away', ARGV[3])
return 1`,
  setAccount: `
local k = ARGV[1]..':nick:'..ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HSET', k, 'acct', ARGV[3])
return 1`,
  updateUser: `
local k = ARGV[1]..':nick:'..ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
return 1`,
  releaseUser: DROP_CHANNEL_IF_EMPTY + `
local P, nick, inst = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', P..':inst:'..inst..':nicks', nick)
if redis.call('HGET', P..':nick:'..nick, 'inst') ~= inst then return {} end
local chans = redis.call('SMEMBERS', P..':uchans:'..nick)
for _, c in ipairs(chans) do
  redis.call('HDEL', P..':members:'..c, nick)
  dropIfEmpty(P, c)
end
redis.call('DEL', P..':uchans:'..nick, P..':nick:'..nick)
return chans`,
  join: LUA_MASKS + `
local P, c, name, nick, disp, now, maxc = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local check, source, acct, key = ARGV[8] == '1', ARGV[9], ARGV[10], ARGV[11]
local ck = P..':chan:'..c
local mk = P..':members:'..c
local rk = P..':reg:'..c
if redis.call('HEXISTS', mk, nick) == 1 then return {0} end
local uk = P..':uchans:'..nick
if redis.call('SCARD', uk) >= maxc then return {-1} end
local exists = redis.call('EXISTS', ck) == 1
local reg = redis.call('EXISTS', rk) == 1
local level = ''
if reg and acct ~= '' then
  if redis.call('HGET', rk, 'founder') == acct then level = 'op' else level = redis.call('HGET', P..':access:'..c, acct) or '' end
end
local src = rk
if exists then src = ck end
local modes, ckey, climit = '', '', 0
if exists or reg then
  local i = redis.call('HMGET', src, 'modes', 'key', 'limit')
  modes, ckey, climit = i[1] or 'nt', i[2] or '', tonumber(i[3] or '0') or 0
end
-- Ergo's order and rules: +l, +k, then +i and +b, which an INVITE or a matching +I lets past.
if check and level ~= 'op' then
  local function listed(m)
    for _, v in ipairs(redis.call('HVALS', P..':list:'..c..':'..m)) do
      if maskmatch(string.match(v, '^%S+'), source, acct) then return true end
    end
    return false
  end
  if climit > 0 and redis.call('HLEN', mk) >= climit then return {-2, 'full'} end
  if ckey ~= '' and key ~= ckey then return {-2, 'bad-key'} end
  local invited = redis.call('SISMEMBER', P..':inv:'..c, nick) == 1 or listed('I')
  if string.find(modes, 'i', 1, true) and not invited then return {-2, 'invite-only'} end
  if not invited and listed('b') and not listed('e') then return {-2, 'banned'} end
end
redis.call('SREM', P..':inv:'..c, nick)
local created, prefix = 0, ''
if not exists then
  created = 1
  if reg then
    local i = redis.call('HMGET', rk, 'name', 'modes', 'topic', 'topicBy', 'topicAt', 'key', 'limit')
    redis.call('HSET', ck, 'name', i[1] or name, 'modes', i[2] or 'nt', 'created', now, 'topic', i[3] or '', 'topicBy', i[4] or '', 'topicAt', i[5] or '0', 'key', i[6] or '', 'limit', i[7] or '0')
  else
    prefix = '@'
    redis.call('HSET', ck, 'name', name, 'modes', 'nt', 'created', now, 'topic', '', 'topicBy', '', 'topicAt', '0', 'key', '', 'limit', '0')
  end
  redis.call('SADD', P..':chans', c)
end
if level == 'op' then prefix = '@' elseif level == 'voice' then prefix = '+' end
redis.call('HSET', mk, nick, prefix..disp)
redis.call('SADD', uk, c)
local i = redis.call('HMGET', ck, 'name', 'topic', 'topicBy', 'topicAt', 'modes', 'created', 'key', 'limit')
return {1, created, prefix, i[1], i[2], i[3], i[4], i[5], i[6], i[7] or '', i[8] or '0'}`,
  part: DROP_CHANNEL_IF_EMPTY + `
local P, c, nick = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HDEL', P..':members:'..c, nick) == 0 then
  if redis.call('EXISTS', P..':chan:'..c) == 0 then return 'no-channel' end
  return 'not-on-channel'
end
redis.call('SREM', P..':uchans:'..nick, c)
dropIfEmpty(P, c)
return 'ok'`,
  kick: DROP_CHANNEL_IF_EMPTY + `
local P, c, by, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local mk = P..':members:'..c
if redis.call('EXISTS', P..':chan:'..c) == 0 then return 'no-channel' end
local v = redis.call('HGET', mk, by)
if not v then return 'not-on-channel' end
if string.sub(v, 1, 1) ~= '@' then return 'not-op' end
if redis.call('HDEL', mk, target) == 0 then return 'target-not-on-channel' end
redis.call('SREM', P..':uchans:'..target, c)
dropIfEmpty(P, c)
return 'ok'`,
  topic: `
local P, c, nick = ARGV[1], ARGV[2], ARGV[3]
local ck = P..':chan:'..c
if redis.call('EXISTS', ck) == 0 then return 'no-channel' end
local v = redis.call('HGET', P..':members:'..c, nick)
if not v then return 'not-on-channel' end
local modes = redis.call('HGET', ck, 'modes') or ''
if string.find(modes, 't', 1, true) and string.sub(v, 1, 1) ~= '@' then return 'not-op' end
redis.call('HSET', ck, 'topic', ARGV[4], 'topicBy', ARGV[5], 'topicAt', ARGV[6])
return 'ok'`,
  modes: MEMBER_VALUE + `
local P, c, nick, setter, at, maxl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local ck = P..':chan:'..c
local mk = P..':members:'..c
if redis.call('EXISTS', ck) == 0 then return {'no-channel'} end
if nick ~= '' then
  local v = redis.call('HGET', mk, nick)
  if not v or string.sub(v, 1, 1) ~= '@' then return {'not-op'} end
end
local modes = redis.call('HGET', ck, 'modes') or ''
local function setflag(m, on)
  local has = string.find(modes, m, 1, true)
  if on and not has then modes = modes..m elseif not on and has then modes = (string.gsub(modes, m, '')) end
end
local out = {'ok'}
for i = 7, #ARGV do
  local sign, m, arg = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2, 2), string.sub(ARGV[i], 4)
  local add = sign == '+'
  if m == 'o' or m == 'v' then
    local tv = redis.call('HGET', mk, arg)
    if not tv then
      out[#out + 1] = '?'..arg
    else
      local pre, disp = splitMember(tv)
      local op, voice = string.find(pre, '@', 1, true) ~= nil, string.find(pre, '+', 1, true) ~= nil
      local was = op
      if m == 'v' then was = voice end
      if was ~= add then
        if m == 'o' then op = add else voice = add end
        local np = ''
        if op then np = '@' end
        if voice then np = np..'+' end
        redis.call('HSET', mk, arg, np..disp)
        out[#out + 1] = sign..m..':'..disp
      end
    end
  elseif m == 'b' or m == 'e' or m == 'I' then
    local lk = P..':list:'..c..':'..m
    local field = string.lower(arg)
    if add then
      if redis.call('HEXISTS', lk, field) == 0 then
        if redis.call('HLEN', lk) >= maxl then
          out[#out + 1] = '!'..arg
        else
          redis.call('HSET', lk, field, arg..' '..setter..' '..at)
          out[#out + 1] = '+'..m..':'..arg
        end
      end
    else
      local v = redis.call('HGET', lk, field)
      if v then
        redis.call('HDEL', lk, field)
        out[#out + 1] = '-'..m..':'..string.match(v, '^%S+')
      end
    end
  elseif m == 'k' then
    if add then
      redis.call('HSET', ck, 'key', arg); setflag('k', true); out[#out + 1] = '+k:'..arg
    elseif (redis.call('HGET', ck, 'key') or '') ~= '' then
      redis.call('HSET', ck, 'key', ''); setflag('k', false); out[#out + 1] = '-k:*'
    end
  elseif m == 'l' then
    if add then
      if redis.call('HGET', ck, 'limit') ~= arg then
        redis.call('HSET', ck, 'limit', arg); setflag('l', true); out[#out + 1] = '+l:'..arg
      end
    elseif string.find(modes, 'l', 1, true) then
      redis.call('HSET', ck, 'limit', '0'); setflag('l', false); out[#out + 1] = '-l'
    end
  else
    local has = string.find(modes, m, 1, true) ~= nil
    if has ~= add then setflag(m, add); out[#out + 1] = sign..m end
  end
end
redis.call('HSET', ck, 'modes', modes)
return out`,
  invite: `
local P, c, by, target = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ck = P..':chan:'..c
local mk = P..':members:'..c
if redis.call('EXISTS', ck) == 0 then return 'no-channel' end
local v = redis.call('HGET', mk, by)
if not v then return 'not-on-channel' end
if redis.call('HEXISTS', mk, target) == 1 then return 'already-on' end
local modes = redis.call('HGET', ck, 'modes') or ''
if string.find(modes, 'i', 1, true) and string.sub(v, 1, 1) ~= '@' then return 'not-op' end
redis.call('SADD', P..':inv:'..c, target)
return 'ok'`,
  registerChannel: `
local P, c, nick, acct, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ck = P..':chan:'..c
if redis.call('EXISTS', ck) == 0 then return 'no-channel' end
local v = redis.call('HGET', P..':members:'..c, nick)
if not v or string.sub(v, 1, 1) ~= '@' then return 'not-op' end
local rk = P..':reg:'..c
if redis.call('EXISTS', rk) == 1 then return 'exists' end
redis.call('HSET', rk, 'founder', acct, 'registered', at, 'name', redis.call('HGET', ck, 'name'))
return 'ok'`,
  setAccess: `
local P, c, acct, level = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', P..':reg:'..c) == 0 then return 0 end
if level == '' then redis.call('HDEL', P..':access:'..c, acct) else redis.call('HSET', P..':access:'..c, acct, level) end
return 1`,
  dropRegistration: `
local P, c = ARGV[1], ARGV[2]
if redis.call('DEL', P..':reg:'..c) == 0 then return 0 end
redis.call('DEL', P..':access:'..c)
if redis.call('EXISTS', P..':chan:'..c) == 0 then
  redis.call('DEL', P..':list:'..c..':b', P..':list:'..c..':e', P..':list:'..c..':I')
end
return 1`,
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Reply = string | number | null | Reply[];

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
      channel: channelInfo({ name, topic, topicBy, topicAt, modes, created: createdAt, key, limit }) as ChannelInfo,
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

function toUser(h: Record<string, string>): UserInfo | null {
  if (!h.nick) return null;
  return {
    nick: h.nick,
    user: h.user ?? '',
    host: h.host ?? '',
    realname: h.real ?? '',
    inst: h.inst ?? '',
    server: h.server ?? '',
    away: h.away ? h.away : null,
    signon: Number(h.signon ?? 0),
    // Present only when set, so a user reads back exactly as claimed.
    ...(h.acct ? { account: h.acct } : {}),
    ...(h.conn ? { conn: h.conn } : {}),
    ...(h.umodes ? { modes: h.umodes } : {}),
  };
}

/** `@+Nick` → a member with its statuses. */
function memberOf(v: string): Member {
  let i = 0;
  while (v[i] === '@' || v[i] === '+') i++;
  const pre = v.slice(0, i);
  const m: Member = { nick: v.slice(i), op: pre.includes('@') };
  if (pre.includes('+')) m.voice = true;
  return m;
}

function toChannel(h: Record<string, string>): ChannelInfo | null {
  return h.name ? channelInfo(h) : null;
}

/** A channel hash as ChannelInfo: key, limit and secret only when set (as the memory twin). */
function channelInfo(h: Record<string, string | undefined>): ChannelInfo {
  const modes = h.modes ?? '';
  const ch: ChannelInfo = {
    name: h.name ?? '',
    topic: h.topic ?? '',
    topicBy: h.topicBy ?? '',
    topicAt: Number(h.topicAt ?? 0),
    modes,
    created: Number(h.created ?? 0),
  };
  if (h.key) ch.key = h.key;
  const limit = Number(h.limit ?? 0);
  if (limit > 0) ch.limit = limit;
  if (secretModes(modes)) ch.secret = true;
  return ch;
}
