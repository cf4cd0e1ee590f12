/* Shard entries written to a real etcd by the one writer every component uses (putShardEntry /
 * registerShards): what `parley server --pg` and the agent leave in the key, a URL that moved,
 * a value that is not JSON, and concurrent writers that must not lose each other's fields. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { etcdKeys, putShardEntry, readInstances, registerShards, ShardEntryError } from '@parley/contracts';
import { startServices, uniqueName, type Services } from '../harness/index.js';

let svc: Services;
let etcd: Etcd3;

before(async () => {
  svc = await startServices({ etcd: true, redis: false, postgres: false });
  etcd = new Etcd3({ hosts: svc.etcd!.endpoint });
});

after(async () => {
  etcd?.close();
  await svc?.stop();
});

const stored = async (key: string): Promise<unknown> => JSON.parse((await etcd.get(key).string()) ?? 'null');

describe('shard entries in etcd', () => {
  const url = 'postgres://postgres@127.0.0.1:5432/parley';
  const moved = 'postgres://postgres@127.0.0.1:6543/parley';

  test('--pg registration creates entries, keeps them, follows a moved URL with a warning', async () => {
    const prefix = uniqueName('reg');
    const keys = etcdKeys(prefix);
    const warnings: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    const log = { warn: (fields: Record<string, unknown>, msg: string) => warnings.push({ fields, msg }) };
    await registerShards(etcd, prefix, [url, moved], 4, log);
    assert.deepEqual(await stored(keys.shard(0)), { id: 0, url, poolSize: 4, state: 'active' });
    assert.deepEqual(await stored(keys.shard(1)), { id: 1, url: moved, poolSize: 4, state: 'active' });
    assert.deepEqual(warnings, []);

    // An operator drains shard 0 and tags it; a restart with the same --pg changes nothing.
    await etcd.put(keys.shard(0)).value(JSON.stringify({ id: 0, url, poolSize: 2, state: 'draining', host: 'db1' }));
    const rev = (await etcd.get(keys.shard(0)).exec()).kvs[0]!.mod_revision;
    await registerShards(etcd, prefix, [url], 8, log);
    assert.equal((await etcd.get(keys.shard(0)).exec()).kvs[0]!.mod_revision, rev, 'an unchanged entry is not rewritten');

    await registerShards(etcd, `/${prefix}`, [moved], 8, log);
    assert.deepEqual(await stored(keys.shard(0)), { id: 0, url: moved, poolSize: 2, state: 'draining', host: 'db1' });
    assert.deepEqual(warnings, [{ fields: { shard: 0, from: url, to: moved }, msg: 'shard URL changed on the command line; updating the shard map' }]);
  });

  test('a value that is not a JSON object is replaced; one that cannot be merged is refused, untouched', async () => {
    const prefix = uniqueName('bad');
    const keys = etcdKeys(prefix);
    await etcd.put(keys.shard(0)).value('{not json');
    const w = await putShardEntry(etcd, prefix, { id: 0, url, poolSize: 3 });
    assert.equal(w.outcome, 'replaced');
    assert.deepEqual(await stored(keys.shard(0)), { id: 0, url, poolSize: 3, state: 'active' });

    await etcd.put(keys.shard(1)).value(JSON.stringify({ id: 1, url, state: 'gone' }));
    await assert.rejects(putShardEntry(etcd, prefix, { id: 1, url: moved }), (err: unknown) => err instanceof ShardEntryError && /shard 1: state: /.test(err.message));
    assert.deepEqual(await stored(keys.shard(1)), { id: 1, url, state: 'gone' });
  });

  test('concurrent writers each keep what the others wrote (compare-and-swap on the revision)', async () => {
    const prefix = uniqueName('race');
    const keys = etcdKeys(prefix);
    await etcd.put(keys.shard(0)).value(JSON.stringify({ id: 0, url, state: 'draining' }));
    // Five operators (each adding its own field with its own compare-and-swap) race two
    // registrations: none of the fields may be lost. At most six writes can beat a registration,
    // fewer than putShardEntry's ten attempts.
    const operators = Array.from({ length: 5 }, async (_, i) => {
      for (;;) {
        const kv = (await etcd.get(keys.shard(0)).exec()).kvs[0]!;
        const next = { ...(JSON.parse(kv.value.toString()) as object), [`op${i}`]: true };
        const t = await etcd.if(keys.shard(0), 'Mod', '==', kv.mod_revision).then(etcd.put(keys.shard(0)).value(JSON.stringify(next))).commit();
        if (t.succeeded) return;
      }
    });
    const registrations = [putShardEntry(etcd, prefix, { id: 0, url: moved, poolSize: 7 }), putShardEntry(etcd, prefix, { id: 0, url: moved, poolSize: 7 })];
    await Promise.all([...operators, ...registrations]);
    const final = (await stored(keys.shard(0))) as Record<string, unknown>;
    assert.deepEqual(
      { ...final },
      { id: 0, url: moved, poolSize: 7, state: 'draining', op0: true, op1: true, op2: true, op3: true, op4: true },
    );
  });

  test('readInstances leaves out unreadable registrations and says which', async () => {
    const prefix = uniqueName('inst');
    const keys = etcdKeys(prefix);
    const rec = { id: 'i1', serverName: 'i1.x', host: '127.0.0.1', tcpPort: 1000, wsPort: 1001, pid: 5, startedAt: 1, connections: 0, state: 'ready' };
    await etcd.put(keys.instance('i1')).value(JSON.stringify(rec));
    await etcd.put(keys.instance('i2')).value('{"id":"i2"}');
    const bad: string[] = [];
    assert.deepEqual(await readInstances(etcd, prefix, (key) => bad.push(key)), [rec]);
    assert.deepEqual(bad, [keys.instance('i2')]);
  });
});
