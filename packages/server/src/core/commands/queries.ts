import { globMatch } from '../../cluster/masks.js';
import type { Member, UserInfo } from '../../cluster/state.js';
import { Cap } from '../caps.js';
import type { CommandContext, Handler } from '../context.js';
import { isChannel, lower } from '../names.js';
import { ERR, FAIL, RPL } from '../replies.js';
import { eventLine } from '../rooms.js';
import { memberPrefix } from './channels.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

/** Users one WHO with a mask lists at most (the cluster may hold millions). */
export const WHO_MASK_MAX = 200;

interface WhoRow {
  chan: string;
  u: UserInfo;
  member: Member | null;
}

/**
 * `WHO #chan`, `WHO <nick>`, `WHO <mask>` (a `*`/`?` glob against nick, `nick!user@host`, host or
 * real name, cluster-wide, at most WHO_MASK_MAX users), with `WHO <target> %<fields>[,<token>]`
 * answered WHOX-style (354). A secret channel lists nobody to non-members.
 */
export const who: Handler = async (ctx, s, msg, r) => {
  const mask = msg.params[0] ?? '*';
  const whox = parseWhox(msg.params[1]);
  const rows: WhoRow[] = [];
  if (isChannel(mask)) {
    const key = lower(mask);
    const ch = await ctx.state.channel(key);
    if (ch && (!ch.secret || s.rooms.has(key))) {
      const members = await ctx.state.members(key);
      const users = await ctx.state.getUsers(members.map((m) => m.nick));
      users.forEach((u, i) => {
        if (u) rows.push({ chan: ch.name, u, member: members[i] ?? null });
      });
    }
  } else if (/[*?]/.test(mask)) {
    if (mask !== '*') {
      const insts = await ctx.state.knownInstances();
      const nicks = (await Promise.all(insts.map((i) => ctx.state.instanceUsers(i)))).flat();
      for (let i = 0; i < nicks.length && rows.length < WHO_MASK_MAX; i += 100) {
        const users = await ctx.state.getUsers(nicks.slice(i, i + 100));
        for (const u of users) {
          if (!u || rows.length >= WHO_MASK_MAX) continue;
          const host = shownHost(ctx, s, u.nick, u.host);
          if ([u.nick, `${u.nick}!${u.user}@${host}`, host, u.realname].some((x) => globMatch(mask, x))) rows.push({ chan: '*', u, member: null });
        }
      }
    }
  } else {
    const u = await ctx.state.getUser(mask);
    if (u) rows.push({ chan: '*', u, member: null });
  }
  for (const row of rows) {
    const { u } = row;
    const host = shownHost(ctx, s, u.nick, u.host);
    const flags = `${u.away !== null ? 'G' : 'H'}${u.modes?.includes('o') ? '*' : ''}${u.modes?.includes('B') ? 'B' : ''}${row.member ? memberPrefix(row.member, s.caps) : ''}`;
    if (!whox) {
      ctx.num(s, r, RPL.WHOREPLY, row.chan, u.user, host, u.server, u.nick, flags, `0 ${u.realname}`);
      continue;
    }
    const field: Record<string, string> = {
      t: whox.token, c: row.chan, u: u.user, i: s.isOper ? ctx.users.get(lower(u.nick))?.realHost ?? '255.255.255.255' : '255.255.255.255',
      h: host, s: u.server, n: u.nick, f: flags, d: '0', l: '0', a: u.account ?? '0', o: 'n/a', r: u.realname,
    };
    const out = WHOX_ORDER.filter((f) => whox.fields.has(f)).map((f) => field[f] ?? '');
    // The real name may hold spaces: it is last, as the trailing parameter; an empty last one gets a placeholder.
    ctx.num(s, r, RPL.WHOSPCRPL, ...out);
  }
  ctx.num(s, r, RPL.ENDOFWHO, mask);
};

/** WHOX fields in the order of the reply (ircv3 whox spec): token, channel, user, ip, host, server, nick, flags, hops, idle, account, oplevel, realname. */
const WHOX_ORDER = ['t', 'c', 'u', 'i', 'h', 's', 'n', 'f', 'd', 'l', 'a', 'o', 'r'];

function parseWhox(arg: string | undefined): { fields: Set<string>; token: string } | null {
  if (!arg?.startsWith('%')) return null;
  const [fields = '', token = '0'] = arg.slice(1).split(',');
  return { fields: new Set(fields), token: /^\d{1,3}$/.test(token) ? token : '0' };
}

/**
 * The host `s` is shown for a user: the cloak the cluster state holds (docs/security.md), or, for
 * an oper and for the user itself, the address, when the user is connected to this instance (the
 * cluster state does not hold addresses).
 */
function shownHost(ctx: CommandContext, s: Session, nick: string, host: string): string {
  const key = lower(nick);
  if (!s.isOper && key !== s.nickKey) return host;
  return ctx.users.get(key)?.realHost ?? host;
}

export const whois: Handler = async (ctx, s, msg, r) => {
  if (!msg.params[0]) return ctx.num(s, r, ERR.NONICKNAMEGIVEN);
  const target = msg.params[msg.params.length - 1] ?? '';
  const u = await ctx.state.getUser(target);
  if (!u) {
    ctx.num(s, r, ERR.NOSUCHNICK, target);
    return ctx.num(s, r, RPL.ENDOFWHOIS, target);
  }
  ctx.num(s, r, RPL.WHOISUSER, u.nick, u.user, shownHost(ctx, s, u.nick, u.host), '*', u.realname);
  const chans = await ctx.state.userChannels(u.nick);
  if (chans.length) {
    const infos = await ctx.state.channels(chans);
    const members = await Promise.all(chans.map((c) => ctx.state.members(c)));
    const parts: string[] = [];
    infos.forEach((ch, i) => {
      // A secret channel is shown only to those in it (and to the user itself).
      if (!ch || (ch.secret && !s.rooms.has(chans[i] ?? '') && lower(u.nick) !== s.nickKey)) return;
      const m = members[i]?.find((x) => lower(x.nick) === lower(u.nick));
      parts.push(`${m ? memberPrefix(m, s.caps) : ''}${ch.name}`);
    });
    if (parts.length) ctx.num(s, r, RPL.WHOISCHANNELS, u.nick, parts.join(' '));
  }
  ctx.num(s, r, RPL.WHOISSERVER, u.nick, u.server);
  if (u.modes?.includes('o')) ctx.num(s, r, RPL.WHOISOPERATOR, u.nick);
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
  // away-notify: the members of the user's channels that asked for it, on every instance.
  ctx.users.toRoomMembers([...s.rooms.keys()], eventLine(`:${s.source} AWAY${s.away ? ` :${s.away}` : ''}`), s, Cap.AwayNotify);
};

/** `USERHOST <nick>…` (up to 5): `302 :nick[*]=<+|->user@host …` (`*` oper, `-` away). */
export const userhost: Handler = async (ctx, s, msg, r) => {
  const nicks = msg.params.join(' ').split(' ').filter(Boolean).slice(0, 5);
  const users = await ctx.state.getUsers(nicks);
  const items = users.filter((u) => u !== null).map((u) => `${u.nick}${u.modes?.includes('o') ? '*' : ''}=${u.away !== null ? '-' : '+'}${u.user}@${shownHost(ctx, s, u.nick, u.host)}`);
  ctx.num(s, r, RPL.USERHOST, items.join(' '));
};

/** `SETNAME :<realname>` (IRCv3 setname): the new real name everywhere, and to the members who asked. */
export const setname: Handler = async (ctx, s, msg, r) => {
  const name = (msg.params[0] ?? '').slice(0, 100);
  if (!name) return ctx.fail(r, 'SETNAME', FAIL.INVALID_REALNAME, [], 'The real name must not be empty');
  await ctx.state.updateUser(s.nick, { realname: name });
  s.realname = name;
  const out = eventLine(`:${s.source} SETNAME :${name}`);
  if (s.has(Cap.Setname)) r.send(out.lineFor(s.caps));
  ctx.users.toRoomMembers([...s.rooms.keys()], out, s, Cap.Setname);
};

export const ison: Handler = async (ctx, s, msg, r) => {
  const wanted = msg.params.join(' ').split(' ').filter(Boolean).slice(0, 50);
  const users = await ctx.state.getUsers(wanted);
  ctx.num(s, r, RPL.ISON, users.filter((u) => u !== null).map((u) => u?.nick).join(' '));
};

export const lusers: Handler = (ctx, s, _msg, r) => {
  ctx.num(s, r, RPL.LUSERCLIENT, `There are ${ctx.users.size} users on this server`);
};
