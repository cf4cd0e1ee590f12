import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startServices, uniqueName, type Services } from '../harness/index.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('test harness: real etcd, Redis and PostgreSQL', () => {
  let svc: Services;
  let startMs = 0;

  before(async () => {
    const t0 = performance.now();
    svc = await startServices();
    startMs = performance.now() - t0;
    console.log(`# startServices() took ${startMs.toFixed(0)} ms`);
  });

  after(async () => {
    await svc?.stop();
  });

  it('started all three on loopback ports', () => {
    assert.ok(svc.etcd && svc.redis && svc.postgres);
    assert.match(svc.etcd.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(svc.redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.match(svc.postgres.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    const ports = [svc.etcd.endpoint, svc.redis.url, svc.postgres.url].map((u) => Number(new URL(u).port));
    for (const p of ports) assert.ok(![2379, 6379, 5432].includes(p), `standard port ${p} used`);
    for (const pid of [svc.etcd.pid, svc.redis.pid, svc.postgres.pid]) assert.ok(alive(pid));
    assert.ok(fs.existsSync(svc.dir));
  });

  it('uniqueName gives distinct valid names', () => {
    const a = uniqueName('My-Test');
    const b = uniqueName('My-Test');
    assert.notEqual(a, b);
    assert.match(a, /^[a-z][a-z0-9_]{0,62}$/);
    assert.match(uniqueName('9lives'), /^[a-z][a-z0-9_]*$/);
  });

  it('etcd: put/get with etcd3', async () => {
    const client = new Etcd3({ hosts: svc.etcd!.endpoint });
    try {
      const key = `/parley-test/${uniqueName('key')}`;
      await client.put(key).value('hello');
      assert.equal(await client.get(key).string(), 'hello');
      const lease = client.lease(5);
      await lease.put(`${key}/leased`).value('x');
      assert.equal(await client.get(`${key}/leased`).string(), 'x');
      await lease.revoke();
      assert.equal(await client.get(`${key}/leased`).string(), null);
    } finally {
      client.close();
    }
  });

  it('redis: SET/GET and PUBLISH/SUBSCRIBE with ioredis', async () => {
    const cmd = new Redis(svc.redis!.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    const sub = new Redis(svc.redis!.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await Promise.all([cmd.connect(), sub.connect()]);
      const key = uniqueName('k');
      assert.equal(await cmd.set(key, 'v1'), 'OK');
      assert.equal(await cmd.get(key), 'v1');

      const limit = (await cmd.config('GET', 'client-output-buffer-limit')) as string[];
      assert.match(limit[1] ?? '', /pubsub 268435456 67108864 60/);

      const channel = uniqueName('room');
      const got = new Promise<string>((resolve) => {
        sub.on('message', (ch: string, msg: string) => {
          if (ch === channel) resolve(msg);
        });
      });
      await sub.subscribe(channel);
      assert.equal(await cmd.publish(channel, 'hi there'), 1);
      assert.equal(await got, 'hi there');
    } finally {
      cmd.disconnect();
      sub.disconnect();
    }
  });

  it('postgres: createDatabase and a query with pg', async () => {
    const name = uniqueName('db');
    const url = await svc.postgres!.createDatabase(name);
    assert.equal(url, `postgres://postgres@127.0.0.1:${svc.postgres!.port}/${name}`);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const db = await client.query<{ db: string }>('select current_database() as db');
      assert.equal(db.rows[0]?.db, name);
      await client.query('create table t (id bigserial primary key, body text not null)');
      await client.query("insert into t (body) select 'm' || g from generate_series(1, 100) g");
      const n = await client.query<{ n: string }>('select count(*) as n from t');
      assert.equal(n.rows[0]?.n, '100');
      const s = await client.query<{ shared_buffers: string }>('show shared_buffers');
      assert.equal(s.rows[0]?.shared_buffers, '32MB');
    } finally {
      await client.end();
    }
  });

  it('stop() ends every process and removes the temp dir; is idempotent', async () => {
    const pids = [svc.etcd!.pid, svc.redis!.pid, svc.postgres!.pid];
    const dir = svc.dir;
    await svc.stop();
    for (const pid of pids) {
      assert.throws(() => process.kill(pid, 0), `pid ${pid} still alive`);
    }
    assert.equal(fs.existsSync(dir), false, `${dir} still exists`);
    await svc.stop(); // second call: no throw
  });
});
