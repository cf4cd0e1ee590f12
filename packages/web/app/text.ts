// Pure text helpers of the chat client (no DOM): byte-exact splitting, CTCP ACTION, IRC
// formatting codes, mentions, nick colours. Unit-tested in Node (test/unit/web-build.test.ts).

import { utf8Length } from '@parley/protocol';

const encoder = new TextEncoder();

/** UTF-8 length of one code point. */
function cpBytes(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/**
 * Splits `text` into pieces of at most `maxBytes` UTF-8 bytes each, never inside a code point,
 * preferring the last space of a piece when it lies in the piece's second half (the space is the
 * boundary and is not repeated). Nothing is dropped but those boundary spaces: joining the pieces
 * with ' ' at the word cuts gives the text back. `maxBytes` below 4 is raised to 4 (one code point).
 */
export function splitMessage(text: string, maxBytes: number): string[] {
  const max = Math.max(4, Math.floor(maxBytes));
  if (encoder.encode(text).length <= max) return [text];
  const out: string[] = [];
  let start = 0;
  while (start < text.length) {
    let bytes = 0;
    let i = start;
    let lastSpace = -1;
    while (i < text.length) {
      const cp = text.codePointAt(i) as number;
      const n = cpBytes(cp);
      if (bytes + n > max) break;
      if (cp === 0x20) lastSpace = i;
      bytes += n;
      i += cp > 0xffff ? 2 : 1;
    }
    if (i >= text.length) {
      out.push(text.slice(start));
      break;
    }
    if (lastSpace > start && lastSpace - start >= (i - start) / 2) {
      out.push(text.slice(start, lastSpace));
      start = lastSpace + 1;
    } else {
      out.push(text.slice(start, i));
      start = i;
    }
  }
  return out;
}

/** How the server will relay our PRIVMSG: the bytes left for the text of one message. */
export interface LineBudget {
  /** ISUPPORT LINELEN (bytes of a line without tags, CRLF included); default 512 */
  lineLen: number;
  /** our `nick!user@host` as the server shows it (from an echo), or a worst-case guess */
  source: string;
}

/**
 * Bytes available for the text of `PRIVMSG <target> :<text>` once the server has put
 * `:<source> ` in front (the line others receive must fit LINELEN too); `action` leaves room for
 * the CTCP ACTION wrapping.
 */
export function textBudget(b: LineBudget, command: string, target: string, action: boolean): number {
  const fixed = utf8Length(`:${b.source} ${command} ${target} :`) + 2 + (action ? 9 : 0);
  return b.lineLen - fixed;
}

/** The guess used before the first echo shows our real prefix: a 16-char user, an IPv6 host. */
export function guessSource(nick: string): string {
  return `${nick}!~${'u'.repeat(16)}@${'h'.repeat(45)}`;
}

/** `\x01ACTION text\x01` → the action text; anything else → null. */
export function ctcpAction(text: string): string | null {
  if (!text.startsWith('\x01ACTION')) return null;
  const body = text.endsWith('\x01') && text.length > 1 ? text.slice(8, -1) : text.slice(8);
  return text.charAt(7) === '\x01' ? '' : body;
}

/** Another CTCP (VERSION, PING ...) → its command; null when not CTCP. */
export function ctcpCommand(text: string): string | null {
  if (!text.startsWith('\x01') || text.length < 2) return null;
  const end = text.indexOf(' ');
  return text.slice(1, end === -1 ? (text.endsWith('\x01') ? -1 : undefined) : end).toUpperCase();
}

export const action = (text: string): string => `\x01ACTION ${text}\x01`;

/** IRC formatting (bold, colours, italics, reverse, reset ...) removed: the client shows plain text. */
export function stripFormatting(text: string): string {
  return text.replace(/\x03(\d{1,2}(,\d{1,2})?)?|\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]/g, '');
}

/** Characters a nick may contain: a mention is the nick not touching another of them. */
const NICK_CHAR = /[A-Za-z0-9[\]\\`_^{|}-]/;

/** True when `text` names `nick` as a word (ASCII case-insensitive). */
export function mentions(text: string, nick: string): boolean {
  if (nick === '') return false;
  const t = asciiLower(text);
  const n = asciiLower(nick);
  for (let i = t.indexOf(n); i !== -1; i = t.indexOf(n, i + 1)) {
    const before = t.charAt(i - 1);
    const after = t.charAt(i + n.length);
    if ((before === '' || !NICK_CHAR.test(before)) && (after === '' || !NICK_CHAR.test(after))) return true;
  }
  return false;
}

/** CASEMAPPING=ascii: only A-Z fold. */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/** A stable hue (0-359) per nick, for its colour. */
export function nickHue(nick: string): number {
  let h = 0;
  for (let i = 0; i < nick.length; i++) h = (Math.imul(h, 31) + nick.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** Text cut into plain runs and http(s) links (the only URLs made clickable). */
export function linkify(text: string): Array<{ text: string; href?: string }> {
  const out: Array<{ text: string; href?: string }> = [];
  const re = /\bhttps?:\/\/[^\s<>"'`]+/g;
  let last = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    let url = m[0];
    // Trailing punctuation usually belongs to the sentence, not the link.
    const trail = /[.,;:!?)\]]+$/.exec(url);
    if (trail) url = url.slice(0, -trail[0].length);
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ text: url, href: url });
    last = m.index + url.length;
    re.lastIndex = last;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/**
 * Retry-after of `FAIL … RATE_LIMITED <target> <retry-after> :text` in milliseconds. A delay the
 * text states ("retry in 1 second", "retry in 250 ms") is taken first, since servers have sent the
 * parameter in seconds and now send it in milliseconds; otherwise the parameter, in milliseconds.
 */
export function retryAfterMs(value: string | undefined, description: string): number | null {
  const said = /retry in (\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?)\b/i.exec(description);
  if (said) return Number(said[1]) * (said[2]?.toLowerCase().startsWith('m') ? 1 : 1000);
  if (value === undefined || !/^\d+(\.\d+)?$/.test(value)) return null;
  return Number(value);
}
