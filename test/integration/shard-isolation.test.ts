import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { etcdKeys } from '@parley/contracts';
import { startPostgres, type PgHandle } from '@parley/agent';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';

/*
 * Shard isolation (issue 8), end to end: two PostgreSQL shards, real `parley server` processes,
 * a room pinned to each shard. Shard 1's PostgreSQL is killed (SIGKILL of the postmaster and every
 * backend, as in a crash): its room answers FAIL SHARD_UNAVAILABLE within a second, on the
 * instances that were using it and on one started during the outage (whose first use of the shard
 * finds it down); the room on shard 0 keeps being acknowledged at full speed. Shard 1 restarts on
 * the same port and data: the instances see it back on their own (no restart) and its room works
 * again; CHATHISTORY holds every acknowledged message of both rooms.
 */

/** How fast a room on a down shard must be answered. */
const FAIL_WITHIN_MS = 1000;
const NO_FLOOD_LIMIT = { flood: { linesPerSecond: 0 } };

/** Children of `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(path.join('/proc', name, 'stat'), 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** A crash: SIGKILL to the postmaster and all its children; resolves once the postmaster is gone. */
async function crash(h: PgHandle): Promise<void> {
  for (const pid of [h.pid, ...childrenOf(h.pid)]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await h.stop();
}

interface Answer {
  /** the echo's msgid, when acknowledged */
  msgid?: string;
  /** the FAIL's code, when refused */
  fail?: string;
  ms: number;
  replies: IrcMessage[];
}

/** One labelled PRIVMSG and how it was answered. */
async function post(c: IrcClient, target: string, text: string): Promise<Answer> {
  const t0 = performance.now();
  const replies = await c.request(`PRIVMSG ${target} :${text}`, { timeoutMs: 10_000 });
  const ms = performance.now() - t0;
  const echo = replies.find((m) => m.command === 'PRIVMSG');
  const fail = replies.find((m) => m.command === 'FAIL');
  return { ms, replies, ...(echo?.tags.msgid ? { msgid: echo.tags.msgid } : {}), ...(fail ? { fail: fail.params[1] ?? '?' } : {}) };
}

function acked(answers: Answer[], what: string): string[] {
  return answers.map((a, i) => {
    assert.ok(a.msgid, `${what} #${i} was not acknowledged: ${JSON.stringify(a.replies)}`);
    return a.msgid;
  });
}

function refusedFast(answers: Answer[], what: string): void {
  for (const [i, a] of answers.entries()) {
    assert.equal(a.fail, 'SHARD_UNAVAILABLE', `${what} #${i}: ${JSON.stringify(a.replies)}`);
    assert.ok(a.ms < FAIL_WITHIN_MS, `${what} #${i} answered in ${a.ms.toFixed(0)} ms`);
  }
}

describe('a shard that is down fails only its rooms, fast, and recovers without a restart', { timeout: 180_000 }, () => {
  let services: Services;
  let shard1: Services;
  let restarted: PgHandle | undefined;
  const instances: ParleyProcess[] = [];
  const clients: IrcClient[] = [];

  before(async () => {
    [services, shard1] = await Promise.all([startServices(), startServices({ etcd: false, redis: false, postgres: true })]);
  });

  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.allSettled(instances.map((p) => p.stop()));
    await restarted?.stop();
    await Promise.allSettled([services?.stop(), shard1?.stop()]);
  });

  async function client(p: ParleyProcess, nick: string): Promise<IrcClient> {
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: p.tcpPort, nick });
    clients.push(c);
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  async function spawn(id: string, prefix: string, pg: string[]): Promise<ParleyProcess> {
    const p = await spawnParley(services, { id, prefix, pg });
    instances.push(p);
    return p;
  }

  it('SHARD_UNAVAILABLE within a second for its room only; back on its own; nothing acknowledged lost', async (t) => {
    const prefix = uniqueName('iso');
    const pg = await Promise.all([services.postgres!.createDatabase(prefix), shard1.postgres!.createDatabase(prefix)]);
    const zero = '#iso-zero';
    const one = '#iso-one';
    // Pins written first, so each room's shard is known without relying on the hash.
    const keys = etcdKeys(prefix);
    const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      await etcd.put(keys.config).value(JSON.stringify(NO_FLOOD_LIMIT));
      await etcd.put(keys.room(zero)).value(JSON.stringify({ shard: 0 }));
      await etcd.put(keys.room(one)).value(JSON.stringify({ shard: 1 }));
    } finally {
      etcd.close();
    }
    const [a, b] = await Promise.all([spawn('a', prefix, pg), spawn('b', prefix, pg)]);
    const [alice, bob] = await Promise.all([client(a, 'alice'), client(b, 'bob')]);
    for (const c of [alice, bob]) {
      for (const room of [zero, one]) {
        const r = await c.request(`JOIN ${room}`);
        assert.ok(!r.some((m) => m.command === 'FAIL'), `JOIN ${room}: ${JSON.stringify(r)}`);
      }
    }
    // Non-members may send to the shard-1 room (the instance started later does not join it).
    await alice.request(`MODE ${one} -n`);
    const ackedZero = acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(bob, zero, `before-${i}`))), 'before, zero');
    const ackedOne = acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(alice, one, `before-${i}`))), 'before, one');
    // A baseline of the healthy room's speed.
    const base = await Promise.all(Array.from({ length: 100 }, (_, i) => post(bob, zero, `base-${i}`)));
    ackedZero.push(...acked(base, 'baseline, zero'));

    const h = shard1.postgres!;
    const downA = a.logs.mark();
    await crash(h);

    // The shard-0 room, at the same time as the shard-1 room is refused, from both instances.
    const [during, refusedA, refusedB] = await Promise.all([
      Promise.all(Array.from({ length: 100 }, (_, i) => post(bob, zero, `during-${i}`))),
      Promise.all(Array.from({ length: 5 }, (_, i) => post(alice, one, `lost-a-${i}`))),
      Promise.all(Array.from({ length: 5 }, (_, i) => post(bob, one, `lost-b-${i}`))),
    ]);
    ackedZero.push(...acked(during, 'during, zero'));
    refusedFast(refusedA, 'to the down shard from a');
    refusedFast(refusedB, 'to the down shard from b');
    const slowest = (xs: Answer[]): number => Math.max(...xs.map((x) => x.ms));
    t.diagnostic(`zero room: 100 messages acknowledged, slowest ${slowest(base).toFixed(0)} ms before, ${slowest(during).toFixed(0)} ms while shard 1 is down`);
    t.diagnostic(`one room: refused in at most ${slowest(refusedA).toFixed(0)} ms (a), ${slowest(refusedB).toFixed(0)} ms (b)`);
    assert.ok(slowest(during) < FAIL_WITHIN_MS, `the healthy room waited ${slowest(during).toFixed(0)} ms`);
    await a.logs.waitFor((e) => e.msg === 'shard down: its rooms fail at once until it answers' && e.shard === 1, 'shard 1 down on a', { since: downA });
    assert.match(await a.metrics(), /^parley_shards_down 1$/m);

    // History: the healthy room's reads carry on, the down room's fail.
    const histZero = await bob.request(`CHATHISTORY LATEST ${zero} * 10`);
    assert.ok(!histZero.some((m) => m.command === 'FAIL'), JSON.stringify(histZero));
    const histOne = await bob.request(`CHATHISTORY LATEST ${one} * 10`);
    assert.ok(histOne.some((m) => m.command === 'FAIL'), `history of the down room: ${JSON.stringify(histOne)}`);

    // A fresh instance: nothing is opened at start, so it starts; its first use of shard 1 finds
    // it down and says so at once; shard 0 works from it.
    const c = await spawn('c', prefix, pg);
    const carol = await client(c, 'carol');
    const joined = await carol.request(`JOIN ${zero}`);
    assert.ok(!joined.some((m) => m.command === 'FAIL'), `JOIN ${zero} from c: ${JSON.stringify(joined)}`);
    refusedFast(await Promise.all(Array.from({ length: 3 }, (_, i) => post(carol, one, `lost-c-${i}`))), 'first use of the down shard from c');
    ackedZero.push(...acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(carol, zero, `fresh-${i}`))), 'from c, zero'));

    // Shard 1 back on the same port and data (crash recovery); every instance notices by itself.
    const marks = [a, b, c].map((p) => p.logs.mark());
    restarted = await startPostgres({ dataDir: h.dataDir, port: h.port, socketDir: h.socketDir, fsync: false });
    await Promise.all(
      [a, b, c].map((p, i) => p.logs.waitFor((e) => e.msg === 'shard back' && e.shard === 1, `shard 1 back on ${p.id}`, { since: marks[i]!, timeoutMs: 10_000 })),
    );
    ackedOne.push(...acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(alice, one, `after-a-${i}`))), 'after, one, from a'));
    ackedOne.push(...acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(bob, one, `after-b-${i}`))), 'after, one, from b'));
    ackedOne.push(...acked(await Promise.all(Array.from({ length: 10 }, (_, i) => post(carol, one, `after-c-${i}`))), 'after, one, from c'));
    assert.match(await a.metrics(), /^parley_shards_down 0$/m);

    // Every acknowledged message of both rooms is in history, and nothing refused is.
    for (const [room, ids] of [[zero, ackedZero], [one, ackedOne]] as const) {
      const hist = await alice.request(`CHATHISTORY LATEST ${room} * 1000`);
      assert.ok(!hist.some((m) => m.command === 'FAIL'), `CHATHISTORY ${room}: ${JSON.stringify(hist.filter((m) => m.command === 'FAIL'))}`);
      const msgs = hist.filter((m) => m.command === 'PRIVMSG');
      const stored = new Set(msgs.map((m) => m.tags.msgid));
      const missing = ids.filter((id) => !stored.has(id));
      assert.deepEqual(missing, [], `${missing.length} of ${ids.length} acknowledged messages of ${room} missing from history`);
      assert.equal(msgs.length, ids.length, `${room}: history holds exactly the acknowledged messages`);
      assert.ok(!msgs.some((m) => (m.params[1] ?? '').startsWith('lost-')), `${room}: a refused message is in history`);
    }
  });
});
