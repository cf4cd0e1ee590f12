/**
 * The IRC line codec: RFC 1459/2812 framing plus IRCv3 message-tags.
 *
 * One small module shared by the server, the client, the load tool and the web client. It works on
 * decoded strings (one line, no CR/LF); byte framing of TCP streams is `LineSplitter`'s job.
 *
 * Pure: no Node built-ins (no `node:*` imports, no `Buffer`), only what browsers have too
 * (`TextDecoder`, `Uint8Array`), so the browser bundle uses this very file. A Node `Buffer` is a
 * `Uint8Array`, so Node callers pass their chunks as they are.
 */

export interface IrcMessage {
  /** Tag key → unescaped value; `{}` when the line has no tags; a tag without value maps to ''. */
  tags: Record<string, string>;
  /** Prefix without the leading ':'. `parseLine` always sets the property (undefined when absent). */
  source?: string | undefined;
  /** Upper-cased by the parser; numerics stay 3-digit strings ('001'). */
  command: string;
  params: string[];
}

/**
 * `body`: bytes of a line without its tags section, CRLF included (so 510 content bytes).
 * `tags`: bytes of the tags section, the leading '@' and the trailing space included (IRCv3
 * message-tags: 8191 bytes of tag data in total; the 4094-byte client share is not enforced here).
 */
export const LIMITS = { body: 512, tags: 8191 } as const;

/** Longest possible line content (no CR/LF) that `parseLine` can accept with the default limits. */
export const MAX_LINE_BYTES = LIMITS.tags + LIMITS.body - 2;

export type LineErrorCode = 'EMPTY' | 'TOO_LONG' | 'TAGS_TOO_LONG' | 'MALFORMED' | 'NO_COMMAND' | 'BAD_ENCODING';

export class LineError extends Error {
  override readonly name = 'LineError';
  constructor(
    readonly code: LineErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ParseOptions {
  /** Default `LIMITS.body` (counts the CRLF the line had on the wire). */
  maxBodyBytes?: number;
  /** Default `LIMITS.tags` (counts '@' and the space that ends the section). */
  maxTagBytes?: number;
}

const SPACE = 0x20;
const COLON = 0x3a;
const AT = 0x40;
const SEMI = 0x3b;
const EQ = 0x3d;
const BACKSLASH = 0x5c;

/**
 * UTF-8 length of `s[start, end)` plus `extra` exceeds `limit`? Only counts bytes when the UTF-16
 * length leaves the answer open: every code unit encodes to 1..3 bytes.
 */
function bytesExceed(s: string, start: number, end: number, extra: number, limit: number): boolean {
  const units = end - start;
  if (units + extra > limit) return true;
  if (units * 3 + extra <= limit) return false;
  return encodedExceeds(s, start, end, limit - extra);
}

/** Kept out of `bytesExceed` so that the two quick checks stay small enough to be inlined. */
function encodedExceeds(s: string, start: number, end: number, room: number): boolean {
  if (room > MAX_SCRATCH) return utf8Length(s, start, end) > room;
  // Native encoding into a scratch buffer larger than `room`: text that does not fit is too long.
  // About 10x faster than counting in a JS loop for a 300-character line.
  if (scratch.length <= room) scratch = new Uint8Array(room + 1);
  const sub = start === 0 && end === s.length ? s : s.slice(start, end);
  const r = encoder.encodeInto(sub, scratch);
  return r.read < sub.length || r.written > room;
}

const encoder = new TextEncoder();
/** Above this limit (only lenient parsers use one) bytes are counted instead of encoded. */
const MAX_SCRATCH = 64 * 1024;
let scratch = new Uint8Array(LIMITS.tags + 1);

/**
 * Bytes of `s[start, end)` in UTF-8, as `TextEncoder` would write them: a surrogate pair is 4
 * bytes, a lone surrogate 3 (it becomes U+FFFD). Counted in place: no slice, no encoding.
 */
export function utf8Length(s: string, start = 0, end = s.length): number {
  let n = end - start;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
      continue;
    }
    // 3 bytes for one unit; a surrogate pair is 4 bytes for two units, so it adds 2 as well.
    n += 2;
    if (c <= 0xdbff && c >= 0xd800 && i + 1 < end) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) i++;
    }
  }
  return n;
}

// Tag key: ['+'] [vendor '/'] name, vendor a host name, name letters/digits/'-'. Validating it keeps
// keys such as '__proto__' out of the plain objects used for tags.
const TAG_KEY = /^\+?(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\/)?[A-Za-z0-9-]+$/;

export function isValidTagKey(key: string): boolean {
  return TAG_KEY.test(key);
}

// NUL, CR and LF can never appear inside a line; a WebSocket frame could carry them.
const FORBIDDEN = /[\0\r\n]/;

/** Parses one line (without CR/LF). Throws `LineError`; never anything else. */
export function parseLine(line: string, opts?: ParseOptions): IrcMessage {
  const len = line.length;
  const maxBody = opts?.maxBodyBytes ?? LIMITS.body;
  const maxTags = opts?.maxTagBytes ?? LIMITS.tags;
  let i = 0;
  let tagEnd = -1;

  if (len > 0 && line.charCodeAt(0) === AT) {
    tagEnd = line.indexOf(' ');
    if (tagEnd === -1) {
      if (bytesExceed(line, 0, len, 1, maxTags)) throw new LineError('TAGS_TOO_LONG', 'tags section too long');
      throw new LineError('NO_COMMAND', 'tags without a command');
    }
    if (bytesExceed(line, 0, tagEnd + 1, 0, maxTags)) throw new LineError('TAGS_TOO_LONG', 'tags section too long');
    i = tagEnd + 1;
  }
  if (bytesExceed(line, i, len, 2, maxBody)) throw new LineError('TOO_LONG', 'line too long');
  if (FORBIDDEN.test(line)) throw new LineError('MALFORMED', 'NUL, CR or LF inside a line');
  const tags = tagEnd === -1 ? {} : parseTags(line, 1, tagEnd);

  while (i < len && line.charCodeAt(i) === SPACE) i++;
  if (i === len) {
    if (tagEnd !== -1) throw new LineError('NO_COMMAND', 'tags without a command');
    throw new LineError('EMPTY', 'empty line');
  }

  let source: string | undefined;
  if (line.charCodeAt(i) === COLON) {
    const sp = line.indexOf(' ', i + 1);
    const end = sp === -1 ? len : sp;
    if (end === i + 1) throw new LineError('MALFORMED', 'empty source');
    source = line.slice(i + 1, end);
    i = end;
    while (i < len && line.charCodeAt(i) === SPACE) i++;
    if (i === len) throw new LineError('NO_COMMAND', 'source without a command');
  }

  const cmdStart = i;
  let lower = false;
  for (; i < len; i++) {
    const c = line.charCodeAt(i);
    if (c === SPACE) break;
    if (c >= 0x61 && c <= 0x7a) lower = true;
    // `_` too: no command has it, but a line with one is well formed and gets 421 (as on other servers).
    else if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f)) {
      throw new LineError('MALFORMED', 'command must be letters, digits or _');
    }
  }
  let command = line.slice(cmdStart, i);
  if (lower) command = command.toUpperCase();

  const params: string[] = [];
  while (i < len) {
    while (i < len && line.charCodeAt(i) === SPACE) i++;
    if (i === len) break;
    if (line.charCodeAt(i) === COLON) {
      params.push(line.slice(i + 1));
      break;
    }
    if (params.length === 14) {
      // RFC 2812: after 14 middle params the 15th takes the rest of the line, ':' or not.
      params.push(line.slice(i));
      break;
    }
    const sp = line.indexOf(' ', i);
    const end = sp === -1 ? len : sp;
    params.push(line.slice(i, end));
    i = end;
  }

  return { tags, source, command, params };
}

function parseTags(line: string, start: number, end: number): Record<string, string> {
  const tags: Record<string, string> = {};
  let i = start;
  while (i < end) {
    let semi = line.indexOf(';', i);
    if (semi === -1 || semi > end) semi = end;
    if (semi > i) {
      let eq = -1;
      for (let j = i; j < semi; j++) {
        if (line.charCodeAt(j) === EQ) {
          eq = j;
          break;
        }
      }
      const key = line.slice(i, eq === -1 ? semi : eq);
      if (!TAG_KEY.test(key)) throw new LineError('MALFORMED', 'invalid tag key');
      tags[key] = eq === -1 ? '' : unescapeTagValue(line.slice(eq + 1, semi));
    }
    i = semi + 1;
  }
  return tags;
}

/** IRCv3 tag value escaping: ';' → '\:', ' ' → '\s', '\' → '\\', CR → '\r', LF → '\n'. */
export function escapeTagValue(v: string): string {
  let out = '';
  let last = 0;
  for (let i = 0; i < v.length; i++) {
    let rep: string;
    switch (v.charCodeAt(i)) {
      case SEMI:
        rep = '\\:';
        break;
      case SPACE:
        rep = '\\s';
        break;
      case BACKSLASH:
        rep = '\\\\';
        break;
      case 0x0d:
        rep = '\\r';
        break;
      case 0x0a:
        rep = '\\n';
        break;
      default:
        continue;
    }
    out += v.slice(last, i) + rep;
    last = i + 1;
  }
  return last === 0 ? v : out + v.slice(last);
}

/** Inverse of `escapeTagValue`; an unknown escape drops the backslash, a trailing lone '\' is dropped. */
export function unescapeTagValue(v: string): string {
  let bs = v.indexOf('\\');
  if (bs === -1) return v;
  let out = '';
  let last = 0;
  while (bs !== -1) {
    out += v.slice(last, bs);
    const next = v.charCodeAt(bs + 1);
    switch (next) {
      case COLON:
        out += ';';
        break;
      case 0x73: // s
        out += ' ';
        break;
      case BACKSLASH:
        out += '\\';
        break;
      case 0x72: // r
        out += '\r';
        break;
      case 0x6e: // n
        out += '\n';
        break;
      default:
        // Unknown escape: keep the character, drop the backslash. NaN (end of string): drop it.
        if (next === next) out += v[bs + 1];
    }
    last = bs + 2;
    bs = last < v.length ? v.indexOf('\\', last) : -1;
  }
  return last < v.length ? out + v.slice(last) : out;
}

/** `key=value;key2` in insertion order, values escaped, '' values as bare keys; '' when no tags. */
export function serializeTags(tags: Record<string, string>): string {
  let out = '';
  for (const key in tags) {
    const value = tags[key];
    if (!TAG_KEY.test(key)) throw new Error(`invalid tag key: ${JSON.stringify(key)}`);
    if (out !== '') out += ';';
    out += value === undefined || value === '' ? key : key + '=' + escapeTagValue(value);
  }
  return out;
}

function needsTrailing(p: string): boolean {
  return p === '' || p.charCodeAt(0) === COLON || p.indexOf(' ') !== -1;
}

/**
 * One line without CRLF. Throws (a programming error, not a `LineError`) when the message cannot be
 * represented: a middle param that is empty, has a space or starts with ':', more than 15 params,
 * or NUL/CR/LF anywhere outside tag values.
 */
export function serialize(msg: IrcMessage): string {
  let out = '';
  const tagText = serializeTags(msg.tags);
  if (tagText !== '') out = '@' + tagText + ' ';
  if (msg.source !== undefined) {
    if (msg.source === '' || msg.source.indexOf(' ') !== -1) throw new Error(`invalid source: ${JSON.stringify(msg.source)}`);
    out += ':' + msg.source + ' ';
  }
  if (msg.command === '' || msg.command.indexOf(' ') !== -1) throw new Error(`invalid command: ${JSON.stringify(msg.command)}`);
  out += msg.command;
  const params = msg.params;
  const n = params.length;
  if (n > 15) throw new Error(`${msg.command}: ${n} params, at most 15`);
  for (let k = 0; k < n; k++) {
    const p = params[k] as string;
    if (k === n - 1 && needsTrailing(p)) out += ' :' + p;
    else if (needsTrailing(p)) throw new Error(`${msg.command}: param ${k} ${JSON.stringify(p)} must be the last one`);
    else out += ' ' + p;
  }
  if (FORBIDDEN.test(out)) throw new Error(`${msg.command}: NUL, CR or LF in a line`);
  return out;
}

export interface LineSplitterOptions {
  /** Longest line content accepted, in bytes, not counting the LF or CRLF that ends it. */
  maxLineBytes: number;
  /** Called synchronously from `push` for each non-empty line, in order. */
  onLine: (line: string) => void;
  /** Called synchronously from `push`: 'BAD_ENCODING' (that line is skipped) or 'TOO_LONG' (once per line). */
  onError: (err: LineError) => void;
}

/**
 * Splits a byte stream into lines: on LF, a CR right before the LF is dropped, empty lines are
 * skipped, UTF-8 is decoded strictly. A line longer than `maxLineBytes` is reported once as soon as
 * it is known to be too long, and its remaining bytes up to the next LF are discarded unbuffered:
 * memory held per splitter is at most `maxLineBytes + 1` bytes whatever the peer sends.
 */
export class LineSplitter {
  private readonly max: number;
  private readonly onLine: (line: string) => void;
  private readonly onError: (err: LineError) => void;
  /** Partial line carried between chunks; grown on demand up to max + 1 (content + a CR). */
  private acc: Uint8Array | null = null;
  private accLen = 0;
  private discarding = false;

  constructor(opts: LineSplitterOptions) {
    if (!(opts.maxLineBytes > 0)) throw new RangeError('maxLineBytes must be positive');
    this.max = opts.maxLineBytes;
    this.onLine = opts.onLine;
    this.onError = opts.onError;
  }

  /** Bytes of an unfinished line currently held (for tests and metrics). */
  get bufferedBytes(): number {
    return this.accLen;
  }

  /** Drops any partial line (e.g. on connection close). */
  reset(): void {
    this.accLen = 0;
    this.discarding = false;
  }

  /** Any `Uint8Array` (a Node `Buffer` is one); `chunk` is not kept after the call. */
  push(chunk: Uint8Array): void {
    const n = chunk.length;
    let start = 0;
    if (this.discarding) {
      const nl = chunk.indexOf(10);
      if (nl === -1) return;
      this.discarding = false;
      start = nl + 1;
    }
    while (start < n) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) {
        this.append(chunk, start, n);
        return;
      }
      if (this.accLen === 0) {
        this.emit(chunk, start, nl);
      } else if (this.append(chunk, start, nl)) {
        const len = this.accLen;
        this.accLen = 0;
        this.emit(this.acc as Uint8Array, 0, len);
        // Do not keep a large buffer for the rare long line; small ones are reused.
        if ((this.acc as Uint8Array).length > 4096) this.acc = null;
      }
      // After a failed append the line was reported and `discarding` set; the LF ends it.
      this.discarding = false;
      start = nl + 1;
    }
  }

  /** Adds bytes of an unfinished line; false (after reporting TOO_LONG) when they no longer fit. */
  private append(chunk: Uint8Array, start: number, end: number): boolean {
    const add = end - start;
    const need = this.accLen + add;
    if (need > this.max + 1) {
      this.accLen = 0;
      this.discarding = true;
      this.onError(new LineError('TOO_LONG', `line longer than ${this.max} bytes`));
      return false;
    }
    let acc = this.acc;
    if (acc === null || acc.length < need) {
      const grown = new Uint8Array(Math.min(this.max + 1, Math.max(need, 256, acc === null ? 0 : acc.length * 2)));
      if (acc !== null) grown.set(acc.subarray(0, this.accLen));
      this.acc = acc = grown;
    }
    acc.set(chunk.subarray(start, end), this.accLen);
    this.accLen = need;
    return true;
  }

  private emit(buf: Uint8Array, start: number, end: number): void {
    if (end > start && buf[end - 1] === 0x0d) end--;
    if (end === start) return;
    if (end - start > this.max) {
      this.onError(new LineError('TOO_LONG', `line longer than ${this.max} bytes`));
      return;
    }
    const line = decodeUtf8(buf, start, end);
    if (line === null) {
      this.onError(new LineError('BAD_ENCODING', 'line is not valid UTF-8'));
      return;
    }
    this.onLine(line);
  }
}

// `fatal`: invalid UTF-8 throws instead of becoming U+FFFD, so decoding is also the validation.
// `ignoreBOM`: a line starting with U+FEFF keeps it, as a byte-for-byte decode would.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Strict UTF-8 decode of `buf[start, end)`; null when the bytes are not valid UTF-8. */
export function decodeUtf8(buf: Uint8Array, start = 0, end = buf.length): string | null {
  try {
    return utf8.decode(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  } catch {
    return null;
  }
}
