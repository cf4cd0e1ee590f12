// The client's state: buffers (the server buffer, channels, DMs) and their items, the session
// kept in localStorage, unread and mention counts. Changes call `changed()`, which schedules one
// render (render.ts registers itself).

import { asciiLower } from './text.js';

export type ItemKind = 'message' | 'action' | 'notice' | 'event' | 'info' | 'error';

/** An own message not yet confirmed by its echo. */
export interface Outgoing {
  state: 'queued' | 'pending' | 'failed';
  target: string;
  text: string;
  action: boolean;
  label?: string;
  /** Why it failed (the server's refusal, a timeout, a lost connection). */
  reason?: string;
  /** Sent on a connection that closed before the echo: history may still show it stored. */
  lost?: boolean;
  /** When it was queued or sent (ms). */
  since: number;
}

export interface Item {
  id: number;
  kind: ItemKind;
  /** ms since the epoch */
  time: number;
  from?: string;
  text: string;
  msgid?: string;
  /** The room sequence number of a stored message. */
  seq?: number;
  mention?: boolean;
  self?: boolean;
  out?: Outgoing;
  /** The rendered element (render.ts); cleared when the item changes. */
  dom?: HTMLElement;
}

export type BufferKind = 'server' | 'channel' | 'dm';

export interface Buffer {
  key: string;
  name: string;
  kind: BufferKind;
  topic: string;
  /** nick → its prefix characters ('@' …) */
  members: Map<string, string>;
  /** A NAMES reply being collected until 366. */
  names: Map<string, string> | null;
  items: Item[];
  /** msgids shown: a message that comes again (history, live, refill) is dropped. */
  seen: Set<string>;
  lastSeq: number;
  lastMsgid: string;
  /** No older history (a BEFORE or LATEST page came back short). */
  historyDone: boolean;
  loadingOlder: boolean;
  /** A channel we are in (false after a kick or before the JOIN). */
  joined: boolean;
  /** Kicked out: the channel stays shown but is not joined again by itself. */
  kicked: boolean;
  unread: number;
  mentions: number;
}

export const SERVER_KEY = '*';

export const state = {
  nick: '',
  /** Our `nick!user@host` as the server relays it (from an echo); '' until known. */
  source: '',
  network: 'Parley',
  /** ISUPPORT of the current connection. */
  isupport: new Map<string, string>(),
  registered: false,
  /** The account this connection is logged in to (900/901), null for a guest. */
  account: null as string | null,
  /** Accounts of other users as last seen (account-notify, account tags, WHOX): nick key → account. */
  accounts: new Map<string, string>(),
  current: SERVER_KEY,
  buffers: new Map<string, Buffer>(),
  /** DM key → ms when it was closed: TARGETS does not bring it back unless something newer came. */
  closedDms: new Map<string, number>(),
  notify: false,
  status: 'disconnected',
  online: false,
  total: null as number | null,
};

let nextItem = 1;
let renderHook: () => void = () => {};

export function onChange(f: () => void): void {
  renderHook = f;
}

export function changed(): void {
  renderHook();
}

export const keyOf = (name: string): string => asciiLower(name);
export const isChannel = (name: string): boolean => name.startsWith('#');

export function buffer(name: string, kind?: BufferKind): Buffer {
  const key = name === SERVER_KEY ? SERVER_KEY : keyOf(name);
  let b = state.buffers.get(key);
  if (!b) {
    b = {
      key,
      name,
      kind: kind ?? (key === SERVER_KEY ? 'server' : isChannel(name) ? 'channel' : 'dm'),
      topic: '',
      members: new Map(),
      names: null,
      items: [],
      seen: new Set(),
      lastSeq: 0,
      lastMsgid: '',
      historyDone: false,
      loadingOlder: false,
      joined: false,
      kicked: false,
      unread: 0,
      mentions: 0,
    };
    state.buffers.set(key, b);
    if (b.kind === 'dm') state.closedDms.delete(key);
    save();
  }
  return b;
}

export const serverBuffer = (): Buffer => buffer(SERVER_KEY, 'server');
export const find = (name: string): Buffer | undefined => state.buffers.get(keyOf(name));
export const current = (): Buffer => state.buffers.get(state.current) ?? serverBuffer();

export function removeBuffer(b: Buffer): void {
  if (b.kind === 'server') return;
  state.buffers.delete(b.key);
  if (b.kind === 'dm') state.closedDms.set(b.key, Date.now());
  if (state.current === b.key) state.current = ordered()[0]?.key ?? SERVER_KEY;
  save();
  changed();
}

export function renameBuffer(b: Buffer, name: string): void {
  const key = keyOf(name);
  if (key !== b.key && state.buffers.has(key)) return;
  state.buffers.delete(b.key);
  if (state.current === b.key) state.current = key;
  b.key = key;
  b.name = name;
  state.buffers.set(key, b);
  save();
}

/** The sidebar order: server, channels, DMs (each by name). */
export function ordered(): Buffer[] {
  const all = [...state.buffers.values()];
  const by = (k: BufferKind): Buffer[] => all.filter((b) => b.kind === k).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return [...by('server'), ...by('channel'), ...by('dm')];
}

export function select(key: string): void {
  const b = state.buffers.get(key);
  if (!b) return;
  state.current = key;
  b.unread = 0;
  b.mentions = 0;
  save();
  changed();
}

/** Appends or inserts in order: stored messages by seq, the rest by time. */
export function insert(b: Buffer, item: Omit<Item, 'id'>): Item {
  const it: Item = { id: nextItem++, ...item };
  let i = b.items.length;
  for (;;) {
    const prev = b.items[i - 1];
    if (!prev) break;
    const after =
      it.seq !== undefined && prev.seq !== undefined ? prev.seq > it.seq : prev.out === undefined && prev.time > it.time;
    if (!after) break;
    i--;
  }
  b.items.splice(i, 0, it);
  // A long-lived buffer keeps its recent past; what is cut can be loaded again by scrolling up.
  if (b.items.length > 4000 && i > 2000) {
    const cut = b.items.splice(0, b.items.length - 3000);
    for (const c of cut) if (c.msgid) b.seen.delete(c.msgid);
    b.historyDone = false;
  }
  return it;
}

/** An info, error or event line at the end of a buffer. */
export function note(b: Buffer, kind: 'event' | 'info' | 'error', text: string, time = Date.now()): void {
  insert(b, { kind, time: Math.max(time, lastTime(b)), text });
  changed();
}

function lastTime(b: Buffer): number {
  return b.items[b.items.length - 1]?.time ?? 0;
}

/** The oldest stored message of a buffer (the reference of a BEFORE page). */
export function oldestMsgid(b: Buffer): string | undefined {
  for (const it of b.items) if (it.msgid !== undefined && it.seq !== undefined) return it.msgid;
  return undefined;
}

export function touch(it: Item): void {
  delete it.dom;
}

/** Counts a new message in a buffer that is not being looked at. */
export function countUnread(b: Buffer, mention: boolean): void {
  if (b.key === state.current && document.visibilityState === 'visible') return;
  b.unread++;
  if (mention || b.kind === 'dm') b.mentions++;
}

// ---- session (localStorage) -----------------------------------------------------------------

const STORE = 'parley.session';

export interface Session {
  nick: string;
  /** The account last logged in to ('' for a guest): its password is not here (account.ts). */
  account: string;
  channels: string[];
  dms: string[];
  current: string;
  closedDms: Array<[string, number]>;
  notify: boolean;
}

export function save(): void {
  if (state.nick === '') return;
  const s: Session = {
    nick: state.nick,
    account: state.account ?? '',
    channels: [...state.buffers.values()].filter((b) => b.kind === 'channel' && !b.kicked).map((b) => b.name),
    dms: [...state.buffers.values()].filter((b) => b.kind === 'dm').map((b) => b.name),
    current: state.current,
    // Only recent closes matter (TARGETS looks back 30 days).
    closedDms: [...state.closedDms].filter(([, t]) => t > Date.now() - 30 * 86400_000),
    notify: state.notify,
  };
  try {
    localStorage.setItem(STORE, JSON.stringify(s));
  } catch {
    // Storage full or disabled: the session just does not survive a reload.
  }
}

/** The stored session, or null when there is none or it does not read back. */
export function load(): Session | null {
  let raw: string | null;
  try {
    raw = localStorage.getItem(STORE);
  } catch {
    return null;
  }
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as Partial<Session>;
    if (typeof v.nick !== 'string' || v.nick === '') return null;
    const strings = (a: unknown): string[] => (Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : []);
    const closed = Array.isArray(v.closedDms) ? v.closedDms.filter((p): p is [string, number] => Array.isArray(p) && typeof p[0] === 'string' && typeof p[1] === 'number') : [];
    return { nick: v.nick, account: typeof v.account === 'string' ? v.account : '', channels: strings(v.channels), dms: strings(v.dms), current: typeof v.current === 'string' ? v.current : SERVER_KEY, closedDms: closed, notify: v.notify === true };
  } catch {
    return null;
  }
}

export function forget(): void {
  try {
    localStorage.removeItem(STORE);
  } catch {
    // nothing stored, nothing to forget
  }
}
