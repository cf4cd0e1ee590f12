import type { CommandContext, Handler } from '../context.js';
import { lower, validNick } from '../names.js';
import { ERR, RPL, type NumericSpec } from '../replies.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

/** Sends `items` comma-joined in numerics of at most ~400 characters. */
function chunked(ctx: CommandContext, s: Session, r: Responder, spec: NumericSpec, items: string[]): void {
  let line: string[] = [];
  let len = 0;
  for (const it of items) {
    if (line.length && len + it.length + 1 > 400) {
      ctx.num(s, r, spec, line.join(','));
      line = [];
      len = 0;
    }
    line.push(it);
    len += it.length + 1;
  }
  if (line.length) ctx.num(s, r, spec, line.join(','));
}

/** 730 for the nicks online (as `nick!user@host`), 731 for the others. */
async function status(ctx: CommandContext, s: Session, r: Responder, nicks: string[]): Promise<void> {
  if (nicks.length === 0) return;
  const users = await ctx.state.getUsers(nicks);
  const on: string[] = [];
  const off: string[] = [];
  users.forEach((u, i) => (u ? on.push(`${u.nick}!${u.user}@${u.host}`) : off.push(nicks[i] ?? '')));
  chunked(ctx, s, r, RPL.MONONLINE, on);
  chunked(ctx, s, r, RPL.MONOFFLINE, off);
}

/**
 * MONITOR (IRCv3): `+ a,b`, `- a,b`, `C`, `L`, `S`. Whoever watches a nick hears (730/731) when it
 * comes online or goes offline on any instance: every instance sees sign-ons, nick changes and
 * quits on the bus's `all` topic (users.ts).
 */
export const monitor: Handler = async (ctx, s, msg, r) => {
  const sub = msg.params[0] ?? '';
  const targets = (msg.params[1] ?? '').split(',').filter((n) => n && validNick(ctx.config.limits, n));
  const max = ctx.config.monitorMax;
  switch (sub.toUpperCase()) {
    case '+': {
      const added: string[] = [];
      for (const [i, n] of targets.entries()) {
        if (!ctx.users.watch(s, lower(n), max)) {
          ctx.num(s, r, ERR.MONLISTFULL, String(max), targets.slice(i).join(','));
          break;
        }
        added.push(n);
      }
      return status(ctx, s, r, added);
    }
    case '-':
      for (const n of targets) ctx.users.unwatch(s, lower(n));
      return;
    case 'C':
      ctx.users.unwatchAll(s);
      return;
    case 'L':
      chunked(ctx, s, r, RPL.MONLIST, [...s.monitors]);
      ctx.num(s, r, RPL.ENDOFMONLIST);
      return;
    case 'S':
      return status(ctx, s, r, [...s.monitors]);
    default:
      ctx.num(s, r, ERR.NEEDMOREPARAMS, 'MONITOR');
  }
};
