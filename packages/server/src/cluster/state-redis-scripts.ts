import { LUA_MASKS } from './masks.js';

/*
 * The Lua scripts of RedisClusterState: every operation that reads and writes more than one key
 * runs as one script, so it is atomic cluster-wide (two instances racing for a nick or a channel
 * see exactly one winner). Their twins for the memory state are in state-memory.ts and
 * state-memory-channels.ts. Every script takes the key prefix as ARGV[1].
 *
 * Key layout (P = prefix), of the scripts and of RedisClusterState's plain reads and writes:
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

export const SCRIPTS = {
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

export type ScriptName = keyof typeof SCRIPTS;
