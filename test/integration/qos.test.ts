import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { etcdKeys, type QosClass } from '@parley/contracts';
import { IrcClient } from '@parley/client';
import type { IrcMessage } from '@parley/protocol';
import { RedisTokenBuckets } from '../../packages/server/src/qos/buckets-redis.js';
import type { TokenGrant, TokenRequest } from '../../packages/server/src/qos/buckets.js';
import { RedisQosCounters } from '../../packages/server/src/qos/counters.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';

/*
 * Per-room QoS on real etcd, Redis and PostgreSQL with two `parley server` processes: a room's
 * writes from both instances draw from one bucket, refusals carry a retry-after, other rooms are
 * unaffected, a class changed in etcd applies on both instances within a second, and the
 * cluster-wide counters add up to what the clients saw.
 */

let services: Services;
let prefix: string;
let etcd: Etcd3;
let redis: Redis;
let a: ParleyProcess;
let b: ParleyProcess;
const clients: IrcClient[] = [];
const silent = pino({ level: 'silent' });

/** the limited room's class: 20 messages/s, bucket of 2 */
const LIMITED: QosClass = { rate: 20, burst: 2 };

async function client(p: ParleyProcess, nick: string): Promise<IrcClient> {
  const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: p.tcpPort, nick });
  clients.push(c);
  await c.connect();
  return c;
}

const putClass = (name: string, cls: QosClass) => etcd.put(etcdKeys(prefix).qosClass(name)).value(JSON.stringify(cls));

before(async () => {
  services = await startServices();
  prefix = uniqueName('qos');
  const dbUrl = await services.postgres!.createDatabase(prefix);
  etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  redis = new Redis(services.redis!.url);
  await etcd.put(`/${prefix}/config`).value(JSON.stringify({ flood: { linesPerSecond: 0 } }));
  await putClass('default', { rate: 1000, burst: 1000 });
  await putClass('limited', LIMITED);
  // The room's own class; its shard pin is added beside it by the first instance that resolves it.
  await etcd.put(etcdKeys(prefix).room('#qa')).value(JSON.stringify({ qos: 'limited' }));
  [a, b] = await Promise.all([spawnParley(services, { id: 'qa', prefix, pg: [dbUrl] }), spawnParley(services, { id: 'qb', prefix, pg: [dbUrl] })]);
});

after(async () => {
  for (const c of clients) c.destroy();
  await Promise.allSettled([a?.stop(), b?.stop()]);
  redis?.disconnect();
  etcd?.close();
  await services?.stop();
});

interface Tally {
  accepted: number;
  refused: number;
  retryAfter: number[];
  other: string[];
  /** resolves once `n` messages were answered (accepted, refused or failed otherwise) */
  answered(n: number, nick: string): Promise<void>;
}

/** Counts the answers to this client's messages in `room` whose text starts with `tag`. */
function tally(c: IrcClient, room: string, tag: string): Tally {
  let want = Infinity;
  let done = (): void => undefined;
  const total = () => t.accepted + t.refused + t.other.length;
  const t: Tally = {
    accepted: 0, refused: 0, retryAfter: [], other: [],
    answered: (n, nick) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${nick}: ${n} sent, ${t.accepted} accepted, ${t.refused} refused, other ${t.other.join(',')}`)), 10_000);
      want = n;
      done = () => {
        clearTimeout(timer);
        resolve();
      };
      if (total() >= want) done();
    }),
  };
  c.on('message', (m: IrcMessage) => {
    if (m.command === 'PRIVMSG' && m.params[0] === room && m.source?.startsWith(`${c.nick}!`) && m.params[1]?.startsWith(tag)) t.accepted++;
    else if (m.command === 'FAIL' && m.params[2] === room) {
      if (m.params[1] === 'RATE_LIMITED') {
        t.refused++;
        t.retryAfter.push(Number(m.params[3]));
      } else t.other.push(m.params[1] ?? '');
    } else return;
    if (total() >= want) done();
  });
  return t;
}

/** Sends one message every `everyMs` for `ms`; resolves with the times of the first and last send. */
function pace(c: IrcClient, room: string, tag: string, everyMs: number, ms: number): Promise<{ first: number; last: number; sent: number }> {
  return new Promise((resolve) => {
    const first = performance.now();
    let sent = 0;
    let last = first;
    const send = () => {
      c.send(`PRIVMSG ${room} :${tag}${sent++}`);
      last = performance.now();
      if (last - first + everyMs > ms) {
        clearInterval(timer);
        resolve({ first, last, sent });
      }
    };
    const timer = setInterval(send, everyMs);
    send();
  });
}

describe('QoS buckets in Redis (the script)', () => {
  const req = (o: Partial<TokenRequest>): TokenRequest => ({ room: '#lua', shard: null, n: 1, debit: 0, rate: 10, burst: 5, shardRate: 0, shardBurst: 0, ...o });
  const granted = (gs: (TokenGrant | Error)[]) => gs.map((g) => (g instanceof Error ? g.message : g.granted));

  it('grants the first k of n per request, pipelined, with the shard budget in the same step and a retry-after', async () => {
    const p = `${prefix}-lua`;
    const buckets = new RedisTokenBuckets(redis, p);
    const first = await buckets.take([req({ n: 8 }), req({ room: '#other', n: 3 })]);
    assert.deepEqual(granted(first), [5, 3]);
    const refused = first[0] as TokenGrant;
    assert.ok(refused.retryAfterMs >= 90 && refused.retryAfterMs <= 100, `retry-after ${refused.retryAfterMs}`);
    const shard = await buckets.take([
      req({ room: '#s1', shard: 7, n: 6, rate: 100, burst: 100, shardRate: 10, shardBurst: 10 }),
      req({ room: '#s2', shard: 7, n: 6, rate: 100, burst: 100, shardRate: 10, shardBurst: 10 }),
    ]);
    assert.deepEqual(granted(shard), [6, 4], 'the two rooms share the shard budget of 10');
    assert.ok((await redis.pttl(`${p}:qb:s:7`)) > 0, 'bucket keys expire');
    const debt = await buckets.take([req({ room: '#debt', n: 2, debit: 7 })]);
    const d = debt[0] as TokenGrant;
    assert.deepEqual([d.granted, d.left], [0, 0], 'a debit of 7 on a bucket of 5 leaves it in debt');
    assert.ok(d.retryAfterMs >= 290 && d.retryAfterMs <= 300, `retry-after ${d.retryAfterMs}`);
    const roomy = await buckets.take([req({ room: '#roomy', n: 1, debit: 1, rate: 1000, burst: 100 })]);
    assert.deepEqual(granted(roomy), [1]);
    assert.equal((roomy[0] as TokenGrant).left, 98, 'left after the debit and the grant');
    await redis.script('FLUSH');
    assert.deepEqual(granted(await buckets.take([req({ room: '#after-flush', n: 1 })])), [1], 'a Redis that forgot the script gets it again');
  });

  it('counts per room and per shard across two writers, written in batches', async () => {
    const p = `${prefix}-cnt`;
    const w1 = new RedisQosCounters(redis, p, { flushMs: 60_000, log: silent });
    const w2 = new RedisQosCounters(redis, p, { flushMs: 60_000, log: silent });
    w1.add('#x', 1, 'accepted', 5);
    w2.add('#x', 1, 'refusedQos', 2);
    w2.add('#y', null, 'failed');
    await Promise.all([w1.close(), w2.close()]);
    const reader = new RedisQosCounters(redis, p, { log: silent });
    const rooms = await reader.rooms();
    assert.deepEqual(rooms.get('#x'), { accepted: 5, refusedQos: 2, refusedBacklog: 0, failed: 0 });
    assert.deepEqual(rooms.get('#y'), { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 1 });
    assert.deepEqual([...(await reader.shards())], [[1, { accepted: 5, refusedQos: 2, refusedBacklog: 0, failed: 0 }]]);
    await reader.close();
  });
});

describe('QoS across two instances', () => {
  let limitedA: Tally;
  let limitedB: Tally;

  it('holds a room offered 2x its rate from two instances to its limit (±10%), refusing the rest with a retry-after; a second room is unaffected', async () => {
    const ca = await client(a, 'qosa');
    const cb = await client(b, 'qosb');
    const cc = await client(b, 'qosc');
    await ca.request('JOIN #qa');
    await cb.request('JOIN #qa');
    await cc.request('JOIN #qfree');
    limitedA = tally(ca, '#qa', 'a');
    limitedB = tally(cb, '#qa', 'b');
    const free = tally(cc, '#qfree', 'f');
    // 20 msg/s from each instance = 40 msg/s, twice the limit, for 5 s; the free room 40 msg/s.
    const [ra, rb, rf] = await Promise.all([pace(ca, '#qa', 'a', 50, 5000), pace(cb, '#qa', 'b', 50, 5000), pace(cc, '#qfree', 'f', 25, 5000)]);
    await Promise.all([limitedA.answered(ra.sent, 'qosa'), limitedB.answered(rb.sent, 'qosb'), free.answered(rf.sent, 'qosc')]);
    const seconds = (Math.max(ra.last, rb.last) - Math.min(ra.first, rb.first)) / 1000;
    const accepted = limitedA.accepted + limitedB.accepted;
    const refused = limitedA.refused + limitedB.refused;
    const rate = accepted / seconds;
    const report = `accepted ${accepted} (${limitedA.accepted} + ${limitedB.accepted}) and refused ${refused} of ${ra.sent + rb.sent} in ${seconds.toFixed(2)} s: ${rate.toFixed(2)} msg/s for a limit of ${LIMITED.rate}`;
    console.log(`rate accuracy: ${report}`);
    assert.ok(Math.abs(rate - LIMITED.rate) <= LIMITED.rate * 0.1, report);
    assert.ok(limitedA.accepted > 0 && limitedB.accepted > 0, `both instances got some through: ${report}`);
    assert.deepEqual([...limitedA.other, ...limitedB.other], []);
    for (const ms of [...limitedA.retryAfter, ...limitedB.retryAfter]) assert.ok(Number.isInteger(ms) && ms >= 1 && ms <= 1000, `retry-after ${ms} ms`);
    assert.equal(free.refused, 0, 'the other room at 40 msg/s under its class of 1000/s lost nothing');
    assert.equal(free.accepted, rf.sent);
    const metrics = await a.metrics();
    assert.match(metrics, /parley_shard_messages_total\{shard="0",outcome="refused_qos"\} [1-9]/);
    assert.match(metrics, /parley_qos_fail_open_total 0/);
  });

  it('applies a class changed in etcd on both instances within a second', async () => {
    const since = [a.logs.mark(), b.logs.mark()];
    const c = await client(b, 'qosd');
    await c.request('JOIN #qlate');
    // The room names a class that does not exist yet: it runs under default (1000/s).
    const t0 = performance.now();
    await etcd.put(etcdKeys(prefix).room('#qlate')).value(JSON.stringify({ ...(await roomEntry('#qlate')), qos: 'later' }));
    await Promise.all([a, b].map((p, i) => p.logs.waitFor((e) => e.msg === 'room qos changed' && e.room === '#qlate', 'room qos changed', { since: since[i] })));
    const burst = tally(c, '#qlate', 'x');
    await Promise.all(Array.from({ length: 6 }, (_, i) => c.request(`PRIVMSG #qlate :x${i}`)));
    assert.equal(burst.refused, 0, 'default class: 6 at once pass');
    const t1 = performance.now();
    await putClass('later', { rate: 1, burst: 3 });
    await Promise.all([a, b].map((p, i) => p.logs.waitFor((e) => e.msg === 'qos class changed' && e.class === 'later', 'qos class changed', { since: since[i] })));
    const applied = performance.now() - t1;
    assert.ok(applied < 1000, `the change took ${applied.toFixed(0)} ms to reach both instances`);
    assert.ok(performance.now() - t0 < 5000);
    const after = tally(c, '#qlate', 'y');
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => c.request(`PRIVMSG #qlate :y${i}`)));
    const kinds = answers.map((r) => r[0]?.command);
    // 6 messages at 1000/s left ~6 ms of debt: the class of burst 3 lets 2 or 3 through, no more.
    assert.ok(after.accepted >= 2 && after.accepted <= 3, `after the change: ${kinds.join(' ')}`);
    assert.equal(after.accepted + after.refused, 6);
    console.log(`class change reached both instances in ${applied.toFixed(0)} ms`);
  });

  it('keeps cluster-wide counters that add up to what the clients saw', async () => {
    // A graceful stop writes each instance's last batch of counts.
    await Promise.all([a.stop(), b.stop()]);
    const reader = new RedisQosCounters(redis, prefix, { log: silent });
    const rooms = await reader.rooms();
    await reader.close();
    assert.deepEqual(rooms.get('#qa'), {
      accepted: limitedA.accepted + limitedB.accepted,
      refusedQos: limitedA.refused + limitedB.refused,
      refusedBacklog: 0,
      failed: 0,
    });
  });
});

async function roomEntry(room: string): Promise<Record<string, unknown>> {
  const text = await etcd.get(etcdKeys(prefix).room(room)).string();
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}
