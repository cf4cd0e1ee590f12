import type { CommandContext, Handler } from '../context.js';
import { isChannel, lower } from '../names.js';
import { ERR, RPL } from '../replies.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

export const who: Handler = async (ctx, s, msg, r) => {
  const mask = msg.params[0] ?? '*';
  if (isChannel(mask)) {
    const key = lower(mask);
    const ch = await ctx.state.channel(key);
    if (ch) {
      const members = await ctx.state.members(key);
      const users = await ctx.state.getUsers(members.map((m) => m.nick));
      users.forEach((u, i) => {
        if (u) whoLine(ctx, s, r, ch.name, u.nick, u.user, u.host, u.server, u.away !== null, members[i]?.op ?? false, u.realname);
      });
    }
  } else if (mask !== '*') {
    const u = await ctx.state.getUser(mask);
    if (u) whoLine(ctx, s, r, '*', u.nick, u.user, u.host, u.server, u.away !== null, false, u.realname);
  }
  ctx.num(s, r, RPL.ENDOFWHO, mask);
};

function whoLine(ctx: CommandContext, s: Session, r: Responder, chan: string, nk: string, user: string, host: string, server: string, away: boolean, op: boolean, real: string): void {
  ctx.num(s, r, RPL.WHOREPLY, chan, user, host, server, nk, `${away ? 'G' : 'H'}${op ? '@' : ''}`, `0 ${real}`);
}

export const whois: Handler = async (ctx, s, msg, r) => {
  if (!msg.params[0]) return ctx.num(s, r, ERR.NONICKNAMEGIVEN);
  const target = msg.params[msg.params.length - 1] ?? '';
  const u = await ctx.state.getUser(target);
  if (!u) {
    ctx.num(s, r, ERR.NOSUCHNICK, target);
    return ctx.num(s, r, RPL.ENDOFWHOIS, target);
  }
  ctx.num(s, r, RPL.WHOISUSER, u.nick, u.user, u.host, '*', u.realname);
  const chans = await ctx.state.userChannels(u.nick);
  if (chans.length) {
    const infos = await ctx.state.channels(chans);
    const members = await Promise.all(chans.map((c) => ctx.state.members(c)));
    const parts: string[] = [];
    infos.forEach((ch, i) => {
      if (!ch) return;
      const op = members[i]?.find((m) => lower(m.nick) === lower(u.nick))?.op ?? false;
      parts.push(`${op ? '@' : ''}${ch.name}`);
    });
    if (parts.length) ctx.num(s, r, RPL.WHOISCHANNELS, u.nick, parts.join(' '));
  }
  ctx.num(s, r, RPL.WHOISSERVER, u.nick, u.server);
  if (u.account) ctx.num(s, r, RPL.WHOISACCOUNT, u.nick, u.account);
  if (u.away !== null) ctx.num(s, r, RPL.AWAY, u.nick, u.away);
  ctx.num(s, r, RPL.WHOISIDLE, u.nick, '0', String(Math.floor(u.signon / 1000)));
  ctx.num(s, r, RPL.ENDOFWHOIS, u.nick);
};

export const away: Handler = async (ctx, s, msg, r) => {
  const text = (msg.params[0] ?? '').slice(0, ctx.config.limits.awayLen);
  await ctx.state.setAway(s.nick, text || null);
  s.away = text || null;
  ctx.num(s, r, s.away ? RPL.NOWAWAY : RPL.UNAWAY);
};

export const ison: Handler = async (ctx, s, msg, r) => {
  const wanted = msg.params.join(' ').split(' ').filter(Boolean).slice(0, 50);
  const users = await ctx.state.getUsers(wanted);
  ctx.num(s, r, RPL.ISON, users.filter((u) => u !== null).map((u) => u?.nick).join(' '));
};

export const lusers: Handler = (ctx, s, _msg, r) => {
  ctx.num(s, r, RPL.LUSERCLIENT, `There are ${ctx.users.size} users on this server`);
};
