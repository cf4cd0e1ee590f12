import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { closeRedis } from './broker-redis.js';
import type {
  ChannelInfo, ClusterState, JoinResult, KickResult, Member, ModeChange, ModeResult, PartResult,
  TopicResult, UserInfo,
} from './state.js';

/*
 * Key layout (P = prefix):
 *   P:nick:<nick>        hash  nick user host real inst server away signon acct conn
 *   P:uchans:<nick>      set   channel keys the user is in
 *   P:chan:<chan>        hash  name topic topicBy topicAt modes created
 *   P:members:<chan>     hash  nick -> '@Nick' (operator) or 'Nick'
 *   P:chans              set   channel keys
 *   P:inst:<id>:nicks    set   nicks held by an instance
 *   P:instances          set   instance ids ever registered and not yet reaped
 *   P:reap:<id>          string, SET NX: who cleans up a dead instance
 * The scripts build key names from the prefix, which is fine on one Redis; on Redis Cluster the
 * per-channel and per-user keys would need hash tags (see docs/architecture.md).
 */

const DROP_CHANNEL_IF_EMPTY = `
local function dropIfEmpty(P, c)
  if redis.call('HLEN', P..':members:'..c) == 0 then
    redis.call('DEL', P..':chan:'..c)
    redis.call('SREM', P..':chans', c)
  end
end
`;

const SCRIPTS = {
  claimNick: `
local P = ARGV[1]
local k = P..':nick:'..ARGV[2]
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'nick', ARGV[3], 'user', ARGV[4], 'host', ARGV[5], 'real', ARGV[6], 'inst', ARGV[7], 'server', ARGV[8], 'signon', ARGV[9], 'away', '', 'acct', ARGV[10] or '', 'conn', ARGV[11] or '')
redis.call('SADD', P..':inst:'..ARGV[7]..':nicks', ARGV[2])
return 1`,
  changeNick: `
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
    local prefix = ''
    if string.sub(v, 1, 1) == '@' then prefix = '@' end
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
  join: `
local P, c, name, nick, disp, now, maxc = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local ck = P..':chan:'..c
local mk = P..':members:'..c
if redis.call('HEXISTS', mk, nick) == 1 then return {0} end
local uk = P..':uchans:'..nick
if redis.call('SCARD', uk) >= maxc then return {-1} end
local created, prefix = 0, ''
if redis.call('EXISTS', ck) == 0 then
  created, prefix = 1, '@'
  redis.call('HSET', ck, 'name', name, 'modes', 'nt', 'created', now, 'topic', '', 'topicBy', '', 'topicAt', '0')
  redis.call('SADD', P..':chans', c)
end
redis.call('HSET', mk, nick, prefix..disp)
redis.call('SADD', uk, c)
local i = redis.call('HMGET', ck, 'name', 'topic', 'topicBy', 'topicAt', 'modes', 'created')
return {1, created, prefix, i[1], i[2], i[3], i[4], i[5], i[6]}`,
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
  modes: `
local P, c, nick = ARGV[1], ARGV[2], ARGV[3]
local ck = P..':chan:'..c
local mk = P..':members:'..c
if redis.call('EXISTS', ck) == 0 then return {'no-channel'} end
local v = redis.call('HGET', mk, nick)
if not v or string.sub(v, 1, 1) ~= '@' then return {'not-op'} end
local modes = redis.call('HGET', ck, 'modes') or ''
local out = {'ok'}
for i = 4, #ARGV do
  local sign, m = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2, 2)
  if m == 'o' then
    local t = string.sub(ARGV[i], 4)
    local tv = redis.call('HGET', mk, t)
    if not tv then
      out[#out + 1] = '?'..t
    else
      local isop = string.sub(tv, 1, 1) == '@'
      local disp = tv
      if isop then disp = string.sub(tv, 2) end
      if sign == '+' and not isop then
        redis.call('HSET', mk, t, '@'..disp); out[#out + 1] = '+o:'..disp
      elseif sign == '-' and isop then
        redis.call('HSET', mk, t, disp); out[#out + 1] = '-o:'..disp
      end
    end
  else
    local has = string.find(modes, m, 1, true)
    if sign == '+' and not has then
      modes = modes..m; out[#out + 1] = '+'..m
    elseif sign == '-' and has then
      modes = (string.gsub(modes, m, '')); out[#out + 1] = '-'..m
    end
  end
end
redis.call('HSET', ck, 'modes', modes)
return out`,
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
    const r = await this.run('claimNick', [u.nick.toLowerCase(), u.nick, u.user, u.host, u.realname, u.inst, u.server, u.signon, u.account ?? '', u.conn ?? '']);
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

  async userChannels(nick: string): Promise<string[]> {
    return this.redis.smembers(this.k('uchans', nick.toLowerCase()));
  }

  async join(chanKey: string, chanName: string, nick: string, maxChannels: number): Promise<JoinResult> {
    const r = (await this.run('join', [chanKey, chanName, nick.toLowerCase(), nick, Date.now(), maxChannels])) as Reply[];
    if (r[0] === 0) return { kind: 'already' };
    if (r[0] === -1) return { kind: 'too-many' };
    const [, created, prefix, name, topic, topicBy, topicAt, modes, createdAt] = r as [number, number, string, string, string, string, string, string, string];
    return {
      kind: 'joined',
      created: created === 1,
      op: prefix === '@',
      channel: { name, topic, topicBy, topicAt: Number(topicAt), modes, created: Number(createdAt) },
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

  async setModes(chanKey: string, nick: string, changes: ModeChange[]): Promise<ModeResult> {
    const args = changes.map((c) => `${c.add ? '+' : '-'}${c.mode}${c.mode === 'o' ? `:${(c.nick ?? '').toLowerCase()}` : ''}`);
    const r = (await this.run('modes', [chanKey, nick.toLowerCase(), ...args])) as string[];
    if (r[0] === 'no-channel') return { kind: 'no-channel' };
    if (r[0] === 'not-op') return { kind: 'not-op' };
    const applied: ModeChange[] = [];
    const missing: string[] = [];
    for (const item of r.slice(1)) {
      if (item.startsWith('?')) missing.push(item.slice(1));
      else if (item[1] === 'o') applied.push({ add: item[0] === '+', mode: 'o', nick: item.slice(3) });
      else applied.push({ add: item[0] === '+', mode: item[1] as 't' | 'n' });
    }
    return { kind: 'ok', applied, missing };
  }

  async channel(chanKey: string): Promise<ChannelInfo | null> {
    return toChannel(await this.redis.hgetall(this.k('chan', chanKey)));
  }

  async channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]> {
    return Promise.all(chanKeys.map((c) => this.channel(c)));
  }

  async members(chanKey: string): Promise<Member[]> {
    const all = await this.redis.hvals(this.k('members', chanKey));
    return all.map((v) => (v.startsWith('@') ? { nick: v.slice(1), op: true } : { nick: v, op: false }));
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
  };
}

function toChannel(h: Record<string, string>): ChannelInfo | null {
  if (!h.name) return null;
  return {
    name: h.name,
    topic: h.topic ?? '',
    topicBy: h.topicBy ?? '',
    topicAt: Number(h.topicAt ?? 0),
    modes: h.modes ?? '',
    created: Number(h.created ?? 0),
  };
}
