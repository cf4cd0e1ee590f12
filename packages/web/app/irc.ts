// Incoming IRC → state. Replies are routed by their label (own messages, commands typed in a
// buffer, history requests); everything else by its command. Nothing here touches the DOM.

import { parseMsgid, parseServerTime, type IrcMessage } from '@parley/protocol';
import { isService } from './account.js';
import { forgetCredentials } from './credentials.js';
import { fail, labels, send, type LabelCtx } from './connection.js';
import { complete, fill, gap } from './history.js';
import { notify } from './notify.js';
import { buffer, changed, countUnread, current, find, insert, isChannel, keyOf, note, removeBuffer, renameBuffer, save, serverBuffer, state, type Buffer } from './state.js';
import { ctcpAction, ctcpCommand, mentions, retryAfterMs, stripFormatting } from './text.js';

/** Open batches: reference → the labelled request it answers (null: not ours to track). */
const batches = new Map<string, { ctx: LabelCtx | null; type: string }>();

const nickOf = (source: string | undefined): string => (source ?? '').split('!')[0] ?? '';
const timeOf = (m: IrcMessage): number => parseServerTime(m.tags['time'] ?? '') ?? Date.now();
const last = (p: string[]): string => p[p.length - 1] ?? '';
const isMe = (nick: string): boolean => keyOf(nick) === keyOf(state.nick);

/** The prefix characters of ISUPPORT PREFIX, highest first, and their mode letters. */
export function prefixes(): { modes: string; chars: string } {
  const m = /^\(([^)]*)\)(.*)$/.exec(state.isupport.get('PREFIX') ?? '(o)@');
  return { modes: m?.[1] ?? 'o', chars: m?.[2] ?? '@' };
}

function labelCtx(m: IrcMessage): LabelCtx | null {
  const label = m.tags['label'];
  if (label !== undefined) return labels.get(label) ?? null;
  const ref = m.tags['batch'];
  return ref === undefined ? null : (batches.get(ref)?.ctx ?? null);
}

export function handle(m: IrcMessage): void {
  const ctx = labelCtx(m);
  const p = m.params;
  switch (m.command) {
    case 'BATCH':
      return batch(m, ctx);
    case 'ACK':
      if (m.tags['label'] !== undefined) labels.delete(m.tags['label']);
      if (ctx?.kind === 'history' || ctx?.kind === 'targets') complete(ctx, null);
      return;
    case 'PRIVMSG':
    case 'NOTICE':
      return message(m, ctx);
    case 'JOIN':
      return join(m);
    case 'PART':
      return part(m);
    case 'KICK':
      return kick(m);
    case 'QUIT':
      return quit(m);
    case 'NICK':
      return nick(m);
    case 'TOPIC': {
      const b = buffer(p[0] ?? '');
      b.topic = stripFormatting(p[1] ?? '');
      return note(b, 'event', `${nickOf(m.source)} set the topic: ${b.topic}`, timeOf(m));
    }
    case 'MODE':
      return mode(m, ctx);
    case 'ACCOUNT':
      // account-notify: someone in our channels logged in ('*': out).
      setAccount(nickOf(m.source), p[0] === '*' ? undefined : p[0]);
      return changed();
    case 'CHATHISTORY':
      if (ctx?.kind === 'targets' && p[0] === 'TARGETS') ctx.found.push({ name: p[1] ?? '', time: p[2] ?? '' });
      return;
    case 'FAIL':
      return failReply(m, ctx);
    case 'ERROR':
      return note(serverBuffer(), 'error', p[0] ?? 'connection closed');
    default:
      if (/^\d{3}$/.test(m.command)) return numeric(m, ctx);
  }
}

function batch(m: IrcMessage, ctx: LabelCtx | null): void {
  const ref = m.params[0] ?? '';
  if (ref.startsWith('+')) {
    batches.set(ref.slice(1), { ctx, type: m.params[1] ?? '' });
    return;
  }
  const b = batches.get(ref.slice(1));
  batches.delete(ref.slice(1));
  const label = m.tags['label'];
  if (label !== undefined) labels.delete(label);
  // The outermost batch of a request ends it (a labeled-response wrapper or the history batch itself).
  if (b?.ctx && m.tags['batch'] === undefined && (b.ctx.kind === 'history' || b.ctx.kind === 'targets')) complete(b.ctx, null);
}

/** Who is logged in to which account; `undefined`: nobody (a guest, or logged out). */
function setAccount(nick: string, account: string | undefined): void {
  if (account === undefined) state.accounts.delete(keyOf(nick));
  else state.accounts.set(keyOf(nick), account);
}

function message(m: IrcMessage, ctx: LabelCtx | null): void {
  const target = m.params[0] ?? '';
  const from = nickOf(m.source);
  let text = m.params[1] ?? '';
  const serverNotice = m.source !== undefined && !m.source.includes('!');
  if (serverNotice || target === '*') return note(isChannel(target) ? buffer(target) : serverBuffer(), 'info', text, timeOf(m));
  const own = isMe(from);
  if (own && m.source) state.source = m.source;
  const name = isChannel(target) ? target : own ? target : from;
  const history = ctx?.kind === 'history';
  // A live message says whether its sender is logged in (account-tag).
  if (!history && !own) setAccount(from, m.tags['account']);
  // A service's answers go to its buffer when the user opened one, else where the user is.
  const service = !own && isService(from);
  const b = history ? ctx.buffer : service && !find(from) ? current() : buffer(name);
  if (b.kind === 'dm' && !own && b.key === keyOf(from) && b.name !== from) b.name = from; // the nick as its owner spells it
  const msgid = m.tags['msgid'];
  if (own && ctx?.kind === 'message') {
    // The echo: the pending line is replaced by the stored one.
    const i = ctx.buffer.items.indexOf(ctx.item);
    if (i !== -1) ctx.buffer.items.splice(i, 1);
    labels.delete(m.tags['label'] ?? '');
  }
  if (msgid !== undefined) {
    if (b.seen.has(msgid)) return changed();
    b.seen.add(msgid);
  }
  const seq = msgid === undefined ? undefined : parseMsgid(msgid)?.seq;
  if (seq !== undefined && msgid !== undefined) {
    if (!history && b.lastSeq > 0 && seq > b.lastSeq + 1 && m.tags['batch'] === undefined) gap(b, b.lastMsgid, seq - b.lastSeq - 1);
    if (seq > b.lastSeq) {
      b.lastSeq = seq;
      b.lastMsgid = msgid;
    }
  }
  if (history) {
    ctx.count++;
    if (own) ctx.ownTexts.push(text);
  }
  const ctcp = ctcpAction(text);
  if (ctcp === null && ctcpCommand(text) !== null) {
    if (!history) note(b, 'info', `${from} sent a CTCP ${ctcpCommand(text) ?? ''} request`, timeOf(m));
    return;
  }
  if (ctcp !== null) text = ctcp;
  text = stripFormatting(text);
  const mention = !own && !service && (b.kind === 'dm' || mentions(text, state.nick));
  insert(b, {
    kind: ctcp !== null ? 'action' : m.command === 'NOTICE' ? 'notice' : 'message',
    time: timeOf(m),
    from,
    text,
    ...(msgid !== undefined ? { msgid } : {}),
    ...(seq !== undefined ? { seq } : {}),
    ...(mention && b.kind !== 'dm' ? { mention: true } : {}),
    ...(own ? { self: true } : {}),
  });
  if (!own && !history) {
    countUnread(b, mention);
    if (mention) notify(b, from, text);
  }
  changed();
}

function join(m: IrcMessage): void {
  const who = nickOf(m.source);
  const b = buffer(m.params[0] ?? '', 'channel');
  if (isMe(who)) {
    if (m.source) state.source = m.source;
    b.joined = true;
    b.kicked = false;
    b.members.clear();
    save();
    // History after the JOIN: a channel's history is for its members.
    fill(b);
    // Who of them is logged in (later changes come by account-notify).
    if (state.isupport.has('WHOX')) send('WHO', [b.name, '%tna,1'], { kind: 'accounts' });
    return changed();
  }
  // This server's JOIN carries no account (no extended-join); a tag, when there is one, does.
  if (m.tags['account'] !== undefined) setAccount(who, m.tags['account']);
  b.members.set(who, '');
  note(b, 'event', `${who} joined`, timeOf(m));
}

function part(m: IrcMessage): void {
  const who = nickOf(m.source);
  const b = find(m.params[0] ?? '');
  if (!b) return;
  if (isMe(who)) {
    removeBuffer(b);
    return;
  }
  b.members.delete(who);
  note(b, 'event', `${who} left${m.params[1] ? ` (${m.params[1]})` : ''}`, timeOf(m));
}

function kick(m: IrcMessage): void {
  const b = find(m.params[0] ?? '');
  if (!b) return;
  const who = m.params[1] ?? '';
  const by = nickOf(m.source);
  const why = m.params[2] ? ` (${m.params[2]})` : '';
  b.members.delete(who);
  if (isMe(who)) {
    // The channel stays, with the reason, until the user closes or rejoins it.
    b.joined = false;
    b.kicked = true;
    b.members.clear();
    save();
    note(b, 'error', `You were kicked from ${b.name} by ${by}${why}. /join ${b.name} to come back, /close to close.`, timeOf(m));
    notify(b, by, `kicked you from ${b.name}${why}`);
    return;
  }
  note(b, 'event', `${who} was kicked by ${by}${why}`, timeOf(m));
}

function quit(m: IrcMessage): void {
  const who = nickOf(m.source);
  setAccount(who, undefined);
  const why = m.params[0] ? ` (${m.params[0]})` : '';
  for (const b of state.buffers.values()) {
    if (b.members.delete(who) || (b.kind === 'dm' && keyOf(b.name) === keyOf(who))) note(b, 'event', `${who} quit${why}`, timeOf(m));
  }
}

function nick(m: IrcMessage): void {
  const who = nickOf(m.source);
  const to = m.params[0] ?? '';
  const me = isMe(who);
  const account = state.accounts.get(keyOf(who));
  setAccount(who, undefined);
  setAccount(to, account);
  if (me) {
    state.nick = to;
    state.source = '';
    state.status = `online as ${to}`;
    save();
  }
  for (const b of [...state.buffers.values()]) {
    const prefix = b.members.get(who);
    if (prefix !== undefined) {
      b.members.delete(who);
      b.members.set(to, prefix);
      note(b, 'event', me ? `You are now known as ${to}` : `${who} is now known as ${to}`, timeOf(m));
    } else if (b.kind === 'dm' && keyOf(b.name) === keyOf(who)) {
      note(b, 'event', `${who} is now known as ${to}`, timeOf(m));
      renameBuffer(b, to);
    }
  }
  if (me) note(serverBuffer(), 'info', `You are now known as ${to}`, timeOf(m));
}

function mode(m: IrcMessage, ctx: LabelCtx | null): void {
  const [target = '', changes = '', ...args] = m.params;
  const by = nickOf(m.source);
  if (!isChannel(target)) {
    return note(ctx?.kind === 'command' ? ctx.buffer : serverBuffer(), 'info', `${by} sets mode ${changes} on ${target}`);
  }
  const b = buffer(target, 'channel');
  const { modes: prefixModes, chars } = prefixes();
  const groups = (state.isupport.get('CHANMODES') ?? ',,,').split(',');
  let sign = '+';
  let a = 0;
  for (const c of changes) {
    if (c === '+' || c === '-') {
      sign = c;
      continue;
    }
    const pi = prefixModes.indexOf(c);
    if (pi !== -1) {
      const n = args[a++] ?? '';
      const cur = b.members.get(n);
      if (cur === undefined) continue;
      const ch = chars.charAt(pi);
      const next = sign === '+' ? (cur.includes(ch) ? cur : cur + ch) : cur.replace(ch, '');
      // Highest prefix first, as PREFIX orders them.
      b.members.set(n, [...next].sort((x, y) => chars.indexOf(x) - chars.indexOf(y)).join(''));
    } else if ((groups[0] ?? '').includes(c) || (groups[1] ?? '').includes(c) || (sign === '+' && (groups[2] ?? '').includes(c))) {
      a++;
    }
  }
  note(b, 'event', `${by} sets mode ${[changes, ...args].join(' ')}`, timeOf(m));
}

function failReply(m: IrcMessage, ctx: LabelCtx | null): void {
  const [command = '', code = '', ...rest] = m.params;
  const desc = last(m.params);
  const context = rest.slice(0, -1);
  if (ctx?.kind === 'message') {
    labels.delete(m.tags['label'] ?? '');
    let reason = `${code}: ${desc}`;
    if (code === 'RATE_LIMITED') {
      const ms = retryAfterMs(context[1], desc);
      if (ms !== null) reason = `${code}: ${desc} (retry after ${ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`})`;
    }
    return fail(ctx.item, reason);
  }
  if (ctx?.kind === 'history' || ctx?.kind === 'targets') {
    labels.delete(m.tags['label'] ?? '');
    return complete(ctx, `${code} ${context.join(' ')}: ${desc}`);
  }
  const b = ctx?.kind === 'command' ? ctx.buffer : current();
  note(b, 'error', `${command} ${code}${context.length ? ' ' + context.join(' ') : ''}: ${desc}`);
}

/** Registration numerics, the MOTD and log-ins go to the server buffer. */
const SERVER_NUMERICS = new Set(['001', '002', '003', '004', '251', '375', '372', '376', '422', '900', '901', '903']);
const QUIET = new Set(['005', '366', '318', '315', '333', '329']);

function numeric(m: IrcMessage, ctx: LabelCtx | null): void {
  const p = m.params;
  const label = m.tags['label'];
  if (label !== undefined) labels.delete(label);
  const out: Buffer = ctx?.kind === 'command' ? ctx.buffer : ctx?.kind === 'message' ? ctx.buffer : current();
  const asked = ctx?.kind === 'command';
  if (ctx?.kind === 'accounts') {
    // WHO <channel> %tna,1 → 354 <me> 1 <nick> <account|0>; the rest of the reply is not shown.
    if (m.command === '354' && p[1] === '1' && p[2] !== undefined) setAccount(p[2], p[3] === undefined || p[3] === '0' ? undefined : p[3]);
    return changed();
  }
  switch (m.command) {
    case '900':
      state.account = p[2] ?? null;
      save();
      break;
    case '901':
      // Logged out (NickServ LOGOUT): a reconnect must not log in again.
      state.account = null;
      forgetCredentials();
      save();
      break;
    case '332': {
      const b = buffer(p[1] ?? '', 'channel');
      b.topic = stripFormatting(p[2] ?? '');
      if (asked) note(out, 'info', `Topic of ${b.name}: ${b.topic}`);
      return changed();
    }
    case '331':
      return note(out, 'info', `${p[1] ?? ''} has no topic`);
    case '353': {
      const b = buffer(p[2] ?? '', 'channel');
      b.names ??= new Map();
      const { chars } = prefixes();
      for (const n of (p[3] ?? '').split(' ')) {
        if (!n) continue;
        let i = 0;
        while (i < n.length && chars.includes(n.charAt(i))) i++;
        b.names.set(n.slice(i), n.slice(0, i));
      }
      if (asked) note(out, 'info', `Members of ${b.name}: ${p[3] ?? ''}`);
      return;
    }
    case '366': {
      const b = find(p[1] ?? '');
      if (b?.names) {
        if (b.joined) b.members = b.names;
        b.names = null;
      }
      return changed();
    }
    case '301':
      return note(out, 'info', `${p[1] ?? ''} is away: ${last(p)}`);
    case '311':
      return note(out, 'info', `${p[1] ?? ''} is ${p[2] ?? ''}@${p[3] ?? ''} (${last(p)})`);
    case '319':
      return note(out, 'info', `${p[1] ?? ''} is on ${last(p)}`);
    case '312':
      return note(out, 'info', `${p[1] ?? ''} is connected to ${p[2] ?? ''} (${last(p)})`);
    case '317': {
      const signon = Number(p[3]);
      return note(out, 'info', `${p[1] ?? ''} has been idle ${p[2] ?? '0'} s${Number.isFinite(signon) ? `, online since ${new Date(signon * 1000).toLocaleString()}` : ''}`);
    }
    case '324':
      return note(out, 'info', `Modes of ${p[1] ?? ''}: ${p.slice(2).join(' ')}`);
    case '001':
      state.network = state.isupport.get('NETWORK') ?? state.network;
      break;
  }
  if (QUIET.has(m.command)) return;
  const text = p.length > 2 ? `${p.slice(1, -1).join(' ')}: ${last(p)}` : last(p);
  const error = /^[45]/.test(m.command);
  if (ctx?.kind === 'message' && error) return fail(ctx.item, `${m.command}: ${text}`);
  note(SERVER_NUMERICS.has(m.command) && !asked ? serverBuffer() : out, error ? 'error' : 'info', text);
}
