/**
 * QoS on memory backends: the bucket arithmetic (GCRA, partial grants, retry-after, shard budget),
 * class resolution and live changes, the admission's tick batching, fail-open, the composition
 * with the backlog check, the counters, and the whole message path on in-process nodes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { QosClass } from '@parley/contracts';
import type { Refusal } from '../../packages/server/src/core/admission.js';
import { QosAdmission } from '../../packages/server/src/qos/admission.js';
import { grant, MemoryTokenBuckets, type TokenRequest } from '../../packages/server/src/qos/buckets.js';
import { MemoryQosCounters } from '../../packages/server/src/qos/counters.js';
import { QosDirectory } from '../../packages/server/src/qos/directory.js';
import { kinds, TestCluster, type TestQos } from './support/core.js';

const silent = pino({ level: 'silent' });
const S = 1_000_000; // µs per second

const req = (o: Partial<TokenRequest>): TokenRequest => ({ room: '#r', shard: null, n: 1, debit: 0, rate: 10, burst: 5, shardRate: 0, shardBurst: 0, ...o });

describe('bucket arithmetic (GCRA)', () => {
  it('grants a full bucket at once, then one message per 1/rate, with the retry-after of the next one', () => {
    const t0 = 1_000 * S;
    const a = grant(req({ n: 8 }), 0, 0, t0);
    assert.deepEqual(a.grant, { granted: 5, retryAfterMs: 100, left: 0 }, 'burst 5 granted, the 6th fits in 1/10 s');
    const early = grant(req({ n: 1 }), a.roomTat, 0, t0 + 99_000);
    assert.equal(early.grant.granted, 0, '1 ms before the retry-after: nothing');
    assert.equal(early.grant.retryAfterMs, 1);
    const onTime = grant(req({ n: 3 }), a.roomTat, 0, t0 + 100_000);
    assert.deepEqual(onTime.grant, { granted: 1, retryAfterMs: 100, left: 0 }, 'at the retry-after: exactly one');
    const later = grant(req({ n: 20 }), onTime.roomTat, 0, t0 + 100 * S);
    assert.equal(later.grant.granted, 5, 'an idle bucket refills to its burst, not beyond');
  });

  it('grants nothing twice: k of n taken leaves the bucket where k single takes would', () => {
    const t0 = 5 * S;
    let tat = 0;
    for (let i = 0; i < 5; i++) tat = grant(req({ n: 1 }), tat, 0, t0).roomTat;
    const batched = grant(req({ n: 5 }), 0, 0, t0).roomTat;
    assert.equal(batched, tat);
  });

  it('holds an offered 2x rate to the limit (rate x time + burst), refusals carrying a retry-after', () => {
    // 40 msg/s limit, 80 msg/s offered for 5 s in ticks of 12.5 ms (one message per tick).
    const rate = 40;
    let tat = 0;
    let accepted = 0;
    let refused = 0;
    for (let t = 0; t < 5 * S; t += S / 80) {
      const g = grant(req({ rate, burst: 4 }), tat, 0, 1000 * S + t);
      tat = g.roomTat;
      accepted += g.grant.granted;
      if (g.grant.granted === 0) {
        refused++;
        assert.ok(g.grant.retryAfterMs >= 1 && g.grant.retryAfterMs <= 25, `retry-after ${g.grant.retryAfterMs}`);
      }
    }
    assert.equal(accepted + refused, 400);
    assert.ok(Math.abs(accepted - (rate * 5 + 4)) <= 1, `accepted ${accepted}, expected ${rate * 5 + 4}`);
  });

  it('checks the shard budget in the same step: the smaller grant wins and only it is taken', () => {
    const t0 = 10 * S;
    const a = grant(req({ room: '#a', shard: 1, n: 8, rate: 100, burst: 100, shardRate: 10, shardBurst: 10 }), 0, 0, t0);
    assert.equal(a.grant.granted, 8);
    const b = grant(req({ room: '#b', shard: 1, n: 8, rate: 100, burst: 100, shardRate: 10, shardBurst: 10 }), 0, a.shardTat, t0);
    assert.equal(b.grant.granted, 2, 'the shard had 2 rows left');
    assert.equal(b.grant.retryAfterMs, 100, 'the shard refills one row per 100 ms');
    assert.equal(b.roomTat, t0 + 2 * (S / 100), 'the room bucket gave only what was granted');
    const noRoomLimit = grant(req({ room: '#c', shard: 1, n: 3, rate: 0, burst: 0, shardRate: 10, shardBurst: 10 }), 0, b.shardTat, t0);
    assert.equal(noRoomLimit.grant.granted, 0, 'a room without a class is still under its shard budget');
    const unknownShard = grant(req({ shard: null, n: 3, rate: 0, shardRate: 10, shardBurst: 10 }), 0, b.shardTat, t0);
    assert.equal(unknownShard.grant.granted, 3, 'no shard known, no shard bucket');
  });

  it('takes a debit (messages admitted without asking) unconditionally, before granting, and reports what is left', () => {
    const t0 = 20 * S;
    const over = grant(req({ n: 2, debit: 7 }), 0, 0, t0);
    assert.deepEqual(over.grant, { granted: 0, retryAfterMs: 300, left: 0 }, '7 debited from a bucket of 5: 2 in debt, the next fits in 0.3 s');
    assert.equal(over.roomTat, t0 + 7 * (S / 10));
    const free = grant(req({ n: 1, debit: 1, rate: 0, shard: 2, shardRate: 100, shardBurst: 100 }), 0, 0, t0);
    assert.deepEqual(free.grant, { granted: 1, retryAfterMs: 0, left: 98 }, 'left is the smaller of room (unlimited) and shard');
  });

  it('MemoryTokenBuckets answers each request against the state the previous ones left', async () => {
    let now = 50 * S;
    const b = new MemoryTokenBuckets(() => now);
    const [x, y] = await b.take([req({ n: 4 }), req({ n: 4 })]);
    assert.deepEqual([x, y], [{ granted: 4, retryAfterMs: 0, left: 1 }, { granted: 1, retryAfterMs: 100, left: 0 }]);
    now += S;
    assert.deepEqual(await b.take([req({ n: 1 })]), [{ granted: 1, retryAfterMs: 0, left: 4 }], 'a second later: full again (5), one taken');
  });
});

const cls = (rate: number, burst: number, extra: Partial<QosClass> = {}): QosClass => ({ rate, burst, ...extra });

function directory(): { d: QosDirectory; shardOf: Map<string, number>; shardClass: Map<number, string> } {
  const shardOf = new Map<string, number>();
  const shardClass = new Map<number, string>();
  return { d: new QosDirectory({ pinnedShard: (r) => shardOf.get(r), shardClass: (id) => shardClass.get(id) }), shardOf, shardClass };
}

describe('QosDirectory: which class a room has', () => {
  it('room override, else shard class, else default, else no limit; a missing class counts as default', () => {
    const { d, shardOf, shardClass } = directory();
    shardOf.set('#a', 1);
    assert.equal(d.room('#a').className, null, 'no class at all: no limit');
    assert.equal(d.room('#a').unlimited, true);
    d.putClass('default', cls(100, 10));
    assert.deepEqual([d.room('#a').className, d.room('#a').rate], ['default', 100]);
    d.putClass('gold', cls(500, 50, { shardWriteBudget: 2000 }));
    shardClass.set(1, 'gold');
    d.shardsChanged();
    assert.deepEqual([d.room('#a').className, d.room('#a').rate, d.room('#a').shardRate], ['gold', 500, 2000]);
    d.putClass('slow', cls(1, 1));
    d.putRoom('#a', { shard: 1, qos: 'slow' });
    const a = d.room('#a');
    assert.deepEqual([a.className, a.rate, a.shardRate], ['slow', 1, 2000], 'the override sets the room rate; the budget stays the shard class\'s');
    d.putRoom('#a', { shard: 1, qos: 'nosuch' });
    assert.equal(d.room('#a').className, 'gold', 'a named class that does not exist falls back to the shard class');
    d.deleteClass('gold');
    assert.deepEqual([d.room('#a').className, d.room('#a').shardRate], ['default', 0], 'live: deleting the shard class falls back to default');
  });

  it('answers from its cache (the same object) until something it depends on changes', () => {
    const { d, shardOf } = directory();
    shardOf.set('#c', 0);
    d.putClass('default', cls(10, 1));
    const first = d.room('#c');
    assert.equal(d.room('#c'), first);
    d.putClass('default', cls(20, 2));
    assert.equal(d.room('#c'), first, 'updated in place, so per-room state survives');
    assert.equal(first.rate, 20);
  });

  it('a room whose shard is not known yet gets its override or default, and its shard class once pinned', () => {
    const { d, shardOf, shardClass } = directory();
    d.putClass('default', cls(10, 1));
    d.putClass('bronze', cls(2, 1));
    shardClass.set(3, 'bronze');
    assert.deepEqual([d.room('#new').shard, d.room('#new').className], [null, 'default']);
    shardOf.set('#new', 3);
    assert.deepEqual([d.room('#new').shard, d.room('#new').className], [3, 'bronze']);
  });
});

interface Admitted {
  verdicts: (Refusal | null)[];
}

/** Admits `n` messages of `room` in the current tick and collects their answers in order. */
function send(a: QosAdmission, room: string, n: number): { all: Promise<Admitted>; sync: number } {
  const out: Promise<Refusal | null>[] = [];
  let sync = 0;
  for (let i = 0; i < n; i++) {
    const v = a.admit(room);
    if (v === null || !('then' in v)) sync++;
    out.push(Promise.resolve(v));
  }
  return { all: Promise.all(out).then((verdicts) => ({ verdicts })), sync };
}

describe('QosAdmission', () => {
  function setup(backlog = 0) {
    const { d, shardOf } = directory();
    const buckets = new MemoryTokenBuckets(() => 77 * S);
    const failOpen: number[] = [];
    let pending = backlog;
    const a = new QosAdmission({
      directory: d, buckets, log: silent,
      backlog: { admit: () => (pending < 10 ? null : { code: 'RATE_LIMITED', reason: 'backlog', retryAfterMs: 1000, text: 'busy' }) },
      metrics: { failOpen: (n) => failOpen.push(n), took: () => undefined },
      debitFlushMs: 10,
    });
    return { d, shardOf, buckets, a, failOpen, setBacklog: (n: number) => (pending = n) };
  }

  it('takes tokens once per tick: one request per room with its count, every room in one call', async () => {
    const { d, buckets, a } = setup();
    d.putClass('default', cls(10, 5));
    const x = send(a, '#x', 50);
    const y = send(a, '#y', 30);
    assert.equal(x.sync + y.sync, 0, 'limited rooms answer later');
    const [rx, ry] = await Promise.all([x.all, y.all]);
    assert.equal(buckets.calls.length, 1, 'one take for the whole tick');
    assert.deepEqual(buckets.calls[0]?.map((r) => [r.room, r.n]), [['#x', 50], ['#y', 30]]);
    for (const r of [rx, ry]) {
      const admitted = r.verdicts.map((v) => v === null);
      assert.deepEqual(admitted.slice(0, 5), [true, true, true, true, true]);
      assert.equal(admitted.indexOf(false), 5, 'the first k in order are admitted');
      assert.equal(admitted.lastIndexOf(true), 4);
      const refusal = r.verdicts[5];
      assert.deepEqual(refusal && { code: refusal.code, reason: refusal.reason, retryAfterMs: refusal.retryAfterMs }, { code: 'RATE_LIMITED', reason: 'qos', retryAfterMs: 100 });
      assert.match(refusal?.text ?? '', /retry in 100 ms/);
    }
    const next = send(a, '#x', 2);
    await next.all;
    assert.equal(buckets.calls.length, 2, 'the next tick is a new call');
  });

  it('far from the limit admits at once and takes the tokens afterwards, never beyond the bucket', async () => {
    const { d, shardOf, buckets, a } = setup();
    d.putClass('default', cls(10, 5));
    shardOf.set('#fast', 0);
    const first = send(a, '#fast', 1);
    assert.equal(first.sync, 0, 'nothing known yet: ask');
    await first.all;
    assert.deepEqual(buckets.calls.at(-1)?.map((r) => [r.n, r.debit]), [[1, 0]]);
    // 4 left, half of it may be used without asking: 2 at once, the rest waits for the buckets.
    const second = send(a, '#fast', 5);
    assert.equal(second.sync, 2);
    const r = await second.all;
    assert.deepEqual(buckets.calls.at(-1)?.map((q) => [q.n, q.debit]), [[3, 2]], 'the debit travels with the next request');
    assert.deepEqual(r.verdicts.map((v) => v === null), [true, true, true, true, false], 'in order; 5 in all, the burst');
    const third = send(a, '#fast', 3);
    assert.equal(third.sync, 0, 'at the limit: every message asks');
    assert.ok((await third.all).verdicts.every((v) => v !== null));
  });

  it('a class far above the offered rate: after the first answer no message waits for the buckets', async () => {
    const { d, shardOf, buckets, a } = setup();
    d.putClass('default', cls(1_000_000, 1_000_000));
    shardOf.set('#bulk', 0);
    await send(a, '#bulk', 1).all;
    const bulk = send(a, '#bulk', 10_000);
    assert.equal(bulk.sync, 10_000);
    // The debits leave within debitFlushMs, on a timer of their own (nothing waits for them).
    const debits = buckets.nextCall();
    await bulk.all;
    assert.deepEqual((await debits).map((q) => [q.n, q.debit]), [[0, 10_000]]);
  });

  it('answers a room without a limit at once, without a call', async () => {
    const { buckets, a } = setup();
    const r = send(a, '#free', 100);
    assert.equal(r.sync, 100);
    assert.ok((await r.all).verdicts.every((v) => v === null));
    assert.equal(buckets.calls.length, 0);
  });

  it('composes with the backlog: over it, refused at once and no token taken; confirm checks it again', async () => {
    const { d, buckets, a, setBacklog } = setup(10);
    d.putClass('default', cls(10, 5));
    const v = a.admit('#b');
    assert.ok(v !== null && !('then' in v) && v.reason === 'backlog');
    assert.equal(buckets.calls.length, 0);
    setBacklog(0);
    const p = a.admit('#b');
    assert.ok(p !== null && 'then' in p);
    assert.equal(await p, null);
    setBacklog(10);
    assert.equal(a.confirm('#b')?.reason, 'backlog', 'the backlog grew while the answer was on its way');
  });

  it('fails open when the buckets cannot be consulted, and counts the messages so admitted', async () => {
    const { d, buckets, a, failOpen } = setup();
    d.putClass('default', cls(1, 1));
    buckets.fault = new Error('connection is closed');
    const r = await send(a, '#down', 7).all;
    assert.ok(r.verdicts.every((v) => v === null));
    assert.deepEqual(failOpen, [7]);
    buckets.fault = null;
    const back = await send(a, '#down', 3).all;
    assert.deepEqual(back.verdicts.map((v) => v === null), [true, false, false], 'limits apply again once the buckets answer');
  });
});

describe('MemoryQosCounters', () => {
  it('sums per room and per shard; a room without a known shard counts only for the room', async () => {
    const c = new MemoryQosCounters();
    c.add('#a', 1, 'accepted', 3);
    c.add('#a', 1, 'refusedQos');
    c.add('#b', null, 'failed', 2);
    const rooms = await c.rooms();
    assert.deepEqual(rooms.get('#a'), { accepted: 3, refusedQos: 1, refusedBacklog: 0, failed: 0 });
    assert.deepEqual(rooms.get('#b'), { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 2 });
    assert.deepEqual([...(await c.shards())], [[1, { accepted: 3, refusedQos: 1, refusedBacklog: 0, failed: 0 }]]);
  });
});

describe('QoS on the message path (two nodes, shared buckets)', () => {
  let cluster: TestCluster;
  let qos: TestQos;
  let now = 1000 * S;

  before(async () => {
    cluster = new TestCluster();
    qos = cluster.enableQos(() => now);
    await cluster.addNode('n1');
    await cluster.addNode('n2');
  });
  after(() => cluster.close());

  it('refuses over the limit with FAIL RATE_LIMITED <target> <retry-after-ms>, cluster-wide, and counts', async () => {
    qos.directory.putClass('default', cls(10, 3));
    qos.shardOf.set('#lim', 4);
    const a = await cluster.client(0, 'lima');
    const b = await cluster.client(1, 'limb');
    await a.cmd('JOIN #lim');
    await b.cmd('JOIN #lim');
    const answers = await Promise.all([
      ...Array.from({ length: 4 }, (_, i) => a.cmd(`PRIVMSG #lim :a${i}`)),
      ...Array.from({ length: 4 }, (_, i) => b.cmd(`PRIVMSG #lim :b${i}`)),
    ]);
    const firsts = answers.map((r) => r[0]);
    const echoes = firsts.filter((m) => m?.command === 'PRIVMSG');
    const fails = firsts.filter((m) => m?.command === 'FAIL');
    assert.equal(echoes.length, 3, `burst 3 over both nodes: ${JSON.stringify(answers.map((r) => kinds(r)))}`);
    assert.equal(fails.length, 5);
    for (const f of fails) {
      assert.deepEqual(f?.params.slice(0, 3), ['PRIVMSG', 'RATE_LIMITED', '#lim']);
      assert.match(f?.params[3] ?? '', /^\d+$/);
      assert.ok(Number(f?.params[3]) >= 1 && Number(f?.params[3]) <= 500, `retry-after ${f?.params[3]} ms`);
    }
    assert.equal(answers.flat().some((m) => m.command === 'NOTICE'), false, 'clients with labeled-response get no NOTICE');
    assert.deepEqual((await qos.counters.rooms()).get('#lim'), { accepted: 3, refusedQos: 5, refusedBacklog: 0, failed: 0 });
    assert.deepEqual((await qos.counters.shards()).get(4), { accepted: 3, refusedQos: 5, refusedBacklog: 0, failed: 0 });
    const metrics = await cluster.node(0).metrics.registry.metrics();
    assert.match(metrics, /parley_shard_messages_total\{shard="4",outcome="refused_qos"\} \d/);
    now += S;
    const again = await a.cmd('PRIVMSG #lim :after a second');
    assert.equal(again[0]?.command, 'PRIVMSG', 'a second later the bucket has refilled');
  });

  it('sends a NOTICE beside the FAIL to a client without echo-message or labeled-response', async () => {
    qos.directory.putClass('default', cls(10, 1));
    qos.shardOf.set('#plain', 4);
    const c = await cluster.client(0, 'plain1', []);
    c.send('JOIN #plain');
    await c.next((m) => m.command === '366');
    c.send('PRIVMSG #plain :one\r\n'.trim());
    c.send('PRIVMSG #plain :two');
    const fail = await c.next((m) => m.command === 'FAIL');
    assert.equal(fail.params[1], 'RATE_LIMITED');
    const notice = await c.seen((m) => m.command === 'NOTICE');
    assert.equal(notice.params[0], 'plain1');
    assert.match(notice.params[1] ?? '', new RegExp(`^Message to #plain refused: rate limited, retry in ${fail.params[3]} ms$`));
    c.send('NOTICE #plain :three');
    await c.next((m) => m.command === 'FAIL' && m.params[0] === 'NOTICE');
    c.send('PING :done');
    await c.next((m) => m.command === 'PONG');
    assert.equal(c.messages.filter((m) => m.command === 'NOTICE').length, 1, 'a refused NOTICE gets no NOTICE back');
  });

  it('applies a class change at once, and a room override over its shard class', async () => {
    qos.directory.putClass('default', cls(1000, 1000));
    qos.directory.putClass('tiny', cls(1, 1));
    qos.shardOf.set('#live', 2);
    const c = await cluster.client(1, 'live1');
    await c.cmd('JOIN #live');
    const first = await Promise.all(Array.from({ length: 5 }, (_, i) => c.cmd(`PRIVMSG #live :x${i}`)));
    assert.ok(first.every((r) => r[0]?.command === 'PRIVMSG'), 'the default class lets 5 through');
    now += 10 * S;
    qos.directory.putRoom('#live', { shard: 2, qos: 'tiny' });
    const second = await Promise.all(Array.from({ length: 3 }, (_, i) => c.cmd(`PRIVMSG #live :y${i}`)));
    assert.deepEqual(second.map((r) => r[0]?.command), ['PRIVMSG', 'FAIL', 'FAIL'], 'the override applies to the next messages');
    qos.directory.putRoom('#live', { shard: 2 });
    qos.shardClass.set(2, 'tiny');
    qos.directory.shardsChanged();
    now += 10 * S;
    const third = await Promise.all(Array.from({ length: 2 }, (_, i) => c.cmd(`PRIVMSG #live :z${i}`)));
    assert.deepEqual(third.map((r) => r[0]?.command), ['PRIVMSG', 'FAIL'], 'the shard class applies once the override is gone');
  });

  it('counts store failures per room', async () => {
    qos.directory.deleteClass('default');
    qos.directory.deleteClass('tiny');
    qos.shardOf.set('#bad', 6);
    const c = await cluster.client(0, 'bad1');
    await c.cmd('JOIN #bad');
    cluster.store.setFault((m) => (m.room === '#bad' ? new Error('disk full') : null));
    try {
      const r = await c.cmd('PRIVMSG #bad :x');
      assert.equal(r[0]?.params[1], 'MESSAGE_ERROR');
    } finally {
      cluster.store.setFault(null);
    }
    assert.equal((await qos.counters.rooms()).get('#bad')?.failed, 1);
    assert.equal((await qos.counters.shards()).get(6)?.failed, 1);
  });
});
