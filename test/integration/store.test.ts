import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import pg from 'pg';
import { startServices, uniqueName } from '../harness/index.js';
import type { Services } from '../harness/index.js';
import {
  EtcdShardDirectory,
  MemoryStore,
  ShardedStore,
  StaticShardDirectory,
  StoreUnavailableError,
  migrate,
  migrations,
} from '../../packages/server/src/store/index.js';
import type {
  MessageStore,
  NewMessage,
  Selector,
  ShardInfo,
  StoredMessage,
} from '../../packages/server/src/store/index.js';

function msg(room: string, text: string, extra: Partial<NewMessage> = {}): NewMessage {
  return { room, source: 'alice!a@host', command: 'PRIVMSG', target: room, text, tags: null, ...extra };
}

function seqs(ms: StoredMessage[]): number[] {
  return ms.map((m) => m.seq);
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/** Resolves when `emit` has been called with a value that satisfies `pred`. */
function eventually<T>(pred: (v: T) => boolean): { listener: (v: T) => void; reached: Promise<T> } {
  let resolve!: (v: T) => void;
  const reached = new Promise<T>((r) => (resolve = r));
  return { listener: (v) => pred(v) && resolve(v), reached };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * The query contract, checked on a room holding messages with seqs 1..10 (`all`) and on an
 * empty room. Time selectors are checked against the stored times, which may repeat.
 */
async function checkQueries(store: MessageStore, room: string, empty: string): Promise<void> {
  const all = await store.latest(room, null, 100);
  assert.deepEqual(seqs(all), range(1, 10));
  for (let i = 1; i < all.length; i++) assert.ok(all[i]!.time >= all[i - 1]!.time, 'time non-decreasing');
  const s = (seq: number): Selector => ({ kind: 'seq', seq });
  const t = (time: number): Selector => ({ kind: 'time', time });

  // latest
  assert.deepEqual(seqs(await store.latest(room, null, 3)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.latest(room, s(7), 10)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.latest(room, s(2), 3)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.latest(room, s(10), 5)), []);
  assert.deepEqual(seqs(await store.latest(room, null, 0)), []);
  // before / after
  assert.deepEqual(seqs(await store.before(room, s(5), 2)), [3, 4]);
  assert.deepEqual(seqs(await store.before(room, s(1), 5)), []);
  assert.deepEqual(seqs(await store.before(room, s(100), 3)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.after(room, s(5), 2)), [6, 7]);
  assert.deepEqual(seqs(await store.after(room, s(10), 5)), []);
  assert.deepEqual(seqs(await store.after(room, s(0), 3)), [1, 2, 3]);
  // around
  assert.deepEqual(seqs(await store.around(room, s(5), 5)), [3, 4, 5, 6, 7]);
  assert.deepEqual(seqs(await store.around(room, s(5), 4)), [3, 4, 5, 6]);
  assert.deepEqual(seqs(await store.around(room, s(5), 1)), [5]);
  assert.deepEqual(seqs(await store.around(room, s(1), 3)), [1, 2, 3]);
  assert.deepEqual(seqs(await store.around(room, s(10), 3)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.around(room, s(5), 50)), range(1, 10));
  // between: both bounds excluded, nearest to the lower bound, ascending either way round
  assert.deepEqual(seqs(await store.between(room, s(2), s(8), 10)), [3, 4, 5, 6, 7]);
  assert.deepEqual(seqs(await store.between(room, s(2), s(8), 2)), [3, 4]);
  assert.deepEqual(seqs(await store.between(room, s(8), s(2), 2)), [3, 4]);
  assert.deepEqual(seqs(await store.between(room, s(5), s(6), 10)), []);
  assert.deepEqual(seqs(await store.between(room, s(5), s(5), 10)), []);

  // time selectors, against the stored times
  const mid = all[4]!.time;
  const where = (f: (m: StoredMessage) => boolean): number[] => seqs(all.filter(f));
  assert.deepEqual(seqs(await store.before(room, t(mid), 100)), where((m) => m.time < mid));
  assert.deepEqual(seqs(await store.before(room, t(mid), 2)), where((m) => m.time < mid).slice(-2));
  assert.deepEqual(seqs(await store.after(room, t(mid), 100)), where((m) => m.time > mid));
  assert.deepEqual(seqs(await store.latest(room, t(mid), 100)), where((m) => m.time > mid));
  assert.deepEqual(seqs(await store.after(room, t(0), 4)), [1, 2, 3, 4]);
  assert.deepEqual(seqs(await store.before(room, t(all[9]!.time + 1), 3)), [8, 9, 10]);
  assert.deepEqual(seqs(await store.after(room, t(all[9]!.time), 3)), []);
  const aroundT = seqs(await store.around(room, t(mid), 4));
  const firstAtMid = all.findIndex((m) => m.time >= mid);
  const nEarly = Math.min(2, firstAtMid);
  assert.deepEqual(aroundT, seqs(all.slice(firstAtMid - nEarly, firstAtMid - nEarly + 4)));
  const lo = all[1]!.time;
  const hi = all[8]!.time;
  const inside = where((m) => m.time > lo && m.time < hi);
  assert.deepEqual(seqs(await store.between(room, t(lo), t(hi), 100)), inside);
  assert.deepEqual(seqs(await store.between(room, t(hi), t(lo), 100)), inside);
  // mixed kinds
  assert.deepEqual(seqs(await store.between(room, s(2), t(hi), 100)), where((m) => m.seq > 2 && m.time < hi));
  assert.deepEqual(seqs(await store.between(room, t(hi), s(2), 100)), where((m) => m.seq > 2 && m.time < hi));

  // an empty room
  for (const q of [
    store.latest(empty, null, 10),
    store.latest(empty, s(1), 10),
    store.before(empty, s(5), 10),
    store.after(empty, t(0), 10),
    store.around(empty, s(1), 10),
    store.between(empty, s(0), s(10), 10),
  ]) {
    assert.deepEqual(await q, []);
  }
  const counts = await store.counts([room, empty]);
  assert.deepEqual(counts, [{ room, messages: 10 }]);
}

/** Ten messages in `room`, each committed before the next is sent; message 3 carries tags. */
async function fillRoom(store: MessageStore, room: string): Promise<void> {
  for (let i = 1; i <= 10; i++) {
    const tags = i === 3 ? { '+draft/reply': 'x1', '+example': 'a;b c' } : null;
    const r = await store.append(msg(room, `message ${i}`, { tags }));
    assert.equal(r.seq, i);
  }
  const [third] = await store.after(room, { kind: 'seq', seq: 2 }, 1);
  assert.deepEqual(third?.tags, { '+draft/reply': 'x1', '+example': 'a;b c' });
  assert.equal(third?.text, 'message 3');
  assert.equal(third?.source, 'alice!a@host');
  assert.equal(third?.command, 'PRIVMSG');
}

describe('message store', { timeout: 120_000 }, () => {
  let svc: Services;
  let etcd: Etcd3;
  const open: Array<{ close(): Promise<void> }> = [];

  function track<T extends { close(): Promise<void> }>(x: T): T {
    open.push(x);
    return x;
  }

  async function newDb(prefix: string): Promise<string> {
    return svc.postgres!.createDatabase(uniqueName(prefix));
  }

  function storeOn(shards: ShardInfo[], onBatch?: (rows: number, ms: number) => void): ShardedStore {
    return track(new ShardedStore({ directory: new StaticShardDirectory(shards), ...(onBatch ? { onBatch } : {}) }));
  }

  before(async () => {
    svc = await startServices({ etcd: true, redis: false, postgres: true });
    etcd = new Etcd3({ hosts: svc.etcd!.endpoint });
  });

  after(async () => {
    await Promise.allSettled(open.map((x) => x.close()));
    etcd?.close();
    await svc?.stop();
  });

  test('migrations are idempotent, also when two instances start at once', async () => {
    const url = await newDb('migr');
    const shard = { id: 0, url, poolSize: 2 };
    const a = storeOn([shard]);
    const b = storeOn([shard]);
    await Promise.all([a.migrateAll(), b.migrateAll()]);
    await a.migrateAll();
    const c = storeOn([shard]);
    await c.migrateAll();
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      assert.deepEqual(await migrate(pool), []);
      const rows = await pool.query<{ version: number }>('select version from schema_migrations order by version');
      assert.deepEqual(rows.rows.map((r) => r.version), migrations.map((m) => m.version));
    } finally {
      await pool.end();
    }
  });

  test('5,000 concurrent appends from two instances: gap-free seqs, call order kept, batched', async () => {
    const url = await newDb('conc');
    const shard = { id: 0, url, poolSize: 4 };
    const batchRows: number[] = [];
    const a = storeOn([shard], (rows) => batchRows.push(rows));
    const b = storeOn([shard], (rows) => batchRows.push(rows));
    await Promise.all([a.start(), b.start()]);
    const rooms = range(0, 9).map((i) => `#conc${i}`);
    const per = 2500;
    const issued: Array<{ store: 'a' | 'b'; room: string; p: Promise<{ seq: number; time: number }> }> = [];
    for (let i = 0; i < per; i++) {
      // a new tick every 25 rounds, so that both instances form many interleaving batches
      if (i % 25 === 0) await new Promise<void>((r) => setImmediate(r));
      for (const [name, store] of [['a', a], ['b', b]] as const) {
        const room = rooms[(i * 7 + (name === 'a' ? 0 : 3)) % rooms.length]!;
        issued.push({ store: name, room, p: store.append(msg(room, `${name} ${i}`)) });
      }
    }
    const results = await Promise.all(issued.map((x) => x.p));
    const perRoom = new Map<string, number[]>();
    const perStoreRoom = new Map<string, number[]>();
    issued.forEach((x, i) => {
      const seq = results[i]!.seq;
      perRoom.set(x.room, [...(perRoom.get(x.room) ?? []), seq]);
      const k = `${x.store} ${x.room}`;
      perStoreRoom.set(k, [...(perStoreRoom.get(k) ?? []), seq]);
    });
    let total = 0;
    for (const room of rooms) {
      const got = [...(perRoom.get(room) ?? [])].sort((x, y) => x - y);
      total += got.length;
      assert.deepEqual(got, range(1, got.length), `${room}: seqs 1..n without gap or duplicate`);
      const stored = await a.latest(room, null, 10_000);
      assert.deepEqual(seqs(stored), range(1, got.length), `${room}: stored seqs`);
      for (let i = 1; i < stored.length; i++) assert.ok(stored[i]!.time >= stored[i - 1]!.time, `${room}: time order`);
    }
    assert.equal(total, 2 * per);
    for (const [k, list] of perStoreRoom) {
      for (let i = 1; i < list.length; i++) assert.ok(list[i]! > list[i - 1]!, `${k}: seqs follow call order`);
    }
    assert.ok(batchRows.some((r) => r > 1), 'appends shared batches');
    assert.equal(batchRows.reduce((x, y) => x + y, 0), 2 * per);
    const counts = await b.counts(rooms);
    assert.equal(counts.reduce((x, c) => x + c.messages, 0), 2 * per);
  });

  test('queries with seq and time selectors (PostgreSQL)', async () => {
    const store = storeOn([{ id: 0, url: await newDb('query'), poolSize: 2 }]);
    await store.start();
    await fillRoom(store, '#query');
    await checkQueries(store, '#query', '#empty');
  });

  test('queries with seq and time selectors (MemoryStore)', async () => {
    let clock = 1_700_000_000_000;
    const ticks = [0, 1, 0, 2, 1, 0, 3, 1, 1, 0];
    let i = 0;
    const store = new MemoryStore({ now: () => (clock += ticks[i++ % ticks.length]!) });
    await fillRoom(store, '#query');
    await checkQueries(store, '#query', '#empty');
  });

  async function checkTargets(store: MessageStore): Promise<void> {
    const rooms = ['#a', '#b', '#c', 'dm:alice,bob', 'dm:bob,carol', 'dm:carol,dave'];
    const times = new Map<string, number>();
    for (const room of rooms) {
      const target = room.startsWith('dm:') ? room.slice(3).split(',')[1]! : room.toUpperCase();
      times.set(room, (await store.append(msg(room, 'hi', { target }))).time);
    }
    const all = await store.targets(['#a', '#b'], 'bob', 0, Date.now() + 60_000, 10);
    assert.deepEqual(new Set(all.map((x) => x.room)), new Set(['#a', '#b', 'dm:alice,bob', 'dm:bob,carol']));
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.latest >= all[i]!.latest, 'newest first');
    const a = all.find((x) => x.room === '#a');
    assert.deepEqual(a, { room: '#a', target: '#A', latest: times.get('#a') });
    assert.equal(all.find((x) => x.room === 'dm:bob,carol')?.target, 'carol');
    assert.deepEqual(await store.targets(['#a', '#b'], 'bob', 0, Date.now() + 60_000, 2), all.slice(0, 2));
    assert.deepEqual(await store.targets(['#a'], null, 0, Date.now() + 60_000, 10), [a]);
    assert.deepEqual(await store.targets([], 'nobody', 0, Date.now() + 60_000, 10), []);
    // the window excludes its bounds
    const tA = times.get('#a')!;
    assert.deepEqual(await store.targets(['#a'], null, tA, tA + 60_000, 10), []);
    assert.deepEqual(await store.targets(['#a'], null, 0, tA, 10), []);
  }

  test('targets include the DM rooms of a nick', async () => {
    const store = storeOn([{ id: 0, url: await newDb('targets'), poolSize: 2 }]);
    await checkTargets(store);
    await checkTargets(new MemoryStore());
  });

  test('two shards: rooms spread, counts and targets merged', async () => {
    const shards = [
      { id: 0, url: await newDb('shard0'), poolSize: 2 },
      { id: 1, url: await newDb('shard1'), poolSize: 2 },
    ];
    const store = storeOn(shards);
    await store.start();
    const rooms = range(1, 20).map((i) => `#spread${i}`);
    await Promise.all(rooms.flatMap((room, i) => range(1, i + 1).map((k) => store.append(msg(room, `m${k}`)))));
    const dir = new StaticShardDirectory(shards);
    const placed = await Promise.all(rooms.map((r) => dir.resolve(r)));
    for (const s of shards) {
      const pool = new pg.Pool({ connectionString: s.url, max: 1 });
      try {
        const res = await pool.query<{ room: string }>('select distinct room from messages order by room');
        const expected = rooms.filter((_, i) => placed[i]!.id === s.id).sort();
        assert.ok(expected.length > 0, `shard ${s.id} holds some rooms`);
        assert.deepEqual(res.rows.map((r) => r.room), expected);
      } finally {
        await pool.end();
      }
    }
    const counts = await store.counts([...rooms, '#none']);
    assert.deepEqual(
      counts.sort((x, y) => x.room.localeCompare(y.room)),
      rooms.map((room, i) => ({ room, messages: i + 1 })).sort((x, y) => x.room.localeCompare(y.room)),
    );
    await checkTargets(store);
  });

  test('appends still queued at close() are committed', async () => {
    const store = storeOn([{ id: 0, url: await newDb('drain'), poolSize: 2 }]);
    const pending = range(1, 300).map((i) => store.append(msg('#drain', `m${i}`)));
    await store.close();
    assert.deepEqual((await Promise.all(pending)).map((r) => r.seq), range(1, 300));
    await assert.rejects(store.append(msg('#drain', 'late')), /closed/);
  });

  test('lazy shards: nothing opened before use, pools sized by class, idle connections closed and reopened', async () => {
    const N = 12;
    const names = range(0, N - 1).map((i) => uniqueName(`lazy${i}_`));
    const urls = await Promise.all(names.map((n) => svc.postgres!.createDatabase(n)));
    const shards: ShardInfo[] = urls.map((url, id) => ({ id, url, poolSize: 4 }));
    const dir = new StaticShardDirectory(shards);
    const idle = new Map<number, () => void>();
    const idled = (id: number): Promise<void> => new Promise((resolve) => idle.set(id, resolve));
    const store = track(
      new ShardedStore({
        directory: dir,
        // long enough that a loaded machine cannot close them between the steps below
        idleMs: 1500,
        // shard 1's class sets 2 connections (1 commit + 1 reader); the others keep the entry's 4
        classPoolSize: (info) => (info.id === 1 ? 2 : undefined),
        events: { shardIdle: (id) => idle.get(id)?.() },
      }),
    );
    const admin = new pg.Client({ connectionString: svc.postgres!.url });
    await admin.connect();
    /** backends per shard id, by application name, as PostgreSQL sees them */
    const backends = async (): Promise<Map<number, Record<string, number>>> => {
      const res = await admin.query<{ datname: string; app: string; n: number }>(
        'select datname, application_name as app, count(*)::int as n from pg_stat_activity where datname = any($1) group by 1, 2',
        [names],
      );
      const out = new Map<number, Record<string, number>>();
      for (const r of res.rows) {
        const id = names.indexOf(r.datname);
        out.set(id, { ...out.get(id), [r.app]: r.n });
      }
      return out;
    };
    const migrated = async (id: number): Promise<boolean> => {
      const c = new pg.Client({ connectionString: urls[id] });
      await c.connect();
      try {
        return (await c.query<{ t: string | null }>(`select to_regclass('schema_migrations')::text as t`)).rows[0]!.t !== null;
      } finally {
        await c.end();
      }
    };
    try {
      await store.start();
      assert.deepEqual([...(await backends())], [], 'start opens nothing');

      const used = [0, 1, 5];
      const idles = used.map((id) => idled(id));
      const rooms = new Map<number, string>();
      for (let i = 0; rooms.size < used.length; i++) {
        const id = (await dir.resolve(`#lazy${i}`)).id;
        if (used.includes(id) && !rooms.has(id)) rooms.set(id, `#lazy${i}`);
      }
      const write = (tag: string): Promise<unknown> =>
        Promise.all([...rooms.values()].flatMap((room) => range(1, 20).map((k) => store.append(msg(room, `${tag}${k}`)))));
      await write('a');
      // 30 concurrent reads per room: each read pool grows to its size.
      await Promise.all([...rooms.values()].flatMap((room) => range(1, 30).map(() => store.latest(room, null, 5))));
      const held = await backends();
      assert.deepEqual([...held.keys()].sort((x, y) => x - y), used, 'only the shards in use have connections');
      for (const id of used) {
        assert.equal(held.get(id)!['parley-commit'], 1, `shard ${id}: one commit connection`);
        assert.equal(held.get(id)!['parley'], id === 1 ? 1 : 3, `shard ${id}: readers = pool size − 1`);
      }
      assert.deepEqual(store.connections(), { shards: 3, commit: 3, read: 7 });
      assert.equal(await migrated(0), true);
      assert.equal(await migrated(2), false, 'an unused shard is not even migrated');

      // Idle: every connection of the three shards is closed, on both sides.
      await Promise.all(idles);
      assert.deepEqual([...(await backends())], [], 'idle shards hold no connection');
      assert.deepEqual(store.connections(), { shards: 0, commit: 0, read: 0 });

      // The next use reopens them; nothing was lost and seqs go on.
      await write('b');
      for (const room of rooms.values()) {
        const all = await store.latest(room, null, 100);
        assert.deepEqual(seqs(all), range(1, 40));
        assert.deepEqual(all.map((m) => m.text), [...range(1, 20).map((k) => `a${k}`), ...range(1, 20).map((k) => `b${k}`)]);
      }
      assert.deepEqual(store.connections(), { shards: 3, commit: 3, read: 3 });
    } finally {
      await admin.end();
    }
  });

  test('a shard that is down at first use fails its own rooms at once; the start and other shards are unaffected', async () => {
    const port = await closedPort();
    const shards: ShardInfo[] = [
      { id: 0, url: await newDb('alive'), poolSize: 2 },
      { id: 1, url: `postgres://postgres@127.0.0.1:${port}/postgres`, poolSize: 2 },
    ];
    const dir = new StaticShardDirectory(shards);
    const downs: number[] = [];
    const store = track(new ShardedStore({ directory: dir, events: { shardDown: (id) => downs.push(id) } }));
    await store.start();
    let up = '';
    let down = '';
    for (let i = 0; !up || !down; i++) {
      const id = (await dir.resolve(`#first${i}`)).id;
      if (id === 0) up ||= `#first${i}`;
      else down ||= `#first${i}`;
    }
    const t0 = performance.now();
    // A read first: the shard's migration cannot connect, which is the shard being unavailable.
    await assert.rejects(store.latest(down, null, 10), StoreUnavailableError);
    const [bad, good] = await Promise.allSettled([store.append(msg(down, 'x')), store.append(msg(up, 'y'))]);
    assert.equal(bad.status, 'rejected');
    assert.ok((bad as PromiseRejectedResult).reason instanceof StoreUnavailableError, String((bad as PromiseRejectedResult).reason));
    assert.equal(good.status, 'fulfilled');
    assert.ok(performance.now() - t0 < 1000, 'answered within a second');
    assert.deepEqual(downs, [1]);
    const t1 = performance.now();
    await assert.rejects(store.append(msg(down, 'again')), StoreUnavailableError);
    await assert.rejects(store.latest(down, null, 10), StoreUnavailableError);
    assert.ok(performance.now() - t1 < 50, 'known down: immediate');
    assert.equal((await store.append(msg(up, 'z'))).seq, 2);
  });

  test('EtcdShardDirectory pins rooms across instances and after a shard is added', async () => {
    const prefix = `/${uniqueName('dir')}`;
    const url0 = await newDb('etcd0');
    const url1 = await newDb('etcd1');
    await etcd.put(`${prefix}/shards/0`).value(JSON.stringify({ id: 0, url: url0, poolSize: 2 }));
    await etcd.put(`${prefix}/shards/9`).value('{not json');
    await etcd.put(`${prefix}/shards/8`).value(JSON.stringify({ id: 8 }));
    const added = eventually<ShardInfo[]>((list) => list.some((s) => s.id === 1));
    const a = track(new EtcdShardDirectory({ client: etcd, prefix, onShardsChanged: added.listener }));
    const b = track(new EtcdShardDirectory({ client: etcd, prefix }));
    await Promise.all([a.start(), b.start()]);
    assert.deepEqual(a.shards(), [{ id: 0, url: url0, poolSize: 2 }]);

    const early = range(1, 30).map((i) => `#early${i}`);
    // a and b race on every new room; both must see the same single pin
    const [ra, rb] = await Promise.all([
      Promise.all(early.map((r) => a.resolve(r))),
      Promise.all(early.map((r) => b.resolve(r))),
    ]);
    assert.ok(ra.every((s) => s.id === 0));
    assert.deepEqual(rb, ra);
    const pin = await etcd.get(`${prefix}/rooms/${encodeURIComponent('#early1')}`).json();
    assert.deepEqual(pin, { shard: 0 });

    await etcd.put(`${prefix}/shards/1`).value(JSON.stringify({ id: 1, url: url1 }));
    await added.reached;
    assert.deepEqual(a.shards().map((s) => [s.id, s.poolSize]), [[0, 2], [1, 4]]);

    const c = track(new EtcdShardDirectory({ client: etcd, prefix }));
    await c.start();
    assert.ok((await Promise.all(early.map((r) => c.resolve(r)))).every((s) => s.id === 0), 'early rooms stay');
    const late = range(1, 40).map((i) => `#late${i}`);
    const lateA = await Promise.all(late.map((r) => a.resolve(r)));
    assert.deepEqual(new Set(lateA.map((s) => s.id)), new Set([0, 1]), 'new rooms use the new shard too');
    assert.deepEqual(await Promise.all(late.map((r) => c.resolve(r))), lateA);

    // a draining shard takes no new rooms but keeps its own
    const drained = eventually<ShardInfo[]>(() => true);
    const d = track(new EtcdShardDirectory({ client: etcd, prefix, onShardsChanged: drained.listener }));
    await d.start();
    await etcd.put(`${prefix}/shards/0`).value(JSON.stringify({ id: 0, url: url0, poolSize: 2, state: 'draining' }));
    await drained.reached;
    const fresh = await Promise.all(range(1, 20).map((i) => d.resolve(`#fresh${i}`)));
    assert.ok(fresh.every((s) => s.id === 1));
    assert.equal((await d.resolve('#early1')).id, 0);

    // a store routed by etcd writes to the pinned shard's database
    const store = track(new ShardedStore({ directory: c, ownsDirectory: false }));
    await store.start();
    const target = lateA.findIndex((s) => s.id === 1);
    const room = late[target]!;
    assert.equal((await store.append(msg(room, 'hello'))).seq, 1);
    const pool = new pg.Pool({ connectionString: url1, max: 1 });
    try {
      const res = await pool.query('select body from messages where room = $1', [room]);
      assert.deepEqual(res.rows, [{ body: 'hello' }]);
    } finally {
      await pool.end();
    }
  });

  test('EtcdShardDirectory reports a missing shard map clearly', async () => {
    const dir = track(new EtcdShardDirectory({ client: etcd, prefix: `/${uniqueName('none')}` }));
    await dir.start();
    await assert.rejects(dir.resolve('#x'), /no active shard/);
  });

  test('a write to an unreachable shard rejects instead of hanging', async () => {
    const port = await closedPort();
    const store = storeOn([{ id: 0, url: `postgres://postgres@127.0.0.1:${port}/postgres`, poolSize: 1 }]);
    const results = await Promise.allSettled([store.append(msg('#down', 'a')), store.append(msg('#down', 'b'))]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.match(String((r as PromiseRejectedResult).reason), /ECONNREFUSED|connect/);
    }
  });

  test('a failing batch rejects all its messages and leaves nothing visible', async () => {
    const url = await newDb('fail');
    const store = storeOn([{ id: 0, url, poolSize: 2 }]);
    await store.start();
    assert.equal((await store.append(msg('#fail', 'one'))).seq, 1);
    await assert.rejects(store.append(msg('#fail', 'nul \0 byte')), /NUL/);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await pool.query('alter table messages rename to messages_gone');
      const results = await Promise.allSettled(range(1, 5).map((i) => store.append(msg(i % 2 ? '#fail' : '#other', `x${i}`))));
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.match(String((r as PromiseRejectedResult).reason), /append to shard 0 failed/);
      }
      const rooms = await pool.query<{ room: string; last_seq: string }>('select room, last_seq from rooms order by room');
      assert.deepEqual(rooms.rows, [{ room: '#fail', last_seq: '1' }]);
      await pool.query('alter table messages_gone rename to messages');
    } finally {
      await pool.end();
    }
    // the shard recovers: the next seq follows the last committed one
    assert.equal((await store.append(msg('#fail', 'two'))).seq, 2);
  });
});
