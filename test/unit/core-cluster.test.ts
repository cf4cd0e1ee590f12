/**
 * Cross-instance rules and faults of the chat core, on in-process nodes with memory backends: the
 * bus (presence, outage, gap fill), clean-ups (graceful stop, dead instance, ghost nicks), slow
 * readers, and the process-level error policy.
 */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { parseMsgid } from '@parley/protocol';
import { TestCluster, type TestClient } from './support/core.js';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const text = (m: { params: string[] }) => m.params[m.params.length - 1] ?? '';
const privmsgs = (c: TestClient) => c.messages.filter((m) => m.command === 'PRIVMSG').map(text);
const metric = async (c: TestCluster, i: number, name: string): Promise<number> => {
  const text = await c.node(i).metrics.registry.getSingleMetricAsString(name);
  return [...text.matchAll(/^\S+ (\d+(?:\.\d+)?)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
};

/** The first bus payload that contains `text` never arrives anywhere; `count` says whether it came. */
function dropFirstPayloadWith(cl: TestCluster, text: string): { count: number } {
  const hub = cl.hub as unknown as { take: (t: string, p: string) => void };
  const take = hub.take.bind(cl.hub);
  const lost = { count: 0 };
  hub.take = (topic, payload) => {
    if (lost.count === 0 && payload.includes(text)) {
      lost.count++;
      return;
    }
    take(topic, payload);
  };
  return lost;
}

describe('the bus', () => {
  it('publishes a stored message only when another instance has members of the room', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'solo');
    await a.cmd('JOIN #alone');
    // Past the presence grace period, nobody else is in the room: nothing needs publishing.
    const node = cl.node(0);
    (node.bus as unknown as { openedAt: Map<string, number> }).openedAt.set('r:#alone', 0);
    const before = cl.hub.published;
    for (let i = 0; i < 20; i++) await a.cmd(`PRIVMSG #alone :m${i}`);
    assert.equal(await metric(cl, 0, 'parley_bus_skipped_total'), 20);
    assert.equal(cl.hub.published, before, 'no payload reached the bus');
    // Someone joins on the other instance: from then on messages are published again.
    const b = await cl.client(1, 'joiner');
    await b.cmd('JOIN #alone');
    await a.seen((m) => m.command === 'JOIN' && m.source?.startsWith('joiner!') === true);
    const got = b.next((m) => text(m) === 'now you see it');
    await a.cmd('PRIVMSG #alone :now you see it');
    assert.equal(parseMsgid((await got).tags.msgid ?? '')?.seq, 21);
  });

  it('keeps local rooms working through an outage, and fills the other instance from the store after it', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'oa');
    const b = await cl.client(1, 'ob');
    await a.cmd('JOIN #out');
    await b.cmd('JOIN #out');
    await a.cmd('PRIVMSG #out :before');
    await b.seen((m) => text(m) === 'before');
    cl.hub.setDown(true);
    for (let i = 0; i < 5; i++) {
      const echo = await a.cmd(`PRIVMSG #out :during ${i}`);
      assert.equal(echo[0]?.command, 'PRIVMSG', 'stored and acknowledged while the bus is down');
    }
    const filled = b.next((m) => text(m) === 'during 4', 3000);
    const resynced = once(cl.node(1).events, 'resynced');
    cl.hub.setDown(false);
    await Promise.all([filled, resynced]);
    await a.cmd('PRIVMSG #out :after');
    await b.seen((m) => text(m) === 'after');
    assert.deepEqual(privmsgs(b), ['before', 'during 0', 'during 1', 'during 2', 'during 3', 'during 4', 'after'], 'every message once, in order');
    assert.equal(await metric(cl, 0, 'parley_uncaught_errors_total'), 0);
  });

  it('fills a gap from the store when a published message never arrives', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'ga');
    const b = await cl.client(1, 'gb');
    await a.cmd('JOIN #gap');
    await b.cmd('JOIN #gap');
    // The payload of the next tick is lost on its way (as if the publisher died after its commit).
    const lost = dropFirstPayloadWith(cl, 'lost one');
    await a.cmd('PRIVMSG #gap :lost one');
    await a.cmd('PRIVMSG #gap :next one');
    await a.cmd('PRIVMSG #gap :third one');
    await b.seen((m) => text(m) === 'third one', 3000);
    assert.equal(lost.count, 1);
    assert.deepEqual(privmsgs(b), ['lost one', 'next one', 'third one']);
    assert.ok((await metric(cl, 1, 'parley_gap_fills_total')) >= 1);
  });

  it('a gap whose fill fails (shard unreachable) is read again later and its message delivered late', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'la');
    const b = await cl.client(1, 'lb');
    await a.cmd('JOIN #late');
    await b.cmd('JOIN #late');
    const lost = dropFirstPayloadWith(cl, 'lost one');
    // The first read of the gap fails, as a read of a shard that is down does.
    const store = cl.store as unknown as { after: (...args: unknown[]) => Promise<unknown> };
    const after = store.after.bind(cl.store);
    let failedReads = 0;
    store.after = (...args: unknown[]) => {
      if (failedReads === 0) {
        failedReads++;
        return Promise.reject(new Error('shard 0 is unavailable'));
      }
      return after(...args);
    };
    // The payload of the tick with 'lost one' (and what shares its tick) never arrives.
    await a.cmd('PRIVMSG #late :lost one');
    await a.cmd('PRIVMSG #late :next one');
    await new Promise<void>((resolve) => setImmediate(resolve));
    await a.cmd('PRIVMSG #late :third one');
    await b.seen((m) => text(m) === 'third one', 3000);
    assert.equal(lost.count, 1);
    assert.equal(failedReads, 1);
    const early = privmsgs(b);
    assert.equal(early[early.length - 1], 'third one', 'what was held goes out without waiting for the retry');
    await b.seen((m) => text(m) === 'lost one', 5000);
    await b.seen((m) => text(m) === 'next one', 5000);
    const all = privmsgs(b);
    assert.deepEqual([...all].sort(), ['lost one', 'next one', 'third one'], 'every message once');
  });
});

describe('clean-ups', () => {
  it('a graceful stop: the users of the stopped instance QUIT, and the others see it', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'stays');
    const b = await cl.client(1, 'leaves');
    await a.cmd('JOIN #bye');
    await b.cmd('JOIN #bye');
    const quit = a.next((m) => m.command === 'QUIT');
    await cl.node(1).close();
    const m = await quit;
    assert.equal(m.source?.split('!')[0], 'leaves');
    assert.match(text(m), /Server shutting down/);
    assert.match(b.lines[b.lines.length - 1] ?? '', /^ERROR :Closing Link/);
  });

  it('a dead instance: one survivor releases its users, everyone sees the QUIT, the nicks are free', async () => {
    const cl = (cluster = await TestCluster.start(3));
    const a = await cl.client(0, 'w1');
    const c = await cl.client(2, 'w3');
    const dead = await cl.client(1, 'ghost');
    await a.cmd('JOIN #dead');
    await c.cmd('JOIN #dead');
    await dead.cmd('JOIN #dead');
    const qa = a.next((m) => m.command === 'QUIT');
    const qc = c.next((m) => m.command === 'QUIT');
    await Promise.all([cl.node(0).reapInstance('n2'), cl.node(2).reapInstance('n2')]);
    assert.match(text(await qa), /\*\.net \*\.split/);
    await qc;
    const quits = [...a.messages, ...c.messages].filter((m) => m.command === 'QUIT');
    assert.equal(quits.length, 2, 'exactly one QUIT per surviving member');
    const d = await cl.client(0, 'ghost');
    assert.equal(d.session.nick, 'ghost');
  });

  it('a nick changed while the connection drops is released under its new name (no ghost), 1000 times', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const watcher = await cl.client(1, 'watcher');
    await watcher.cmd('JOIN #race');
    const tries = 1000;
    for (let batch = 0; batch < tries; batch += 100) {
      const clients = await Promise.all(Array.from({ length: 100 }, (_, i) => cl.client(0, `r${batch + i}`)));
      await Promise.all(clients.map((c) => c.cmd('JOIN #race')));
      for (const [i, c] of clients.entries()) {
        c.send(`NICK n${batch + i}`);
        c.hangUp();
      }
    }
    await (cl.node(0).users as unknown as { settled(): Promise<void> }).settled();
    const held = await cl.node(0).state.instanceUsers('n1');
    assert.deepEqual(held, [], 'no nick left claimed by the instance');
    const names = (await watcher.cmd('NAMES #race')).filter((m) => m.command === '353').flatMap((m) => text(m).split(' '));
    assert.deepEqual(names, ['@watcher'], 'only the watcher is left in the channel');
  });

  it('reconcile releases a nick the cluster lists for this instance but no session holds', async () => {
    const cl = (cluster = await TestCluster.start(1));
    const state = cl.node(0).state;
    await state.claimNick({ nick: 'orphan', user: '~u', host: 'h', realname: 'r', inst: 'n1', server: 's', away: null, signon: 0 });
    await state.join('#o', '#o', 'orphan', 10);
    const live = await cl.client(0, 'alive');
    await live.cmd('JOIN #o');
    const quit = live.next((m) => m.command === 'QUIT');
    assert.equal(await cl.node(0).reconcileUsers(), 1);
    assert.equal((await quit).source?.split('!')[0], 'orphan');
    assert.deepEqual(await state.instanceUsers('n1'), ['alive']);
  });

  it('after the cluster state lost its data (Redis restarted empty), the bus coming back puts local users back', async () => {
    const cl = (cluster = await TestCluster.start(2));
    const a = await cl.client(0, 'kept');
    await a.cmd('JOIN #kept');
    await cl.node(0).state.releaseUser('kept', 'n1'); // what an empty Redis looks like
    const b = await cl.client(1, 'asker');
    assert.equal(text((await b.cmd('ISON kept'))[0] ?? { params: [] }), '', 'gone from the cluster state');
    const resynced = once(cl.node(0).events, 'resynced');
    cl.hub.setDown(true);
    cl.hub.setDown(false);
    await resynced;
    assert.equal(text((await b.cmd('ISON kept'))[0] ?? { params: [] }), 'kept');
    assert.ok((await b.cmd('NAMES #kept')).some((m) => text(m).includes('kept')));
  });
});

describe('slow readers', () => {
  it('a client over its send queue is dropped and its transport destroyed at once', async () => {
    const cl = (cluster = await TestCluster.start(1));
    const slow = await cl.client(0, 'slow');
    const fast = await cl.client(0, 'fast');
    await slow.cmd('JOIN #sq');
    await fast.cmd('JOIN #sq');
    slow.buffered = 9 * 1024 * 1024;
    await fast.cmd('PRIVMSG #sq :fill');
    await slow.closedP;
    assert.equal(slow.destroyed, true, 'destroyed, not half-closed');
    assert.equal(await metric(cl, 0, 'parley_disconnects_total'), 1);
  });
});
