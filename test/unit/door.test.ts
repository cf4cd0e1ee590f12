import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { MemoryBroker, MemoryHub } from '../../packages/server/src/cluster/broker-memory.js';
import { sealedBroker } from '../../packages/server/src/core/bus.js';
import { batchPrefix, decodeBatch, encodeBatch, encodeEnvelope, openPayload, sealPayload, type Envelope } from '../../packages/server/src/core/envelope.js';
import {
  RequestBuckets, cloakHost, cloakKey, forwardedAddress, originAllowed, parseProxyV1, plainAddress,
} from '../../packages/server/src/net/door.js';
import { ClusterConfigSchema, defaultClusterConfig } from '../../packages/server/src/config.js';

/* The pure parts of the door and the bus: MACs, envelope validation, origins, cloaks, PROXY headers, buckets. */

const key = Buffer.from('a cluster key of the test');

const msg = (over: Partial<Record<string, unknown>> = {}): Record<string, unknown> => ({
  k: 'm', o: 'i1', r: '#room', q: 7, ms: 1767225600000, g: '+draft/reply=x;+typing=active', l: ':nick!u@host PRIVMSG #room :hi', ...over,
});
const event = (over: Partial<Record<string, unknown>> = {}): Record<string, unknown> => ({
  k: 'e', o: 'i1', r: '#room', t: '2026-01-01T00:00:00.000Z', ms: 1767225600000, i: 'e-0123456789abcdef', l: ':nick!u@host JOIN #room', ...over,
});
const batch = (...e: unknown[]): string => JSON.stringify({ o: 'i1', e });

describe('bus payload MACs', () => {
  it('seals and opens; a changed byte, another key, a missing or short MAC is refused', () => {
    const p = encodeBatch('i1', [encodeEnvelope(msg() as unknown as Envelope)]);
    const sealed = sealPayload(key, p);
    assert.match(sealed, /^[0-9a-f]{64}\./);
    assert.equal(openPayload(key, sealed), p);
    assert.equal(openPayload(key, sealed.replace('hi', 'ho')), null);
    assert.equal(openPayload(Buffer.from('another key'), sealed), null);
    assert.equal(openPayload(key, p), null);
    assert.equal(openPayload(key, `${'zz'.repeat(32)}.${p}`), null);
    assert.equal(openPayload(key, `${sealed.slice(0, 10)}.${p}`), null);
    assert.equal(openPayload(key, ''), null);
    // The MAC is an HMAC-SHA256 of the payload: another implementation can make one.
    assert.equal(sealed.slice(0, 64), createHmac('sha256', key).update(p).digest('hex'));
  });

  it('without a key, payloads go as they are', () => {
    assert.equal(sealPayload(null, 'x'), 'x');
    assert.equal(openPayload(null, 'x'), 'x');
  });

  it('sealedBroker: peers with the key get payloads; a payload published without it never reaches the handler; own ones come back unchecked', async () => {
    const hub = new MemoryHub();
    const got: Record<string, string[]> = { a: [], b: [] };
    const rejected: string[] = [];
    let lastArrived: () => void = () => undefined;
    const arrived = new Promise<void>((resolve) => (lastArrived = resolve));
    const make = (id: string) => sealedBroker((h) => new MemoryBroker(hub, h), { key, instanceId: id, rejected: (t) => rejected.push(t) })({
      message: (_t, p) => {
        got[id]?.push(p);
        if (id === 'a' && got.a?.length === 2) lastArrived();
      },
      status: () => undefined,
    });
    const a = make('a');
    const b = make('b');
    const raw = new MemoryBroker(hub, { message: () => undefined, status: () => undefined });
    await Promise.all([a.start(), b.start(), raw.start()]);
    await Promise.all([a.subscribe('r:#x'), b.subscribe('r:#x')]);
    const fromA = encodeBatch('a', ['{"k":"p","o":"a","r":"#x","h":1,"q":0}']);
    await a.publish('r:#x', fromA);
    await raw.publish('r:#x', encodeBatch('evil', ['{"k":"p","o":"evil","r":"#x","h":1,"q":0}']));
    await raw.publish('r:#x', sealPayload(Buffer.from('wrong'), encodeBatch('evil', [])));
    const last = encodeBatch('b', []);
    await b.publish('r:#x', last);
    // The hub delivers in publish order: once b's payload reached a, everything before it did.
    await arrived;
    assert.deepEqual(got.b, [fromA, last]);
    assert.deepEqual(got.a, [fromA, last]);
    assert.ok(got.a?.[0]?.startsWith(batchPrefix('a')));
    assert.deepEqual(rejected, ['r:#x', 'r:#x', 'r:#x', 'r:#x']);
    await Promise.all([a.close(), b.close(), raw.close()]);
  });
});

describe('envelope validation', () => {
  it('accepts what instances send', () => {
    const env = [msg(), msg({ g: '' }), event(), event({ leave: 'bob' }),
      { k: 'd', o: 'i1', to: 'bob', t: '2026-01-01T00:00:00.000Z', ms: 1, i: 'abcdef01-12', g: '', l: ':a!u@h PRIVMSG bob :x' },
      { k: 'u', o: 'i1', rooms: ['#a', '#b'], t: '2026-01-01T00:00:00.000Z', ms: 1, i: 'e-0123456789abcdef', l: ':a!u@h QUIT :bye', c: 512 },
      { k: 'p', o: 'i1', r: '#a', h: -1, q: -1 },
      { k: 'k', o: 'i1', to: 'bob', l: 'Killed (ghost)' }];
    assert.equal(decodeBatch(batch(...env))?.length, env.length);
  });

  for (const [what, bad] of [
    ['CR/LF in a line', msg({ l: ':a!u@h PRIVMSG #room :hi\r\n:server NOTICE x :injected' })],
    ['a lone LF', event({ l: ':a!u@h JOIN #room\n' })],
    ['a NUL', msg({ l: ':a!u@h PRIVMSG #room :a\0b' })],
    ['a line without a source', msg({ l: 'NOTICE * :unsourced' })],
    ['an empty line', event({ l: '' })],
    ['an over-long line', msg({ l: `:a!u@h PRIVMSG #room :${'x'.repeat(20000)}` })],
    ['a space in a tag list', msg({ g: '+a=b c' })],
    ['CR in a tag value', msg({ g: '+a=b\r' })],
    ['an empty tag key', msg({ g: '+a=1;;+b' })],
    ['a time that leaves its tag', event({ t: '2026-01-01T00:00:00.000Z;x=y' })],
    ['a msgid with a space', event({ i: 'e-1 :x' })],
    ['a non-integer seq', msg({ q: 1.5 })],
    ['a string ms', msg({ ms: '1' })],
    ['CR in a kill reason', { k: 'k', o: 'i', to: 'bob', l: 'x\r\nQUIT' }],
    ['an unknown presence', { k: 'p', o: 'i', r: '#a', h: 2, q: 0 }],
    ['a room list with a non-string', { k: 'u', o: 'i', rooms: ['#a', 1], t: '2026-01-01T00:00:00.000Z', ms: 1, i: 'e-0123456789abcdef', l: ':a!u@h QUIT :x' }],
    ['an unknown kind', { k: 'z', o: 'i', l: ':a' }],
  ] as const) {
    it(`drops a batch with ${what}`, () => {
      assert.equal(decodeBatch(batch(msg(), bad)), null);
    });
  }
});

describe('origins', () => {
  const lab = defaultClusterConfig().door.wsOrigins;

  it("the lab's defaults: loopback pages on any port, nothing else", () => {
    for (const o of ['http://127.0.0.1:8080', 'http://localhost:3000', 'https://localhost', 'http://[::1]:9', 'HTTP://LOCALHOST:1']) assert.ok(originAllowed(o, lab), o);
    for (const o of ['http://evil.example', 'null', 'http://127.0.0.1.evil.example', 'http://localhost.evil:80', 'file://', 'not a url', 'ws://localhost:1']) assert.ok(!originAllowed(o, lab), o);
  });

  it('no Origin (not a browser) is allowed; `*` allows every origin; exact entries match scheme, host and port', () => {
    assert.ok(originAllowed(undefined, []));
    assert.ok(originAllowed('null', ['*']));
    const list = ['https://chat.example.org'];
    assert.ok(originAllowed('https://chat.example.org', list));
    assert.ok(originAllowed('https://chat.example.org:443', list));
    assert.ok(!originAllowed('http://chat.example.org', list));
    assert.ok(!originAllowed('https://chat.example.org:8443', list));
  });

  it('the schema refuses an origin with a path, and unknown door keys', () => {
    assert.ok(!ClusterConfigSchema.safeParse({ door: { wsOrigins: ['https://x/path'] } }).success);
    assert.ok(!ClusterConfigSchema.safeParse({ door: { wsOrigin: ['*'] } }).success);
    assert.ok(ClusterConfigSchema.safeParse({ door: { wsOrigins: ['*', 'https://x:*', 'http://[::1]:8080'] } }).success);
  });
});

describe('cloaks', () => {
  it('are stable per address and key, differ between addresses and keys, and do not contain the address', () => {
    const k1 = cloakKey(key, 'p');
    const c = cloakHost(k1, '203.0.113.7');
    assert.match(c, /^parley-[0-9a-f]{8}\.ip$/);
    assert.equal(cloakHost(cloakKey(key, 'other prefix'), '203.0.113.7'), c, 'with a cluster key, the prefix does not matter');
    assert.notEqual(cloakHost(k1, '203.0.113.8'), c);
    assert.notEqual(cloakHost(cloakKey(Buffer.from('another'), 'p'), '203.0.113.7'), c);
    assert.notEqual(cloakHost(cloakKey(null, 'p'), '203.0.113.7'), c);
  });
});

describe('client addresses', () => {
  it('parses PROXY v1 headers', () => {
    assert.deepEqual(parseProxyV1(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 40000 6667\r\nNICK x\r\n')), { address: '203.0.113.7', length: 44 });
    assert.deepEqual(parseProxyV1(Buffer.from('PROXY TCP6 2001:db8::1 ::1 40000 6667\r\n')), { address: '2001:db8::1', length: 39 });
    assert.deepEqual(parseProxyV1(Buffer.from('PROXY UNKNOWN\r\n')), { address: null, length: 15 });
    assert.equal(parseProxyV1(Buffer.from('PROXY TCP4 1.2')), 'incomplete');
    assert.equal(parseProxyV1(Buffer.from('PRO')), 'incomplete');
    assert.equal(parseProxyV1(Buffer.from('NICK x\r\n')), null);
    assert.equal(parseProxyV1(Buffer.from('PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\n')), null);
    assert.equal(parseProxyV1(Buffer.from(`PROXY ${'x'.repeat(200)}`)), null);
    assert.equal(parseProxyV1(Buffer.from([0x16, 0x03, 0x01])), null, 'a TLS ClientHello is not a header');
  });

  it('believes X-Forwarded-For only from a trusted proxy, and only its last entry', () => {
    const trusted = new Set(['127.0.0.1']);
    assert.equal(forwardedAddress('::ffff:127.0.0.1', '198.51.100.1, 203.0.113.9', trusted), '203.0.113.9');
    assert.equal(forwardedAddress('10.0.0.5', '203.0.113.9', trusted), '10.0.0.5');
    assert.equal(forwardedAddress('127.0.0.1', 'garbage', trusted), '127.0.0.1');
    assert.equal(forwardedAddress('127.0.0.1', undefined, trusted), '127.0.0.1');
    assert.equal(plainAddress('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(plainAddress('::1'), '::1');
  });
});

describe('the API read budget', () => {
  it('lets a burst through, then refuses with the seconds to wait, and refills at the rate', () => {
    const b = new RequestBuckets();
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) assert.equal(b.take('1.2.3.4', 2, 3, t0), 0);
    assert.equal(b.take('1.2.3.4', 2, 3, t0), 1);
    assert.equal(b.take('5.6.7.8', 2, 3, t0), 0, 'another address has its own bucket');
    assert.equal(b.take('1.2.3.4', 2, 3, t0 + 500), 0, 'one token back after 1/rate seconds');
    assert.equal(b.take('1.2.3.4', 0.01, 3, t0 + 500), 100);
    assert.equal(b.take('x', 0, 1, t0), 0, 'rate 0: no limit');
  });
});
