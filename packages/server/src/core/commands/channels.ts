import { globMatch } from '../../cluster/masks.js';
import type { ChannelInfo, JoinResult, Member } from '../../cluster/state.js';
import { Cap } from '../caps.js';
import type { CommandContext, Handler } from '../context.js';
import { lower, validChannel } from '../names.js';
import { ERR, RPL, numericLine, type NumericSpec } from '../replies.js';
import type { Responder } from '../reply.js';
import { eventLine } from '../rooms.js';
import { Outgoing } from '../outgoing.js';
import type { Session } from '../session.js';

/** Channels one KICK, NAMES or PART line may name (ISUPPORT TARGMAX). */
export const MAX_CHANNEL_TARGETS = 10;

const JOIN_REFUSAL: Record<Exclude<JoinResult['kind'], 'joined' | 'already'>, NumericSpec> = {
  'too-many': ERR.TOOMANYCHANNELS,
  banned: ERR.BANNEDFROMCHAN,
  'invite-only': ERR.INVITEONLYCHAN,
  'bad-key': ERR.BADCHANNELKEY,
  full: ERR.CHANNELISFULL,
};

export const join: Handler = async (ctx, s, msg, r) => {
  if (msg.params[0] === '0') {
    for (const room of [...s.rooms.values()]) await partOne(ctx, s, room.name, 'Left all channels', r);
    return;
  }
  const keys = (msg.params[1] ?? '').split(',');
  for (const [i, name] of (msg.params[0] ?? '').split(',').entries()) {
    if (!name) continue;
    if (!validChannel(ctx.config.limits, name)) {
      ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
      continue;
    }
    await joinOne(ctx, s, name, keys[i] || null, r);
  }
};

async function joinOne(ctx: CommandContext, s: Session, name: string, key: string | null, r: Responder): Promise<void> {
  const ckey = lower(name);
  if (s.rooms.has(ckey)) return;
  // Subscribed before joining, so that nothing published after the join is missed.
  const room = await ctx.rooms.open(ckey, name);
  let res;
  try {
    res = await ctx.state.join(ckey, name, s.nick, ctx.config.limits.channelsPerUser, { source: s.source, account: s.account, key });
    const rules = ctx.rooms.rules(ckey);
    if (res.kind === 'joined' && rules && !rules.loaded) {
      // Read after the join (so after the room's topic was subscribed): a MODE event that arrives
      // before this read finishes is in it already, and one applied again changes nothing.
      const [ch, lists] = await Promise.all([ctx.state.channel(ckey), ctx.state.listModes(ckey)]);
      rules.load(ch ?? res.channel, lists);
    }
  } catch (err) {
    ctx.rooms.leave(room, s);
    throw err;
  }
  if (res.kind !== 'joined') {
    ctx.rooms.leave(room, s);
    if (res.kind !== 'already') ctx.num(s, r, JOIN_REFUSAL[res.kind], name);
    return;
  }
  if (s.closed) {
    // The disconnect clean-up releases the user from every channel after this command.
    ctx.rooms.leave(room, s);
    return;
  }
  room.name = res.channel.name;
  s.rooms.set(ckey, room);
  const out = eventLine(`:${s.source} JOIN ${res.channel.name}`);
  // extended-join: the same JOIN with the account ('*' for none) and the real name.
  out.ext = new Outgoing(`:${s.source} JOIN ${res.channel.name} ${s.account ?? '*'} :${s.realname}`, out.timeMs, out.time, out.msgid, '');
  // The joiner's own JOIN is part of its response (labeled); the others get it by broadcast.
  r.send(out.lineFor(s.caps));
  ctx.rooms.event(ckey, out, null);
  room.members.add(s);
  ctx.rooms.rules(ckey)?.status.set(s, { op: res.op, voice: res.voice });
  if (!res.created && (res.op || res.voice)) {
    // Status from the channel's access list: the others see it given (by the services).
    const modeOut = eventLine(`:${ctx.serverName} MODE ${res.channel.name} +${res.op ? 'o' : ''}${res.voice ? 'v' : ''}${res.op ? ` ${s.nick}` : ''}${res.voice ? ` ${s.nick}` : ''}`);
    r.send(modeOut.lineFor(s.caps));
    ctx.rooms.event(ckey, modeOut, s);
  }
  if (res.channel.topic) {
    ctx.num(s, r, RPL.TOPIC, res.channel.name, res.channel.topic);
    ctx.num(s, r, RPL.TOPICWHOTIME, res.channel.name, res.channel.topicBy, String(Math.floor(res.channel.topicAt / 1000)));
  }
  await sendNames(ctx, s, ckey, res.channel, r);
}

/** `@`, `+` or both (multi-prefix): what NAMES and WHO show before a member's nick. */
export function memberPrefix(m: { op: boolean; voice?: boolean | undefined }, caps: number): string {
  if ((caps & Cap.MultiPrefix) !== 0) return (m.op ? '@' : '') + (m.voice ? '+' : '');
  return m.op ? '@' : m.voice ? '+' : '';
}

/** RFC 2812 channel symbol of 353: `@` secret, `*` private, `=` public. */
function channelSymbol(ch: ChannelInfo): string {
  return ch.modes.includes('s') ? '@' : ch.modes.includes('p') ? '*' : '=';
}

async function sendNames(ctx: CommandContext, s: Session, key: string, ch: ChannelInfo, r: Responder): Promise<void> {
  const members = await ctx.state.members(key);
  const withHosts = s.has(Cap.UserhostInNames);
  const users = withHosts ? await ctx.state.getUsers(members.map((m) => m.nick)) : [];
  const head = numericLine(ctx.serverName, s.nick, RPL.NAMREPLY, [channelSymbol(ch), ch.name, '']);
  let line = head;
  let count = 0;
  members.forEach((m: Member, i) => {
    const u = users[i];
    const item = memberPrefix(m, s.caps) + (u ? `${u.nick}!${u.user}@${u.host}` : m.nick);
    if (count > 0 && line.length + item.length + 1 > 400) {
      r.send(line);
      line = head;
      count = 0;
    }
    line += count === 0 ? item : ` ${item}`;
    count++;
  });
  if (count > 0) r.send(line);
  ctx.num(s, r, RPL.ENDOFNAMES, ch.name);
}

export const part: Handler = async (ctx, s, msg, r) => {
  const reason = msg.params[1] ?? '';
  for (const name of (msg.params[0] ?? '').split(',').slice(0, MAX_CHANNEL_TARGETS)) {
    if (name) await partOne(ctx, s, name, reason, r);
  }
};

async function partOne(ctx: CommandContext, s: Session, name: string, reason: string, r: Responder): Promise<void> {
  const key = lower(name);
  const res = await ctx.state.part(key, s.nick);
  if (res === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
  if (res === 'not-on-channel') return ctx.num(s, r, ERR.NOTONCHANNEL, name);
  const room = s.rooms.get(key);
  const out = eventLine(`:${s.source} PART ${room?.name ?? name}${reason ? ` :${reason}` : ''}`);
  r.send(out.lineFor(s.caps));
  if (room) ctx.rooms.leave(room, s);
  ctx.rooms.event(key, out, null, s.nickKey);
}

export const topic: Handler = async (ctx, s, msg, r) => {
  const name = msg.params[0] ?? '';
  const key = lower(name);
  if (msg.params.length < 2) {
    const ch = await ctx.state.channel(key);
    if (!ch) return ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
    // A secret channel's topic is for its members (RFC 2812 3.2.4: 442).
    if (ch.secret && !s.rooms.has(key)) return ctx.num(s, r, ERR.NOTONCHANNEL, name);
    if (!ch.topic) return ctx.num(s, r, RPL.NOTOPIC, ch.name);
    ctx.num(s, r, RPL.TOPIC, ch.name, ch.topic);
    ctx.num(s, r, RPL.TOPICWHOTIME, ch.name, ch.topicBy, String(Math.floor(ch.topicAt / 1000)));
    return;
  }
  const text = (msg.params[1] ?? '').slice(0, ctx.config.limits.topicLen);
  const res = await ctx.state.setTopic(key, s.nick, text, s.source, Date.now());
  if (res === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
  if (res === 'not-on-channel') return ctx.num(s, r, ERR.NOTONCHANNEL, name);
  if (res === 'not-op') return ctx.num(s, r, ERR.CHANOPRIVSNEEDED, name);
  const out = eventLine(`:${s.source} TOPIC ${s.rooms.get(key)?.name ?? name} :${text}`);
  r.send(out.lineFor(s.caps));
  ctx.rooms.event(key, out, s);
};

export const names: Handler = async (ctx, s, msg, r) => {
  const arg = msg.params[0];
  if (!arg) return ctx.num(s, r, RPL.ENDOFNAMES, '*');
  for (const name of arg.split(',').slice(0, MAX_CHANNEL_TARGETS)) {
    if (!name) continue;
    const key = lower(name);
    const ch = await ctx.state.channel(key);
    // A secret or private channel is not shown to non-members: as if it did not exist.
    if (!ch || (ch.secret && !s.rooms.has(key))) ctx.num(s, r, RPL.ENDOFNAMES, name);
    else await sendNames(ctx, s, key, ch, r);
  }
};

/**
 * ELIST conditions of a LIST parameter: `>n`/`<n` members (U), a channel mask `#a*` (M) or its
 * negation `!#a*` (N), and plain channel names. Null for a parameter that is none of them.
 */
interface ListFilter {
  names: string[];
  masks: string[];
  notMasks: string[];
  min: number;
  max: number;
}

function listFilter(arg: string | undefined): ListFilter {
  const f: ListFilter = { names: [], masks: [], notMasks: [], min: -1, max: Infinity };
  for (const part of (arg ?? '').split(',')) {
    if (!part) continue;
    if (/^>\d+$/.test(part)) f.min = Number(part.slice(1));
    else if (/^<\d+$/.test(part)) f.max = Number(part.slice(1));
    else if (part.startsWith('!')) f.notMasks.push(part.slice(1));
    else if (/[*?]/.test(part)) f.masks.push(part);
    else f.names.push(lower(part));
  }
  return f;
}

export const list: Handler = async (ctx, s, msg, r) => {
  const f = listFilter(msg.params[0]);
  let keys = f.names.length ? f.names : await ctx.state.listChannels();
  if (f.masks.length) keys = keys.filter((k) => f.masks.some((m) => globMatch(m, k)));
  if (f.notMasks.length) keys = keys.filter((k) => !f.notMasks.some((m) => globMatch(m, k)));
  const shown = keys.slice(0, 10_000);
  const [infos, counts] = await Promise.all([ctx.state.channels(shown), ctx.state.memberCounts(shown)]);
  ctx.num(s, r, RPL.LISTSTART, 'Channel');
  infos.forEach((ch, i) => {
    const n = counts[i] ?? 0;
    if (!ch || n <= f.min || n >= f.max) return;
    // +s and +p channels are listed only to their members.
    if (ch.secret && !s.rooms.has(shown[i] ?? '')) return;
    ctx.num(s, r, RPL.LIST, ch.name, String(n), ch.topic);
  });
  ctx.num(s, r, RPL.LISTEND);
};

/** `KICK #chan a,b :reason`, or `KICK #a,#b x,y` (pairs), as RFC 2812 3.2.8 allows. */
export const kick: Handler = async (ctx, s, msg, r) => {
  const chans = (msg.params[0] ?? '').split(',').filter(Boolean);
  const targets = (msg.params[1] ?? '').split(',').filter(Boolean).slice(0, MAX_CHANNEL_TARGETS);
  const reason = (msg.params[2] || s.nick).slice(0, ctx.config.limits.kickLen);
  const pairs: [string, string][] = chans.length === 1 ? targets.map((t) => [chans[0] as string, t]) : chans.slice(0, targets.length).map((c, i) => [c, targets[i] as string]);
  for (const [name, target] of pairs) await kickOne(ctx, s, name, target, reason, r);
};

async function kickOne(ctx: CommandContext, s: Session, name: string, target: string, reason: string, r: Responder): Promise<void> {
  const key = lower(name);
  const res = await ctx.state.kick(key, s.nick, target);
  if (res === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
  if (res === 'not-on-channel') return ctx.num(s, r, ERR.NOTONCHANNEL, name);
  if (res === 'not-op') return ctx.num(s, r, ERR.CHANOPRIVSNEEDED, name);
  if (res === 'target-not-on-channel') return ctx.num(s, r, ERR.USERNOTINCHANNEL, target, name);
  const out = eventLine(`:${s.source} KICK ${s.rooms.get(key)?.name ?? name} ${target} :${reason}`);
  r.send(out.lineFor(s.caps));
  const targetKey = lower(target);
  ctx.rooms.event(key, out, s, targetKey);
  // A kicked local member leaves the local room too (remote ones do when the event arrives).
  const victim = ctx.users.get(targetKey);
  const room = ctx.rooms.get(key);
  if (victim && room?.members.has(victim)) ctx.rooms.leave(room, victim);
}

/**
 * `INVITE <nick> <chan>`: 341 to the inviter, `INVITE` to the invited user wherever it is, and
 * (invite-notify) to the channel's members that asked for it. Without parameters: nothing to list
 * (invites are not kept per user), so just the end (RPL 347 is for `+I`; modern servers answer
 * 337 — not sent here).
 */
export const invite: Handler = async (ctx, s, msg, r) => {
  const nick = msg.params[0] ?? '';
  const name = msg.params[1] ?? '';
  const u = await ctx.state.getUser(nick);
  if (!u) return ctx.num(s, r, ERR.NOSUCHNICK, nick);
  const key = lower(name);
  const res = await ctx.state.invite(key, s.nick, u.nick);
  if (res === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
  if (res === 'not-on-channel') return ctx.num(s, r, ERR.NOTONCHANNEL, name);
  if (res === 'not-op') return ctx.num(s, r, ERR.CHANOPRIVSNEEDED, name);
  if (res === 'already-on') return ctx.num(s, r, ERR.USERONCHANNEL, u.nick, name);
  const chan = s.rooms.get(key)?.name ?? name;
  ctx.num(s, r, RPL.INVITING, u.nick, chan);
  const out = eventLine(`:${s.source} INVITE ${u.nick} ${chan}`);
  ctx.users.toNick(lower(u.nick), out);
  ctx.users.toRoomMembers([key], out, s, Cap.InviteNotify);
};
