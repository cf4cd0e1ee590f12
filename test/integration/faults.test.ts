import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';
import { CONFIG_APPLIED } from '../harness/logs.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';
import { Raw, escapeRe } from '../harness/raw.js';
import { watchSocketDestroys } from '../harness/sockets.js';

/*
 * Faults an instance must survive (issue 7), on real etcd, Redis and PostgreSQL with two real
 * `parley server` processes per test, each test with its own key prefix and database. Every wait
 * is on an event (a reply, a log line, a watch event, a kernel socket event) with a deadline; the
 * only fixed durations are the lengths of the injected outages themselves.
 */

/** Redis as the lab runs it: what it acknowledged survives a kill (fsync on every write here). */
const REDIS_AOF = { appendonly: 'yes', appendfsync: 'always' };
const NO_FLOOD_LIMIT = { flood: { linesPerSecond: 0 } };
const LEASE_SECONDS = 2;

let services: Services;

before(async () => {
  services = await startServices({ redisSettings: REDIS_AOF });
});

after(async () => {
  await services?.stop();
});

interface Cluster {
  prefix: string;
  a: ParleyProcess;
  b: ParleyProcess;
  client(p: ParleyProcess, nick: string, opts?: { keepHistory?: boolean }): Promise<IrcClient>;
  /** Resolves with `p`, or rejects as soon as an instance exits, with its last output. */
  whileAlive<T>(p: Promise<T>, what: string): Promise<T>;
  stop(): Promise<void>;
}

async function cluster(name: string, config: Record<string, unknown> = NO_FLOOD_LIMIT): Promise<Cluster> {
  const prefix = uniqueName(name);
  const db = await services.postgres!.createDatabase(prefix);
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  try {
    await etcd.put(`/${prefix}/config`).value(JSON.stringify(config));
  } finally {
    etcd.close();
  }
  const [a, b] = await Promise.all([
    spawnParley(services, { id: 'a', prefix, pg: [db], leaseSeconds: LEASE_SECONDS }),
    spawnParley(services, { id: 'b', prefix, pg: [db], leaseSeconds: LEASE_SECONDS }),
  ]);
  const clients: IrcClient[] = [];
  return {
    prefix,
    a,
    b,
    async client(p, nick, opts) {
      const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: p.tcpPort, nick, ...opts });
      clients.push(c);
      c.on('error', () => undefined);
      await c.connect();
      return c;
    },
    whileAlive(p, what) {
      return new Promise((resolve, reject) => {
        let settled = false;
        p.then(
          (v) => { settled = true; resolve(v); },
          (e: unknown) => { settled = true; reject(e instanceof Error ? e : new Error(String(e))); },
        );
        for (const inst of [a, b]) {
          void inst.exited.then((how) => {
            if (!settled) reject(new Error(`instance ${inst.id} exited (${how}) while ${what}; its last output:\n${inst.output().slice(-3000)}`));
          });
        }
      });
    },
    async stop() {
      for (const c of clients) c.destroy();
      await Promise.allSettled([a.stop(), b.stop()]);
    },
  };
}

const privmsg = (text: string) => (m: IrcMessage) => m.command === 'PRIVMSG' && m.params[1] === text;
const fromNick = (m: IrcMessage) => m.source?.split('!')[0] ?? '';

/** Sends `n` messages as labelled requests; resolves with their msgids once each is echoed (acknowledged). */
async function sendAcked(c: IrcClient, target: string, text: string, n: number, timeoutMs = 10_000): Promise<string[]> {
  const replies = await Promise.all(Array.from({ length: n }, (_, i) => c.request(`PRIVMSG ${target} :${text}-${i}`, { timeoutMs })));
  return replies.map((r, i) => {
    const echo = r.find((m) => m.command === 'PRIVMSG');
    assert.ok(echo?.tags.msgid, `${text}-${i} to ${target} was not acknowledged; the answer was ${JSON.stringify(r)}`);
    return echo.tags.msgid;
  });
}

/** Every msgid in `acked` is in the channel's history as `c` reads it now. */
async function assertInHistory(c: IrcClient, channel: string, acked: string[]): Promise<void> {
  const hist = await c.request(`CHATHISTORY LATEST ${channel} * 1000`);
  const failed = hist.find((m) => m.command === 'FAIL');
  assert.equal(failed, undefined, `CHATHISTORY ${channel} failed: ${failed?.params.join(' ')}`);
  const stored = new Set(hist.filter((m) => m.command === 'PRIVMSG').map((m) => m.tags.msgid));
  const missing = acked.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged messages to ${channel} are missing from history`);
}

/** The instance answers /healthz and counted no unhandled rejection or uncaught exception. */
async function assertHealthy(p: ParleyProcess): Promise<void> {
  assert.ok(p.alive(), `instance ${p.id} is gone`);
  const h = await p.http('/healthz');
  assert.equal(h.status, 200, `instance ${p.id} /healthz answered ${h.status}: ${h.body}`);
  const uncaught = (await p.metrics()).split('\n').filter((l) => l.startsWith('parley_uncaught_errors_total') && !/ 0$/.test(l));
  assert.deepEqual(uncaught, [], `instance ${p.id} counted uncaught errors`);
}

/** The length of an injected outage: the fault itself, not a wait for something to happen. */
const outage = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `c`'s connection is gone, or rejects after `ms`. */
function closedWithin(c: IrcClient, ms: number, what: string): Promise<void> {
  if (c.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: still connected after ${ms} ms`)), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

describe('Redis killed (SIGKILL) while clients join, part, quit and send', () => {
  let cl: Cluster;
  before(async () => {
    cl = await cluster('rk');
  });
  after(async () => {
    await cl?.stop();
    await services.revive();
  });

  it('no instance exits, local rooms keep working, fan-out resumes and nothing acknowledged is lost', { timeout: 120_000 }, async () => {
    const { a, b } = cl;
    const [loc1, loc2, parter, joiner, x1, quitter, y1, dropper] = await Promise.all([
      cl.client(a, 'loc1'), cl.client(a, 'loc2'), cl.client(a, 'parter'), cl.client(a, 'joiner'),
      cl.client(a, 'x1'), cl.client(a, 'quitter'), cl.client(b, 'y1'), cl.client(b, 'dropper'),
    ]);
    for (const c of [loc1, loc2, parter]) await c.request('JOIN #local');
    for (const c of [x1, quitter, y1, dropper]) await c.request('JOIN #cross');
    await seen(y1, (m) => m.command === 'JOIN' && fromNick(m) === 'dropper');
    const ackedLocal = await sendAcked(loc1, '#local', 'before', 5);
    const ackedCross = await sendAcked(x1, '#cross', 'before', 5);
    await seen(y1, privmsg('before-4'));

    await services.kill('redis');
    const killedAt = Date.now();
    // What clients do during the outage; none of it may take an instance down. Their answers
    // (success or FAIL) are awaited after Redis is back.
    const part = parter.request('PART #local', { timeoutMs: 30_000 });
    const join = joiner.request('JOIN #fresh', { timeoutMs: 30_000 });
    quitter.send('QUIT :leaving during the outage');
    dropper.destroy();
    const newcomer = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: a.tcpPort, nick: 'newcomer', connectTimeoutMs: 20_000 });
    newcomer.on('error', () => undefined);
    const registration = newcomer.connect();
    const crossDuring = Promise.allSettled(Array.from({ length: 5 }, (_, i) => x1.request(`PRIVMSG #cross :during-${i}`, { timeoutMs: 30_000 })));
    // Settled below with allSettled; until then a rejection is not "unhandled".
    for (const p of [part, join, registration]) p.catch(() => undefined);

    // A room whose members are all on this instance needs no Redis: stored, acknowledged, delivered.
    ackedLocal.push(...(await cl.whileAlive(sendAcked(loc1, '#local', 'outage-early', 20), 'sending to a local room after Redis died')));
    await cl.whileAlive(seen(loc2, privmsg('outage-early-19')), 'waiting for local delivery');
    await cl.whileAlive(closedWithin(quitter, 5000, 'QUIT during the outage'), 'a client quit');
    // Redis stays down longer than the Redis clients' retry budget, so commands issued in the
    // outage fail rather than wait it out.
    await cl.whileAlive(outage(Math.max(0, 5000 - (Date.now() - killedAt))), 'Redis was down');
    ackedLocal.push(...(await cl.whileAlive(sendAcked(loc1, '#local', 'outage-late', 20), 'sending to a local room late in the outage')));
    await cl.whileAlive(seen(loc2, privmsg('outage-late-19')), 'waiting for local delivery');

    await cl.whileAlive(services.restart('redis'), 'Redis restarted');
    const backAt = Date.now();

    // Fan-out resumes: a steady trickle from a to a member on b; the first to arrive must do so
    // within 5 s of Redis being back.
    let k = 0;
    const trickle = setInterval(() => x1.send(`PRIVMSG #cross :probe-${k++}`), 200);
    try {
      await cl.whileAlive(seen(y1, (m) => m.command === 'PRIVMSG' && (m.params[1] ?? '').startsWith('probe-'), 5000), 'waiting for fan-out to resume');
    } catch (err) {
      throw new Error(`no message from instance a reached b within 5 s of Redis being back (${k} sent): ${(err as Error).message}`);
    } finally {
      clearInterval(trickle);
    }
    const resumedMs = Date.now() - backAt;
    ackedCross.push(...(await cl.whileAlive(sendAcked(x1, '#cross', 'after', 5), 'sending after Redis is back')));
    await cl.whileAlive(seen(y1, privmsg('after-4')), 'live fan-out after Redis is back');

    // Everything started during the outage has been answered one way or the other.
    const [partAns, joinAns, reg, during] = await cl.whileAlive(
      Promise.allSettled([part, join, registration, crossDuring]),
      'waiting for the answers to what was sent during the outage',
    );
    // An answer is a reply (FAIL included), or for the registration also a refusal that ends the
    // connection; a timeout is not.
    for (const [what, r] of [['PART', partAns], ['JOIN', joinAns]] as const) {
      assert.equal(r.status, 'fulfilled', `${what} sent during the outage got no answer: ${r.status === 'rejected' ? String(r.reason) : ''}`);
    }
    if (reg.status === 'rejected') {
      assert.doesNotMatch(String(reg.reason), /did not complete within/, `a registration begun during the outage was left hanging: ${String(reg.reason)}; it saw:\n${newcomer.messages.map((m) => `${m.command} ${m.params.join(' ')}`).join('\n')}`);
    }
    if (during.status === 'fulfilled') {
      for (const r of during.value) {
        const echo = r.status === 'fulfilled' ? r.value.find((m) => m.command === 'PRIVMSG') : undefined;
        if (echo?.tags.msgid) ackedCross.push(echo.tags.msgid);
      }
    }

    // A client connecting now finds every acknowledged message in history.
    const reader = await cl.client(b, 'reader');
    await reader.request('JOIN #local,#cross');
    await assertInHistory(reader, '#local', ackedLocal);
    await assertInHistory(reader, '#cross', ackedCross);
    for (const p of [a, b]) await assertHealthy(p);
    newcomer.destroy();
    console.log(`# fan-out resumed ${resumedMs} ms after Redis was back; ${ackedLocal.length} local and ${ackedCross.length} cross-instance messages acknowledged`);
  });
});

describe('etcd killed while serving', () => {
  let cl: Cluster;
  before(async () => {
    cl = await cluster('ek');
  });
  after(async () => {
    await cl?.stop();
    await services.revive();
  });

  it('chat goes on; once etcd is back the registry keys are held again and config changes apply', { timeout: 120_000 }, async () => {
    const { a, b, prefix } = cl;
    const [e1, e2] = await Promise.all([cl.client(a, 'e1'), cl.client(b, 'e2')]);
    await e1.request('JOIN #ek');
    await e2.request('JOIN #ek');
    await seen(e1, (m) => m.command === 'JOIN' && fromNick(m) === 'e2');
    const keyOf = (id: string) => `/${prefix}/instances/${id}`;
    const leasesBefore = new Map<string, string>();
    let etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      for (const id of ['a', 'b']) {
        const kv = (await etcd.get(keyOf(id)).exec()).kvs[0];
        assert.ok(kv, `instance ${id} is registered before the fault`);
        leasesBefore.set(id, kv.lease);
      }
    } finally {
      etcd.close();
    }

    await services.kill('etcd');
    const killedAt = Date.now();
    const acked = await cl.whileAlive(sendAcked(e1, '#ek', 'no-etcd', 10), 'chatting without etcd');
    await cl.whileAlive(seen(e2, privmsg('no-etcd-9')), 'cross-instance delivery without etcd');
    const late = await cl.whileAlive(cl.client(a, 'late'), 'registering a client without etcd');
    late.destroy();
    // etcd stays away for longer than twice the lease: the instances' leases count as lost and
    // they must register again once it is back.
    await cl.whileAlive(outage(Math.max(0, 2 * LEASE_SECONDS * 1000 + 1500 - (Date.now() - killedAt))), 'etcd was down');
    await cl.whileAlive(services.restart('etcd'), 'etcd restarted');
    const etcdBackAt = Date.now();

    etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      // Each instance puts its key again under a lease of its own making.
      await cl.whileAlive(Promise.all(['a', 'b'].map(async (id) => {
        const res = await etcd.get(keyOf(id)).exec();
        const now = res.kvs[0];
        if (now && now.lease !== leasesBefore.get(id) && now.lease !== '0') return;
        const w = await etcd.watch().key(keyOf(id)).startRevision(String(Number(res.header.revision) + 1)).create();
        try {
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`instance ${id} did not register again within ${4 * LEASE_SECONDS + 5} s of etcd being back`)), (4 * LEASE_SECONDS + 5) * 1000);
            w.on('put', (kv) => {
              if (kv.lease.toString() === leasesBefore.get(id)) return;
              clearTimeout(t);
              resolve();
            });
          });
        } finally {
          await w.cancel();
        }
      })), 'waiting for the instances to register again');

      // The configuration watch works again: a change is in force on both.
      const since = { a: a.logs.mark(), b: b.logs.mark() };
      await etcd.put(`/${prefix}/config`).value(JSON.stringify({ ...NO_FLOOD_LIMIT, motd: ['after the etcd outage'] }));
      await cl.whileAlive(Promise.all([a, b].map((p) =>
        p.logs.waitForMsg(CONFIG_APPLIED, { since: since[p.id as 'a' | 'b'], timeoutMs: 10_000 }).catch((err: Error) => {
          throw new Error(`instance ${p.id} did not apply a configuration change put ${Date.now() - etcdBackAt} ms after etcd was back: its config watch has not resumed. ${err.message}`);
        }),
      )), 'waiting for the configuration change');
      const fresh = await cl.client(b, 'fresh');
      const motd = (await fresh.connect()).motd;
      assert.ok(motd.some((l) => l.includes('after the etcd outage')), `MOTD on b was ${JSON.stringify(motd)}`);
      // The keys are still held (not just put once and then expired with the old lease).
      for (const id of ['a', 'b']) assert.ok(await etcd.get(keyOf(id)).string(), `instance ${id} is registered`);
    } finally {
      etcd.close();
    }
    acked.push(...(await sendAcked(e2, '#ek', 'etcd-back', 3)));
    await seen(e1, privmsg('etcd-back-2'));
    await assertInHistory(e1, '#ek', acked);
    for (const p of [a, b]) await assertHealthy(p);
  });
});

describe('a graceful stop (SIGTERM) of one instance', () => {
  let cl: Cluster;
  before(async () => {
    cl = await cluster('gs');
  });
  after(async () => {
    await cl?.stop();
    await services.revive();
  });

  it("members on the other instance see its users' QUIT", { timeout: 60_000 }, async () => {
    const { a, b } = cl;
    const stayer = await cl.client(a, 'stayer');
    await stayer.request('JOIN #gs,#gs2');
    // Ten users on the instance that stops, in two channels shared with the member on a.
    const leavers = Array.from({ length: 10 }, (_, i) => `leaver${i}`);
    await Promise.all(leavers.map(async (nick, i) => {
      const c = await cl.client(b, nick);
      await c.request(`JOIN ${i % 2 ? '#gs2' : '#gs'}`);
    }));
    for (const nick of leavers) await seen(stayer, (m) => m.command === 'JOIN' && fromNick(m) === nick);
    const quitSeen = new Map<string, string>();
    const allQuit = new Promise<void>((resolve) => {
      stayer.on('message', (m) => {
        if (m.command !== 'QUIT' || !leavers.includes(fromNick(m))) return;
        quitSeen.set(fromNick(m), m.params[0] ?? '');
        if (quitSeen.size === leavers.length) resolve();
      });
    });
    const stoppedAt = Date.now();
    await b.stop();
    assert.equal(await b.exited, '0', `instance b exited with ${await b.exited}:\n${b.output().slice(-2000)}`);
    let deadline: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => { deadline = setTimeout(r, 5000); });
    await Promise.race([allQuit, late]);
    clearTimeout(deadline);
    const missing = leavers.filter((n) => !quitSeen.has(n));
    assert.deepEqual(missing, [], `${missing.length} of ${leavers.length} users of the stopped instance never QUIT for the member on the other instance (waited 5 s after b exited); b's last output:\n${b.output().slice(-1500)}`);
    assert.ok(a.alive());
    console.log(`# ${leavers.length} QUITs seen within ${Date.now() - stoppedAt} ms of SIGTERM, e.g. "${quitSeen.get('leaver0') ?? ''}"`);
  });
});

describe('the NICK/disconnect race', () => {
  let cl: Cluster;
  before(async () => {
    cl = await cluster('nr');
  });
  after(async () => {
    await cl?.stop();
    await services.revive();
  });

  it('1000 nick changes written together with a hang-up leave no ghost nick or member', { timeout: 180_000 }, async () => {
    const { a, b, prefix } = cl;
    const TRIES = 1000;
    const BATCH = 50;
    const CHANNELS = 10;
    const chans = Array.from({ length: CHANNELS }, (_, i) => `#nr${i}`);
    const [wa, wb] = await Promise.all([cl.client(a, 'wa', { keepHistory: false }), cl.client(b, 'wb', { keepHistory: false })]);
    for (const ch of chans) {
      await wa.request(`JOIN ${ch}`);
      await wb.request(`JOIN ${ch}`);
    }
    // Each try ends with exactly one QUIT seen by the members of its channel on both instances:
    // of the old nick, or of the new one if the change went through first.
    const quitBy = { wa: new Set<number>(), wb: new Set<number>() };
    let renamedFirst = 0; // tries whose NICK took effect before the hang-up (QUIT of the new nick)
    let allQuit: () => void = () => undefined;
    const everyQuit = new Promise<void>((r) => { allQuit = r; });
    for (const [name, w] of [['wa', wa], ['wb', wb]] as const) {
      w.on('message', (m) => {
        if (m.command !== 'QUIT') return;
        const t = /^[on](\d+)$/.exec(fromNick(m));
        if (!t) return;
        quitBy[name].add(Number(t[1]));
        if (name === 'wa' && fromNick(m).startsWith('n')) renamedFirst++;
        if (quitBy.wa.size === TRIES && quitBy.wb.size === TRIES) allQuit();
      });
    }

    const started = Date.now();
    const tryOnce = async (i: number) => {
      const r = new Raw(a.tcpPort);
      r.send(`NICK o${i}\r\nUSER u 0 * :race\r\nJOIN ${chans[i % CHANNELS]}\r\n`);
      await r.until(new RegExp(` 366 o${i} `), 20_000);
      // The change and the hang-up in the same tick: the server reads both at once.
      r.sock.write(`NICK n${i}\r\n`);
      r.sock.destroy();
    };
    for (let from = 0; from < TRIES; from += BATCH) {
      await cl.whileAlive(Promise.all(Array.from({ length: Math.min(BATCH, TRIES - from) }, (_, j) => tryOnce(from + j))), `race tries from ${from}`);
    }
    const triedMs = Date.now() - started;
    let quitsMissing = '';
    // A ghost never QUITs: wait for every QUIT, but no longer than 15 s, then count.
    let deadline: NodeJS.Timeout | undefined;
    await cl.whileAlive(
      Promise.race([everyQuit, new Promise<void>((r) => { deadline = setTimeout(r, 15_000); })]),
      'waiting for the QUITs',
    );
    clearTimeout(deadline);
    for (const name of ['wa', 'wb'] as const) {
      if (quitBy[name].size < TRIES) {
        const missing = Array.from({ length: TRIES }, (_, i) => i).filter((i) => !quitBy[name].has(i));
        quitsMissing += `${name} saw no QUIT for ${missing.length} tries (e.g. ${missing.slice(0, 10).join(', ')}); `;
      }
    }

    // Ghosts: nicks still claimed in Redis, or names still in the channels.
    const redis = new Redis(services.redis!.url, { lazyConnect: true });
    let claimed: string[] = [];
    try {
      await redis.connect();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:nick:*`, 'COUNT', 1000);
        cursor = next;
        claimed.push(...keys.map((k) => k.slice(`${prefix}:nick:`.length)));
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    claimed = claimed.filter((n) => n !== 'wa' && n !== 'wb').sort();
    const inChannels: string[] = [];
    for (const ch of chans) {
      const names = await wb.request(`NAMES ${ch}`);
      for (const m of names.filter((x) => x.command === '353')) {
        // Entries are `[prefixes]nick[!user@host]` (multi-prefix, userhost-in-names).
        for (const n of (m.params[3] ?? '').split(' ')) if (n && !/^[@+]*w[ab](!|$)/.test(n)) inChannels.push(`${ch}:${n}`);
      }
    }
    const ison = await wa.request(`ISON ${Array.from({ length: 20 }, (_, i) => `n${i} o${i}`).join(' ')}`);
    console.log(`# ${TRIES} tries in ${triedMs} ms (the NICK took effect first in ${renamedFirst}); ghosts: ${claimed.length} nicks, ${inChannels.length} channel members`);
    assert.deepEqual(claimed, [], `nicks still claimed in Redis after every connection is gone: ${claimed.slice(0, 20).join(' ')}`);
    assert.deepEqual(inChannels, [], `members still listed in channels: ${inChannels.slice(0, 20).join(' ')}`);
    assert.equal(quitsMissing, '', quitsMissing);
    const isonLine = ison.find((m) => m.command === '303');
    assert.equal(isonLine?.params[1] ?? '', '', `ISON still finds ${isonLine?.params[1]}`);
    for (const p of [a, b]) await assertHealthy(p);
  });
});

describe('a client that never reads', () => {
  let cl: Cluster;
  before(async () => {
    // Long lines fill the queues with few messages.
    cl = await cluster('sq', { ...NO_FLOOD_LIMIT, limits: { lineBytes: 16384 } });
  });
  after(async () => {
    await cl?.stop();
    await services.revive();
  });

  it('is dropped with SendQ exceeded and its socket is gone within seconds', { timeout: 120_000 }, async () => {
    const { a } = cl;
    const flooder = await cl.client(a, 'flooder', { keepHistory: false });
    await flooder.request('JOIN #sq');
    const raw = new Raw(a.tcpPort);
    await raw.register('stuck');
    raw.send('JOIN #sq\r\n');
    await raw.until(/ 366 stuck /);
    // From now on nothing is read: the kernel's receive buffer fills, then the server's send
    // buffer, then the server's own queue.
    raw.sock.pause();
    const connectionsBefore = gauge(await a.metrics(), 'parley_connections');
    const destroyed = await watchSocketDestroys();
    try {
      const dropped = flooder.waitFor((m) => m.command === 'QUIT' && fromNick(m) === 'stuck', 60_000);
      let isDropped = false;
      void dropped.then(() => { isDropped = true; }, () => undefined);
      const body = 'x'.repeat(16_000);
      let sent = 0;
      // Bursts of 100 long lines, each waited for (acknowledged), until the server gives up on
      // the reader: about 13 MB (8 MB of queue plus the kernel buffers) must pile up.
      while (!isDropped && sent < 3000) {
        for (let i = 0; i < 100; i++) flooder.send(`PRIVMSG #sq :${sent + i} ${body}`);
        sent += 100;
        await cl.whileAlive(flooder.waitFor((m) => m.command === 'PRIVMSG' && (m.params[1] ?? '').startsWith(`${sent - 1} `), 20_000), 'flooding');
      }
      const quit = await dropped;
      assert.match(quit.params[0] ?? '', /SendQ exceeded/, `the reader left with ${JSON.stringify(quit.params[0])}`);
      const droppedAt = Date.now();

      // The server's end of the connection must be destroyed, with what it still queued, while
      // the client goes on not reading. Only a reset does that; a graceful close of a socket whose
      // peer reads nothing leaves it in the kernel for minutes.
      const gone = await destroyed.waitFor((s) => s.localPort === a.tcpPort && s.sendQ > 0, `destroyed socket on the instance's port ${a.tcpPort} holding unsent data (the dropped reader's)`, 5000);
      const goneMs = Date.now() - droppedAt;
      raw.sock.resume();
      await Promise.race([
        raw.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('the reader does not see its connection closed once it reads')), 5000)),
      ]);
      const connectionsAfter = gauge(await a.metrics(), 'parley_connections');
      assert.equal(connectionsAfter, connectionsBefore - 1, `parley_connections went from ${connectionsBefore} to ${connectionsAfter}`);
      console.log(`# ${sent} lines of 16 kB sent; server socket destroyed ${goneMs} ms after the drop with ${gone.sendQ} bytes unsent; the reader got ${raw.received} bytes`);
      await assertHealthy(a);
    } finally {
      destroyed.close();
      raw.end();
    }
  });
});

/** The sum of a metric's samples (all label sets) in Prometheus text. */
function gauge(text: string, name: string): number {
  const re = new RegExp(`^${escapeRe(name)}(\\{[^}]*\\})? (\\S+)$`, 'gm');
  let sum = 0;
  for (const m of text.matchAll(re)) sum += Number(m[2]);
  return sum;
}
