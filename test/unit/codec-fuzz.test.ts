/**
 * Property tests of the codec on generated input. Deterministic: the seed is printed and can be
 * replaced with FUZZ_SEED=<n> to explore; FUZZ_LINES=<n> changes the line count.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LineError, LineSplitter, parseLine, serialize } from '../../packages/protocol/src/index.js';
import type { IrcMessage, LineErrorCode } from '../../packages/protocol/src/index.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 0x5eed1e55) >>> 0;
const LINES = Number(process.env['FUZZ_LINES'] ?? 50_000);
console.log(`codec-fuzz: seed ${SEED} (FUZZ_SEED=${SEED} to reproduce), ${LINES} lines`);

/** mulberry32: tiny, fast, good enough for test input. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rnd = prng(SEED);
const int = (n: number): number => Math.floor(rnd() * n);
const chance = (p: number): boolean => rnd() < p;
function pick<T>(xs: readonly T[]): T {
  return xs[int(xs.length)] as T;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
// Plain text, IRC specials, tag escape specials, multibyte and astral characters, a lone surrogate.
const TEXT_POOL = [
  ...'abcxyzABC019-_.!@#$%^&*()[]{}|~`\'"<>,?/+=',
  ' ',
  ' ',
  ':',
  ';',
  '\\',
  '\r',
  '\n',
  '\t',
  '\x01',
  '\x03',
  'é',
  'ß',
  '€',
  '日本',
  '😀',
  '👍🏽',
  '\u200b',
  '\ud800',
];

function str(pool: readonly string[], min: number, max: number): string {
  const n = min + int(max - min + 1);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(pool);
  return s;
}
const chars = (alphabet: string, min: number, max: number): string => str([...alphabet], min, max);

function tagKey(): string {
  let k = chance(0.2) ? '+' : '';
  if (chance(0.3)) k += pick(['example.com/', 'draft/', 'a.b-c.d/', 'x/']);
  return k + chars(ALNUM + '-', 1, 12);
}

function middleParam(): string {
  const pool = TEXT_POOL.filter((c) => c !== ' ' && c !== '\r' && c !== '\n');
  let p = str(pool, 1, 12);
  if (p.startsWith(':')) p = 'x' + p;
  return p;
}

function randomMessage(): IrcMessage {
  const tags: Record<string, string> = {};
  const ntags = chance(0.5) ? 0 : int(6);
  for (let i = 0; i < ntags; i++) {
    const key = tagKey();
    if (key in tags) continue;
    tags[key] = chance(0.2) ? '' : str(TEXT_POOL, 0, 20);
  }
  const source = chance(0.5)
    ? undefined
    : `${chars(ALNUM, 1, 9)}${chance(0.5) ? `!~${chars(ALNUM, 1, 8)}@${chars(ALNUM + '.:', 1, 20)}` : ''}`;
  const command = chance(0.3) ? String(int(1000)).padStart(3, '0') : chars(UPPER, 1, 10);
  const params: string[] = [];
  const nparams = chance(0.05) ? 15 : int(6);
  for (let i = 0; i < nparams - 1; i++) params.push(middleParam());
  if (nparams > 0) params.push(chance(0.7) ? str(TEXT_POOL.filter((c) => c !== '\r' && c !== '\n'), 0, 40) : middleParam());
  return { tags, source, command, params };
}

/** Messages with huge parts, to cross the limits in both directions. */
function hugeMessage(): IrcMessage {
  const m = randomMessage();
  if (chance(0.5)) m.tags['big'] = 'v'.repeat(int(9000));
  else m.params = ['#room', 'é'.repeat(int(400))];
  return m;
}

const RELAXED = { maxBodyBytes: Number.MAX_SAFE_INTEGER, maxTagBytes: Number.MAX_SAFE_INTEGER };
const INSERTS = [' ', '  ', ':', ' :', '@', ';', '=', '\\', '\\\\', '\r', '\n', '\0', 'é', '😀', '\ud800', 'x'];

function mutate(line: string): string {
  let s = line;
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    const at = int(s.length + 1);
    switch (int(6)) {
      case 0:
        s = s.slice(0, at); // truncation
        break;
      case 1:
        s = s.slice(0, at) + pick(INSERTS) + s.slice(at);
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at + 1 + int(5));
        break;
      case 3:
        s = pick(['@', ':', ' ', '@;', '@=', '::']) + s;
        break;
      case 4: {
        const piece = s.slice(at, at + 1 + int(10));
        s = s.slice(0, at) + piece.repeat(1 + int(chance(0.05) ? 2000 : 5)) + s.slice(at);
        break;
      }
      default:
        s = s + pick(INSERTS);
    }
  }
  return s;
}

function randomBytesLine(): string {
  const n = int(chance(0.02) ? 12000 : 80);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = chance(0.6) ? 0x20 + int(95) : int(256);
  return chance(0.5) ? b.toString('utf8') : b.toString('latin1');
}

function tryParse(line: string, opts?: typeof RELAXED): IrcMessage | LineErrorCode {
  try {
    return parseLine(line, opts);
  } catch (err) {
    if (err instanceof LineError) return err.code;
    assert.fail(`parseLine threw ${String(err)} for ${JSON.stringify(line.slice(0, 200))}`);
  }
}

/** The properties every parsed line must have. */
function checkParsed(input: string, m: IrcMessage): void {
  let s: string;
  try {
    s = serialize(m);
  } catch (err) {
    assert.fail(`serialize failed (${String(err)}) for a message parsed from ${JSON.stringify(input.slice(0, 200))}`);
  }
  const again = tryParse(s, RELAXED);
  assert.deepEqual(again, m, `re-parse of ${JSON.stringify(s.slice(0, 200))} from ${JSON.stringify(input.slice(0, 200))}`);
  assert.equal(serialize(again as IrcMessage), s);
}

describe(`codec fuzz (seed ${SEED})`, () => {
  it('parse(serialize(m)) equals m for generated messages, and limits are enforced', () => {
    let tooLong = 0;
    for (let i = 0; i < LINES * 0.4; i++) {
      const m = i % 50 === 0 ? hugeMessage() : randomMessage();
      const line = serialize(m);
      const strict = tryParse(line);
      const bodyStart = line.startsWith('@') ? line.indexOf(' ') + 1 : 0;
      const tagBytes = Buffer.byteLength(line.slice(0, bodyStart));
      const bodyBytes = Buffer.byteLength(line.slice(bodyStart)) + 2;
      if (tagBytes > 8191) assert.equal(strict, 'TAGS_TOO_LONG', line.slice(0, 100));
      else if (bodyBytes > 512) assert.equal(strict, 'TOO_LONG', line.slice(0, 100));
      else assert.deepEqual(strict, m, line);
      if (typeof strict === 'string') tooLong++;
      assert.deepEqual(tryParse(line, RELAXED), m, line);
    }
    assert.ok(tooLong > 0, 'the generator should cross the limits sometimes');
  });

  it('mutated lines only ever fail with LineError, and what parses round-trips', () => {
    let parsed = 0;
    for (let i = 0; i < LINES * 0.4; i++) {
      const input = mutate(serialize(randomMessage()));
      const m = tryParse(input);
      if (typeof m !== 'string') {
        parsed++;
        checkParsed(input, m);
      }
    }
    assert.ok(parsed > LINES * 0.05, `only ${parsed} mutated lines parsed`);
  });

  it('random bytes only ever fail with LineError, and what parses round-trips', () => {
    for (let i = 0; i < LINES * 0.2; i++) {
      const input = randomBytesLine();
      const m = tryParse(input);
      if (typeof m !== 'string') checkParsed(input, m);
    }
  });

  it('LineSplitter agrees with a reference splitter on random streams and random chunking', () => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const pieces = [
      Buffer.from('PRIVMSG #a :hi\r\n'),
      Buffer.from('\n'),
      Buffer.from('\r\n'),
      Buffer.from('\r'),
      Buffer.from('é😀€'),
      Buffer.from([0xff]),
      Buffer.from([0xe2, 0x82]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from('x'.repeat(40)),
      Buffer.from('ab'),
    ];
    for (let round = 0; round < 2000; round++) {
      const max = 1 + int(60);
      const parts: Buffer[] = [];
      const nparts = int(30);
      for (let i = 0; i < nparts; i++) parts.push(pick(pieces));
      const data = Buffer.concat(parts);

      const expected: string[] = [];
      let start = 0;
      for (;;) {
        const nl = data.indexOf(10, start);
        if (nl === -1) {
          if (data.length - start > max + 1) expected.push('E:TOO_LONG');
          break;
        }
        let end = nl;
        if (end > start && data[end - 1] === 0x0d) end--;
        if (end - start > max) expected.push('E:TOO_LONG');
        else if (end > start) {
          try {
            expected.push('L:' + decoder.decode(data.subarray(start, end)));
          } catch {
            expected.push('E:BAD_ENCODING');
          }
        }
        start = nl + 1;
      }

      const events: string[] = [];
      const splitter = new LineSplitter({
        maxLineBytes: max,
        onLine: (l) => events.push('L:' + l),
        onError: (e) => events.push('E:' + e.code),
      });
      for (let i = 0; i < data.length; ) {
        const n = 1 + int(chance(0.5) ? 4 : 64);
        splitter.push(data.subarray(i, i + n));
        i += n;
      }
      assert.deepEqual(events, expected, `round ${round}, max ${max}, data ${data.toString('hex')}`);
      assert.ok(splitter.bufferedBytes <= max + 1);
    }
  });
});
