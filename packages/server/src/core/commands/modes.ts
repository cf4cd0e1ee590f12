import { normalizeMask } from '../../cluster/masks.js';
import { FLAG_MODES, type ListMode, type ModeChange } from '../../cluster/state.js';
import type { CommandContext, Handler } from '../context.js';
import { isChannel, lower } from '../names.js';
import { ERR, RPL, numericLine, type NumericSpec } from '../replies.js';
import type { Responder } from '../reply.js';
import { eventLine } from '../rooms.js';
import type { Session } from '../session.js';

/*
 * MODE: a channel's modes (flags, key, limit), its member statuses (`o`, `v`) and its lists
 * (`b`, `e`, `I`: queries and changes), and the user modes of the sender.
 */

const LIST_REPLIES: Record<ListMode, [NumericSpec, NumericSpec]> = {
  b: [RPL.BANLIST, RPL.ENDOFBANLIST],
  e: [RPL.EXCEPTLIST, RPL.ENDOFEXCEPTLIST],
  I: [RPL.INVITELIST, RPL.ENDOFINVITELIST],
};

const USER_MODES = 'Biow';

export const mode: Handler = async (ctx, s, msg, r) => {
  const target = msg.params[0] ?? '';
  if (!isChannel(target)) return userMode(ctx, s, target, msg.params[1], r);
  const key = lower(target);
  const spec = msg.params[1];
  if (!spec) {
    const ch = await ctx.state.channel(key);
    if (!ch) return ctx.num(s, r, ERR.NOSUCHCHANNEL, target);
    // The key (and its letter) is shown to members only, as on Ergo.
    const showKey = ch.key !== undefined && s.rooms.has(key);
    const params: string[] = [];
    if (showKey && ch.key) params.push(ch.key);
    if (ch.limit) params.push(String(ch.limit));
    const letters = `+${[...ch.modes].filter((c) => c !== 'k' && c !== 'l').join('')}${showKey ? 'k' : ''}${ch.limit ? 'l' : ''}`;
    r.send(numericLine(ctx.serverName, s.nick, RPL.CHANNELMODEIS, [ch.name, letters, ...params, '']).replace(/ :$/, ''));
    ctx.num(s, r, RPL.CREATIONTIME, ch.name, String(Math.floor(ch.created / 1000)));
    return;
  }
  // A list query: `b`, `+b`, `e`, `I` (several letters: each list).
  if (/^\+?[beI]+$/.test(spec) && msg.params.length === 2) {
    const ch = await ctx.state.channel(key);
    if (!ch) return ctx.num(s, r, ERR.NOSUCHCHANNEL, target);
    const entries = await ctx.state.listModes(key);
    for (const m of new Set(spec.replace('+', '')) as Set<ListMode>) {
      const [item, end] = LIST_REPLIES[m];
      for (const e of entries) if (e.mode === m) ctx.num(s, r, item, ch.name, e.mask, e.setBy, String(Math.floor(e.setAt / 1000)));
      ctx.num(s, r, end, ch.name);
    }
    return;
  }
  const parsed = parseChanges(ctx, s, target, spec, msg.params.slice(2), r);
  if (!parsed) return;
  const { changes, nicks } = parsed;
  // +o/+v for a nick that exists nowhere is 401; for one that exists elsewhere, 441 (modern.ircdocs.horse, MODE).
  const known = nicks.length ? await ctx.state.getUsers(nicks) : [];
  const absent = new Set(nicks.filter((_, i) => !known[i]).map(lower));
  for (const n of nicks) if (absent.has(lower(n))) ctx.num(s, r, ERR.NOSUCHNICK, n);
  const wanted = changes.filter((c) => !(c.nick && absent.has(lower(c.nick))));
  if (wanted.length === 0 && changes.length > 0) return;
  const res = await ctx.state.setModes(key, s.nick, wanted, s.source, Date.now());
  if (res.kind === 'no-channel') return ctx.num(s, r, ERR.NOSUCHCHANNEL, target);
  if (res.kind === 'not-op') return ctx.num(s, r, ERR.CHANOPRIVSNEEDED, target);
  for (const m of res.missing) ctx.num(s, r, ERR.USERNOTINCHANNEL, m, target);
  for (const m of res.full) ctx.num(s, r, ERR.BANLISTFULL, target, m);
  if (res.applied.length === 0) return;
  const out = eventLine(`:${s.source} MODE ${s.rooms.get(key)?.name ?? target} ${modeText(res.applied)}`);
  r.send(out.lineFor(s.caps));
  ctx.rooms.event(key, out, s);
};

/** `+ov-b nick nick mask` for applied changes. */
export function modeText(applied: ModeChange[]): string {
  let letters = '';
  let sign = '';
  const args: string[] = [];
  for (const c of applied) {
    const sg = c.add ? '+' : '-';
    if (sg !== sign) {
      letters += sg;
      sign = sg;
    }
    letters += c.mode;
    if (c.nick) args.push(c.nick);
    else if (c.arg !== undefined) args.push(c.arg);
  }
  return [letters, ...args].join(' ');
}

/**
 * A mode string and its parameters → changes, or null after answering the problem (461 for a
 * missing parameter, 472 for an unknown letter, 696 for a bad one: nothing changes then).
 */
function parseChanges(ctx: CommandContext, s: Session, target: string, spec: string, args: string[], r: Responder): { changes: ModeChange[]; nicks: string[] } | null {
  const changes: ModeChange[] = [];
  const nicks: string[] = [];
  let add = true;
  let argi = 0;
  for (const c of spec) {
    if (c === '+' || c === '-') {
      add = c === '+';
      continue;
    }
    if (c === 'o' || c === 'v') {
      const nk = args[argi++];
      if (!nk) {
        ctx.num(s, r, ERR.NEEDMOREPARAMS, 'MODE');
        return null;
      }
      changes.push({ add, mode: c, nick: nk });
      nicks.push(nk);
    } else if (c === 'b' || c === 'e' || c === 'I') {
      const raw = args[argi++];
      if (!raw) continue; // `+b` without a mask inside a longer string: nothing to do
      const mask = normalizeMask(raw);
      if (!mask) {
        ctx.num(s, r, ERR.INVALIDMODEPARAM, target, c, raw, 'Invalid mask');
        return null;
      }
      changes.push({ add, mode: c, arg: mask });
    } else if (c === 'k') {
      const k = args[argi++];
      if (add && (!k || /[\s,:]/.test(k) || k.length > 23)) {
        if (!k) ctx.num(s, r, ERR.NEEDMOREPARAMS, 'MODE');
        else ctx.num(s, r, ERR.INVALIDMODEPARAM, target, 'k', k, 'Invalid key');
        return null;
      }
      changes.push(add ? { add, mode: 'k', arg: k } : { add, mode: 'k' });
    } else if (c === 'l') {
      if (!add) {
        changes.push({ add, mode: 'l' });
        continue;
      }
      const n = args[argi++];
      if (!n) {
        ctx.num(s, r, ERR.NEEDMOREPARAMS, 'MODE');
        return null;
      }
      if (!/^\d{1,6}$/.test(n) || Number(n) < 1) {
        ctx.num(s, r, ERR.INVALIDMODEPARAM, target, 'l', n, 'Invalid limit');
        return null;
      }
      changes.push({ add, mode: 'l', arg: String(Number(n)) });
    } else if (FLAG_MODES.includes(c)) {
      changes.push({ add, mode: c as ModeChange['mode'] });
    } else {
      ctx.num(s, r, ERR.UNKNOWNMODE, c);
      return null;
    }
  }
  return { changes, nicks };
}

/** User modes: `+B` (bot), `+w` (WALLOPS), `+i` (kept, no effect); `o` only comes with OPER, and `-o` drops it. */
async function userMode(ctx: CommandContext, s: Session, target: string, spec: string | undefined, r: Responder): Promise<void> {
  if (lower(target) !== s.nickKey) return ctx.num(s, r, ERR.USERSDONTMATCH);
  if (!spec) return ctx.num(s, r, RPL.UMODEIS, `+${s.umodes}`);
  let add = true;
  let modes = s.umodes;
  let unknown = false;
  for (const c of spec) {
    if (c === '+' || c === '-') add = c === '+';
    else if (!USER_MODES.includes(c)) unknown = true;
    else if (c === 'o' && add) continue; // only OPER makes an operator
    else if (add && !modes.includes(c)) modes += c;
    else if (!add) modes = modes.split(c).join('');
  }
  if (unknown) ctx.num(s, r, ERR.UMODEUNKNOWNFLAG);
  if (modes === s.umodes) return;
  const added = [...modes].filter((c) => !s.umodes.includes(c)).join('');
  const removed = [...s.umodes].filter((c) => !modes.includes(c)).join('');
  await ctx.users.setUserModes(s, modes);
  r.send(`:${s.source} MODE ${s.nick} ${added ? `+${added}` : ''}${removed ? `-${removed}` : ''}`);
}
