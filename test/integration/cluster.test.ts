import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { parseMsgid, type IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { etcdKeys } from '@parley/contracts';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';
import { CONFIG_APPLIED } from '../harness/logs.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';

/*
 * Two real `parley server` processes sharing real etcd, Redis and PostgreSQL: they must behave
 * as one IRC server, and survive one of them being killed with nothing acknowledged lost.
 */

const NO_FLOOD_LIMIT = { flood: { linesPerSecond: 0 } };
let services: Services;
let dbUrl: string;
let prefix: string;
let a: ParleyProcess;
let b: ParleyProcess;
const clients: IrcClient[] = [];

async function client(p: ParleyProcess, nick: string, transport: 'tcp' | 'ws' = 'tcp'): Promise<IrcClient> {
  const c = new IrcClient({ transport, host: '127.0.0.1', port: transport === 'tcp' ? p.tcpPort : p.wsPort, nick });
  clients.push(c);
  await c.connect();
  return c;
}


const isPrivmsg = (text: string) => (m: IrcMessage) => m.command === 'PRIVMSG' && m.params[1] === text;

before(async () => {
  services = await startServices();
  prefix = uniqueName('cl');
  dbUrl = await services.postgres!.createDatabase(prefix);
  // These tests send bursts far above the default per-connection flood limit.
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(NO_FLOOD_LIMIT));
  etcd.close();
  [a, b] = await Promise.all([
    spawnParley(services, { id: 'a', prefix, pg: [dbUrl] }),
    spawnParley(services, { id: 'b', prefix, pg: [dbUrl] }),
  ]);
});

after(async () => {
  for (const c of clients) c.destroy();
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await services?.stop();
});

describe('two instances behave as one server', () => {
  it('delivers channel messages in order with the same msgids on both instances', async () => {
    const alice = await client(a, 'alice');
    const bob = await client(b, 'bob');
    await alice.request('JOIN #room');
    await bob.request('JOIN #room');
    await seen(alice, (m) => m.command === 'JOIN' && m.source?.startsWith('bob!') === true);

    const n = 200;
    const seenByBob: IrcMessage[] = [];
    const seenByAlice: IrcMessage[] = [];
    bob.on('message', (m) => { if (m.command === 'PRIVMSG' && m.params[0] === '#room') seenByBob.push(m); });
    alice.on('message', (m) => { if (m.command === 'PRIVMSG' && m.params[0] === '#room') seenByAlice.push(m); });
    // Both send at once: each side must see all 2n messages in one and the same order.
    for (let i = 0; i < n; i++) {
      alice.send(`PRIVMSG #room :a${i}`);
      bob.send(`PRIVMSG #room :b${i}`);
    }
    await seen(alice, isPrivmsg(`b${n - 1}`), 15_000);
    await seen(bob, isPrivmsg(`a${n - 1}`), 15_000);
    await seen(alice, isPrivmsg(`a${n - 1}`), 15_000);
    await seen(bob, isPrivmsg(`b${n - 1}`), 15_000);

    assert.equal(seenByAlice.length, 2 * n);
    assert.equal(seenByBob.length, 2 * n);
    const ids = (l: IrcMessage[]) => l.map((m) => m.tags.msgid);
    const fmt = (l: IrcMessage[]) => l.map((m) => `${m.tags.msgid}:${m.params[1]}`).join(' ');
    assert.deepEqual(ids(seenByAlice), ids(seenByBob), `both sides see the same msgids in the same order\nalice: ${fmt(seenByAlice)}\nbob:   ${fmt(seenByBob)}`);
    const seqs = seenByAlice.map((m) => parseMsgid(m.tags.msgid ?? '')?.seq ?? -1);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'sequence numbers are gap-free and increasing');
    // Each sender's own messages keep their order.
    const texts = seenByBob.map((m) => m.params[1]!);
    assert.deepEqual(texts.filter((t) => t.startsWith('a')), Array.from({ length: n }, (_, i) => `a${i}`));
    assert.deepEqual(texts.filter((t) => t.startsWith('b')), Array.from({ length: n }, (_, i) => `b${i}`));
  });

  it('delivers direct messages across instances', async () => {
    const carol = await client(a, 'carol');
    const dave = await client(b, 'dave', 'ws');
    const echo = await carol.request('PRIVMSG dave :hello dave');
    assert.equal(echo[0]?.command, 'PRIVMSG', 'sender gets the echo as acknowledgement');
    const got = await seen(dave, isPrivmsg('hello dave'));
    assert.equal(got.source?.split('!')[0], 'carol');
    assert.equal(got.tags.msgid, echo[0]?.tags.msgid);
    await dave.request('PRIVMSG carol :hi carol');
    await seen(carol, isPrivmsg('hi carol'));
  });

  it('refuses a nick taken on the other instance', async () => {
    await client(a, 'erin');
    const dup = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: b.tcpPort, nick: 'ERIN' });
    clients.push(dup);
    await assert.rejects(dup.connect(), (err: Error & { reply?: IrcMessage }) => err.reply?.command === '433');
  });

  it('shares channel state: topic, modes and names are visible from both instances', async () => {
    const op = await client(a, 'opal');
    const guest = await client(b, 'gus');
    await op.request('JOIN #state');
    await guest.request('JOIN #state');
    const topicSet = await op.request('TOPIC #state :cluster wide');
    assert.equal(topicSet[0]?.command, 'TOPIC');
    await seen(guest, (m) => m.command === 'TOPIC' && m.params[1] === 'cluster wide');
    const t = await guest.request('TOPIC #state');
    assert.equal(t[0]?.command, '332');
    assert.equal(t[0]?.params[2], 'cluster wide');
    // +t is on: the non-operator on the other instance may not change the topic.
    const refused = await guest.request('TOPIC #state :mine');
    assert.equal(refused[0]?.command, '482');
    const names = await guest.request('NAMES #state');
    assert.match(names[0]?.params[3] ?? '', /@opal/);
    await op.request('MODE #state +o gus');
    await seen(guest, (m) => m.command === 'MODE' && m.params[1] === '+o');
    const ok = await guest.request('KICK #state opal :bye');
    assert.equal(ok[0]?.command, 'KICK');
    await seen(op, (m) => m.command === 'KICK' && m.params[1] === 'opal');
  });
});

describe('configuration', () => {
  it('applies a change in etcd to running instances', async () => {
    const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      const since = { a: a.logs.mark(), b: b.logs.mark() };
      await etcd.put(`/${prefix}/config`).value(JSON.stringify({ ...NO_FLOOD_LIMIT, motd: ['changed live'] }));
      // Each instance logs the line once the new configuration is in force: then a new client
      // must see it, on the first try.
      await Promise.all([
        a.logs.waitForMsg(CONFIG_APPLIED, { since: since.a, timeoutMs: 10_000 }),
        b.logs.waitForMsg(CONFIG_APPLIED, { since: since.b, timeoutMs: 10_000 }),
      ]);
      for (const p of [a, b]) {
        const motd = (await (await client(p, `motd${p.id}`)).connect()).motd;
        assert.ok(motd.some((l) => l.includes('changed live')), `MOTD on ${p.id} was ${JSON.stringify(motd)}`);
      }
    } finally {
      etcd.close();
    }
  });
});

describe('a registration that lapses', () => {
  it('is not taken for a dead instance when it is back within a lease: its users stay', async () => {
    const watcher = await client(a, 'lapsew');
    const lapser = await client(b, 'lapser');
    await watcher.request('JOIN #lapse');
    await lapser.request('JOIN #lapse');
    await seen(watcher, (m) => m.command === 'JOIN' && m.source?.startsWith('lapser!') === true);
    const quits: IrcMessage[] = [];
    watcher.on('message', (m) => {
      if (m.command === 'QUIT') quits.push(m);
    });
    const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      // What a stalled instance looks like from outside: its key expires with its lease, then it
      // registers again (here: put back under its own lease, as its next keep-alive would).
      const key = etcdKeys(prefix).instance('b');
      const kv = (await etcd.get(key).exec()).kvs[0];
      assert.ok(kv, 'b is registered');
      const since = a.logs.mark();
      await etcd.delete().key(key);
      await etcd.put(key).value(kv.value).lease(kv.lease.toString());
      await a.logs.waitForMsg('an instance whose registration lapsed registered again: not cleaned up', { since, timeoutMs: 10_000 });
      await lapser.request('PRIVMSG #lapse :still here');
      await seen(watcher, isPrivmsg('still here'), 5_000);
      assert.deepEqual(quits.map((m) => m.source), [], 'nobody was made to QUIT');
      assert.equal(a.logs.entries.slice(since).filter((e) => e.msg === 'cleaning up after a lost instance').length, 0, 'b was not cleaned up');
    } finally {
      etcd.close();
    }
  });
});

describe('an instance killed with SIGKILL', () => {
  it('its users QUIT within 10 s and every acknowledged message is in history', async () => {
    const stay = await client(a, 'stay');
    const doomed = await client(b, 'doomed');
    await stay.request('JOIN #kill');
    await doomed.request('JOIN #kill');
    await seen(stay, (m) => m.command === 'JOIN' && m.source?.startsWith('doomed!') === true);

    // Send until killed; remember what was acknowledged (echoed) before the kill.
    const acked: string[] = [];
    doomed.on('message', (m) => {
      if (m.command === 'PRIVMSG' && m.params[0] === '#kill') acked.push(m.tags.msgid ?? '');
    });
    for (let i = 0; i < 300; i++) doomed.send(`PRIVMSG #kill :m${i}`);
    await seen(doomed, isPrivmsg('m50'), 10_000);
    const killedAt = Date.now();
    await b.kill9();
    const quit = await seen(stay, (m) => m.command === 'QUIT' && m.source?.startsWith('doomed!') === true, 10_000);
    assert.ok(quit, 'QUIT seen');
    assert.ok(Date.now() - killedAt < 10_000, 'within 10 s');
    assert.ok(acked.length > 0);

    // Reconnect (on the surviving instance) and fetch everything after the first message.
    const back = await client(a, 'doomed2');
    await back.request('JOIN #kill');
    const first = acked[0]!;
    const firstSeq = parseMsgid(first)!.seq;
    const hist = await back.request(`CHATHISTORY AFTER #kill msgid=${first} 1000`);
    const got = hist.filter((m) => m.command === 'PRIVMSG').map((m) => m.tags.msgid ?? '');
    const gotSeqs = got.map((id) => parseMsgid(id)!.seq);
    assert.deepEqual(gotSeqs, gotSeqs.map((_, i) => firstSeq + 1 + i), 'history has no gap');
    for (const id of acked.slice(1)) assert.ok(got.includes(id), `acknowledged ${id} is in history`);
  });
});
