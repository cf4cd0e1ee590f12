import { parseMsgid, parseServerTime, roomTag, type IrcMessage } from '@parley/protocol';
import type { Selector, StoredMessage } from '../../store/store.js';
import { Cap } from '../caps.js';
import type { CommandContext, Handler } from '../context.js';
import { accountOfIdentity, connOfIdentity, dmKey, identityOf, identityOfUser, otherSide } from '../../accounts/identity.js';
import { isChannel, lower, validChannel, validNick } from '../names.js';
import { FAIL } from '../replies.js';
import type { Responder } from '../reply.js';
import { batchId } from '../reply.js';
import { historyLine } from '../rooms.js';
import type { Session } from '../session.js';

const SUBCOMMANDS = new Set(['LATEST', 'BEFORE', 'AFTER', 'AROUND', 'BETWEEN']);
/** Rows of history one flood-control token pays for. */
export const HISTORY_ROWS_PER_TOKEN = 100;

/** Flood-control cost of a CHATHISTORY line beyond its first token: by rows asked. */
export function historyCost(msg: IrcMessage): number {
  const sub = (msg.params[0] ?? '').toUpperCase();
  const limit = Number(sub === 'TARGETS' ? msg.params[3] : msg.params[sub === 'BETWEEN' ? 4 : 3]);
  return Number.isInteger(limit) && limit > 0 ? Math.floor(limit / HISTORY_ROWS_PER_TOKEN) : 0;
}

function parseSelector(room: string, v: string): Selector | null | 'bad' {
  if (v === '*') return null;
  if (v.startsWith('msgid=')) {
    const m = parseMsgid(v.slice(6));
    if (!m || m.tag !== roomTag(room)) return 'bad';
    return { kind: 'seq', seq: m.seq };
  }
  if (v.startsWith('timestamp=')) {
    const t = parseServerTime(v.slice(10));
    return t === null ? 'bad' : { kind: 'time', time: t };
  }
  return 'bad';
}

/** CHATHISTORY (draft/chathistory). Non-blocking: answers its own failures. */
export const chathistory: Handler = async (ctx, s, msg, r) => {
  try {
    await query(ctx, s, msg, r);
  } catch (err) {
    ctx.metrics.commandErrors.inc({ command: 'CHATHISTORY' });
    ctx.log.warn({ err: (err as Error).message }, 'history query failed');
    ctx.fail(r, 'CHATHISTORY', FAIL.MESSAGE_ERROR, [(msg.params[0] ?? '*').toUpperCase(), msg.params[1] ?? '*'], 'History could not be read, try again');
  }
};

async function query(ctx: CommandContext, s: Session, msg: IrcMessage, r: Responder): Promise<void> {
  const sub = (msg.params[0] ?? '').toUpperCase();
  const max = ctx.config.limits.historyMax;
  if (sub === 'TARGETS') return targets(ctx, s, msg, r, max);
  if (!SUBCOMMANDS.has(sub)) return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_PARAMS, [sub || '*'], 'Unknown CHATHISTORY subcommand');
  const target = msg.params[1] ?? '';
  if (!target) return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_PARAMS, [sub], 'No target given');
  const channel = isChannel(target);
  if (channel ? !validChannel(ctx.config.limits, target) : !validNick(ctx.config.limits, target)) {
    return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_TARGET, [sub, target]);
  }
  // A nick with no conversation of this reader's identity reads as empty (a room with no messages).
  const room = channel ? lower(target) : ((await dmRoomOf(ctx, s, target)) ?? dmKey(identityOf(s, s.conn), '-'));
  // A channel's history is for its members (JOIN first, then fill the gap).
  if (channel && !s.rooms.has(room)) return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_TARGET, [sub, target], 'You are not on that channel');
  const nsel = sub === 'BETWEEN' ? 2 : 1;
  const limitArg = msg.params[2 + nsel];
  const limit = Number(limitArg);
  if (!Number.isInteger(limit) || limit < 1) return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_PARAMS, [sub, limitArg ?? '*'], 'Invalid limit');
  const n = Math.min(limit, max);
  const sel1 = parseSelector(room, msg.params[2] ?? '');
  const sel2 = nsel === 2 ? parseSelector(room, msg.params[3] ?? '') : null;
  if (sel1 === 'bad' || sel2 === 'bad' || (sub !== 'LATEST' && sel1 === null) || (nsel === 2 && sel2 === null)) {
    return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_MSGREFTYPE, [sub, target]);
  }
  const h = ctx.history;
  let rows: StoredMessage[];
  switch (sub) {
    case 'LATEST': rows = await h.latest(room, sel1, n); break;
    case 'BEFORE': rows = await h.before(room, sel1 as Selector, n); break;
    case 'AFTER': rows = await h.after(room, sel1 as Selector, n); break;
    case 'AROUND': rows = await h.around(room, sel1 as Selector, n); break;
    default: rows = await between(h, room, sel1 as Selector, sel2 as Selector, n);
  }
  const id = batchId();
  const batched = s.has(Cap.Batch);
  if (batched) {
    r.markSingleBatch();
    r.send(`:${ctx.serverName} BATCH +${id} chathistory ${target}`);
  }
  const tag = roomTag(room);
  for (const m of rows) {
    const out = historyLine(room, m, tag);
    r.send(batched ? out.lineWith(s.caps, `batch=${id}`) : out.lineFor(s.caps));
  }
  if (batched) r.send(`:${ctx.serverName} BATCH -${id}`);
}

/**
 * BETWEEN counts `n` messages from the first selector towards the second, "forwards or backwards
 * in time" (IRCv3 chathistory), both bounds excluded, oldest first either way. Selectors of one
 * kind are compared; mixed ones (a msgid and a timestamp) try forwards, then backwards: only one
 * direction can hold messages strictly between the two.
 */
async function between(h: CommandContext['history'], room: string, a: Selector, b: Selector, n: number): Promise<StoredMessage[]> {
  const beyond = (m: StoredMessage, s: Selector): boolean => (s.kind === 'seq' ? m.seq >= s.seq : m.time >= s.time);
  const short = (m: StoredMessage, s: Selector): boolean => (s.kind === 'seq' ? m.seq <= s.seq : m.time <= s.time);
  const forwards = async (): Promise<StoredMessage[]> => (await h.after(room, a, n)).filter((m) => !beyond(m, b));
  const backwards = async (): Promise<StoredMessage[]> => (await h.before(room, a, n)).filter((m) => !short(m, b));
  if (a.kind === 'seq' && b.kind === 'seq') return a.seq <= b.seq ? forwards() : backwards();
  if (a.kind === 'time' && b.kind === 'time') return a.time <= b.time ? forwards() : backwards();
  const f = await forwards();
  return f.length > 0 ? f : backwards();
}

/**
 * The DM room of `s` with whoever `nick` names now: the user holding it (their account, or their
 * connection if a guest), else the account of that name; null when neither exists. So a reader
 * only ever reaches rooms keyed by its own identity, whatever nick it uses.
 */
async function dmRoomOf(ctx: CommandContext, s: Session, nick: string): Promise<string | null> {
  const me = identityOf(s, s.conn);
  const local = ctx.users.get(lower(nick));
  if (local) return dmKey(me, identityOf(local, local.conn));
  const u = await ctx.state.getUser(nick);
  if (u) return dmKey(me, identityOfUser(u));
  const acct = await ctx.accounts.get(nick);
  return acct ? dmKey(me, `a.${lower(acct.name)}`) : null;
}

/**
 * The name TARGETS shows for a DM room, one that CHATHISTORY resolves back to the same room: an
 * account's name; a guest's current nick while that connection is online (found from the nicks of
 * the room's newest message), else null (the guest is gone: nothing can reach the room).
 */
async function dmPartnerName(ctx: CommandContext, room: string, me: string, shown: string): Promise<string | null> {
  const other = otherSide(room, me);
  if (other === null) return null;
  const account = accountOfIdentity(other);
  if (account !== null) return lower(shown) === account ? shown : account;
  const conn = connOfIdentity(other);
  const [last] = await ctx.history.latest(room, null, 1);
  if (!conn || !last) return null;
  const candidates = [last.target, last.source.split('!')[0] ?? ''];
  const users = await ctx.state.getUsers(candidates);
  const holder = users.find((u) => u && !u.account && u.conn === conn);
  return holder ? holder.nick : null;
}

async function targets(ctx: CommandContext, s: Session, msg: IrcMessage, r: Responder, max: number): Promise<void> {
  const a = parseServerTime((msg.params[1] ?? '').replace(/^timestamp=/, ''));
  const b = parseServerTime((msg.params[2] ?? '').replace(/^timestamp=/, ''));
  const limit = Number(msg.params[3]);
  if (a === null || b === null || !Number.isInteger(limit) || limit < 1) {
    return ctx.fail(r, 'CHATHISTORY', FAIL.INVALID_PARAMS, ['TARGETS'], 'Expected: TARGETS timestamp=A timestamp=B limit');
  }
  const me = identityOf(s, s.conn);
  const found = await ctx.history.targets([...s.rooms.keys()], me, Math.min(a, b), Math.max(a, b), Math.min(limit, max));
  const names = await Promise.all(found.map((t) => (t.room.startsWith('dm:') ? dmPartnerName(ctx, t.room, me, t.target) : s.rooms.get(t.room)?.name ?? t.target)));
  const id = batchId();
  const batched = s.has(Cap.Batch);
  if (batched) {
    r.markSingleBatch();
    r.send(`:${ctx.serverName} BATCH +${id} draft/chathistory-targets`);
  }
  for (const [i, t] of found.entries()) {
    const name = names[i];
    if (!name) continue;
    r.send(`${batched ? `@batch=${id} ` : ''}:${ctx.serverName} CHATHISTORY TARGETS ${name} ${new Date(t.latest).toISOString()}`);
  }
  if (batched) r.send(`:${ctx.serverName} BATCH -${id}`);
}
