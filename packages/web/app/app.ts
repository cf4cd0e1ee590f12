// Parley's browser client: IRC over WebSocket (IRCv3 binding, one line per frame) through the
// project's own IrcClient and codec (@parley/client/browser, @parley/protocol), bundled by
// esbuild. The parts: state.ts (buffers, session), connection.ts (reconnect, labels, own
// messages), irc.ts (incoming lines), history.ts (CHATHISTORY), commands.ts (slash commands),
// render.ts (the DOM, text only), ui.ts (keyboard, panels), stats.ts (the live total).
// This file wires them together.

import type { IrcMessage } from '@parley/protocol';
import { execute, type CommandHost } from './commands.js';
import { pieces, reconnectNow, send, sendRaw, start, stop, transmit, type ConnectionEvents } from './connection.js';
import { fill, older, targets } from './history.js';
import { handle } from './irc.js';
import { $, render, schedule, setActions } from './render.js';
import { buffer, changed, current, find, forget, insert, isChannel, load, note, onChange, removeBuffer, select, serverBuffer, state, type Buffer, type Item } from './state.js';
import { startTotal } from './stats.js';
import { bindKeys, showChat } from './ui.js';

onChange(schedule);

function say(target: string, text: string, isAction = false): void {
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
  query: (name) => select(buffer(name).key),
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
  quit: (reason) => {
    stop(reason || 'Leaving');
    forget();
    location.reload();
  },
};

const events: ConnectionEvents = {
  message: (m: IrcMessage) => handle(m),
  registered: () => {
    showChat(true);
    $('login-error').textContent = '';
    const channels = [...state.buffers.values()].filter((b) => b.kind === 'channel' && !b.kicked).map((b) => b.name);
    // Channels refill after their JOIN (irc.ts); DMs need no JOIN.
    if (channels.length) send('JOIN', [channels.join(',')]);
    for (const b of state.buffers.values()) if (b.kind === 'dm') fill(b);
    targets();
    if (state.current === serverBuffer().key && channels[0]) select(buffer(channels[0]).key);
    changed();
  },
  refused: (reply, retrying) => {
    const p = reply.params;
    const why = (p.length > 2 && p[1] ? `${p[1]}: ` : '') + (p[p.length - 1] ?? '');
    if (retrying) return note(serverBuffer(), 'error', `${why} (retrying)`);
    if (!$('chat').hidden && state.buffers.size > 1) {
      note(current(), 'error', `Could not reconnect: ${why}. Reload to try again, or /quit to pick another nick.`);
      return;
    }
    forget();
    $('login-error').textContent = why;
    showChat(false);
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
    select(buffer(nick, 'dm').key);
    document.body.classList.remove('show-members');
  },
});

/** `restored`: a saved session, whose nick may still be held a moment by the page it came from. */
function begin(restored: boolean): void {
  serverBuffer();
  start(events, restored);
  startTotal();
}

$<HTMLFormElement>('login').onsubmit = (ev) => {
  ev.preventDefault();
  const nick = $<HTMLInputElement>('nick').value.trim();
  const ch = $<HTMLInputElement>('channel').value.trim();
  $('login-error').textContent = '';
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

bindKeys({ run: (line) => execute(host, line), scrolledToTop: () => older(current()) });

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
if (saved) {
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
