// Parley's browser client: IRC over WebSocket (IRCv3 binding, one line per frame) through the
// project's own IrcClient and codec (@parley/client/browser, @parley/protocol), bundled by
// esbuild. The parts: state.ts (buffers, session), connection.ts (reconnect, labels, own
// messages), irc.ts (incoming lines), history.ts (CHATHISTORY), commands.ts (slash commands),
// render.ts (the DOM, text only), ui.ts (keyboard, panels), stats.ts (the live total), account.ts
// (log-in, registration, the password kept for reconnects). This file wires them together.

import type { IrcMessage } from '@parley/protocol';
import { authFailure, isService, masked } from './account.js';
import { forgetCredentials, restoreCredentials, useCredentials } from './credentials.js';
import { execute, isSecret, type CommandHost } from './commands.js';
import { pieces, reconnectNow, send, sendRaw, start, stop, transmit, type ConnectionEvents } from './connection.js';
import { fill, older, targets } from './history.js';
import { handle } from './irc.js';
import { $, render, schedule, setActions } from './render.js';
import { buffer, changed, current, find, forget, insert, isChannel, load, note, onChange, removeBuffer, select, serverBuffer, state, type Buffer, type Item } from './state.js';
import { startTotal } from './stats.js';
import { bindKeys, showChat } from './ui.js';

onChange(schedule);

/**
 * A line to NickServ or ChanServ: the server neither stores nor echoes it, so it is not a pending
 * message; it is shown as a note, and to NickServ (passwords) with all but its command hidden.
 */
function tellService(target: string, text: string): void {
  const b = find(target) ?? current();
  try {
    if (send('PRIVMSG', [target, text], { kind: 'command', buffer: b }) === false) return note(b, 'error', `Not connected: nothing was sent to ${target}`);
  } catch (err) {
    return note(b, 'error', (err as Error).message);
  }
  note(b, 'info', `→ ${target}: ${target.toLowerCase() === 'nickserv' ? masked(text) : text}`);
}

function say(target: string, text: string, isAction = false): void {
  if (isService(target) && !isAction) return tellService(target, text);
  const b = buffer(target);
  for (const piece of pieces(target, text, isAction)) {
    const it = insert(b, {
      kind: isAction ? 'action' : 'message',
      time: Date.now(),
      from: state.nick,
      text: piece,
      self: true,
      out: { state: 'queued', target: b.name, text: piece, action: isAction, since: Date.now() },
    });
    transmit(b, it);
  }
  changed();
}

function joinChannels(names: string[]): void {
  if (names.length === 0) return;
  for (const n of names) buffer(n, 'channel').kicked = false;
  const first = buffer(names[0] as string, 'channel');
  select(first.key);
  if (state.registered) send('JOIN', [names.join(',')]);
}

/** Shows a channel's or a nick's buffer; a DM opened for the first time loads its latest page. */
function open(name: string): void {
  const fresh = find(name) === undefined;
  const b = buffer(name);
  select(b.key);
  if (fresh && b.kind === 'dm' && state.registered) fill(b);
}

function close(b: Buffer): void {
  if (b.kind === 'channel' && b.joined && state.registered) {
    // The buffer goes when the server confirms the PART (irc.ts).
    send('PART', [b.name]);
    return;
  }
  removeBuffer(b);
}

const host: CommandHost = {
  where: () => {
    const b = current();
    return { kind: b.kind, name: b.name };
  },
  print: (text, error) => note(current(), error ? 'error' : 'info', text),
  say,
  join: joinChannels,
  part: (channel, reason) => {
    const b = find(channel);
    if (!b || !b.joined || !state.registered) {
      if (b) removeBuffer(b);
      if (!b) note(current(), 'error', `Not in ${channel}`);
      return;
    }
    send('PART', reason === '' ? [b.name] : [b.name, reason]);
  },
  close: (name) => {
    const b = find(name);
    if (b) close(b);
  },
  query: (name) => open(name),
  send: (command, params) => {
    try {
      if (send(command, params, { kind: 'command', buffer: current() }) === false) note(current(), 'error', `Not connected: /${command.toLowerCase()} was not sent`);
    } catch (err) {
      note(current(), 'error', (err as Error).message);
    }
  },
  raw: (line) => {
    if (/[\r\n\0]/.test(line)) return note(current(), 'error', 'A raw line cannot contain CR, LF or NUL');
    if (!sendRaw(line)) note(current(), 'error', 'Not connected: the line was not sent');
  },
  clear: () => {
    const b = current();
    b.items = b.items.filter((it) => it.out !== undefined && it.out.state !== 'failed');
    b.historyDone = false;
    changed();
  },
  quit: (reason) => leave(reason || 'Leaving'),
  logout: () => leave('Logged out'),
};

/** Disconnects and forgets the session and any password: the page starts again at the login form. */
function leave(reason: string): void {
  stop(reason);
  forget();
  forgetCredentials();
  location.reload();
}

const events: ConnectionEvents = {
  message: (m: IrcMessage) => handle(m),
  registered: () => {
    showChat(true);
    $('login-error').textContent = '';
    $('password-error').textContent = '';
    const channels = [...state.buffers.values()].filter((b) => b.kind === 'channel' && !b.kicked).map((b) => b.name);
    // Channels refill after their JOIN (irc.ts); DMs need no JOIN.
    if (channels.length) send('JOIN', [channels.join(',')]);
    for (const b of state.buffers.values()) if (b.kind === 'dm') fill(b);
    targets();
    if (state.current === serverBuffer().key && channels[0]) select(buffer(channels[0]).key);
    changed();
  },
  refused: (reply, message, retrying, auth) => {
    const p = reply?.params ?? [];
    const why = auth ? authFailure(reply, message) : (p.length > 2 && p[1] ? `${p[1]}: ` : '') + (p[p.length - 1] ?? '');
    if (retrying) return note(serverBuffer(), 'error', `${why} (retrying)`);
    if (!$('chat').hidden && state.buffers.size > 1) {
      // A password refused now will be refused again: a reload asks for it.
      if (auth) forgetCredentials();
      note(current(), 'error', `Could not reconnect: ${why.replace(/\.?$/, '.')} Reload to try again, or /quit to pick another nick.`);
      return;
    }
    forget();
    forgetCredentials();
    // A refused password is said next to the password field; anything else under the form.
    $(auth ? 'password-error' : 'login-error').textContent = why;
    showChat(false);
    if (auth) passwordInput.focus();
  },
  closed: () => {
    for (const b of state.buffers.values()) {
      b.loadingOlder = false;
      if (b.kind === 'channel') b.joined = false;
    }
    changed();
  },
};

setActions({
  select: (key) => {
    select(key);
    document.body.classList.remove('show-nav', 'show-members');
    $('text').focus();
  },
  close,
  retry: (b: Buffer, it: Item) => transmit(b, it),
  discard: (b: Buffer, it: Item) => {
    b.items = b.items.filter((x) => x !== it);
    changed();
  },
  query: (nick) => {
    open(nick);
    document.body.classList.remove('show-members');
  },
});

/** `restored`: a saved session, whose nick may still be held a moment by the page it came from. */
function begin(restored: boolean): void {
  serverBuffer();
  start(events, restored);
  startTotal();
}

const passwordInput = $<HTMLInputElement>('password');
/** The main button says what it will do: connect as a guest, or log in. */
const loginLabel = (): void => {
  $('connect').textContent = passwordInput.value === '' ? 'Connect' : 'Log in';
};
passwordInput.addEventListener('input', loginLabel);

$<HTMLFormElement>('login').onsubmit = (ev) => {
  ev.preventDefault();
  const nick = $<HTMLInputElement>('nick').value.trim();
  const ch = $<HTMLInputElement>('channel').value.trim();
  const password = passwordInput.value;
  const register = (ev.submitter as HTMLButtonElement | null)?.id === 'register';
  $('login-error').textContent = '';
  $('password-error').textContent = '';
  if (register && password === '') {
    $('password-error').textContent = 'Choose a password to register your nick as an account.';
    passwordInput.focus();
    return;
  }
  // The account is the nick; the password stays in memory until the server accepts it.
  useCredentials(password === '' ? null : { mode: register ? 'register' : 'login', account: nick, password });
  passwordInput.value = '';
  loginLabel();
  state.nick = nick;
  for (const b of [...state.buffers.values()]) if (b.kind !== 'server') state.buffers.delete(b.key);
  if (ch) {
    for (const name of ch.split(',')) if (name.trim()) buffer(isChannel(name.trim()) ? name.trim() : `#${name.trim()}`, 'channel');
  }
  begin(false);
};

$<HTMLFormElement>('join').onsubmit = (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('join-name');
  const name = input.value.trim();
  if (!name) return;
  input.value = '';
  if (isChannel(name)) joinChannels([name]);
  else host.query(name);
};

$('messages').addEventListener('scroll', () => {
  const box = $('messages');
  if (box.scrollTop < 60) older(current());
});

bindKeys({ run: (line) => execute(host, line), keep: (line) => !isSecret(line, host.where()), scrolledToTop: () => older(current()) });
$('logout').onclick = () => leave('Logged out');

addEventListener('online', reconnectNow);
// A page that goes away says goodbye, so that its nick is free at once for the reloaded page.
addEventListener('pagehide', (ev) => {
  if (!ev.persisted) stop('Page closed');
});
addEventListener('pageshow', (ev) => {
  if (ev.persisted && state.nick) begin(true);
});
addEventListener('parley-select', (ev) => select(String((ev as CustomEvent<unknown>).detail)));
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') {
    const b = current();
    b.unread = 0;
    b.mentions = 0;
    changed();
  }
});

const saved = load();
if (saved && saved.account !== '' && restoreCredentials() === null) {
  // An account's session in a new tab or after the browser was closed: its password is gone.
  $<HTMLInputElement>('nick').value = saved.account;
  $<HTMLInputElement>('channel').value = saved.channels.join(',');
  $('password-error').textContent = `Type the password of ${saved.account} to log in again (it is kept only while this tab is open).`;
  showChat(false);
  passwordInput.focus();
} else if (saved) {
  state.nick = saved.nick;
  state.notify = saved.notify;
  for (const [k, t] of saved.closedDms) state.closedDms.set(k, t);
  for (const c of saved.channels) buffer(c, 'channel');
  for (const d of saved.dms) buffer(d, 'dm');
  state.current = state.buffers.has(saved.current) ? saved.current : state.current;
  showChat(true);
  begin(true);
} else {
  showChat(false);
}
render();
