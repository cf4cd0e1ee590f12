import { checkPassword } from '../../accounts/password.js';
import { globMatch, maskMatches, normalizeMask } from '../../cluster/masks.js';
import type { CommandContext, Handler } from '../context.js';
import { lower } from '../names.js';
import { ERR, RPL } from '../replies.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

/** `nick!user@address`: what an oper's hostmask and a connection ban are matched against. */
const realSource = (s: Session): string => `${s.nick}!${s.user}@${s.realHost}`;

/**
 * `OPER <name> <password>`: the `opers` entries of the cluster configuration (scrypt hashes).
 * 491 when no entry has that name or its hostmask does not match the connection, 464 for a wrong
 * password; on success user mode `+o` and 381.
 */
export const oper: Handler = async (ctx, s, msg, r) => {
  const entry = ctx.config.opers.find((o) => o.name === msg.params[0]);
  if (!entry || (entry.hostmask && !globMatch(entry.hostmask, realSource(s)) && !globMatch(entry.hostmask, s.source))) {
    return ctx.num(s, r, ERR.NOOPERHOST);
  }
  if (!(await checkPassword(msg.params[1] ?? '', entry.passwordHash))) return ctx.num(s, r, ERR.PASSWDMISMATCH);
  s.isOper = true;
  s.operName = entry.name;
  if (!s.umodes.includes('o')) {
    await ctx.users.setUserModes(s, `${s.umodes}o`);
    r.send(`:${s.source} MODE ${s.nick} +o`);
  }
  ctx.num(s, r, RPL.YOUREOPER);
  ctx.log.info({ nick: s.nick, oper: entry.name }, 'OPER');
};

function operOnly(ctx: CommandContext, s: Session, r: Responder): boolean {
  if (s.isOper) return true;
  ctx.num(s, r, ERR.NOPRIVILEGES);
  return false;
}

/** `KILL <nick> [:reason]`: closes the user's connection on whichever instance holds it. */
export const kill: Handler = async (ctx, s, msg, r) => {
  if (!operOnly(ctx, s, r)) return;
  const nick = msg.params[0] ?? '';
  const u = await ctx.state.getUser(nick);
  if (!u) return ctx.num(s, r, ERR.NOSUCHNICK, nick);
  const reason = msg.params[1] || 'No reason';
  ctx.log.info({ by: s.nick, nick: u.nick, reason }, 'KILL');
  ctx.users.kill(lower(u.nick), `Killed (${s.nick} (${reason}))`);
};

/** `WALLOPS :<text>`: to every user with `+w`, on every instance. */
export const wallops: Handler = (ctx, s, msg, r) => {
  if (!operOnly(ctx, s, r)) return;
  ctx.users.wallops(`:${s.source} WALLOPS :${msg.params[0] ?? ''}`);
};

/**
 * `KLINE <mask> [:reason]` bans `nick!user@host` masks from connecting to any instance (checked
 * at registration against the address and the shown host); `KLINE` alone or `KLINE LIST` lists
 * them as NOTICEs; `UNKLINE <mask>` lifts one. Connections already open stay (KILL them).
 */
export const kline: Handler = async (ctx, s, msg, r) => {
  if (!operOnly(ctx, s, r)) return;
  const say = (t: string): void => r.send(`:${ctx.serverName} NOTICE ${s.nick} :${t}`);
  const arg = msg.params[0] ?? '';
  if (!arg || arg.toUpperCase() === 'LIST') {
    const bans = await ctx.state.serverBans();
    for (const b of bans) say(`KLINE ${b.mask} set by ${b.setBy} at ${new Date(b.setAt).toISOString()}: ${b.reason}`);
    return say(`End of KLINE list (${bans.length}).`);
  }
  const mask = normalizeMask(arg);
  if (!mask || mask.startsWith('$')) return say(`Invalid mask ${arg}: nick!user@host with * and ?`);
  const reason = msg.params[1] || 'Banned';
  const added = await ctx.state.addServerBan({ mask, reason, setBy: s.source, setAt: Date.now() });
  say(added ? `KLINE ${mask} added: ${reason}` : `KLINE ${mask} exists already.`);
};

export const unkline: Handler = async (ctx, s, msg, r) => {
  if (!operOnly(ctx, s, r)) return;
  const mask = normalizeMask(msg.params[0] ?? '') ?? msg.params[0] ?? '';
  const removed = await ctx.state.removeServerBan(mask);
  r.send(`:${ctx.serverName} NOTICE ${s.nick} :${removed ? `KLINE ${mask} removed.` : `No KLINE ${mask}.`}`);
};

/** The ban that refuses this connection, or null (registration asks before claiming the nick). */
export async function connectionBan(ctx: CommandContext, s: Session): Promise<string | null> {
  const bans = await ctx.state.serverBans();
  const ban = bans.find((b) => maskMatches(b.mask, realSource(s), null) || maskMatches(b.mask, s.source, null));
  return ban ? ban.reason : null;
}
