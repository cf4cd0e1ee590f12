// Parley's browser client: IRC over WebSocket (IRCv3 binding, subprotocol text.ircv3.net, one
// line per frame) through the project's own IrcClient and codec, bundled for the browser. A
// message shows as sent once the server echoes it (echo-message): that echo means it is stored.
// Missed messages are fetched with CHATHISTORY, on join, on reconnect, and whenever a msgid's
// sequence number shows a gap. Everything from the network is rendered as text, never as HTML.

import { parseMsgid, type IrcMessage } from '@parley/protocol';
import { BrowserWebSocketTransport, IrcClient, IrcClientError } from '@parley/client/browser';

interface Item {
  time: string;
  seq: number | null;
  /** A channel event (join, part, ...) or a notice from the client itself. */
  event?: string;
  from?: string;
  text?: string;
  notice?: boolean;
  /** Set while our own message waits for its echo. */
  label?: string;
}

interface Channel {
  name: string;
  topic: string;
  /** nick -> operator */
  members: Map<string, boolean>;
  /** NAMES replies being collected until 366. */
  names: Map<string, boolean> | null;
  items: Item[];
  seen: Set<string>;
  lastSeq: number;
  lastMsgid: string;
  unread: number;
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

const state = {
  client: null as IrcClient | null,
  nick: '',
  registered: false,
  wantClose: false,
  backoff: 1000,
  labels: 0,
  current: null as string | null,
  /** Lower-case name -> channel. */
  channels: new Map<string, Channel>(),
};

function channel(name: string): Channel {
  const key = name.toLowerCase();
  let c = state.channels.get(key);
  if (!c) {
    c = { name, topic: '', members: new Map(), names: null, items: [], seen: new Set(), lastSeq: 0, lastMsgid: '', unread: 0 };
    state.channels.set(key, c);
  }
  return c;
}

/** Sends when registered; a message that cannot be put on a line becomes a notice, not a crash. */
function send(command: string, params: string[], tags: Record<string, string> = {}): boolean {
  const client = state.client;
  if (!client || !state.registered) return false;
  try {
    client.send({ tags, source: undefined, command, params });
    return true;
  } catch (err) {
    notice(`not sent: ${(err as Error).message}`);
    return false;
  }
}

function setStatus(text: string, online: boolean): void {
  $('status').textContent = text;
  $('status').classList.toggle('online', online);
}

const nickOf = (source: string | undefined): string => (source ?? '').split('!')[0] ?? '';

// ---- connection -----------------------------------------------------------------------------

function connect(): void {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const client = new IrcClient({
    transport: new BrowserWebSocketTransport(url),
    nick: state.nick,
    realname: 'Parley web',
    keepHistory: false,
  });
  state.client = client;
  state.registered = false;
  setStatus('connecting', false);
  client.on('message', handle);
  client.on('close', () => {
    if (state.client !== client) return;
    state.registered = false;
    if (state.wantClose) return;
    setStatus('reconnecting', false);
    // Checked when the timer fires: a refused registration (below) sets wantClose right after.
    setTimeout(() => {
      if (!state.wantClose && state.client === client) connect();
    }, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  });
  client.connect().then(
    (welcome) => {
      state.registered = true;
      state.nick = welcome.nick;
      state.backoff = 1000;
      setStatus(`online as ${state.nick}`, true);
      $('login').hidden = true;
      $('chat').hidden = false;
      for (const c of state.channels.values()) if (c.name.startsWith('#')) send('JOIN', [c.name]);
    },
    (err: unknown) => {
      const reply = err instanceof IrcClientError ? err.reply : undefined;
      // A refusal by numeric (nick in use, erroneous, ...) will not change by retrying.
      if (reply === undefined || !/^\d{3}$/.test(reply.command)) return;
      const p = reply.params;
      $('login-error').textContent = (p[p.length - 1] ?? '') + (p.length > 2 && p[1] ? `: ${p[1]}` : '');
      state.wantClose = true;
      setStatus('disconnected', false);
      $('login').hidden = false;
      $('chat').hidden = true;
    },
  );
}

function handle(m: IrcMessage): void {
  const p = m.params;
  switch (m.command) {
    case 'JOIN': {
      const c = channel(p[0] ?? '');
      const who = nickOf(m.source);
      if (who === state.nick) {
        c.members.clear();
        // Resume where we left off, or load the recent past.
        if (c.lastMsgid) send('CHATHISTORY', ['AFTER', c.name, `msgid=${c.lastMsgid}`, '1000']);
        else send('CHATHISTORY', ['LATEST', c.name, '*', '100']);
        if (!state.current) select(c.name.toLowerCase());
      } else {
        c.members.set(who, false);
        event(c, `${who} joined`, m);
      }
      return render();
    }
    case 'PART':
    case 'KICK': {
      const name = p[0] ?? '';
      const c = channel(name);
      const who = m.command === 'KICK' ? (p[1] ?? '') : nickOf(m.source);
      c.members.delete(who);
      event(c, m.command === 'KICK' ? `${who} was kicked by ${nickOf(m.source)} (${p[2] ?? ''})` : `${who} left`, m);
      if (who === state.nick) {
        state.channels.delete(name.toLowerCase());
        if (state.current === name.toLowerCase()) state.current = state.channels.keys().next().value ?? null;
      }
      return render();
    }
    case 'QUIT': {
      const who = nickOf(m.source);
      for (const c of state.channels.values()) {
        if (c.members.delete(who)) event(c, `${who} quit (${p[0] ?? ''})`, m);
      }
      return render();
    }
    case 'NICK': {
      const who = nickOf(m.source);
      const to = p[0] ?? '';
      if (who === state.nick) state.nick = to;
      for (const c of state.channels.values()) {
        if (c.members.has(who)) {
          c.members.set(to, c.members.get(who) ?? false);
          c.members.delete(who);
          event(c, `${who} is now ${to}`, m);
        }
      }
      return render();
    }
    case '332':
      channel(p[1] ?? '').topic = p[2] ?? '';
      return render();
    case 'TOPIC': {
      const c = channel(p[0] ?? '');
      c.topic = p[1] ?? '';
      event(c, `${nickOf(m.source)} set the topic: ${p[1] ?? ''}`, m);
      return render();
    }
    case '353': {
      const c = channel(p[2] ?? '');
      c.names ??= new Map();
      for (const n of (p[3] ?? '').split(' ')) if (n) c.names.set(n.replace(/^@/, ''), n.startsWith('@'));
      return;
    }
    case '366': {
      const c = channel(p[1] ?? '');
      if (c.names) c.members = c.names;
      c.names = null;
      return render();
    }
    case 'PRIVMSG':
    case 'NOTICE':
      return message(m);
    case 'FAIL':
      return notice(`${p[0] ?? ''} ${p[1] ?? ''}: ${p[p.length - 1] ?? ''}`);
    case 'ERROR':
      return notice(p[0] ?? 'connection closed');
    default:
      // Before registration the client reports refusals itself (connect() rejects).
      if (state.registered && /^4\d\d$/.test(m.command)) notice(p.slice(1).join(' '));
  }
}

function message(m: IrcMessage): void {
  const target = m.params[0] ?? '';
  const from = nickOf(m.source);
  const name = target.startsWith('#') ? target : from === state.nick ? target : from;
  if (!name) return;
  const c = channel(name);
  const id = m.tags['msgid'];
  if (id !== undefined) {
    if (c.seen.has(id)) return;
    c.seen.add(id);
  }
  const seq = id === undefined ? null : (parseMsgid(id)?.seq ?? null);
  if (seq !== null && id !== undefined && target.startsWith('#')) {
    // A gap: fetch what is missing (live delivery is at-most-once; history is complete).
    if (c.lastSeq && seq > c.lastSeq + 1 && m.tags['batch'] === undefined) {
      send('CHATHISTORY', ['AFTER', c.name, `msgid=${c.lastMsgid}`, String(seq - c.lastSeq - 1)]);
    }
    if (seq > c.lastSeq) {
      c.lastSeq = seq;
      c.lastMsgid = id;
    }
  }
  const label = m.tags['label'];
  const pending = label !== undefined ? c.items.findIndex((it) => it.label === label) : -1;
  if (pending >= 0) c.items.splice(pending, 1);
  insert(c, { time: m.tags['time'] ?? new Date().toISOString(), from, text: m.params[1] ?? '', seq, notice: m.command === 'NOTICE' });
  if (state.current !== c.name.toLowerCase()) c.unread++;
  render();
}

/** Keeps a channel's messages in sequence order (history may arrive after live messages). */
function insert(c: Channel, item: Item): void {
  let i = c.items.length;
  if (item.seq !== null) {
    for (let prev = c.items[i - 1]; prev && prev.seq !== null && prev.seq > item.seq; prev = c.items[i - 1]) i--;
  }
  c.items.splice(i, 0, item);
  if (c.items.length > 2000) c.items.splice(0, c.items.length - 2000);
}

function event(c: Channel, text: string, m: IrcMessage): void {
  c.items.push({ time: m.tags['time'] ?? new Date().toISOString(), event: text, seq: null });
}

function notice(text: string): void {
  const c = state.current !== null ? state.channels.get(state.current) : undefined;
  if (c) {
    c.items.push({ time: new Date().toISOString(), event: text, seq: null });
    render();
  } else {
    $('login-error').textContent = text;
  }
}

// ---- view -----------------------------------------------------------------------------------

function select(key: string): void {
  state.current = key;
  const c = state.channels.get(key);
  if (c) c.unread = 0;
  render();
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(): void {
  $('channels').replaceChildren(
    ...[...state.channels.entries()].map(([key, c]) => {
      const li = el('li', key === state.current ? 'active' : '', c.name);
      if (c.unread) li.append(el('span', 'unread', String(c.unread)));
      li.onclick = () => select(key);
      return li;
    }),
  );
  const c = state.current !== null ? state.channels.get(state.current) : undefined;
  $('title').textContent = c ? c.name : '';
  $('topic').textContent = c ? c.topic : '';
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(
    ...(c ? c.items : []).map((it) => {
      const li = el('li', it.event !== undefined ? 'event' : it.label !== undefined ? 'pending' : '');
      li.append(el('span', 'time', it.time.slice(11, 19)));
      if (it.event !== undefined) li.append(it.event);
      else li.append(el('span', 'nick', it.notice ? `-${it.from ?? ''}-` : `<${it.from ?? ''}>`), it.text ?? '');
      if (it.seq !== null) li.dataset['seq'] = String(it.seq);
      return li;
    }),
  );
  if (atBottom) box.scrollTop = box.scrollHeight;
  $('members').replaceChildren(
    ...(c ? [...c.members.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : []).map(([n, op]) => el('li', '', (op ? '@' : '') + n)),
  );
}

// ---- forms ----------------------------------------------------------------------------------

$<HTMLFormElement>('login').onsubmit = (ev) => {
  ev.preventDefault();
  state.nick = $<HTMLInputElement>('nick').value.trim();
  const ch = $<HTMLInputElement>('channel').value.trim();
  $('login-error').textContent = '';
  state.channels.clear();
  if (ch) channel(ch.startsWith('#') ? ch : `#${ch}`);
  state.wantClose = false;
  state.client?.destroy();
  connect();
};

$<HTMLFormElement>('join').onsubmit = (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('join-name');
  let name = input.value.trim();
  if (!name) return;
  if (!name.startsWith('#')) name = `#${name}`;
  channel(name);
  send('JOIN', [name]);
  input.value = '';
  select(name.toLowerCase());
};

$<HTMLFormElement>('send').onsubmit = (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('text');
  const text = input.value;
  const c = state.current !== null ? state.channels.get(state.current) : undefined;
  if (!text.trim() || !c) return;
  for (const part of text.match(/[\s\S]{1,400}/g) ?? []) {
    const label = `w${++state.labels}`;
    c.items.push({ time: new Date().toISOString(), from: state.nick, text: part, seq: null, label });
    send('PRIVMSG', [c.name, part], { label });
  }
  input.value = '';
  render();
};
