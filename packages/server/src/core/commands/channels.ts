import type { ModeChange } from '../../cluster/state.js';
import type { CommandContext, Handler } from '../context.js';
import { isChannel, lower, validChannel } from '../names.js';
import { ERR, RPL, numericLine } from '../replies.js';
import type { Responder } from '../reply.js';
import { eventLine } from '../rooms.js';
import type { Session } from '../session.js';

export const join: Handler = async (ctx, s, msg, r) => {
  if (msg.params[0] === '0') {
    for (const room of [...s.rooms.values()]) await partOne(ctx, s, room.name, 'Left all channels', r);
    return;
  }
  for (const name of (msg.params[0] ?? '').split(',')) {
    if (!name) continue;
    if (!validChannel(ctx.config.limits, name)) {
      ctx.num(s, r, ERR.NOSUCHCHANNEL, name);
      continue;
    }
    await joinOne(ctx, s, name, r);
  }
};

async function joinOne(ctx: CommandContext, s: Session, name: string, r: Responder): Promise<void> {
  const key = lower(name);
  if (s.rooms.has(key)) return;
  // Subscribed before joining, so that nothing published after the join is missed.
  const room = await ctx.rooms.open(key, name);
  let res;
  try {
    res = await ctx.state.join(key, name, s.nick, ctx.config.limits.channelsPerUser);
  } catch (err) {
    ctx.rooms.leave(room, s);
    throw err;
  }
  if (res.kind !== 'joined') {
    ctx.rooms.leave(room, s);
    if (res.kind === 'too-many') ctx.num(s, r, ERR.TOOMANYCHANNELS, name);
    return;
  }
  if (s.closed) {
    // The disconnect clean-up releases the user from every channel after this command.
    ctx.rooms.leave(room, s);
    return;
  }
  room.name = res.channel.name;
  s.rooms.set(key, room);
  const out = eventLine(`:${s.source} JOIN ${res.channel.name}`);
  // The joiner's own JOIN is part of its response (labeled); the others get it by broadcast.
  r.send(out.lineFor(s.caps));
  ctx.rooms.event(key, out, null);
  room.members.add(s);
  if (res.channel.topic) {
    ctx.num(s, r, RPL.TOPIC, res.channel.name, res.channel.topic);
    ctx.num(s, r, RPL.TOPICWHOTIME, res.channel.name, res.channel.topicBy, String(Math.floor(res.channel.topicAt / 1000)));
  }
  await sendNames(ctx, s, key, res.channel.name, r);
}

async function sendNames(ctx: CommandContext, s: Session, key: string, name: string, r: Responder): Promise<void> {
  const members = await ctx.state.members(key);
  const head = numericLine(ctx.serverName, s.nick, RPL.NAMREPLY, ['=', name, '']);
  let line = head;
  let count = 0;
  for (const m of members) {
    const item = (m.op ? '@' : '') + m.nick;
    if (count > 0 && line.length + item.length + 1 > 400) {
      r.send(line);
      line = head;
      count = 0;
    }
    line += count === 0 ? item : ` ${item}`;
    count++;
  }
  if (count > 0) r.send(line);
  ctx.num(s, r, RPL.ENDOFNAMES, name);
}

export const part: Handler = async (ctx, s, msg, r) => {
  const reason = msg.params[1] ?? '';
  for (const name of (msg.params[0] ?? '').split(',')) {
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
  for (const name of arg.split(',')) {
    if (!name) continue;
    const key = lower(name);
    const ch = await ctx.state.channel(key);
    if (!ch) ctx.num(s, r, RPL.ENDOFNAMES, name);
    else await sendNames(ctx, s, key, ch.name, r);
  }
};

export const list: Handler = async (ctx, s, msg, r) => {
  const keys = msg.params[0] ? msg.params[0].split(',').filter(Boolean).map(lower) : await ctx.state.listChannels();
  const shown = keys.slice(0, 10_000);
  const [infos, counts] = await Promise.all([ctx.state.channels(shown), ctx.state.memberCounts(shown)]);
  ctx.num(s, r, RPL.LISTSTART, 'Channel');
  infos.forEach((ch, i) => {
    if (ch) ctx.num(s, r, RPL.LIST, ch.name, String(counts[i] ?? 0), ch.topic);
  });
  ctx.num(s, r, RPL.LISTEND);
};

export const mode: Handler = async (ctx, s, msg, r) => {
  const target = msg.params[0] ?? '';
  if (!isChannel(target)) {
    if (lower(target) !== s.nickKey) return ctx.num(s, r, ERR.USERSDONTMATCH);
    if (msg.params[1] && /[^+\-i]/.test(msg.params[1])) return ctx.num(s, r, ERR.UMODEUNKNOWNFLAG);
    return ctx.num(s, r, RPL.UMODEIS, '+');
  }
  const key = lower(target);
  const spec = msg.params[1];
  if (!spec) {
    const ch = await ctx.state.channel(key);
    if (!ch) return ctx.num(s, r, ERR.NOSUCHCHANNEL, target);
    r.send(numericLine(ctx.serverName, s.nick, RPL.CHANNELMODEIS, [ch.name, `+${ch.modes}`]).replace(/ :\+/, ' +'));
    ctx.num(s, r, RPL.CREATIONTIME, ch.name, String(Math.floor(ch.created / 1000)));
    return;
  }
  if (spec === 'b' || spec === '+b') return ctx.num(s, r, RPL.ENDOFBANLIST, target);
  const changes: ModeChange[] = [];
  let add = true;
  let argi = 2;
  for (const c of spec) {
    if (c === '+' || c === '-') {
      add = c === '+';
    } else if (c === 'o') {
      const nk = msg.params[argi++];
      if (!nk) return ctx.num(s, r, ERR.NEEDMOREPARAMS, 'MODE');
      changes.push({ add, mode: 'o', nick: nk });
    } else if (c === 't' || c === 'n') {
      changes.push({ add, mode: c });
    } else {
      return ctx.num(s, r, ERR.UNKNOWNMODE, c);
    }
  }
  const res = await ctx.state.setModes(key, s.nick, changes);
  if (res.kind === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, target);
  if (res.kind === 'not-op') return ctx.num(s, r, ERR.CHANOPRIVSNEEDED, target);
  for (const m of res.missing) ctx.num(s, r, ERR.USERNOTINCHANNEL, m, target);
  if (res.applied.length === 0) return;
  let letters = '';
  let sign = '';
  const args: string[] = [];
  for (const c of res.applied) {
    const sg = c.add ? '+' : '-';
    if (sg !== sign) {
      letters += sg;
      sign = sg;
    }
    letters += c.mode;
    if (c.nick) args.push(c.nick);
  }
  const out = eventLine(`:${s.source} MODE ${s.rooms.get(key)?.name ?? target} ${[letters, ...args].join(' ')}`);
  r.send(out.lineFor(s.caps));
  ctx.rooms.event(key, out, s);
};

export const kick: Handler = async (ctx, s, msg, r) => {
  const name = msg.params[0] ?? '';
  const target = msg.params[1] ?? '';
  const key = lower(name);
  const reason = (msg.params[2] || s.nick).slice(0, ctx.config.limits.kickLen);
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
};
