import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  LIMITS,
  LineError,
  LineSplitter,
  MAX_LINE_BYTES,
  escapeTagValue,
  eventMsgid,
  formatMsgid,
  formatServerTime,
  isEventMsgid,
  N,
  NUMERIC_NAMES,
  parseCapList,
  parseLine,
  parseMsgid,
  parseServerTime,
  roomTag,
  serialize,
  serializeTags,
  SUPPORTED_CAPS,
  unescapeTagValue,
  decodeUtf8,
  utf8Length,
} from '../../packages/protocol/src/index.js';
import type { IrcMessage, LineErrorCode } from '../../packages/protocol/src/index.js';

interface Atoms {
  tags?: Record<string, string>;
  source?: string;
  verb: string;
  params?: string[];
}

function expectParse(input: string, atoms: Atoms): void {
  const m = parseLine(input);
  assert.deepEqual(
    m,
    { tags: atoms.tags ?? {}, source: atoms.source, command: atoms.verb.toUpperCase(), params: atoms.params ?? [] },
    `parsing ${JSON.stringify(input)}`,
  );
}

function lineError(code: LineErrorCode): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof LineError, `expected LineError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

function msg(command: string, params: string[] = [], tags: Record<string, string> = {}, source?: string): IrcMessage {
  return { tags, source, command, params };
}

// Vectors from ircdocs/parser-tests msg-split.yaml (verbs upper-cased: this parser normalises them).
describe('parseLine: irc-parser-tests msg-split vectors', () => {
  const cases: Array<[string, Atoms]> = [
    ['foo bar baz asdf', { verb: 'foo', params: ['bar', 'baz', 'asdf'] }],
    [':coolguy foo bar baz asdf', { source: 'coolguy', verb: 'foo', params: ['bar', 'baz', 'asdf'] }],
    ['foo bar baz :asdf quux', { verb: 'foo', params: ['bar', 'baz', 'asdf quux'] }],
    ['foo bar baz :', { verb: 'foo', params: ['bar', 'baz', ''] }],
    ['foo bar baz ::asdf', { verb: 'foo', params: ['bar', 'baz', ':asdf'] }],
    [':coolguy foo bar baz :asdf quux', { source: 'coolguy', verb: 'foo', params: ['bar', 'baz', 'asdf quux'] }],
    [':coolguy foo bar baz :  asdf quux ', { source: 'coolguy', verb: 'foo', params: ['bar', 'baz', '  asdf quux '] }],
    [':coolguy PRIVMSG bar :lol :) ', { source: 'coolguy', verb: 'PRIVMSG', params: ['bar', 'lol :) '] }],
    [':coolguy foo bar baz :', { source: 'coolguy', verb: 'foo', params: ['bar', 'baz', ''] }],
    [':coolguy foo bar baz :  ', { source: 'coolguy', verb: 'foo', params: ['bar', 'baz', '  '] }],
    ['@a=b;c=32;k;rt=ql7 foo', { tags: { a: 'b', c: '32', k: '', rt: 'ql7' }, verb: 'foo' }],
    ['@a=b\\\\and\\nk;c=72\\s45;d=gh\\:764 foo', { tags: { a: 'b\\and\nk', c: '72 45', d: 'gh;764' }, verb: 'foo' }],
    ['@c;h=;a=b :quux ab cd', { tags: { c: '', h: '', a: 'b' }, source: 'quux', verb: 'ab', params: ['cd'] }],
    [':src JOIN #chan', { source: 'src', verb: 'JOIN', params: ['#chan'] }],
    [':src JOIN :#chan', { source: 'src', verb: 'JOIN', params: ['#chan'] }],
    [':src AWAY', { source: 'src', verb: 'AWAY' }],
    [':src AWAY ', { source: 'src', verb: 'AWAY' }],
    [':cool\tguy foo bar baz', { source: 'cool\tguy', verb: 'foo', params: ['bar', 'baz'] }],
    [
      ':coolguy!ag@net\x035w\x03ork.admin PRIVMSG foo :bar baz',
      { source: 'coolguy!ag@net\x035w\x03ork.admin', verb: 'PRIVMSG', params: ['foo', 'bar baz'] },
    ],
    [
      ':coolguy!~ag@n\x02et\x0305w\x0fork.admin PRIVMSG foo :bar baz',
      { source: 'coolguy!~ag@n\x02et\x0305w\x0fork.admin', verb: 'PRIVMSG', params: ['foo', 'bar baz'] },
    ],
    [
      '@tag1=value1;tag2;vendor1/tag3=value2;vendor2/tag4= :irc.example.com COMMAND param1 param2 :param3 param3',
      {
        tags: { tag1: 'value1', tag2: '', 'vendor1/tag3': 'value2', 'vendor2/tag4': '' },
        source: 'irc.example.com',
        verb: 'COMMAND',
        params: ['param1', 'param2', 'param3 param3'],
      },
    ],
    [
      ':irc.example.com COMMAND param1 param2 :param3 param3',
      { source: 'irc.example.com', verb: 'COMMAND', params: ['param1', 'param2', 'param3 param3'] },
    ],
    [
      '@tag1=value1;tag2;vendor1/tag3=value2;vendor2/tag4 COMMAND param1 param2 :param3 param3',
      {
        tags: { tag1: 'value1', tag2: '', 'vendor1/tag3': 'value2', 'vendor2/tag4': '' },
        verb: 'COMMAND',
        params: ['param1', 'param2', 'param3 param3'],
      },
    ],
    ['COMMAND', { verb: 'COMMAND' }],
    ['@foo=\\\\\\\\\\:\\\\s\\s\\r\\n COMMAND', { tags: { foo: '\\\\;\\s \r\n' }, verb: 'COMMAND' }],
    [
      ':gravel.mozilla.org 432  #momo :Erroneous Nickname: Illegal characters',
      { source: 'gravel.mozilla.org', verb: '432', params: ['#momo', 'Erroneous Nickname: Illegal characters'] },
    ],
    [':gravel.mozilla.org MODE #tckk +n ', { source: 'gravel.mozilla.org', verb: 'MODE', params: ['#tckk', '+n'] }],
    [':services.esper.net MODE #foo-bar +o foobar  ', { source: 'services.esper.net', verb: 'MODE', params: ['#foo-bar', '+o', 'foobar'] }],
    ['@tag1=value\\\\ntest COMMAND', { tags: { tag1: 'value\\ntest' }, verb: 'COMMAND' }],
    ['@tag1=value\\1 COMMAND', { tags: { tag1: 'value1' }, verb: 'COMMAND' }],
    ['@tag1=value1\\ COMMAND', { tags: { tag1: 'value1' }, verb: 'COMMAND' }],
    ['@tag1=1;tag2=3;tag3=4;tag1=5 COMMAND', { tags: { tag1: '5', tag2: '3', tag3: '4' }, verb: 'COMMAND' }],
    [
      '@tag1=1;tag2=3;tag3=4;tag1=5;vendor/tag2=8 COMMAND',
      { tags: { tag1: '5', tag2: '3', tag3: '4', 'vendor/tag2': '8' }, verb: 'COMMAND' },
    ],
    [':SomeOp MODE #channel :+i', { source: 'SomeOp', verb: 'MODE', params: ['#channel', '+i'] }],
    [':SomeOp MODE #channel +oo SomeUser :AnotherUser', { source: 'SomeOp', verb: 'MODE', params: ['#channel', '+oo', 'SomeUser', 'AnotherUser'] }],
  ];
  for (const [input, atoms] of cases) {
    it(JSON.stringify(input), () => expectParse(input, atoms));
  }
});

// Vectors from msg-join.yaml: the serialised line must be one of the accepted forms.
describe('serialize: irc-parser-tests msg-join vectors', () => {
  const cases: Array<[IrcMessage, string[]]> = [
    [msg('foo', ['bar', 'baz', 'asdf']), ['foo bar baz asdf', 'foo bar baz :asdf']],
    [msg('AWAY', [], {}, 'src'), [':src AWAY']],
    [msg('AWAY', [''], {}, 'src'), [':src AWAY :']],
    [msg('foo', ['bar', 'baz', 'asdf'], {}, 'coolguy'), [':coolguy foo bar baz asdf', ':coolguy foo bar baz :asdf']],
    [msg('foo', ['bar', 'baz', 'asdf quux']), ['foo bar baz :asdf quux']],
    [msg('foo', ['bar', 'baz', '']), ['foo bar baz :']],
    [msg('foo', ['bar', 'baz', ':asdf']), ['foo bar baz ::asdf']],
    [msg('foo', ['bar', 'baz', 'asdf quux'], {}, 'coolguy'), [':coolguy foo bar baz :asdf quux']],
    [msg('foo', ['bar', 'baz', '  asdf quux '], {}, 'coolguy'), [':coolguy foo bar baz :  asdf quux ']],
    [msg('PRIVMSG', ['bar', 'lol :) '], {}, 'coolguy'), [':coolguy PRIVMSG bar :lol :) ']],
    [msg('foo', ['bar', 'baz', ''], {}, 'coolguy'), [':coolguy foo bar baz :']],
    [msg('foo', ['bar', 'baz', '  '], {}, 'coolguy'), [':coolguy foo bar baz :  ']],
    [msg('foo', [], { a: 'b', c: '32', k: '', rt: 'ql7' }), ['@a=b;c=32;k;rt=ql7 foo']],
    [msg('foo', [], { a: 'b\\and\nk', c: '72 45', d: 'gh;764' }), ['@a=b\\\\and\\nk;c=72\\s45;d=gh\\:764 foo']],
    [msg('ab', ['cd'], { c: '', h: '', a: 'b' }, 'quux'), ['@c;h;a=b :quux ab cd', '@c;h=;a=b :quux ab cd', '@c;h;a=b :quux ab :cd']],
    [msg('JOIN', ['#chan'], {}, 'src'), [':src JOIN #chan', ':src JOIN :#chan']],
    [msg('JOIN', ['#chan'], { a: '' }, 'src'), ['@a :src JOIN #chan', '@a= :src JOIN #chan']],
    [msg('COMMAND', [], { foo: '\\\\;\\s \r\n' }), ['@foo=\\\\\\\\\\:\\\\s\\s\\r\\n COMMAND']],
  ];
  for (const [m, matches] of cases) {
    it(matches[0] as string, () => {
      const line = serialize(m);
      assert.ok(matches.includes(line), `${JSON.stringify(line)} not in ${JSON.stringify(matches)}`);
      const back = parseLine(line);
      assert.deepEqual(back.tags, m.tags);
      assert.equal(back.source, m.source);
      assert.deepEqual(back.params, m.params);
    });
  }
});

describe('tag escaping', () => {
  const pairs: Array<[string, string]> = [
    ['', ''],
    ['plain', 'plain'],
    [';', '\\:'],
    [' ', '\\s'],
    ['\\', '\\\\'],
    ['\r', '\\r'],
    ['\n', '\\n'],
    ['a; b\\c\r\nd', 'a\\:\\sb\\\\c\\r\\nd'],
    ['\\s', '\\\\s'],
    ['😀 é', '😀\\sé'],
  ];
  for (const [raw, escaped] of pairs) {
    it(`round trips ${JSON.stringify(raw)}`, () => {
      assert.equal(escapeTagValue(raw), escaped);
      assert.equal(unescapeTagValue(escaped), raw);
    });
  }
  it('drops the backslash of an unknown escape, and a trailing lone backslash', () => {
    assert.equal(unescapeTagValue('a\\bc'), 'abc');
    assert.equal(unescapeTagValue('abc\\'), 'abc');
    assert.equal(unescapeTagValue('\\'), '');
    assert.equal(unescapeTagValue('\\😀'), '😀');
    assert.equal(unescapeTagValue('\\\\\\'), '\\');
    assert.equal(unescapeTagValue('x\\=y'), 'x=y');
  });
  it('serializeTags keeps insertion order and writes empty values as bare keys', () => {
    assert.equal(serializeTags({}), '');
    assert.equal(serializeTags({ z: '1', '+draft/react': '👍', a: '', 'example.com/x': 'a b' }), 'z=1;+draft/react=👍;a;example.com/x=a\\sb');
  });
  it('parses client-only and vendor tags, skips empty tag segments, keeps = in values', () => {
    expectParse('@+draft/reply=abc;;example.com/foo=x=y; PRIVMSG #c :hi', {
      tags: { '+draft/reply': 'abc', 'example.com/foo': 'x=y' },
      verb: 'PRIVMSG',
      params: ['#c', 'hi'],
    });
  });
  it('rejects invalid tag keys', () => {
    for (const line of ['@=x CMD', '@a b=1 CMD', '@__proto__=x CMD', '@+ CMD', '@a/=1 CMD', '@/a=1 CMD', '@a!b CMD']) {
      if (line === '@a b=1 CMD') continue; // the space ends the tags: 'b=1' is the command (MALFORMED)
      assert.throws(() => parseLine(line), lineError('MALFORMED'), line);
    }
    assert.throws(() => parseLine('@a b=1 CMD'), lineError('MALFORMED'));
  });
});

describe('parseLine: structure', () => {
  it('upper-cases commands and keeps numerics', () => {
    assert.equal(parseLine('privmsg #a :b').command, 'PRIVMSG');
    assert.equal(parseLine('PrivMsg #a :b').command, 'PRIVMSG');
    assert.equal(parseLine(':srv 001 me :Welcome').command, '001');
  });
  it('tolerates leading and repeated spaces', () => {
    expectParse('  PRIVMSG   #a    b  ', { verb: 'PRIVMSG', params: ['#a', 'b'] });
    expectParse('@a=1   :src   CMD  x', { tags: { a: '1' }, source: 'src', verb: 'CMD', params: ['x'] });
  });
  it('keeps the trailing param verbatim', () => {
    assert.deepEqual(parseLine('PRIVMSG #a :  :: x  y :z  ').params, ['#a', '  :: x  y :z  ']);
    assert.deepEqual(parseLine('PRIVMSG #a :').params, ['#a', '']);
    assert.deepEqual(parseLine('PRIVMSG #a ::').params, ['#a', ':']);
  });
  it('applies the 15-param rule', () => {
    const fourteen = Array.from({ length: 14 }, (_, i) => `p${i}`);
    assert.deepEqual(parseLine(`CMD ${fourteen.join(' ')} p14 p15 p16`).params, [...fourteen, 'p14 p15 p16']);
    assert.deepEqual(parseLine(`CMD ${fourteen.join(' ')} :p14 p15`).params, [...fourteen, 'p14 p15']);
    assert.deepEqual(parseLine(`CMD ${fourteen.join(' ')}   p14 :x  `).params, [...fourteen, 'p14 :x  ']);
    assert.deepEqual(parseLine(`CMD ${fourteen.join(' ')} p14`).params, [...fourteen, 'p14']);
    assert.equal(parseLine(`CMD ${fourteen.join(' ')}`).params.length, 14);
  });
  it('reports errors with the right codes', () => {
    assert.throws(() => parseLine(''), lineError('EMPTY'));
    assert.throws(() => parseLine('    '), lineError('EMPTY'));
    assert.throws(() => parseLine('@a=b'), lineError('NO_COMMAND'));
    assert.throws(() => parseLine('@a=b   '), lineError('NO_COMMAND'));
    assert.throws(() => parseLine(':src'), lineError('NO_COMMAND'));
    assert.throws(() => parseLine(':src   '), lineError('NO_COMMAND'));
    assert.throws(() => parseLine('@a=b :src'), lineError('NO_COMMAND'));
    assert.throws(() => parseLine(':'), lineError('MALFORMED'));
    assert.throws(() => parseLine(': PRIVMSG'), lineError('MALFORMED'));
    assert.throws(() => parseLine('PRIV-MSG x'), lineError('MALFORMED'));
    assert.throws(() => parseLine(':src :CMD x'), lineError('MALFORMED'));
    assert.throws(() => parseLine('PRIVMSG #a :x\r\nQUIT'), lineError('MALFORMED'));
    assert.throws(() => parseLine('PRIVMSG #a :x\0y'), lineError('MALFORMED'));
    assert.throws(() => parseLine('PRIVMSG #a :x\ny'), lineError('MALFORMED'));
  });
  it('never throws anything but LineError on odd input', () => {
    for (const s of ['@', '@ ', '@;', '@; ', ':', '::', ': ', ' :', '\\', '@\\ x', '@a=\\', '@a=\\ CMD', '\ud800', 'C\udc00']) {
      try {
        parseLine(s);
      } catch (err) {
        assert.ok(err instanceof LineError, `${JSON.stringify(s)}: ${String(err)}`);
      }
    }
  });
});

describe('parseLine: limits', () => {
  const prefix = 'PRIVMSG #a :';
  it('accepts exactly 510 body bytes and refuses 511', () => {
    assert.equal(LIMITS.body, 512);
    const ok = prefix + 'x'.repeat(510 - prefix.length);
    assert.equal(Buffer.byteLength(ok), 510);
    assert.equal(parseLine(ok).params[1]?.length, 510 - prefix.length);
    assert.throws(() => parseLine(ok + 'x'), lineError('TOO_LONG'));
  });
  it('counts multibyte UTF-8 in bytes', () => {
    // 'é' is 2 bytes, '€' 3, '😀' 4 (two UTF-16 units).
    const room = 510 - prefix.length;
    const two = prefix + 'é'.repeat(room / 2);
    assert.equal(Buffer.byteLength(two), 510);
    parseLine(two);
    assert.throws(() => parseLine(two + 'a'), lineError('TOO_LONG'));
    const emoji = prefix + '😀'.repeat(Math.floor(room / 4)) + 'x'.repeat(room % 4);
    assert.equal(Buffer.byteLength(emoji), 510);
    parseLine(emoji);
    assert.throws(() => parseLine(emoji + '€'), lineError('TOO_LONG'));
    const euro = prefix + '€'.repeat(Math.floor(room / 3)) + 'x'.repeat(room % 3);
    assert.equal(Buffer.byteLength(euro), 510);
    parseLine(euro);
    assert.throws(() => parseLine(euro + 'y'), lineError('TOO_LONG'));
  });
  it('does not count the tags section in the body, and multiple spaces after tags count in the body', () => {
    const body = prefix + 'x'.repeat(510 - prefix.length);
    parseLine('@a=' + 'v'.repeat(1000) + ' ' + body);
    assert.throws(() => parseLine('@a=b  ' + body), lineError('TOO_LONG'));
  });
  it('accepts a tags section of exactly 8191 bytes and refuses 8192', () => {
    assert.equal(LIMITS.tags, 8191);
    const section = (n: number): string => '@k=' + 'v'.repeat(n - 4) + ' ';
    assert.equal(Buffer.byteLength(section(8191)), 8191);
    assert.equal(parseLine(section(8191) + 'CMD').tags['k']?.length, 8187);
    assert.throws(() => parseLine(section(8192) + 'CMD'), lineError('TAGS_TOO_LONG'));
    // Multibyte: 'é' = 2 bytes.
    const multi = '@k=x' + 'é'.repeat(4093) + ' ';
    assert.equal(Buffer.byteLength(multi), 8191);
    parseLine(multi + 'CMD');
    assert.throws(() => parseLine('@k=' + 'é'.repeat(4094) + ' CMD'), lineError('TAGS_TOO_LONG'));
    assert.throws(() => parseLine('@k=' + 'v'.repeat(9000)), lineError('TAGS_TOO_LONG'));
  });
  it('honours custom limits', () => {
    assert.throws(() => parseLine('PING 12345', { maxBodyBytes: 11 }), lineError('TOO_LONG'));
    parseLine('PING 12345', { maxBodyBytes: 12 });
    assert.throws(() => parseLine('@a=1 PING', { maxTagBytes: 4 }), lineError('TAGS_TOO_LONG'));
    parseLine('@a=1 PING', { maxTagBytes: 5 });
    parseLine('PRIVMSG #a :' + 'x'.repeat(5000), { maxBodyBytes: 6000 });
  });
  it('MAX_LINE_BYTES is the longest acceptable line content', () => {
    assert.equal(MAX_LINE_BYTES, 8191 + 510);
    const line = '@k=' + 'v'.repeat(8187) + ' ' + prefix + 'x'.repeat(510 - prefix.length);
    assert.equal(Buffer.byteLength(line), MAX_LINE_BYTES);
    parseLine(line);
  });
});

describe('serialize', () => {
  it('prefixes the last param with : only when needed', () => {
    assert.equal(serialize(msg('PRIVMSG', ['#a', 'hi'])), 'PRIVMSG #a hi');
    assert.equal(serialize(msg('PRIVMSG', ['#a', 'hi there'])), 'PRIVMSG #a :hi there');
    assert.equal(serialize(msg('PRIVMSG', ['#a', ':)'])), 'PRIVMSG #a ::)');
    assert.equal(serialize(msg('PRIVMSG', ['#a', ''])), 'PRIVMSG #a :');
    assert.equal(serialize(msg('PING', [])), 'PING');
  });
  it('throws on params that cannot be represented', () => {
    assert.throws(() => serialize(msg('MODE', ['', 'x'])), /must be the last/);
    assert.throws(() => serialize(msg('MODE', ['a b', 'x'])), /must be the last/);
    assert.throws(() => serialize(msg('MODE', [':a', 'x'])), /must be the last/);
    assert.throws(() => serialize(msg('PRIVMSG', ['#a', 'x\r\nQUIT'])), /CR or LF/);
    assert.throws(() => serialize(msg('PRIVMSG', ['#a', 'x\0'])), /CR or LF/);
    assert.throws(() => serialize(msg('X', Array.from({ length: 16 }, () => 'p'))), /at most 15/);
    assert.throws(() => serialize(msg('', [])), /invalid command/);
    assert.throws(() => serialize(msg('X', [], {}, 'a b')), /invalid source/);
    assert.throws(() => serialize(msg('X', [], { 'bad key': 'v' })), /invalid tag key/);
  });
  it('escapes CR/LF in tag values rather than refusing them', () => {
    const line = serialize(msg('X', [], { a: 'x\r\ny' }));
    assert.equal(line, '@a=x\\r\\ny X');
    assert.deepEqual(parseLine(line).tags, { a: 'x\r\ny' });
  });
  it('round-trips 15 params with spaces in the last', () => {
    const params = [...Array.from({ length: 14 }, (_, i) => `p${i}`), 'last one'];
    assert.deepEqual(parseLine(serialize(msg('X', params))).params, params);
  });
});

function collect(max: number): { splitter: LineSplitter; lines: string[]; errors: LineErrorCode[]; events: string[] } {
  const lines: string[] = [];
  const errors: LineErrorCode[] = [];
  const events: string[] = [];
  const splitter = new LineSplitter({
    maxLineBytes: max,
    onLine: (l) => {
      lines.push(l);
      events.push('L:' + l);
    },
    onError: (e) => {
      errors.push(e.code);
      events.push('E:' + e.code);
    },
  });
  return { splitter, lines, errors, events };
}

describe('LineSplitter', () => {
  const input = Buffer.from('PRIVMSG #a :héllo 😀\r\n\r\n\nPING x\nNICK é€😀\r\n', 'utf8');
  const expected = ['PRIVMSG #a :héllo 😀', 'PING x', 'NICK é€😀'];

  it('splits one chunk on LF and CRLF, skipping empty lines', () => {
    const c = collect(512);
    c.splitter.push(input);
    assert.deepEqual(c.lines, expected);
    assert.deepEqual(c.errors, []);
  });

  it('gives the same lines for every two-chunk split, including inside multibyte characters', () => {
    for (let cut = 0; cut <= input.length; cut++) {
      const c = collect(512);
      c.splitter.push(input.subarray(0, cut));
      c.splitter.push(input.subarray(cut));
      assert.deepEqual(c.lines, expected, `cut at ${cut}`);
    }
  });

  it('gives the same lines when fed byte by byte and in three pieces', () => {
    const c = collect(512);
    for (let i = 0; i < input.length; i++) c.splitter.push(input.subarray(i, i + 1));
    assert.deepEqual(c.lines, expected);
    for (let a = 0; a <= input.length; a += 3) {
      for (let b = a; b <= input.length; b += 5) {
        const d = collect(512);
        d.splitter.push(input.subarray(0, a));
        d.splitter.push(input.subarray(a, b));
        d.splitter.push(input.subarray(b));
        assert.deepEqual(d.lines, expected, `cuts ${a}/${b}`);
      }
    }
  });

  it('keeps a CR that is not right before the LF, and a lone CR line is empty', () => {
    const c = collect(512);
    c.splitter.push(Buffer.from('a\rb\r\n\r\n\r\r\n'));
    assert.deepEqual(c.lines, ['a\rb', '\r']);
  });

  it('holds a partial line until its LF arrives', () => {
    const c = collect(512);
    c.splitter.push(Buffer.from('PING :part'));
    assert.deepEqual(c.lines, []);
    assert.equal(c.splitter.bufferedBytes, 10);
    c.splitter.push(Buffer.from('ial\r'));
    c.splitter.push(Buffer.from('\n'));
    assert.deepEqual(c.lines, ['PING :partial']);
    assert.equal(c.splitter.bufferedBytes, 0);
  });

  it('reports invalid UTF-8 for that line only and continues', () => {
    const bad = [
      Buffer.from([0x50, 0xff, 0x0a]), // invalid byte
      Buffer.from([0xc3, 0x0a]), // truncated sequence
      Buffer.from([0xed, 0xa0, 0x80, 0x0a]), // encoded surrogate
      Buffer.from([0xc0, 0xaf, 0x0a]), // overlong '/'
      Buffer.from([0x41, 0x42, 0xe2, 0x82, 0x0a]), // cut 3-byte sequence
    ];
    for (const b of bad) {
      const c = collect(512);
      c.splitter.push(Buffer.concat([b, Buffer.from('PING ok\r\n')]));
      assert.deepEqual(c.events, ['E:BAD_ENCODING', 'L:PING ok'], b.toString('hex'));
    }
    // A long invalid line (beyond the ASCII fast path), split across chunks.
    const c = collect(512);
    const long = Buffer.concat([Buffer.from('x'.repeat(100)), Buffer.from([0xfe]), Buffer.from('y'.repeat(100) + '\nPING ok\n')]);
    c.splitter.push(long.subarray(0, 150));
    c.splitter.push(long.subarray(150));
    assert.deepEqual(c.events, ['E:BAD_ENCODING', 'L:PING ok']);
  });

  it('reports an over-long line once and continues with the next line', () => {
    const max = 20;
    const at = 'x'.repeat(max);
    for (const chunking of [1, 3, 7, 1000]) {
      const c = collect(max);
      const data = Buffer.from(`${at}\n${at}\r\n${at}x\nPING a\n${'y'.repeat(100)}\r\nPING b\n${at}x\r\n`);
      for (let i = 0; i < data.length; i += chunking) c.splitter.push(data.subarray(i, i + chunking));
      assert.deepEqual(c.events, [`L:${at}`, `L:${at}`, 'E:TOO_LONG', 'L:PING a', 'E:TOO_LONG', 'L:PING b', 'E:TOO_LONG'], `chunk ${chunking}`);
    }
  });

  it('counts the limit in bytes, not characters', () => {
    const c = collect(8);
    c.splitter.push(Buffer.from('éééé\néééé€\nok\n'));
    assert.deepEqual(c.events, ['L:éééé', 'E:TOO_LONG', 'L:ok']);
  });

  it('does not buffer a never-ending line (10 MB without LF)', () => {
    const c = collect(MAX_LINE_BYTES);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let maxBuffered = 0;
    for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
      c.splitter.push(chunk);
      maxBuffered = Math.max(maxBuffered, c.splitter.bufferedBytes);
    }
    assert.deepEqual(c.errors, ['TOO_LONG']);
    assert.equal(maxBuffered, 0);
    // The splitter's own storage never grows past maxLineBytes + 1.
    const acc = (c.splitter as unknown as { acc: Buffer | null }).acc;
    assert.ok(acc === null || acc.length <= MAX_LINE_BYTES + 1);
    c.splitter.push(Buffer.from('still the long line\nPING after\n'));
    assert.deepEqual(c.events, ['E:TOO_LONG', 'L:PING after']);
  });

  it('bounds a partial line that grows past the limit across small chunks', () => {
    const c = collect(100);
    for (let i = 0; i < 1000; i++) {
      c.splitter.push(Buffer.from('abcdefghij'));
      assert.ok(c.splitter.bufferedBytes <= 101);
    }
    c.splitter.push(Buffer.from('\nPING z\n'));
    assert.deepEqual(c.events, ['E:TOO_LONG', 'L:PING z']);
  });

  it('works on plain Uint8Arrays (the browser has no Buffer), chunks split anywhere', () => {
    const bytes = new TextEncoder().encode('PRIVMSG #a :héllo 😀\r\nPING x\n');
    assert.ok(!Buffer.isBuffer(bytes));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const c = collect(512);
      c.splitter.push(bytes.subarray(0, cut));
      c.splitter.push(bytes.subarray(cut));
      assert.deepEqual(c.events, ['L:PRIVMSG #a :héllo 😀', 'L:PING x'], `cut ${cut}`);
    }
  });

  it('keeps a byte order mark, as a byte-for-byte decode does', () => {
    const c = collect(512);
    c.splitter.push(Buffer.from('\ufeffPING x\n'));
    assert.deepEqual(c.lines, ['\ufeffPING x']);
  });

  it('accepts a line of exactly maxLineBytes plus CR, split anywhere', () => {
    const line = 'y'.repeat(50);
    const data = Buffer.from(line + '\r\n');
    for (let cut = 0; cut <= data.length; cut++) {
      const c = collect(50);
      c.splitter.push(data.subarray(0, cut));
      c.splitter.push(data.subarray(cut));
      assert.deepEqual(c.events, ['L:' + line], `cut ${cut}`);
    }
  });
});

describe('UTF-8 helpers (no Buffer inside the protocol package)', () => {
  it('utf8Length agrees with Buffer.byteLength, lone surrogates and ranges included', () => {
    const samples = ['', 'abc', 'é', '€', '😀', 'a😀b', '\ud800', '\udc00x', 'x\ud800\ud800', '\ud83d', 'é€😀'.repeat(50)];
    for (let i = 0; i < 2000; i++) {
      let s = '';
      const n = i % 40;
      for (let k = 0; k < n; k++) s += String.fromCharCode([0x41, 0xe9, 0x20ac, 0xd83d, 0xde00, 0x7ff, 0x800, 0xffff][(i * 7 + k * 13) % 8] as number);
      samples.push(s);
    }
    for (const s of samples) {
      assert.equal(utf8Length(s), Buffer.byteLength(s, 'utf8'), JSON.stringify(s));
      const a = Math.floor(s.length / 3);
      const b = s.length - a;
      if (a <= b) assert.equal(utf8Length(s, a, b), Buffer.byteLength(s.slice(a, b), 'utf8'), `${JSON.stringify(s)} [${a}, ${b})`);
    }
  });

  it('parseLine counts bytes exactly at the limit for every kind of character', () => {
    for (const ch of ['é', '€', '😀', '\ud800']) {
      const head = 'PRIVMSG #a :';
      const unit = Buffer.byteLength(ch, 'utf8');
      const room = LIMITS.body - 2 - head.length;
      const fill = 'x'.repeat(room % unit);
      const fits = head + fill + ch.repeat(Math.floor(room / unit));
      assert.equal(Buffer.byteLength(fits, 'utf8'), LIMITS.body - 2, ch);
      assert.doesNotThrow(() => parseLine(fits), ch);
      assert.throws(() => parseLine(fits + 'x'), lineError('TOO_LONG'), ch);
    }
  });

  it('decodeUtf8 is strict and keeps a BOM', () => {
    assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])), '\ufeffA');
    assert.equal(decodeUtf8(new Uint8Array([0x41, 0xff])), null);
    assert.equal(decodeUtf8(new Uint8Array([0x20, 0xc3, 0xa9, 0x20]), 1, 3), 'é');
  });
});

describe('msgid', () => {
  function fnv1a(s: string): string {
    let h = 0x811c9dc5;
    for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193);
    return (h >>> 0).toString(16).padStart(8, '0');
  }
  it('roomTag is FNV-1a 32 over UTF-8, 8 lowercase hex chars', () => {
    assert.equal(roomTag(''), '811c9dc5');
    assert.equal(roomTag('a'), 'e40c292c'); // published FNV-1a test vector
    assert.equal(roomTag('foobar'), 'bf9cf968');
    for (const room of ['#general', '#ünïcödé', '#日本語', '#😀room', '#\ud800lone', '#x\udc00']) {
      assert.equal(roomTag(room), fnv1a(room), room);
      assert.match(roomTag(room), /^[0-9a-f]{8}$/);
    }
  });
  it('formats and parses room msgids', () => {
    const id = formatMsgid('#general', 12345);
    assert.equal(id, `${roomTag('#general')}-12345`);
    assert.deepEqual(parseMsgid(id), { tag: roomTag('#general'), seq: 12345 });
    assert.deepEqual(parseMsgid(formatMsgid('#a', 0)), { tag: roomTag('#a'), seq: 0 });
    assert.deepEqual(parseMsgid(formatMsgid('#a', Number.MAX_SAFE_INTEGER)), { tag: roomTag('#a'), seq: Number.MAX_SAFE_INTEGER });
    assert.throws(() => formatMsgid('#a', -1), RangeError);
    assert.throws(() => formatMsgid('#a', 1.5), RangeError);
    assert.throws(() => formatMsgid('#a', Number.NaN), RangeError);
  });
  it('parseMsgid returns null for anything malformed', () => {
    for (const bad of ['', 'abc', '0123456-1', '0123456789-1', 'ABCDEF01-1', 'abcdef01-', 'abcdef01-01', 'abcdef01--1', 'abcdef01-1x', 'abcdef01-1.5', 'abcdef01-99999999999999999', 'abcdef01 1', eventMsgid()]) {
      assert.equal(parseMsgid(bad), null, bad);
    }
  });
  it('eventMsgid is random and distinguishable from room ids', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = eventMsgid();
      assert.match(id, /^e-[0-9a-f]{16}$/);
      assert.ok(isEventMsgid(id));
      seen.add(id);
    }
    assert.equal(seen.size, 2000);
    assert.equal(isEventMsgid(formatMsgid('#a', 1)), false);
  });
});

describe('server-time', () => {
  it('formats UTC with milliseconds', () => {
    assert.equal(formatServerTime(Date.UTC(2026, 10, 23, 19, 17, 8, 123)), '2026-11-23T19:17:08.123Z');
    assert.equal(formatServerTime(0), '1970-01-01T00:00:00.000Z');
    assert.equal(formatServerTime(0), '1970-01-01T00:00:00.000Z');
    assert.throws(() => formatServerTime(Number.NaN), RangeError);
    assert.throws(() => formatServerTime(8.64e15), RangeError);
  });
  it('parses strictly', () => {
    assert.equal(parseServerTime('2026-11-23T19:17:08.123Z'), Date.UTC(2026, 10, 23, 19, 17, 8, 123));
    assert.equal(parseServerTime('2024-02-29T23:59:59.999Z'), Date.UTC(2024, 1, 29, 23, 59, 59, 999));
    for (const bad of [
      '',
      '2026-11-23T19:17:08Z',
      '2026-11-23T19:17:08.12Z',
      '2026-11-23T19:17:08.1234Z',
      '2026-11-23 19:17:08.123Z',
      '2026-11-23T19:17:08.123',
      '2026-11-23T19:17:08.123+00:00',
      '2026-11-23t19:17:08.123z',
      '2026-13-01T00:00:00.000Z',
      '2026-02-30T00:00:00.000Z',
      '2025-02-29T00:00:00.000Z',
      '2026-11-23T24:00:00.000Z',
      '2026-11-23T19:60:00.000Z',
      '2026-11-23T19:17:60.000Z',
      '+02026-11-23T19:17:08.123Z',
      ' 2026-11-23T19:17:08.123Z',
    ]) {
      assert.equal(parseServerTime(bad), null, bad);
    }
  });
  it('round-trips', () => {
    for (const ms of [0, 1, 999, 1_700_000_000_123, Date.UTC(9999, 11, 31, 23, 59, 59, 999)]) {
      assert.equal(parseServerTime(formatServerTime(ms)), ms);
    }
  });
});

describe('caps and numerics', () => {
  it('lists exactly the supported caps', () => {
    assert.deepEqual([...SUPPORTED_CAPS], [
      'message-tags', 'server-time', 'echo-message', 'batch', 'labeled-response', 'draft/chathistory',
      'sasl', 'draft/account-registration', 'account-tag', 'account-notify',
      'multi-prefix', 'userhost-in-names', 'invite-notify', 'away-notify', 'setname', 'extended-join', 'chghost',
    ]);
  });
  it('parses cap lists with values', () => {
    const caps = parseCapList('  multi-prefix sasl=PLAIN,EXTERNAL draft/chathistory=100 x=a=b  -batch ');
    assert.deepEqual([...caps], [
      ['multi-prefix', ''],
      ['sasl', 'PLAIN,EXTERNAL'],
      ['draft/chathistory', '100'],
      ['x', 'a=b'],
      ['-batch', ''],
    ]);
    assert.equal(parseCapList('').size, 0);
  });
  it('has unique 3-digit numerics and a reverse map', () => {
    const codes = Object.values(N);
    assert.ok(codes.every((c) => /^[0-9]{3}$/.test(c)));
    assert.equal(new Set(codes).size, codes.length);
    assert.equal(NUMERIC_NAMES.get('433'), 'ERR_NICKNAMEINUSE');
    assert.equal(N.RPL_WELCOME, '001');
    assert.equal(N.ERR_INVALIDCAPCMD, '410');
  });
});
