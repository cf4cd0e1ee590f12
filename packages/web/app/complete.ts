// Tab completion (pure): the word before the cursor is completed from nicks, #channels or
// /commands; repeated Tab cycles through the candidates.

import { asciiLower } from './text.js';

export interface Completion {
  /** The whole input after completing. */
  value: string;
  cursor: number;
}

export interface CompletionState {
  /** Input and cursor the cycle started from, and the candidates found then. */
  base: string;
  start: number;
  end: number;
  candidates: string[];
  index: number;
  /** What the input looked like after the last step (a change ends the cycle). */
  last: string;
}

export interface Sources {
  nicks: readonly string[];
  channels: readonly string[];
  commands: readonly string[];
}

/**
 * Completes `value` at `cursor`. `prev` continues a cycle when the input is what the previous
 * step left. Returns null when nothing matches.
 */
export function complete(value: string, cursor: number, src: Sources, prev: CompletionState | null): { result: Completion; state: CompletionState } | null {
  let st = prev !== null && prev.last === value ? prev : null;
  if (st === null) {
    const before = value.slice(0, cursor);
    const m = /(\S*)$/.exec(before) as RegExpExecArray;
    const word = m[1] ?? '';
    const start = cursor - word.length;
    let candidates: string[];
    const w = asciiLower(word);
    if (word.startsWith('/') && start === 0) {
      candidates = src.commands.filter((c) => c.startsWith(w.slice(1))).map((c) => `/${c}`);
    } else if (word.startsWith('#')) {
      candidates = src.channels.filter((c) => asciiLower(c).startsWith(w));
    } else {
      if (word === '') return null;
      candidates = src.nicks.filter((n) => asciiLower(n).startsWith(w));
    }
    if (candidates.length === 0) return null;
    st = { base: value, start, end: cursor, candidates, index: -1, last: '' };
  }
  st.index = (st.index + 1) % st.candidates.length;
  const pick = st.candidates[st.index] as string;
  // A nick at the start of the line is addressed ("nick: "), elsewhere followed by a space.
  const isNick = !pick.startsWith('#') && !pick.startsWith('/');
  const suffix = st.start === 0 && isNick ? ': ' : ' ';
  const head = st.base.slice(0, st.start) + pick + suffix;
  const tail = st.base.slice(st.end).replace(/^ /, '');
  const value2 = head + tail;
  st.last = value2;
  return { result: { value: value2, cursor: head.length }, state: st };
}
