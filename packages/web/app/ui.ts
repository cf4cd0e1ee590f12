// Keyboard and panels: Enter sends (one line, one message), Tab completes, ↑/↓ recall what was
// typed, Alt+↑/↓ (or Alt+1…9) switch buffers, Ctrl+K opens the buffer switcher, Escape closes
// panels. On a narrow screen the buffer list and the member list are panels over the messages.

import { COMMAND_NAMES } from './commands.js';
import { complete, type CompletionState } from './complete.js';
import { pieces } from './connection.js';
import { notificationsAvailable, toggleNotifications } from './notify.js';
import { $, el } from './render.js';
import { changed, current, ordered, save, select, state, type Buffer } from './state.js';

export function showChat(on: boolean): void {
  $('login').hidden = on;
  $('chat').hidden = !on;
  if (on) $('text').focus();
  else $('nick').focus();
}

interface Keys {
  run(line: string): void;
  /** False for a line that must not be recalled with ↑ (it may carry a password). */
  keep(line: string): boolean;
  scrolledToTop(): void;
}

const typed: string[] = [];
let recall = -1;
let completion: CompletionState | null = null;

function step(delta: number): void {
  const list = ordered();
  const i = list.findIndex((b) => b.key === state.current);
  const next = list[(i + delta + list.length) % list.length];
  if (next) select(next.key);
}

function splitHint(): void {
  const input = $<HTMLInputElement>('text');
  const b = current();
  let hint = '';
  const v = input.value;
  if (b.kind !== 'server' && v !== '' && !v.startsWith('/')) {
    const n = pieces(b.name, v, false).length;
    if (n > 1) hint = `long: sent as ${n} messages`;
  }
  $('split-hint').textContent = hint;
}

function openSwitcher(): void {
  const dlg = $<HTMLDialogElement>('switcher');
  const input = $<HTMLInputElement>('switch-input');
  const list = $('switch-list');
  const fillList = (): void => {
    const q = input.value.toLowerCase();
    const label = (b: Buffer): string => (b.kind === 'server' ? state.network : b.name).toLowerCase();
    // Names that start with what was typed come first ('le' → leo before Parley).
    const starts = (b: Buffer): boolean => label(b).startsWith(q) || label(b).startsWith(`#${q}`);
    const matches = ordered()
      .filter((b) => label(b).includes(q))
      .sort((a, b) => Number(starts(b)) - Number(starts(a)));
    list.replaceChildren(
      ...matches.map((b, i) => {
        const btn = el('button', i === 0 ? 'first' : '', b.kind === 'server' ? state.network : b.name);
        btn.type = 'button';
        btn.onclick = () => pick(b.key);
        const li = el('li');
        li.append(btn);
        return li;
      }),
    );
    input.dataset['first'] = matches[0]?.key ?? '';
  };
  const pick = (key: string): void => {
    dlg.close();
    select(key);
    $('text').focus();
  };
  input.value = '';
  input.oninput = fillList;
  input.onkeydown = (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      const k = input.dataset['first'];
      if (k) pick(k);
    }
  };
  fillList();
  dlg.showModal();
  input.focus();
}

export function bindKeys(k: Keys): void {
  const input = $<HTMLInputElement>('text');
  $<HTMLFormElement>('send').onsubmit = (ev) => {
    ev.preventDefault();
    const line = input.value;
    if (line.trim() === '') return;
    if (k.keep(line)) typed.push(line);
    if (typed.length > 100) typed.shift();
    recall = -1;
    input.value = '';
    splitHint();
    k.run(line);
  };
  input.addEventListener('input', () => {
    completion = null;
    splitHint();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Tab' && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      const b = current();
      const nicks = [...b.members.keys()];
      if (b.kind === 'dm') nicks.push(b.name);
      const channels = ordered().filter((x) => x.kind === 'channel').map((x) => x.name);
      const r = complete(input.value, input.selectionStart ?? input.value.length, { nicks, channels, commands: COMMAND_NAMES }, completion);
      if (r) {
        completion = r.state;
        input.value = r.result.value;
        input.setSelectionRange(r.result.cursor, r.result.cursor);
      }
      return;
    }
    if ((ev.key === 'ArrowUp' || ev.key === 'ArrowDown') && !ev.altKey && !ev.ctrlKey) {
      if (typed.length === 0 || (input.value !== '' && recall === -1)) return;
      ev.preventDefault();
      recall = ev.key === 'ArrowUp' ? (recall === -1 ? typed.length - 1 : Math.max(0, recall - 1)) : recall === -1 ? -1 : recall + 1;
      if (recall >= typed.length) recall = -1;
      input.value = recall === -1 ? '' : (typed[recall] ?? '');
      splitHint();
    }
  });
  document.addEventListener('keydown', (ev) => {
    if ($('chat').hidden) return;
    if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown')) {
      ev.preventDefault();
      step(ev.key === 'ArrowUp' ? -1 : 1);
    } else if (ev.altKey && /^[1-9]$/.test(ev.key)) {
      const b = ordered()[Number(ev.key) - 1];
      if (b) {
        ev.preventDefault();
        select(b.key);
      }
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 'k') {
      ev.preventDefault();
      openSwitcher();
    } else if (ev.key === 'Escape') {
      document.body.classList.remove('show-nav', 'show-members');
    } else if (ev.key === 'PageUp' && $('messages').scrollTop < 60) {
      k.scrolledToTop();
    }
  });
  $('toggle-nav').onclick = () => {
    document.body.classList.remove('show-members');
    document.body.classList.toggle('show-nav');
  };
  $('toggle-members').onclick = () => {
    document.body.classList.remove('show-nav');
    document.body.classList.toggle('show-members');
  };
  const bell = $<HTMLButtonElement>('notify');
  bell.hidden = !notificationsAvailable();
  const label = (): void => {
    bell.textContent = state.notify ? 'Alerts: on' : 'Alerts: off';
    bell.title = state.notify ? 'Desktop notifications on mentions and DMs: on' : 'Turn on desktop notifications for mentions and DMs';
  };
  label();
  bell.onclick = () => {
    toggleNotifications().then(
      () => {
        label();
        save();
        changed();
      },
      () => label(),
    );
  };
}
