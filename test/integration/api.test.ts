import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { IrcClient } from '@parley/client';
import { etcdKeys } from '@parley/contracts';
import { InstanceOptionsSchema, ParleyServer, StartupError } from '@parley/server';
import { RedisQosCounters } from '../../packages/server/src/qos/counters.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { logTap } from '../harness/logs.js';
import { spawnParley } from '../harness/parley.js';

/*
 * The QoS, shard, room and configuration API on real etcd, Redis and PostgreSQL: two instances in
 * this process (A with the admin token, B without), 10,000 room entries written straight into
 * etcd, counters written through the Redis counter store the message path uses.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOKEN = 'test-admin-token-0123456789';
const ROOMS = 10_000;
const GOLD_EVERY = 10;

let services: Services;
let prefix: string;
let etcd: Etcd3;
let a: ParleyServer;
let b: ParleyServer;
let tmp: string;
let pgUrl: string;
const clients: IrcClient[] = [];

interface Res {
  status: number;
  etag: string | null;
  headers: Headers;
  body: unknown;
}

async function call(server: ParleyServer, method: string, p: string, o: { body?: unknown; token?: string | null; ifMatch?: string; rawBody?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  const token = o.token === undefined ? TOKEN : o.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (o.ifMatch !== undefined) headers['if-match'] = o.ifMatch;
  let body: string | undefined;
  if (o.rawBody !== undefined || o.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = o.rawBody ?? JSON.stringify(o.body);
  }
  const res = await fetch(`http://127.0.0.1:${server.wsPort}${p}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  const json = res.headers.get('content-type')?.includes('json') && text ? (JSON.parse(text) as unknown) : text;
  return { status: res.status, etag: res.headers.get('etag'), headers: res.headers, body: json };
}

const field = (r: Res): unknown => (r.body as { field?: unknown }).field;
const room = (i: number): string => `#r${String(i).padStart(5, '0')}`;

before(async () => {
  services = await startServices();
  prefix = uniqueName('api');
  pgUrl = await services.postgres!.createDatabase(prefix);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-api-'));
  const tokenFile = path.join(tmp, 'admin-token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  const keys = etcdKeys(prefix);

  // 10,000 room entries: even rooms on shard 0, odd ones on shard 1; every 10th has class gold.
  await etcd.put(keys.qosClass('gold')).value(JSON.stringify({ rate: 5, burst: 10 }));
  const batches: Promise<unknown>[] = [];
  for (let start = 0; start < ROOMS; start += 100) {
    const ops = [];
    for (let i = start; i < start + 100; i++) {
      ops.push(etcd.put(keys.room(room(i))).value(JSON.stringify({ shard: i % 2, ...(i % GOLD_EVERY === 0 ? { qos: 'gold' } : {}) })));
    }
    batches.push(etcd.if(keys.root, 'Version', '==', 0).then(...ops).commit());
  }
  await Promise.all(batches);
  const redis = new Redis(services.redis!.url);
  const counters = new RedisQosCounters(redis, prefix);
  counters.add(room(7), 1, 'refusedQos', 50);
  counters.add(room(123), 1, 'refusedBacklog', 70);
  counters.add(room(123), 1, 'accepted', 3);
  counters.add(room(8), 0, 'failed', 2);
  await counters.close();
  redis.disconnect();

  const opts = (id: string, extra: Record<string, unknown>) =>
    InstanceOptionsSchema.parse({ id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [pgUrl], logLevel: 'warn', ...extra });
  a = new ParleyServer(opts('a', { adminTokenFile: tokenFile }), logTap('warn').logger);
  b = new ParleyServer(opts('b', {}), logTap('warn').logger);
  await Promise.all([a.start(), b.start()]);
});

after(async () => {
  for (const c of clients) c.destroy();
  await a?.close();
  await b?.close();
  etcd?.close();
  await services?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('admin token', () => {
  it('refuses a write without the token (401), with a wrong one (401), and on an instance without one (403)', async () => {
    const none = await call(a, 'PUT', '/api/qos/classes/t1', { body: { rate: 1, burst: 1 }, token: null });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual(Object.keys(none.body as object).sort(), ['error', 'statusCode']);
    const wrong = await call(a, 'PUT', '/api/qos/classes/t1', { body: { rate: 1, burst: 1 }, token: `${TOKEN}x` });
    assert.equal(wrong.status, 401);
    assert.match((wrong.body as { error: string }).error, /wrong admin token/);
    const disabled = await call(b, 'PUT', '/api/qos/classes/t1', { body: { rate: 1, burst: 1 } });
    assert.equal(disabled.status, 403);
    assert.deepEqual(disabled.body, { error: 'writes are disabled: no admin token configured', statusCode: 403 });
    // Nothing was written, and reads need no token.
    assert.equal((await call(a, 'GET', '/api/qos/classes/t1', { token: null })).status, 404);
  });

  it('fails the start with one line when the token file is missing', async () => {
    const missing = path.join(tmp, 'no-such-token');
    const s = new ParleyServer(InstanceOptionsSchema.parse({ prefix, etcd: [services.etcd!.endpoint], adminTokenFile: missing, logLevel: 'silent' }));
    await assert.rejects(s.start(), (err: Error) => err instanceof StartupError && err.message === `cannot read the admin token file ${missing}: no such file`);
    await s.close();
    // The same through `parley server --admin-token-file`.
    await assert.rejects(
      spawnParley(services, { id: 'notoken', prefix, pg: [pgUrl], extraArgs: ['--admin-token-file', missing] }),
      (err: Error) => err.message.includes(`parley: cannot read the admin token file ${missing}: no such file\n`),
    );
  });
});

describe('QoS classes', () => {
  it('creates (201), reads with an ETag, replaces (200), honours If-Match (412 when stale) and deletes (204)', async () => {
    const created = await call(a, 'PUT', '/api/qos/classes/silver', { body: { rate: 20, burst: 40, description: 'twenty a second' } });
    assert.equal(created.status, 201);
    assert.match(created.etag ?? '', /^"\d+"$/);
    const got = await call(b, 'GET', '/api/qos/classes/silver', { token: null });
    assert.equal(got.status, 200);
    assert.equal(got.etag, created.etag);
    assert.deepEqual(got.body, { name: 'silver', rate: 20, burst: 40, description: 'twenty a second', revision: JSON.parse(created.etag!) });

    const replaced = await call(a, 'PUT', '/api/qos/classes/silver', { body: { rate: 25, burst: 40 }, ifMatch: created.etag! });
    assert.equal(replaced.status, 200);
    assert.notEqual(replaced.etag, created.etag);
    const stale = await call(a, 'PUT', '/api/qos/classes/silver', { body: { rate: 99, burst: 99 }, ifMatch: created.etag! });
    assert.equal(stale.status, 412);
    assert.equal((stale.body as { etag: string }).etag, replaced.etag);
    assert.equal(((await call(a, 'GET', '/api/qos/classes/silver')).body as { rate: number }).rate, 25, 'a stale write changes nothing');
    // "0": create only.
    assert.equal((await call(a, 'PUT', '/api/qos/classes/silver', { body: { rate: 1, burst: 1 }, ifMatch: '"0"' })).status, 412);

    const list = await call(a, 'GET', '/api/qos/classes');
    const names = (list.body as { classes: { name: string }[] }).classes.map((c) => c.name);
    assert.ok(names.includes('silver') && names.includes('gold'), names.join(','));
    assert.match(list.etag ?? '', /^"\d+"$/);

    assert.equal((await call(a, 'DELETE', '/api/qos/classes/silver', { ifMatch: created.etag! })).status, 412);
    assert.equal((await call(a, 'DELETE', '/api/qos/classes/silver', { ifMatch: replaced.etag! })).status, 204);
    assert.equal((await call(a, 'GET', '/api/qos/classes/silver')).status, 404);
    const again = await call(a, 'DELETE', '/api/qos/classes/silver');
    assert.equal(again.status, 404);
    assert.equal((again.body as { statusCode: number }).statusCode, 404);
  });

  it('shows a change made through one instance on the other at once', async () => {
    const w = await call(a, 'PUT', '/api/qos/classes/bronze', { body: { rate: 3, burst: 6 } });
    const r = await call(b, 'GET', '/api/qos/classes/bronze');
    assert.equal(r.etag, w.etag);
    const w2 = await call(a, 'PUT', '/api/qos/classes/bronze', { body: { rate: 4, burst: 6 } });
    const r2 = await call(b, 'GET', '/api/qos/classes/bronze');
    assert.equal(r2.etag, w2.etag);
    assert.equal((r2.body as { rate: number }).rate, 4);
  });

  it('answers a bad body, name or header with 400 naming the field', async () => {
    const cases: [string, string, Record<string, unknown>, string?][] = [
      ['rate', '/api/qos/classes/x', { rate: -1, burst: 2 }],
      ['burst', '/api/qos/classes/x', { rate: 1 }],
      ['foo', '/api/qos/classes/x', { rate: 1, burst: 1, foo: 1 }],
      ['postgres.shared_buffers', '/api/qos/classes/x', { rate: 1, burst: 1, postgres: { shared_buffers: 'lots' } }],
      ['name', '/api/qos/classes/Not%20A%20Name', { rate: 1, burst: 1 }],
      ['If-Match', '/api/qos/classes/x', { rate: 1, burst: 1 }, 'yesterday'],
    ];
    for (const [f, p, body, ifMatch] of cases) {
      const r = await call(a, 'PUT', p, { body, ...(ifMatch ? { ifMatch } : {}) });
      assert.equal(r.status, 400, `${p} ${JSON.stringify(body)}`);
      assert.equal(field(r), f, JSON.stringify(r.body));
      assert.equal((r.body as { statusCode: number }).statusCode, 400);
    }
    const notJson = await call(a, 'PUT', '/api/qos/classes/x', { rawBody: '{"rate":' });
    assert.equal(notJson.status, 400);
    assert.equal((await call(a, 'GET', '/api/qos/classes/x')).status, 404, 'nothing was written');
  });
});

describe('cluster configuration', () => {
  it('reads the defaults at revision 0, creates with If-Match "0", refuses a stale write and a bad key', async () => {
    const first = await call(a, 'GET', '/api/config');
    assert.equal(first.status, 200);
    assert.equal(first.etag, '"0"');
    assert.equal((first.body as { networkName: string }).networkName, 'Parley');
    const bad = await call(a, 'PUT', '/api/config', { body: { limits: { lineBytes: 10 } } });
    assert.equal(bad.status, 400);
    assert.equal(field(bad), 'limits.lineBytes');
    const created = await call(a, 'PUT', '/api/config', { body: { networkName: 'ApiNet', motd: ['hi'] }, ifMatch: '"0"' });
    assert.equal(created.status, 201);
    assert.equal((created.body as { limits: { lineBytes: number } }).limits.lineBytes, 512, 'defaults filled in');
    assert.equal((await call(a, 'PUT', '/api/config', { body: { networkName: 'Other' }, ifMatch: '"0"' })).status, 412);
    const onB = await call(b, 'GET', '/api/config');
    assert.equal(onB.etag, created.etag);
    assert.equal((onB.body as { networkName: string }).networkName, 'ApiNet');
    const updated = await call(a, 'PUT', '/api/config', { body: { networkName: 'ApiNet2' }, ifMatch: created.etag! });
    assert.equal(updated.status, 200);
  });
});

describe('shards', () => {
  it('lists the shard map without passwords, with counters and what this instance sees', async () => {
    const r = await call(b, 'GET', '/api/shards', { token: null });
    assert.equal(r.status, 200);
    const shards = (r.body as { shards: { id: number; url: string; state: string; down: boolean; counts: Record<string, number> }[] }).shards;
    const s0 = shards.find((s) => s.id === 0);
    assert.ok(s0, JSON.stringify(r.body));
    assert.equal(s0.state, 'active');
    assert.equal(s0.down, false);
    assert.deepEqual(s0.counts, { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 2 });
    assert.doesNotMatch(JSON.stringify(r.body), /:[^:@/]+@/, 'no password in any URL');
  });

  it('registers a shard with PUT (merge rule, class must exist, password hidden) and changes it with PATCH', async () => {
    const url = 'postgres://parley:secret@127.0.0.1:1/none';
    const noClass = await call(a, 'PUT', '/api/shards/41', { body: { url, qos: 'platinum', state: 'draining' } });
    assert.equal(noClass.status, 400);
    assert.equal(field(noClass), 'qos');
    const created = await call(a, 'PUT', '/api/shards/41', { body: { url, qos: 'gold', state: 'draining', host: 'h1', port: 1 } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const view = created.body as { url: string; qos: string; state: string; poolSize: number | null; host: string };
    assert.equal(view.url, 'postgres://parley@127.0.0.1:1/none');
    assert.deepEqual([view.qos, view.state, view.poolSize, view.host], ['gold', 'draining', null, 'h1']);
    // An unknown field written by someone else survives both writes.
    const key = etcdKeys(prefix).shard(41);
    const stored = JSON.parse((await etcd.get(key).string())!) as Record<string, unknown>;
    await etcd.put(key).value(JSON.stringify({ ...stored, note: 'kept' }));
    const again = await call(a, 'PUT', '/api/shards/41', { body: { url, poolSize: 3 } });
    assert.equal(again.status, 200);
    assert.equal((again.body as { qos: string }).qos, 'gold', 'a field the PUT does not decide is kept');
    const patched = await call(a, 'PATCH', '/api/shards/41', { body: { qos: null, poolSize: null }, ifMatch: again.etag! });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual([(patched.body as { qos: unknown }).qos, (patched.body as { poolSize: unknown }).poolSize], [null, null]);
    const after = JSON.parse((await etcd.get(key).string())!) as Record<string, unknown>;
    assert.deepEqual(after, { id: 41, url, state: 'draining', host: 'h1', port: 1, note: 'kept' });
    assert.equal((await call(a, 'PATCH', '/api/shards/41', { body: { state: 'active' }, ifMatch: again.etag! })).status, 412);
    const one = await call(b, 'GET', '/api/shards/41');
    assert.equal(one.etag, patched.etag);
    assert.equal((await call(a, 'PATCH', '/api/shards/42', { body: { state: 'active' } })).status, 404);
    const empty = await call(a, 'PATCH', '/api/shards/41', { body: {} });
    assert.equal(empty.status, 400);
    assert.equal(field(empty), '(root)');
    assert.equal(field(await call(a, 'GET', '/api/shards/07')), 'id');
    assert.equal(field(await call(a, 'PUT', '/api/shards/41', { body: { url: 'not a url' } })), 'url');
  });
});

describe('rooms', () => {
  type RoomView = { room: string; shard: number | null; class: string; override: string | null; rate: number | null; counts: { accepted: number; refusedQos: number; refusedBacklog: number; failed: number } };
  type Page = { rooms: RoomView[]; nextCursor: string | null; total: number };
  const page = async (q: string): Promise<Page> => {
    const r = await call(b, 'GET', `/api/rooms?${q}`, { token: null });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as Page;
  };

  it(`lists ${ROOMS} rooms fast, pages them with a cursor and measures it`, async (t) => {
    const t0 = performance.now();
    const first = await page('limit=1000');
    const cold = performance.now() - t0;
    assert.equal(first.total, ROOMS);
    assert.equal(first.rooms.length, 1000);
    assert.equal(first.rooms[0]?.room, room(0));
    const seen: string[] = first.rooms.map((r) => r.room);
    let cursor = first.nextCursor;
    const times: number[] = [];
    while (cursor) {
      const t1 = performance.now();
      const p = await page(`limit=1000&cursor=${encodeURIComponent(cursor)}`);
      times.push(performance.now() - t1);
      seen.push(...p.rooms.map((r) => r.room));
      cursor = p.nextCursor;
    }
    assert.equal(seen.length, ROOMS);
    assert.deepEqual(seen, Array.from({ length: ROOMS }, (_, i) => room(i)), 'every room once, in name order');
    const t2 = performance.now();
    await page('limit=100&sort=refused&order=desc');
    const sortedMs = performance.now() - t2;
    t.diagnostic(`GET /api/rooms at ${ROOMS} rooms: first page (1000 rooms, reads etcd + counters) ${cold.toFixed(1)} ms; next pages ${Math.min(...times).toFixed(1)}–${Math.max(...times).toFixed(1)} ms; sort=refused page ${sortedMs.toFixed(1)} ms`);
    assert.ok(cold < 2000, `first page took ${cold} ms`);
  });

  it('sorts by refused and rate, filters by shard, class and text, with counts and class limits', async () => {
    const refused = await page('sort=refused&order=desc&limit=3');
    assert.deepEqual(refused.rooms.slice(0, 2).map((r) => [r.room, r.counts.refusedQos + r.counts.refusedBacklog]), [[room(123), 70], [room(7), 50]]);
    assert.equal(refused.rooms[0]?.counts.accepted, 3);
    const byRate = await page('sort=rate&limit=5');
    assert.deepEqual(byRate.rooms.map((r) => [r.class, r.rate]), Array(5).fill(['gold', 5]));
    const gold = await page('class=gold&limit=1000');
    assert.equal(gold.total, ROOMS / GOLD_EVERY);
    assert.ok(gold.rooms.every((r) => r.override === 'gold' && r.rate === 5));
    const odd = await page('shard=1&limit=1');
    assert.equal(odd.total, ROOMS / 2);
    const text = await page('q=R0012&shard=1');
    assert.deepEqual(text.rooms.map((r) => r.room), Array.from({ length: 5 }, (_, i) => room(121 + 2 * i)));
    const desc = await page('sort=name&order=desc&limit=2');
    assert.deepEqual(desc.rooms.map((r) => r.room), [room(ROOMS - 1), room(ROOMS - 2)]);
    // The cursor belongs to its sort.
    const r = await call(b, 'GET', `/api/rooms?sort=rate&cursor=${encodeURIComponent(desc.nextCursor!)}`);
    assert.equal(r.status, 400);
    assert.equal(field(r), 'cursor');
    for (const [q, f] of [['sort=size', 'sort'], ['limit=0', 'limit'], ['shard=x', 'shard'], ['foo=1', 'foo'], ['cursor=%%%', 'cursor']] as const) {
      const bad = await call(b, 'GET', `/api/rooms?${q}`);
      assert.equal(bad.status, 400, q);
      assert.equal(field(bad), f, q);
    }
  });

  it("sets and clears a room's class without touching its shard pin", async () => {
    const key = etcdKeys(prefix).room(room(1));
    const before = await call(a, 'GET', `/api/rooms/${encodeURIComponent(room(1))}`);
    assert.equal(before.status, 200);
    assert.deepEqual([(before.body as RoomView).shard, (before.body as RoomView).class], [1, 'default']);
    const set = await call(a, 'PUT', `/api/rooms/${encodeURIComponent(room(1))}/qos`, { body: { class: 'gold' }, ifMatch: before.etag! });
    assert.equal(set.status, 200);
    assert.deepEqual(JSON.parse((await etcd.get(key).string())!), { shard: 1, qos: 'gold' });
    assert.deepEqual([(set.body as RoomView).class, (set.body as RoomView).rate], ['gold', 5]);
    // The list of the instance that wrote sees it at once (its cache is dropped by the write).
    const listed = await call(a, 'GET', `/api/rooms?q=${encodeURIComponent(room(1))}&limit=1`);
    assert.equal((listed.body as Page).rooms[0]?.override, 'gold');
    assert.equal((await call(a, 'PUT', `/api/rooms/${encodeURIComponent(room(1))}/qos`, { body: { class: null }, ifMatch: before.etag! })).status, 412);
    const cleared = await call(a, 'PUT', `/api/rooms/${encodeURIComponent(room(1))}/qos`, { body: { class: null } });
    assert.equal(cleared.status, 200);
    assert.deepEqual(JSON.parse((await etcd.get(key).string())!), { shard: 1 });
    const unknown = await call(a, 'PUT', `/api/rooms/${encodeURIComponent(room(1))}/qos`, { body: { class: 'platinum' } });
    assert.equal(unknown.status, 400);
    assert.equal(field(unknown), 'class');
    assert.equal(field(await call(a, 'PUT', `/api/rooms/${encodeURIComponent(room(1))}/qos`, { body: {} })), 'class');
  });

  it('gives a class to a room not used yet, and the room keeps it once a message pins it', async () => {
    const name = '#Fresh/Room';
    const enc = encodeURIComponent(name);
    assert.equal((await call(a, 'GET', `/api/rooms/${enc}`)).status, 404);
    assert.equal((await call(a, 'PUT', `/api/rooms/${enc}/qos`, { body: { class: null } })).status, 404);
    const created = await call(a, 'PUT', `/api/rooms/${enc}/qos`, { body: { class: 'gold' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual([(created.body as RoomView).room, (created.body as RoomView).shard], ['#fresh/room', null]);
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: a.tcpPort, nick: 'apiuser' });
    clients.push(c);
    await c.connect();
    await c.request(`JOIN ${name}`);
    await c.request(`PRIVMSG ${name} :pins the room`);
    const pinned = await call(b, 'GET', `/api/rooms/${enc}`);
    assert.deepEqual([(pinned.body as RoomView).shard, (pinned.body as RoomView).override], [0, 'gold']);
    assert.notEqual(pinned.etag, created.etag);
  });
});

describe('a shard that is down', () => {
  it('is shown down by the instance whose store found it down, and up by the other', async () => {
    // Shard 43 points at a closed port; a channel pinned to it by hand makes A's store try it
    // (the JOIN reads the room's sequence position) and answer SHARD_UNAVAILABLE.
    const url = 'postgres://parley:secret@127.0.0.1:1/gone';
    assert.equal((await call(a, 'PUT', '/api/shards/43', { body: { url, state: 'draining' } })).status, 201);
    await etcd.put(etcdKeys(prefix).room('#downroom')).value(JSON.stringify({ shard: 43 }));
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: a.tcpPort, nick: 'downuser' });
    clients.push(c);
    await c.connect();
    const reply = await c.request('JOIN #downroom');
    assert.ok(reply.some((m) => m.command === 'FAIL' && m.params[1] === 'SHARD_UNAVAILABLE'), reply.map((m) => [m.command, ...m.params].join(' ')).join(' | '));
    const onA = (await call(a, 'GET', '/api/shards/43')).body as { down: boolean; downReason?: string; url: string };
    assert.equal(onA.down, true, JSON.stringify(onA));
    assert.equal(typeof onA.downReason, 'string');
    assert.doesNotMatch(onA.downReason ?? '', /secret/);
    const onB = (await call(b, 'GET', '/api/shards/43')).body as { down: boolean };
    assert.equal(onB.down, false);
  });
});

describe('channels (the dashboard list)', () => {
  it('lists channels from Redis with members and messages', async () => {
    const r = await call(a, 'GET', '/api/channels');
    const rooms = (r.body as { rooms: { name: string; members: number; messages: number }[] }).rooms;
    const fresh = rooms.find((x) => x.name === '#Fresh/Room');
    assert.deepEqual([fresh?.members, fresh?.messages], [1, 1]);
  });
});

type Json = Record<string, unknown>;
interface Operation {
  responses?: Record<string, Json>;
  parameters?: { name?: string; in?: string; required?: boolean; schema?: unknown }[];
  requestBody?: { content?: Record<string, { schema?: unknown; example?: unknown; examples?: Record<string, { value: unknown }> }> };
  security?: Record<string, unknown>[];
  tags?: string[];
}

describe('OpenAPI document', () => {
  const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace'];
  let doc: { openapi: string; info: Json; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Json }; tags: { name: string }[] };

  before(async () => {
    doc = (await call(b, 'GET', '/api/openapi.json')).body as typeof doc;
  });

  it('is a structurally valid OpenAPI 3.1 document', () => {
    assert.match(doc.openapi, /^3\.1\.\d+$/);
    assert.equal(typeof doc.info.title, 'string');
    assert.equal(typeof doc.info.version, 'string');
    const tags = new Set(doc.tags.map((t) => t.name));
    const problems: string[] = [];
    for (const [p, item] of Object.entries(doc.paths)) {
      if (!p.startsWith('/')) problems.push(`${p}: path does not start with /`);
      const templated = [...p.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${p}`;
        if (!METHODS.includes(method)) {
          problems.push(`${where}: not an HTTP method`);
          continue;
        }
        const responses = Object.entries(op.responses ?? {});
        if (responses.length === 0) problems.push(`${where}: no responses`);
        for (const [status, r] of responses) {
          if (!/^[1-5]\d\d$/.test(status)) problems.push(`${where}: status ${status}`);
          if (typeof r.description !== 'string') problems.push(`${where} ${status}: no description`);
          for (const [type, media] of Object.entries((r.content ?? {}) as Record<string, Json>)) {
            if (typeof media.schema !== 'object') problems.push(`${where} ${status} ${type}: no schema`);
          }
        }
        const pathParams = (op.parameters ?? []).filter((x) => x.in === 'path').map((x) => x.name);
        for (const x of op.parameters ?? []) {
          if (typeof x.name !== 'string' || !['query', 'path', 'header', 'cookie'].includes(x.in ?? '') || typeof x.schema !== 'object') problems.push(`${where}: bad parameter ${JSON.stringify(x)}`);
          if (x.in === 'path' && x.required !== true) problems.push(`${where}: path parameter ${x.name} not required`);
        }
        if ([...pathParams].sort().join() !== [...templated].sort().join()) problems.push(`${where}: path parameters ${pathParams.join()} vs template ${templated.join()}`);
        for (const s of op.security ?? []) for (const name of Object.keys(s)) if (!(name in doc.components.securitySchemes)) problems.push(`${where}: unknown security scheme ${name}`);
        for (const t of op.tags ?? []) if (!tags.has(t)) problems.push(`${where}: undeclared tag ${t}`);
        if (op.requestBody && typeof op.requestBody.content?.['application/json']?.schema !== 'object') problems.push(`${where}: request body without a JSON schema`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('lists every route the server declares, and the server answers each as documented', async () => {
    const src = walk(path.join(ROOT, 'packages/server/src/net'))
      .map((f) => fs.readFileSync(f, 'utf8'))
      .join('\n');
    const declared = [...src.matchAll(/\bmethod: '(GET|POST|PUT|PATCH|DELETE)',\s*url: '([^']+)'/g)].map((m) => `${m[1] as string} ${(m[2] as string).replace(/:(\w+)/g, '{$1}')}`);
    assert.ok(declared.length >= 15);
    const documented = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
    assert.deepEqual(declared.filter((r) => !documented.includes(r)), [], 'declared but not documented');
    for (const f of ['/', '/index.html', '/dashboard.html']) assert.ok(documented.includes(`GET ${f}`), `static file ${f}`);
    // Every documented GET answers with a status its description lists (no token, sample parameters).
    for (const [p, item] of Object.entries(doc.paths)) {
      const op = item.get;
      if (!op) continue;
      const res = await call(a, 'GET', samplePath(p), { token: null });
      assert.ok(op.responses?.[String(res.status)], `GET ${p} answered ${res.status}, which its description does not list`);
    }
  });

  it('accepts every request example of the document', async () => {
    const ops = Object.entries(doc.paths).flatMap(([p, item]) =>
      Object.entries(item).flatMap(([method, op]) =>
        // One example is written `example`, several `examples` (@fastify/swagger's rendering).
        [...Object.values(op.requestBody?.content?.['application/json']?.examples ?? {}).map((ex) => ex.value), ...exampleOf(op)].map((value) => ({ method: method.toUpperCase(), p, value })),
      ),
    );
    assert.ok(ops.length >= 8, `${ops.length} examples`);
    // Classes first (the others name one), then creations before changes.
    const rank = (o: { method: string; p: string }): number => (o.p.includes('/qos/classes') ? 0 : 1) * 10 + (o.method === 'PATCH' ? 1 : 0);
    ops.sort((x, y) => rank(x) - rank(y));
    await call(a, 'PUT', '/api/qos/classes/default', { body: { rate: 1000, burst: 1000 } });
    for (const o of ops) {
      const res = await call(a, o.method, samplePath(o.p), { body: o.value });
      assert.ok(res.status >= 200 && res.status < 300, `${o.method} ${o.p} ${JSON.stringify(o.value)} → ${res.status} ${JSON.stringify(res.body)}`);
    }
    // The example shard must not take new rooms of other tests.
    await call(a, 'PATCH', samplePath('/api/shards/{id}'), { body: { state: 'draining' } });
  });
});

function exampleOf(op: Operation): unknown[] {
  const media = op.requestBody?.content?.['application/json'];
  return media && 'example' in media ? [media.example] : [];
}

function samplePath(p: string): string {
  return p.replace('{name}', 'example').replace('{id}', '900').replace('{room}', encodeURIComponent('#example'));
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}
