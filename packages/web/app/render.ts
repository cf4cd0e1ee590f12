// The view: sidebar (server, channels, DMs apart), messages, members, topic, status. Only
// textContent and element properties are used: no text from the network is ever parsed as HTML.
// One render per animation frame; a message's element is built once and reused until it changes.

import { prefixes } from './irc.js';
import { title } from './notify.js';
import { current, keyOf, ordered, state, type Buffer, type Item } from './state.js';
import { linkify, nickHue } from './text.js';

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls = '', text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export interface ViewActions {
  select(key: string): void;
  close(b: Buffer): void;
  retry(b: Buffer, it: Item): void;
  discard(b: Buffer, it: Item): void;
  query(nick: string): void;
}

let actions: ViewActions | null = null;
let scheduled = false;
let shownKey = '';

export function setActions(a: ViewActions): void {
  actions = a;
}

export function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  // Hidden tabs get no animation frames; they still keep their title up to date.
  if (document.visibilityState === 'visible') requestAnimationFrame(render);
  else setTimeout(render, 200);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });

function sidebarItem(b: Buffer): HTMLLIElement {
  const li = el('li', b.key === state.current ? 'active' : '');
  li.dataset['key'] = b.key;
  if (b.kind === 'channel' && !b.joined) li.classList.add('gone');
  if (b.mentions) li.classList.add('has-mention');
  const link = el('button', 'buffer', b.kind === 'server' ? state.network : b.name);
  link.type = 'button';
  link.onclick = () => actions?.select(b.key);
  li.append(link);
  if (b.unread) li.append(el('span', b.mentions ? 'badge mention' : 'badge', String(b.unread)));
  if (b.kind !== 'server') {
    const x = el('button', 'close', '×');
    x.type = 'button';
    x.title = b.kind === 'channel' ? `Leave ${b.name}` : `Close ${b.name}`;
    x.setAttribute('aria-label', x.title);
    x.onclick = () => actions?.close(b);
    li.append(x);
  }
  return li;
}

function itemNode(b: Buffer, it: Item): HTMLElement {
  if (it.dom) return it.dom;
  const li = el('li', it.kind);
  if (it.seq !== undefined) li.dataset['seq'] = String(it.seq);
  if (it.msgid !== undefined) li.dataset['msgid'] = it.msgid;
  if (it.mention) li.classList.add('mention');
  if (it.self || it.out) li.classList.add('self');
  const d = new Date(it.time);
  const t = el('time', 'time', timeFmt.format(d));
  t.dateTime = d.toISOString();
  t.title = d.toLocaleString();
  li.append(t);
  if (it.from !== undefined) {
    const nick = el('span', 'nick', it.kind === 'action' ? `* ${it.from}` : it.kind === 'notice' ? `-${it.from}-` : it.from);
    nick.style.color = `hsl(${nickHue(it.from)} 55% 38%)`;
    li.append(nick);
  }
  const text = el('span', 'text');
  for (const part of linkify(it.text)) {
    if (part.href === undefined) text.append(part.text);
    else {
      const a = el('a', '', part.text);
      a.href = part.href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      text.append(a);
    }
  }
  li.append(text);
  const out = it.out;
  if (out) {
    li.classList.add(out.state);
    li.title = out.state === 'queued' ? 'waiting for the connection' : out.state === 'pending' ? 'sent, waiting for the server' : '';
    if (out.state === 'failed') {
      li.append(el('span', 'reason', out.reason ?? 'not sent'));
      const retry = el('button', 'retry', 'Retry');
      retry.type = 'button';
      retry.onclick = () => actions?.retry(b, it);
      const drop = el('button', 'discard', 'Discard');
      drop.type = 'button';
      drop.onclick = () => actions?.discard(b, it);
      li.append(retry, drop);
    }
  }
  it.dom = li;
  return li;
}

function messages(b: Buffer): void {
  const box = $('messages');
  const switched = shownKey !== b.key;
  shownKey = b.key;
  const atBottom = switched || box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  // Anchor: the first message shown keeps its place when older ones are put above it.
  const anchor = box.querySelector<HTMLElement>('li[data-msgid]');
  const anchorTop = anchor?.offsetTop ?? 0;
  const nodes: HTMLElement[] = [];
  if (b.loadingOlder) nodes.push(el('li', 'loading', 'loading older messages…'));
  else if (b.historyDone && b.kind !== 'server') nodes.push(el('li', 'start', `beginning of ${b.name}`));
  let day = '';
  for (const it of b.items) {
    const d = dayFmt.format(new Date(it.time));
    if (d !== day) {
      if (day !== '' || b.historyDone) nodes.push(el('li', 'day', d));
      day = d;
    }
    nodes.push(itemNode(b, it));
  }
  box.replaceChildren(...nodes);
  if (atBottom) box.scrollTop = box.scrollHeight;
  else if (anchor && anchor.isConnected) box.scrollTop += anchor.offsetTop - anchorTop;
}

function members(b: Buffer): void {
  const { chars } = prefixes();
  const rank = (p: string): number => (p === '' ? chars.length : chars.indexOf(p.charAt(0)));
  const list = [...b.members.entries()].sort(([a, pa], [z, pz]) => rank(pa) - rank(pz) || (a.toLowerCase() < z.toLowerCase() ? -1 : 1));
  $('members').replaceChildren(
    ...list.map(([nick, prefix]) => {
      const li = el('li');
      const account = state.accounts.get(keyOf(nick));
      const btn = el('button', account === undefined ? 'member' : 'member logged-in', prefix.charAt(0) + nick);
      btn.type = 'button';
      btn.title = account === undefined ? `Message ${nick}` : `Message ${nick} (logged in as ${account})`;
      btn.onclick = () => actions?.query(nick);
      li.append(btn);
      return li;
    }),
  );
  $('member-count').textContent = b.kind === 'channel' ? String(b.members.size) : '';
}

export function render(): void {
  scheduled = false;
  const b = current();
  const all = ordered();
  $('server-buffer').replaceChildren(...all.filter((x) => x.kind === 'server').map(sidebarItem));
  $('channels').replaceChildren(...all.filter((x) => x.kind === 'channel').map(sidebarItem));
  $('dms').replaceChildren(...all.filter((x) => x.kind === 'dm').map(sidebarItem));
  $('title').textContent = b.kind === 'server' ? state.network : b.name;
  const peer = b.kind === 'dm' ? state.accounts.get(b.key) : undefined;
  $('topic').textContent = b.kind === 'channel' ? b.topic : b.kind === 'dm' ? `Direct messages with ${b.name}${peer === undefined ? '' : ` (logged in as ${peer})`}` : 'Server messages';
  $('topic').title = b.topic;
  document.body.classList.toggle('no-members', b.kind !== 'channel');
  messages(b);
  members(b);
  $('account').textContent = state.account === null ? (state.registered ? 'guest' : '') : `logged in as ${state.account}`;
  $('account').title = state.account === null ? 'Not logged in: direct messages last only as long as this connection' : '';
  $('logout').hidden = state.account === null;
  $('status').textContent = state.status;
  $('status').classList.toggle('online', state.online);
  $('total').textContent = state.total === null ? '' : `${state.total.toLocaleString()} messages`;
  document.title = title(b.kind === 'server' ? '' : b.name);
}
