/* The cluster contracts (@parley/contracts): the etcd key layout, the schemas of what is stored
 * there (they accept the values Parley writes today and refuse bad ones), the one merge rule of
 * shard entries, the zod error line and withTimeout. */
import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import {
  ClusterConfigSchema,
  InstanceRecordSchema,
  RoomPinSchema,
  ShardEntryError,
  ShardEntrySchema,
  TimeoutError,
  defaultClusterConfig,
  describeZodError,
  etcdKeys,
  mergeShardEntry,
  parseClusterConfig,
  parseInstanceRecord,
  parseJson,
  withPin,
  withTimeout,
} from '@parley/contracts';

describe('etcd keys', () => {
  it('spell the layout under /<prefix>/, whichever way the prefix is written', () => {
    for (const prefix of ['parley', '/parley', '/parley/']) {
      const k = etcdKeys(prefix);
      assert.equal(k.root, '/parley/');
      assert.equal(k.config, '/parley/config');
      assert.equal(k.instances, '/parley/instances/');
      assert.equal(k.instance('i1'), '/parley/instances/i1');
      assert.equal(k.shards, '/parley/shards/');
      assert.equal(k.shard(12), '/parley/shards/12');
      assert.equal(k.rooms, '/parley/rooms/');
      assert.equal(k.hostPlan('box-1'), '/parley/hosts/box-1/plan');
    }
    assert.throws(() => etcdKeys(''), /invalid etcd prefix/);
    assert.throws(() => etcdKeys('a/b'), /invalid etcd prefix/);
  });

  it('URL-encode room names into one segment, as the pins stored today are', () => {
    const k = etcdKeys('parley');
    assert.equal(k.room('#rust'), '/parley/rooms/%23rust');
    assert.equal(k.room('dm:alice,bob'), '/parley/rooms/dm%3Aalice%2Cbob');
    assert.equal(k.room('#a/b c'), '/parley/rooms/%23a%2Fb%20c');
  });

  it('parse every key they make back, and tell bad and foreign keys apart', () => {
    const k = etcdKeys('p');
    assert.deepEqual(k.parse(k.config), { kind: 'config' });
    assert.deepEqual(k.parse(k.instance('i-2.x')), { kind: 'instance', id: 'i-2.x' });
    assert.deepEqual(k.parse(k.shard(0)), { kind: 'shard', id: 0 });
    assert.deepEqual(k.parse(k.shard(123)), { kind: 'shard', id: 123 });
    assert.deepEqual(k.parse(k.room('#a/b c')), { kind: 'room', room: '#a/b c' });
    assert.deepEqual(k.parse(k.hostPlan('h')), { kind: 'hostPlan', host: 'h' });
    for (const bad of ['/p/shards/07', '/p/shards/-1', '/p/shards/x', '/p/shards/1e3']) assert.equal(k.parse(bad)?.kind, 'invalid', bad);
    assert.equal(k.parse('/p/rooms/%E0%A4%A')?.kind, 'invalid');
    assert.equal(k.parse('/p/hosts/h/other')?.kind, 'other');
    assert.equal(k.parse('/p/configx')?.kind, 'other');
    assert.equal(k.parse('/p/instances/')?.kind, 'other');
    assert.equal(k.parse('/q/config'), undefined);
    assert.equal(k.parse('/pp/config'), undefined);
  });
});

describe('schemas accept what is stored today', () => {
  it('cluster configuration: defaults explicit, unknown keys refused at every level', () => {
    const def = defaultClusterConfig();
    assert.deepEqual(ClusterConfigSchema.parse(JSON.parse(JSON.stringify(def))), def);
    assert.equal(def.limits.lineBytes, 512);
    const partial = parseClusterConfig('{"motd":["hi"],"flood":{"linesPerSecond":0}}');
    assert.ok(partial.ok);
    assert.equal(partial.ok && partial.config.flood.burst, 200);
    assert.deepEqual(parseClusterConfig('{"foo":1}'), { ok: false, error: '(root): Unrecognized key: "foo"' });
    const nested = parseClusterConfig('{"limits":{"lineBytes":100,"x":1}}');
    assert.equal(nested.ok, false);
    assert.match(nested.ok ? '' : nested.error, /^limits\.lineBytes: Too small: expected number to be >=512; limits: Unrecognized key: "x"$/);
    assert.match(parseClusterConfig('{').ok ? '' : (parseClusterConfig('{') as { error: string }).error, /^not JSON: /);
  });

  it('registry record: the record an instance publishes; unknown fields dropped; bad ones refused', () => {
    const stored = '{"id":"local-1","serverName":"parley.local","host":"127.0.0.1","tcpPort":6667,"wsPort":8080,"pid":4242,"startedAt":1795462580975,"connections":3,"state":"ready"}';
    const r = parseInstanceRecord(stored);
    assert.ok(r.ok);
    assert.deepEqual(r.ok && r.value, JSON.parse(stored));
    const newer = parseInstanceRecord(JSON.stringify({ ...JSON.parse(stored), zone: 'b' }));
    assert.deepEqual(newer.ok && newer.value, JSON.parse(stored), 'a newer server may add fields');
    const bad = (patch: Record<string, unknown>): string => {
      const x = InstanceRecordSchema.safeParse({ ...JSON.parse(stored), ...patch });
      return x.success ? '' : describeZodError(x.error);
    };
    assert.match(bad({ tcpPort: 0 }), /^tcpPort: Too small/);
    assert.match(bad({ state: 'gone' }), /^state: Invalid option/);
    assert.match(bad({ pid: undefined }), /^pid: Invalid input/);
    assert.equal(parseInstanceRecord('[]').ok, false);
  });

  it('shard entry: what --pg, the agent and hand-written entries store; unknown fields allowed and kept', () => {
    const stored = { id: 0, url: 'postgres://postgres@127.0.0.1:5432/parley', poolSize: 4, state: 'active' };
    assert.deepEqual(ShardEntrySchema.parse(stored), stored);
    assert.deepEqual(ShardEntrySchema.parse({ id: 3, url: 'postgresql:///parley?host=/run/pg' }), { id: 3, url: 'postgresql:///parley?host=/run/pg' });
    assert.deepEqual(ShardEntrySchema.parse({ ...stored, qos: 'gold', host: 'db2' }), { ...stored, qos: 'gold', host: 'db2' });
    const bad = (patch: Record<string, unknown>): string => {
      const x = ShardEntrySchema.safeParse({ ...stored, ...patch });
      return x.success ? '' : describeZodError(x.error);
    };
    assert.match(bad({ url: 'not a url' }), /^url: /);
    assert.match(bad({ id: -1 }), /^id: /);
    assert.match(bad({ id: '0' }), /^id: /);
    assert.match(bad({ poolSize: 0 }), /^poolSize: /);
    assert.match(bad({ poolSize: 101 }), /^poolSize: /);
    assert.match(bad({ state: 'gone' }), /^state: /);
  });

  it('room pin: {"shard":n}, or an entry not pinned yet; other room fields kept, also by withPin', () => {
    assert.deepEqual(RoomPinSchema.parse({ shard: 0 }), { shard: 0 });
    assert.deepEqual(RoomPinSchema.parse({}), {});
    assert.deepEqual(RoomPinSchema.parse({ shard: 2, qos: 'bulk' }), { shard: 2, qos: 'bulk' });
    assert.equal(RoomPinSchema.safeParse({ shard: -1 }).success, false);
    assert.equal(RoomPinSchema.safeParse({ shard: 1.5 }).success, false);
    assert.equal(RoomPinSchema.safeParse('x').success, false);
    assert.deepEqual(withPin({ qos: 'bulk' }, 3), { qos: 'bulk', shard: 3 });
  });
});

describe('the shard entry merge rule', () => {
  const url = 'postgres://postgres@127.0.0.1:5432/parley';
  const moved = 'postgres://postgres@127.0.0.1:6543/parley';

  it('a new entry: id, url, the pool size given (as a default or decided), state active', () => {
    assert.deepEqual(mergeShardEntry(undefined, { id: 0, url, defaultPoolSize: 4 }), { id: 0, url, poolSize: 4, state: 'active' });
    assert.deepEqual(mergeShardEntry(undefined, { id: 1, url, poolSize: 8 }), { id: 1, url, poolSize: 8, state: 'active' });
    assert.deepEqual(mergeShardEntry(undefined, { id: 2, url }), { id: 2, url, state: 'active' });
  });

  it('an existing entry keeps its state, its pool size and unknown fields; url (and a decided pool size) replaced', () => {
    const current = { id: 0, url, poolSize: 2, state: 'draining', host: 'db1' };
    // parley server --pg: the URL follows the command line; its --pg-pool-size is only a default.
    assert.deepEqual(mergeShardEntry(current, { id: 0, url: moved, defaultPoolSize: 4 }), { id: 0, url: moved, poolSize: 2, state: 'draining', host: 'db1' });
    // the agent: the plan's pool size is decided.
    assert.deepEqual(mergeShardEntry(current, { id: 0, url: moved, poolSize: 6 }), { id: 0, url: moved, poolSize: 6, state: 'draining', host: 'db1' });
    // an entry written by hand without state or pool size gets state active, and the default pool size.
    assert.deepEqual(mergeShardEntry({ id: 0, url }, { id: 0, url, defaultPoolSize: 4 }), { id: 0, url, poolSize: 4, state: 'active' });
    // the key decides the id.
    assert.equal(mergeShardEntry({ id: 9, url }, { id: 0, url }).id, 0);
  });

  it('a result that is not a valid entry is an error naming the shard, not a write', () => {
    assert.throws(() => mergeShardEntry({ id: 0, url, state: 'gone' }, { id: 0, url }), (err: unknown) => {
      assert.ok(err instanceof ShardEntryError);
      assert.match(err.message, /^invalid shard entry for shard 0: state: /);
      return true;
    });
    assert.throws(() => mergeShardEntry(undefined, { id: 0, url: 'nope' }), ShardEntryError);
  });
});

describe('describeZodError', () => {
  it('one line: paths with indexes, (root), at most three issues then a count', () => {
    const S = z.object({ a: z.array(z.object({ b: z.number() })), c: z.string(), d: z.boolean(), e: z.number() }).strict();
    const r = S.safeParse({ a: [{ b: 'x' }], c: 1, d: 'no', e: 'x', f: 1 });
    assert.ok(!r.success);
    assert.equal(
      describeZodError(r.error),
      'a[0].b: Invalid input: expected number, received string; c: Invalid input: expected string, received number; d: Invalid input: expected boolean, received string (and 2 more)',
    );
    assert.match(describeZodError(r.error, 10), /; \(root\): Unrecognized key: "f"$/);
    const multi = z.string().refine(() => false, 'line one\n  line two').safeParse('x');
    assert.ok(!multi.success);
    assert.equal(describeZodError(multi.error), '(root): line one line two');
  });

  it('parseJson: not JSON, or the schema error, as one line', () => {
    assert.deepEqual(parseJson(z.number(), '1'), { ok: true, value: 1 });
    assert.match((parseJson(z.number(), 'x') as { error: string }).error, /^not JSON: /);
    assert.deepEqual(parseJson(z.number(), '"1"'), { ok: false, error: '(root): Invalid input: expected number, received string' });
  });
});

describe('withTimeout', () => {
  it('settles like the promise when it is in time', async () => {
    assert.equal(await withTimeout(Promise.resolve(7), 1000, 'late'), 7);
    await assert.rejects(withTimeout(Promise.reject(new Error('own')), 1000, 'late'), /^Error: own$/);
  });

  it('rejects with TimeoutError(message), or the caller\'s error, once the time is up', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const never = new Promise<never>(() => undefined);
    const a = withTimeout(never, 500, 'etcd did not answer');
    const b = withTimeout(never, 500, () => new RangeError('custom'));
    let settled = false;
    const c = withTimeout(never, 2000, 'later').catch((err: unknown) => {
      settled = true;
      throw err;
    });
    t.mock.timers.tick(499);
    await Promise.resolve();
    t.mock.timers.tick(1);
    await assert.rejects(a, (err: unknown) => err instanceof TimeoutError && err.message === 'etcd did not answer');
    await assert.rejects(b, RangeError);
    assert.equal(settled, false, 'a longer limit has not run out');
    t.mock.timers.tick(1500);
    await assert.rejects(c, TimeoutError);
  });

  it('a rejection after the time is up is not left unhandled', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let reject!: (e: Error) => void;
    const late = new Promise<never>((_, r) => (reject = r));
    const unhandled = mock.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const p = withTimeout(late, 10, 'late');
      t.mock.timers.tick(10);
      await assert.rejects(p, TimeoutError);
      reject(new Error('after the limit'));
      await new Promise<void>((r) => setImmediate(r));
      assert.equal(unhandled.mock.callCount(), 0);
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });
});
