/**
 * The ClusterState contract (packages/server/src/cluster/state.ts), as node:test suites that any
 * implementation must pass: `stateContract('RedisClusterState', factory)`. Every test gets a fresh
 * cluster from the factory (a fresh key prefix, or fresh shared data) with as many instances'
 * ClusterStates on it as it asks for; races are real concurrent calls from several of them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClusterState, Member, UserInfo } from '../../packages/server/src/cluster/state.js';

/** One cluster's state, shared by the instances made on it. */
export interface StateCluster {
  /** the started ClusterState of one more instance of this cluster */
  make(): Promise<ClusterState>;
  /** present when the factory was asked for `{ outage: true }` */
  outage?: {
    /** the backend becomes unreachable (for Redis: the server is killed) */
    stop(): Promise<void>;
    /** reachable again at the same address (its data may be gone, as after a Redis restart) */
    restart(): Promise<void>;
  };
  /** releases the cluster; the suite has closed every state it made before */
  close(): Promise<void>;
}

export type StateClusterFactory = (opts: { outage: boolean }) => Promise<StateCluster>;

const TIMEOUT = { timeout: 20_000 };

async function withCluster(
  factory: StateClusterFactory,
  opts: { outage: boolean },
  fn: (node: () => Promise<ClusterState>, cluster: StateCluster) => Promise<void>,
): Promise<void> {
  const cluster = await factory(opts);
  const made: ClusterState[] = [];
  const node = async (): Promise<ClusterState> => {
    const s = await cluster.make();
    made.push(s);
    return s;
  };
  try {
    await fn(node, cluster);
  } finally {
    await Promise.allSettled(made.map((s) => s.close()));
    await cluster.close();
  }
}

function user(nick: string, inst: string, extra: Partial<UserInfo> = {}): UserInfo {
  return {
    nick, user: `u_${nick}`, host: `h-${nick}.example`, realname: `Real ${nick}`, inst, server: `${inst}.parley.local`,
    away: null, signon: 1_700_000_000_123, ...extra,
  };
}

const sorted = (xs: string[]): string[] => [...xs].sort();
const sortedMembers = (ms: Member[]): Member[] => [...ms].sort((a, b) => (a.nick < b.nick ? -1 : a.nick > b.nick ? 1 : 0));
const MAX = 20;

export function stateContract(name: string, factory: StateClusterFactory): void {
  describe(`ClusterState contract: ${name}`, () => {
    it('claimNick: one holder per nick, compared in lower case; getUser(s) return what was claimed', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        const alice = user('Alice', 'i1');
        assert.equal(await s1.claimNick(alice), true);
        assert.equal(await s2.claimNick(user('ALICE', 'i2')), false);
        assert.equal(await s1.claimNick(user('alice', 'i1')), false, 'not even by its own instance');
        assert.deepEqual(await s2.getUser('aLiCe'), alice);
        assert.equal(await s2.getUser('bob'), null);
        assert.equal(await s2.claimNick(user('Bob', 'i2')), true);
        const [a, missing, b] = await s1.getUsers(['alice', 'nobody', 'BOB']);
        assert.deepEqual(a, alice);
        assert.equal(missing, null);
        assert.equal(b?.inst, 'i2');
        assert.deepEqual(await s1.getUsers([]), []);
        assert.deepEqual(await s1.instanceUsers('i1'), ['alice']);
        assert.deepEqual(await s1.instanceUsers('i2'), ['bob']);
        assert.deepEqual(await s1.instanceUsers('i3'), []);
      });
    });

    it('instances claiming one nick at once: exactly one wins each nick', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const nodes = [await node(), await node(), await node()];
        const nicks = Array.from({ length: 20 }, (_, i) => `Racer${i}`);
        const results = await Promise.all(nicks.flatMap((n) => nodes.map((s, i) => s.claimNick(user(i === 1 ? n.toUpperCase() : n, `i${i}`)))));
        for (let k = 0; k < nicks.length; k++) {
          const wins = results.slice(k * 3, k * 3 + 3);
          assert.equal(wins.filter(Boolean).length, 1, `${nicks[k]}: ${JSON.stringify(wins)}`);
          const winner = wins.indexOf(true);
          assert.equal((await nodes[0]!.getUser(nicks[k]!))?.inst, `i${winner}`);
        }
        const held = (await Promise.all([0, 1, 2].map((i) => nodes[0]!.instanceUsers(`i${i}`)))).flat();
        assert.deepEqual(sorted(held), sorted(nicks.map((n) => n.toLowerCase())));
      });
    });

    it('setAway sets and clears; on a nick nobody holds it changes nothing and blocks nothing', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const s = await node();
        await s.claimNick(user('Carol', 'i1'));
        await s.setAway('CAROL', 'gone fishing');
        assert.equal((await s.getUser('carol'))?.away, 'gone fishing');
        await s.setAway('carol', null);
        assert.equal((await s.getUser('carol'))?.away, null);

        await s.setAway('ghost', 'late AWAY after a QUIT');
        assert.equal(await s.getUser('ghost'), null);
        assert.equal(await s.claimNick(user('Ghost', 'i2')), true, 'the nick stays free');
        assert.equal((await s.getUser('ghost'))?.away, null);
      });
    });

    it('changeNick renames everywhere, keeps operator status and frees the old nick', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Dave', 'i1'));
        await s2.claimNick(user('Erin', 'i2'));
        await s1.join('#a', '#A', 'Dave', MAX); // creator: op
        await s2.join('#a', '#A', 'Erin', MAX);
        await s2.join('#b', '#b', 'Erin', MAX);
        await s1.join('#b', '#b', 'Dave', MAX);

        const r = await s1.changeNick('dave', 'David', 'i1');
        assert.equal(r.kind, 'ok');
        assert.deepEqual(r.kind === 'ok' ? sorted(r.channels) : [], ['#a', '#b']);
        assert.equal(await s2.getUser('dave'), null);
        const david = await s2.getUser('david');
        assert.equal(david?.nick, 'David');
        assert.equal(david?.inst, 'i1');
        assert.equal(david?.realname, 'Real Dave');
        assert.deepEqual(sortedMembers(await s2.members('#a')), [{ nick: 'David', op: true }, { nick: 'Erin', op: false }]);
        assert.deepEqual(sortedMembers(await s2.members('#b')), [{ nick: 'David', op: false }, { nick: 'Erin', op: true }]);
        assert.deepEqual(sorted(await s2.userChannels('DAVID')), ['#a', '#b']);
        assert.deepEqual(await s2.userChannels('dave'), []);
        assert.equal(await s2.isMember('#a', 'dave'), false);
        assert.equal(await s2.isMember('#a', 'david'), true);
        assert.deepEqual(await s2.instanceUsers('i1'), ['david']);
        assert.equal(await s2.claimNick(user('Dave', 'i2')), true, 'the old nick is free');

        // Case only: same key, new display form.
        const c = await s1.changeNick('david', 'DAVID', 'i1');
        assert.equal(c.kind, 'ok');
        assert.equal((await s2.getUser('david'))?.nick, 'DAVID');
        assert.deepEqual(sortedMembers(await s2.members('#a')), [{ nick: 'DAVID', op: true }, { nick: 'Erin', op: false }]);
        assert.deepEqual(await s2.instanceUsers('i1'), ['david']);

        // A user in no channel.
        await s1.claimNick(user('Lone', 'i1'));
        assert.deepEqual(await s1.changeNick('lone', 'Loner', 'i1'), { kind: 'ok', channels: [] });
      });
    });

    it('changeNick: taken by another user, or not held by the calling instance, changes nothing', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Frank', 'i1'));
        await s2.claimNick(user('Grace', 'i2'));
        await s1.join('#c', '#c', 'Frank', MAX);
        assert.deepEqual(await s1.changeNick('frank', 'GRACE', 'i1'), { kind: 'taken' });
        assert.equal((await s1.getUser('grace'))?.inst, 'i2');
        assert.equal((await s1.getUser('frank'))?.nick, 'Frank');

        // i2 does not hold frank (e.g. frank was reaped and claimed again by i1).
        assert.deepEqual(await s2.changeNick('frank', 'Hijack', 'i2'), { kind: 'taken' });
        assert.equal(await s1.getUser('hijack'), null);
        assert.equal((await s1.getUser('frank'))?.inst, 'i1');
        assert.deepEqual(await s1.members('#c'), [{ nick: 'Frank', op: true }]);
        assert.deepEqual(await s1.instanceUsers('i2'), ['grace']);

        // A nick nobody holds.
        assert.deepEqual(await s1.changeNick('nobody', 'Somebody', 'i1'), { kind: 'taken' });
        assert.equal(await s1.getUser('somebody'), null);
      });
    });

    it('two users changing to one new nick at once: one gets it, the other is told taken', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Heidi', 'i1'));
        await s2.claimNick(user('Ivan', 'i2'));
        const [a, b] = await Promise.all([s1.changeNick('heidi', 'Prize', 'i1'), s2.changeNick('ivan', 'PRIZE', 'i2')]);
        assert.deepEqual([a.kind, b.kind].sort(), ['ok', 'taken']);
        const winner = a.kind === 'ok' ? 'i1' : 'i2';
        assert.equal((await s1.getUser('prize'))?.inst, winner);
        assert.notEqual(await s1.getUser(winner === 'i1' ? 'ivan' : 'heidi'), null, 'the loser keeps its nick');
      });
    });

    it('releaseUser: only for the instance holding the nick; leaves every channel, drops emptied ones', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Judy', 'i1'));
        await s2.claimNick(user('Karl', 'i2'));
        await s1.join('#shared', '#Shared', 'Judy', MAX);
        await s2.join('#shared', '#Shared', 'Karl', MAX);
        await s1.join('#solo', '#solo', 'Judy', MAX);

        assert.deepEqual(await s2.releaseUser('judy', 'i2'), [], 'i2 does not hold judy');
        assert.equal((await s1.getUser('judy'))?.inst, 'i1');
        assert.deepEqual(sorted(await s1.userChannels('judy')), ['#shared', '#solo']);

        assert.deepEqual(sorted(await s1.releaseUser('JUDY', 'i1')), ['#shared', '#solo']);
        assert.equal(await s1.getUser('judy'), null);
        assert.deepEqual(await s1.userChannels('judy'), []);
        assert.deepEqual(await s1.members('#shared'), [{ nick: 'Karl', op: false }]);
        assert.equal(await s1.channel('#solo'), null, 'emptied channel dropped');
        assert.deepEqual(await s1.listChannels(), ['#shared']);
        assert.deepEqual(await s1.instanceUsers('i1'), []);
        assert.deepEqual(await s1.releaseUser('judy', 'i1'), [], 'twice: nothing more');
        assert.equal(await s2.claimNick(user('Judy', 'i2')), true);
      });
    });

    it('releaseUser by an instance that lost the nick removes it from its own list only (the reaper case)', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Leo', 'i1'));
        await s1.releaseUser('leo', 'i1');
        await s2.claimNick(user('Leo', 'i2'));
        await s2.join('#x', '#x', 'Leo', MAX);
        assert.deepEqual(await s1.releaseUser('leo', 'i1'), []);
        assert.equal((await s1.getUser('leo'))?.inst, 'i2');
        assert.deepEqual(await s1.members('#x'), [{ nick: 'Leo', op: true }]);
        assert.deepEqual(await s1.instanceUsers('i2'), ['leo']);
      });
    });

    it('join: the first member creates the channel and is its operator; already; too many', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        const before = Date.now();
        const j = await s1.join('#rust', '#Rust', 'Mallory', 2);
        const after = Date.now();
        assert.equal(j.kind, 'joined');
        if (j.kind !== 'joined') return;
        assert.equal(j.created, true);
        assert.equal(j.op, true);
        assert.deepEqual({ ...j.channel, created: 0 }, { name: '#Rust', topic: '', topicBy: '', topicAt: 0, modes: 'nt', created: 0 });
        assert.ok(j.channel.created >= before && j.channel.created <= after, 'created is the join time');
        assert.deepEqual(await s2.channel('#rust'), j.channel);

        const j2 = await s2.join('#rust', '#RUST', 'Niaj', 2);
        assert.equal(j2.kind, 'joined');
        if (j2.kind !== 'joined') return;
        assert.equal(j2.created, false);
        assert.equal(j2.op, false);
        assert.equal(j2.channel.name, '#Rust', 'the first display form stays');

        assert.deepEqual(await s2.join('#rust', '#rust', 'MALLORY', 2), { kind: 'already' });
        assert.equal((await s1.join('#go', '#go', 'mallory', 2)).kind, 'joined');
        assert.deepEqual(await s1.join('#zig', '#zig', 'Mallory', 2), { kind: 'too-many' });
        assert.equal(await s1.channel('#zig'), null, 'refused join creates nothing');
        assert.deepEqual(sorted(await s1.userChannels('mallory')), ['#go', '#rust']);
        assert.deepEqual(sortedMembers(await s1.members('#rust')), [{ nick: 'Mallory', op: true }, { nick: 'Niaj', op: false }]);
      });
    });

    it('many instances joining a new channel at once: exactly one creates it and is operator', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const nodes = [await node(), await node(), await node()];
        const nicks = Array.from({ length: 12 }, (_, i) => `J${i}`);
        const results = await Promise.all(nicks.map((n, i) => nodes[i % 3]!.join('#race', '#race', n, MAX)));
        const joined = results.filter((r) => r.kind === 'joined');
        assert.equal(joined.length, nicks.length);
        assert.equal(joined.filter((r) => r.kind === 'joined' && r.created).length, 1);
        assert.equal(joined.filter((r) => r.kind === 'joined' && r.op).length, 1);
        const ops = (await nodes[0]!.members('#race')).filter((m) => m.op).map((m) => m.nick);
        const creator = nicks[results.findIndex((r) => r.kind === 'joined' && r.created)];
        assert.deepEqual(ops, [creator]);
        assert.deepEqual(await nodes[1]!.memberCounts(['#race']), [nicks.length]);
      });
    });

    it('part: results; the last member leaving deletes the channel; joining again creates it anew', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        assert.equal(await s1.part('#none', 'olivia'), 'no-channel');
        await s1.join('#p', '#p', 'Olivia', MAX);
        await s2.join('#p', '#p', 'Peggy', MAX);
        assert.equal(await s1.part('#p', 'trent'), 'not-on-channel');
        assert.equal(await s1.part('#p', 'OLIVIA'), 'ok');
        assert.equal(await s1.part('#p', 'olivia'), 'not-on-channel');
        assert.deepEqual(await s1.userChannels('olivia'), []);
        assert.deepEqual(await s1.members('#p'), [{ nick: 'Peggy', op: false }], 'nobody is made operator');
        assert.equal(await s2.part('#p', 'peggy'), 'ok');
        assert.equal(await s1.channel('#p'), null);
        assert.deepEqual(await s1.members('#p'), []);
        assert.deepEqual(await s1.listChannels(), []);
        assert.equal(await s1.part('#p', 'peggy'), 'no-channel');
        const again = await s2.join('#p', '#P', 'Peggy', MAX);
        assert.equal(again.kind === 'joined' && again.created && again.op, true);
        assert.equal((await s1.channel('#p'))?.name, '#P');
      });
    });

    it('join racing the last part: the channel ends consistent (creator and operator agree)', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        for (let i = 0; i < 10; i++) {
          const chan = `#jp${i}`;
          await s1.join(chan, chan, 'Quinn', MAX);
          await s1.setTopic(chan, 'quinn', 'old topic', 'Quinn', 1);
          const [p, j] = await Promise.all([s1.part(chan, 'quinn'), s2.join(chan, chan, 'Rupert', MAX)]);
          assert.equal(p, 'ok');
          assert.equal(j.kind, 'joined');
          if (j.kind !== 'joined') return;
          assert.equal(j.created, j.op);
          assert.deepEqual(await s1.members(chan), [{ nick: 'Rupert', op: j.op }]);
          const ch = await s1.channel(chan);
          assert.equal(ch?.topic, j.created ? '' : 'old topic', 'a recreated channel starts afresh');
        }
      });
    });

    it('kick: results; only operators; the kicked leaves; the last one out drops the channel', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        assert.equal(await s1.kick('#k', 'sybil', 'ted'), 'no-channel');
        await s1.join('#k', '#k', 'Sybil', MAX);
        await s2.join('#k', '#k', 'Ted', MAX);
        await s2.join('#k', '#k', 'Uma', MAX);
        assert.equal(await s1.kick('#k', 'victor', 'ted'), 'not-on-channel');
        assert.equal(await s2.kick('#k', 'ted', 'uma'), 'not-op');
        assert.equal(await s1.kick('#k', 'SYBIL', 'walter'), 'target-not-on-channel');
        assert.equal(await s1.kick('#k', 'sybil', 'TED'), 'ok');
        assert.deepEqual(await s1.userChannels('ted'), []);
        assert.equal(await s1.isMember('#k', 'ted'), false);
        assert.deepEqual(sortedMembers(await s1.members('#k')), [{ nick: 'Sybil', op: true }, { nick: 'Uma', op: false }]);
        assert.equal(await s1.kick('#k', 'sybil', 'uma'), 'ok');
        assert.equal(await s1.kick('#k', 'sybil', 'sybil'), 'ok', 'an operator may kick itself');
        assert.equal(await s1.channel('#k'), null);
        assert.deepEqual(await s1.listChannels(), []);
      });
    });

    it('setTopic: results, +t limits it to operators, -t opens it to members', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        assert.equal(await s1.setTopic('#t', 'xena', 'x', 'Xena', 1), 'no-channel');
        await s1.join('#t', '#t', 'Xena', MAX);
        await s2.join('#t', '#t', 'Yuri', MAX);
        assert.equal(await s2.setTopic('#t', 'zed', 'x', 'Zed', 1), 'not-on-channel');
        assert.equal(await s2.setTopic('#t', 'yuri', 'x', 'Yuri', 1), 'not-op');
        assert.equal(await s1.setTopic('#t', 'XENA', 'Welcome — ✓', 'Xena!x@h', 1_700_000_000_555), 'ok');
        const ch = await s2.channel('#t');
        assert.deepEqual([ch?.topic, ch?.topicBy, ch?.topicAt], ['Welcome — ✓', 'Xena!x@h', 1_700_000_000_555]);
        await s1.setModes('#t', 'xena', [{ add: false, mode: 't' }]);
        assert.equal(await s2.setTopic('#t', 'yuri', '', 'Yuri', 1_700_000_000_999), 'ok');
        assert.deepEqual(await s1.channel('#t').then((c) => [c?.topic, c?.topicBy]), ['', 'Yuri']);
      });
    });

    it('setModes: results; only effective changes are reported; unknown nicks are listed as missing', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        assert.deepEqual(await s1.setModes('#m', 'amy', [{ add: true, mode: 't' }]), { kind: 'no-channel' });
        await s1.join('#m', '#m', 'Amy', MAX);
        await s2.join('#m', '#m', 'Ben', MAX);
        assert.deepEqual(await s2.setModes('#m', 'ben', [{ add: false, mode: 't' }]), { kind: 'not-op' });
        assert.deepEqual(await s2.setModes('#m', 'cat', [{ add: false, mode: 't' }]), { kind: 'not-op' }, 'a non-member is not an operator');
        assert.deepEqual(await s1.setModes('#m', 'amy', []), { kind: 'ok', applied: [], missing: [], full: [] });

        const r = await s1.setModes('#m', 'AMY', [
          { add: true, mode: 't' }, // already set: not reported
          { add: false, mode: 'n' },
          { add: false, mode: 'n' }, // already removed by the previous change
          { add: true, mode: 'o', nick: 'BEN' },
          { add: true, mode: 'o', nick: 'ben' }, // already op now
          { add: true, mode: 'o', nick: 'Nobody' },
          { add: false, mode: 'o', nick: 'amy' },
        ]);
        assert.deepEqual(r, {
          kind: 'ok',
          applied: [{ add: false, mode: 'n' }, { add: true, mode: 'o', nick: 'Ben' }, { add: false, mode: 'o', nick: 'Amy' }],
          missing: ['nobody'],
          full: [],
        });
        assert.equal((await s1.channel('#m'))?.modes, 't');
        assert.deepEqual(sortedMembers(await s1.members('#m')), [{ nick: 'Amy', op: false }, { nick: 'Ben', op: true }]);
        assert.deepEqual(await s1.setModes('#m', 'amy', [{ add: true, mode: 'n' }]), { kind: 'not-op' }, 'amy deopped herself');
        const back = await s2.setModes('#m', 'ben', [{ add: true, mode: 'n' }, { add: false, mode: 't' }, { add: true, mode: 't' }]);
        assert.deepEqual(back, { kind: 'ok', applied: [{ add: true, mode: 'n' }, { add: false, mode: 't' }, { add: true, mode: 't' }], missing: [], full: [] });
        assert.deepEqual(sorted([...((await s1.channel('#m'))?.modes ?? '')]), ['n', 't']);
      });
    });

    it('queries answer for missing and present channels alike', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.join('#q1', '#Q1', 'Dan', MAX);
        await s2.join('#q1', '#Q1', 'Eve', MAX);
        await s2.join('#q2', '#q2', 'Eve', MAX);
        const [c1, none, c2] = await s1.channels(['#q1', '#none', '#q2']);
        assert.equal(c1?.name, '#Q1');
        assert.equal(none, null);
        assert.equal(c2?.name, '#q2');
        assert.deepEqual(await s1.channels([]), []);
        assert.deepEqual(await s1.memberCounts(['#q1', '#none', '#q2']), [2, 0, 1]);
        assert.deepEqual(await s1.memberCounts([]), []);
        assert.equal(await s1.isMember('#q1', 'EVE'), true);
        assert.equal(await s1.isMember('#q2', 'dan'), false);
        assert.equal(await s1.isMember('#none', 'dan'), false);
        assert.deepEqual(await s1.members('#none'), []);
        assert.equal(await s1.channel('#none'), null);
        assert.deepEqual(sorted(await s2.listChannels()), ['#q1', '#q2']);
        assert.deepEqual(await s1.userChannels('nobody'), []);
      });
    });

    it('instances: known until forgotten; one reaper per dead instance; its users listed until forgotten', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const nodes = [await node(), await node(), await node()];
        await nodes[0]!.addInstance('dead');
        await nodes[1]!.addInstance('i1');
        await nodes[1]!.addInstance('i1');
        assert.deepEqual(sorted(await nodes[2]!.knownInstances()), ['dead', 'i1']);
        await nodes[0]!.claimNick(user('Fay', 'dead'));
        await nodes[0]!.claimNick(user('Gus', 'dead'));
        assert.equal(await nodes[1]!.reapInProgress('dead'), false);

        const claims = await Promise.all(nodes.flatMap((s) => [s.claimReap('dead'), s.claimReap('dead')]));
        assert.equal(claims.filter(Boolean).length, 1, JSON.stringify(claims));
        assert.equal(await nodes[2]!.reapInProgress('dead'), true);
        assert.equal(await nodes[2]!.claimReap('dead'), false);
        assert.equal(await nodes[2]!.reapInProgress('i1'), false, 'claims are per instance');

        const reaper = nodes[Math.floor(claims.indexOf(true) / 2)]!;
        const users = await reaper.instanceUsers('dead');
        assert.deepEqual(sorted(users), ['fay', 'gus']);
        for (const n of users) await reaper.releaseUser(n, 'dead');
        assert.deepEqual(await reaper.instanceUsers('dead'), []);
        await reaper.forgetInstance('dead');
        assert.deepEqual(await nodes[0]!.knownInstances(), ['i1']);
        assert.equal(await nodes[0]!.reapInProgress('dead'), false);
        assert.equal(await nodes[0]!.getUser('fay'), null);

        // A later process reusing the id can be cleaned up again.
        await nodes[0]!.addInstance('dead');
        await nodes[0]!.claimNick(user('Hal', 'dead'));
        assert.equal(await nodes[1]!.claimReap('dead'), true);
        await nodes[1]!.forgetInstance('dead');
        assert.deepEqual(await nodes[1]!.instanceUsers('dead'), [], 'forgetting drops the list (users stay until released)');
        assert.equal((await nodes[1]!.getUser('hal'))?.inst, 'dead');
        await nodes[1]!.forgetInstance('never-known');
      });
    });

    it('setModes: voice, key, limit, flags, lists with their cap; the services (null) need no status', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        await s1.join('#v', '#v', 'Vic', MAX);
        await s2.join('#v', '#v', 'Wes', MAX);
        const r = await s1.setModes('#v', 'vic', [
          { add: true, mode: 'v', nick: 'WES' }, { add: true, mode: 'v', nick: 'wes' },
          { add: true, mode: 'k', arg: 'sesame' }, { add: true, mode: 'l', arg: '5' }, { add: true, mode: 'l', arg: '5' },
          { add: true, mode: 'm' }, { add: true, mode: 's' }, { add: true, mode: 'i' },
          { add: true, mode: 'b', arg: 'bad!*@*' }, { add: true, mode: 'b', arg: 'BAD!*@*' },
          { add: true, mode: 'e', arg: '$a:good' }, { add: true, mode: 'I', arg: '*!*@10.*' },
        ], 'Vic!u@h', 1_700_000_000_000);
        assert.deepEqual(r, {
          kind: 'ok',
          applied: [
            { add: true, mode: 'v', nick: 'Wes' }, { add: true, mode: 'k', arg: 'sesame' }, { add: true, mode: 'l', arg: '5' },
            { add: true, mode: 'm' }, { add: true, mode: 's' }, { add: true, mode: 'i' },
            { add: true, mode: 'b', arg: 'bad!*@*' }, { add: true, mode: 'e', arg: '$a:good' }, { add: true, mode: 'I', arg: '*!*@10.*' },
          ],
          missing: [],
          full: [],
        });
        const ch = await s2.channel('#v');
        assert.deepEqual(sorted([...(ch?.modes ?? '')]), ['i', 'k', 'l', 'm', 'n', 's', 't']);
        assert.deepEqual([ch?.key, ch?.limit, ch?.secret], ['sesame', 5, true]);
        assert.deepEqual(sortedMembers(await s2.members('#v')), [{ nick: 'Vic', op: true }, { nick: 'Wes', op: false, voice: true }]);
        const lists = (await s2.listModes('#v')).map((e) => `${e.mode} ${e.mask} ${e.setBy} ${e.setAt}`);
        assert.deepEqual(sorted(lists), ['I *!*@10.* Vic!u@h 1700000000000', 'b bad!*@* Vic!u@h 1700000000000', 'e $a:good Vic!u@h 1700000000000']);

        // op and voice together, kept across a nick change
        await s1.setModes('#v', 'vic', [{ add: true, mode: 'o', nick: 'wes' }]);
        await s2.claimNick(user('Wes', 'i2'));
        await s2.changeNick('wes', 'Wesley', 'i2');
        assert.deepEqual(sortedMembers(await s1.members('#v')), [{ nick: 'Vic', op: true }, { nick: 'Wesley', op: true, voice: true }]);

        const off = await s2.setModes('#v', 'wesley', [
          { add: false, mode: 'k', arg: 'whatever' }, { add: false, mode: 'k' }, { add: false, mode: 'l' }, { add: false, mode: 's' },
          { add: false, mode: 'b', arg: 'BAD!*@*' }, { add: false, mode: 'b', arg: 'never!*@*' }, { add: false, mode: 'v', nick: 'wesley' },
        ]);
        assert.deepEqual(off, {
          kind: 'ok',
          applied: [{ add: false, mode: 'k', arg: '*' }, { add: false, mode: 'l' }, { add: false, mode: 's' }, { add: false, mode: 'b', arg: 'bad!*@*' }, { add: false, mode: 'v', nick: 'Wesley' }],
          missing: [],
          full: [],
        });
        const after = await s1.channel('#v');
        assert.deepEqual([after?.key, after?.limit, after?.secret], [undefined, undefined, undefined]);

        const many = Array.from({ length: 101 }, (_, i) => ({ add: true, mode: 'b' as const, arg: `n${i}!*@*` }));
        const capped = await s1.setModes('#v', null, many, 'ChanServ', 1);
        assert.equal(capped.kind === 'ok' && capped.applied.length, 100);
        assert.deepEqual(capped.kind === 'ok' && capped.full, ['n100!*@*']);
        assert.deepEqual(await s1.setModes('#none', null, [{ add: true, mode: 'm' }]), { kind: 'no-channel' });
      });
    });

    it('join checks: bans (masks and $a:) with exceptions, +i with INVITE (used up) and +I, +k, +l; none without a check', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        const as = (nick: string, account: string | null = null, key: string | null = null) => ({ source: `${nick}!~u@10.0.0.${nick.length}`, account, key });
        await s1.join('#j', '#j', 'Op', MAX, as('Op'));
        await s1.setModes('#j', 'op', [{ add: true, mode: 'b', arg: 'troll*!*@*' }, { add: true, mode: 'b', arg: '$a:spam*' }, { add: true, mode: 'e', arg: 'trollfriend!*@*' }]);
        assert.deepEqual(await s2.join('#j', '#j', 'Troll', MAX, as('Troll')), { kind: 'banned' });
        assert.deepEqual(await s2.join('#j', '#j', 'Nice', MAX, as('Nice', 'SpamKing')), { kind: 'banned' }, '$a: matches the account');
        assert.equal((await s2.join('#j', '#j', 'TrollFriend', MAX, as('TrollFriend'))).kind, 'joined', 'an exception lets in');
        assert.equal((await s2.join('#j', '#j', 'Guest', MAX, as('Guest'))).kind, 'joined', '$a: never matches a guest');
        assert.equal(await s2.isMember('#j', 'troll'), false);

        await s1.setModes('#j', 'op', [{ add: true, mode: 'i' }, { add: true, mode: 'I', arg: 'bob!*@10.*' }]);
        assert.deepEqual(await s2.join('#j', '#j', 'Amy', MAX, as('Amy')), { kind: 'invite-only' });
        assert.equal((await s2.join('#j', '#j', 'Bob', MAX, as('Bob'))).kind, 'joined', '+I matches');
        assert.equal(await s2.invite('#j', 'guest', 'amy'), 'not-op', 'on +i only operators invite');
        assert.equal(await s2.invite('#j', 'nobody', 'amy'), 'not-on-channel');
        assert.equal(await s2.invite('#j', 'op', 'bob'), 'already-on');
        assert.equal(await s2.invite('#none', 'op', 'amy'), 'no-channel');
        assert.equal(await s1.invite('#j', 'OP', 'Amy'), 'ok');
        assert.equal((await s2.join('#j', '#j', 'Amy', MAX, as('Amy'))).kind, 'joined');
        await s2.part('#j', 'amy');
        assert.deepEqual(await s2.join('#j', '#j', 'Amy', MAX, as('Amy')), { kind: 'invite-only' }, 'the invite was used up');
        assert.equal(await s1.invite('#j', 'op', 'troll'), 'ok');
        assert.equal((await s2.join('#j', '#j', 'Troll', MAX, as('Troll'))).kind, 'joined', 'an invite passes a ban too');

        await s1.setModes('#j', 'op', [{ add: false, mode: 'i' }, { add: true, mode: 'k', arg: 'pw' }]);
        assert.equal(await s1.invite('#j', 'op', 'cy'), 'ok');
        assert.deepEqual(await s2.join('#j', '#j', 'Cy', MAX, as('Cy')), { kind: 'bad-key' }, 'an invite does not pass +k (as on Ergo)');
        assert.deepEqual(await s2.join('#j', '#j', 'Cy', MAX, as('Cy')), { kind: 'bad-key' });
        assert.deepEqual(await s2.join('#j', '#j', 'Cy', MAX, as('Cy', null, 'PW')), { kind: 'bad-key' }, 'keys are case-sensitive');
        assert.equal((await s2.join('#j', '#j', 'Cy', MAX, as('Cy', null, 'pw'))).kind, 'joined');
        const n = (await s1.memberCounts(['#j']))[0] ?? 0;
        await s1.setModes('#j', 'op', [{ add: false, mode: 'k' }, { add: true, mode: 'l', arg: String(n) }]);
        assert.deepEqual(await s2.join('#j', '#j', 'Dee', MAX, as('Dee')), { kind: 'full' });
        assert.equal((await s2.join('#j', '#j', 'Dee', MAX)).kind, 'joined', 'without a check (re-asserting members) nothing is checked');
        assert.equal(await s1.channel('#gone'), null);
        assert.deepEqual(await s2.join('#gone', '#gone', 'Amy', MAX, as('Amy')).then((r) => r.kind), 'joined', 'a new channel has no rules');
      });
    });

    it('registered channels: founder and access get their status on join, nobody else; empty, they keep modes, topic and lists', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        const as = (nick: string, account: string | null = null) => ({ source: `${nick}!~u@h`, account, key: null });
        assert.equal(await s1.registerChannel('#own', 'fay', 'Fay', 1), 'no-channel');
        await s1.join('#own', '#Own', 'Fay', MAX, as('Fay', 'Fay'));
        await s2.join('#own', '#Own', 'Gil', MAX, as('Gil'));
        assert.equal(await s2.registerChannel('#own', 'gil', 'Gil', 1), 'not-op');
        assert.equal(await s1.registerChannel('#own', 'FAY', 'Fay', 1_700_000_000_000), 'ok');
        assert.equal(await s1.registerChannel('#own', 'fay', 'Fay', 2), 'exists');
        assert.equal(await s1.setAccess('#own', 'Hal', 'op'), true);
        assert.equal(await s1.setAccess('#own', 'ida', 'voice'), true);
        assert.equal(await s1.setAccess('#unregistered', 'ida', 'voice'), false);
        assert.deepEqual(await s2.registration('#own'), { founder: 'fay', registeredAt: 1_700_000_000_000, access: { hal: 'op', ida: 'voice' } });
        assert.equal(await s2.registration('#unregistered'), null);

        await s1.setTopic('#own', 'fay', 'owned', 'Fay!u@h', 5);
        await s1.setModes('#own', 'fay', [{ add: true, mode: 'b', arg: 'x!*@*' }, { add: true, mode: 'k', arg: 'pw' }, { add: true, mode: 's' }]);
        await s1.part('#own', 'fay');
        await s2.part('#own', 'gil');
        assert.equal(await s1.channel('#own'), null, 'empty: gone from the channel list');
        assert.deepEqual(await s1.listChannels(), []);
        assert.deepEqual((await s1.listModes('#own')).map((e) => e.mask), ['x!*@*'], 'the lists stay');

        assert.deepEqual(await s2.join('#own', '#own', 'Gil', MAX, as('Gil')), { kind: 'bad-key' }, 'the key stays');
        const gil = await s2.join('#own', '#own', 'Gil', MAX, { ...as('Gil'), key: 'pw' });
        assert.equal(gil.kind, 'joined');
        if (gil.kind !== 'joined') return;
        assert.deepEqual([gil.created, gil.op, gil.voice, gil.channel.name, gil.channel.topic, gil.channel.key, gil.channel.secret], [true, false, false, '#Own', 'owned', 'pw', true]);
        const fay = await s1.join('#own', '#own', 'Fay', MAX, as('Fay', 'FAY'));
        assert.deepEqual(fay.kind === 'joined' && [fay.op, fay.voice], [true, false], 'the founder regains ops, past the key');
        const hal = await s1.join('#own', '#own', 'Hal', MAX, as('Hal', 'hal'));
        assert.deepEqual(hal.kind === 'joined' && [hal.op, hal.voice], [true, false]);
        const ida = await s1.join('#own', '#own', 'Ida', MAX, { ...as('Ida', 'ida'), key: 'pw' });
        assert.deepEqual(ida.kind === 'joined' && [ida.op, ida.voice], [false, true]);
        assert.equal(await s1.setAccess('#own', 'hal', null), true);
        assert.deepEqual((await s1.registration('#own'))?.access, { ida: 'voice' });

        assert.equal(await s1.dropRegistration('#own'), true);
        assert.equal(await s1.dropRegistration('#own'), false);
        for (const n of ['gil', 'fay', 'hal', 'ida']) await s1.part('#own', n);
        assert.deepEqual(await s1.listModes('#own'), [], 'unregistered and empty: all gone');
        const again = await s2.join('#own', '#own', 'Gil', MAX, as('Gil'));
        assert.deepEqual(again.kind === 'joined' && [again.created, again.op, again.channel.topic], [true, true, '']);
      });
    });

    it('server bans and user updates', TIMEOUT, async () => {
      await withCluster(factory, { outage: false }, async (node) => {
        const [s1, s2] = [await node(), await node()];
        const ban = { mask: '*!*@10.9.*', reason: 'go away now', setBy: 'oper', setAt: 1_700_000_000_000 };
        assert.equal(await s1.addServerBan(ban), true);
        assert.equal(await s2.addServerBan({ ...ban, mask: '*!*@10.9.*'.toUpperCase() }), false);
        assert.deepEqual(await s2.serverBans(), [ban]);
        assert.equal(await s2.removeServerBan('*!*@10.9.*'), true);
        assert.equal(await s2.removeServerBan('*!*@10.9.*'), false);
        assert.deepEqual(await s1.serverBans(), []);

        await s1.claimNick(user('Uma', 'i1', { modes: 'B' }));
        assert.equal((await s2.getUser('uma'))?.modes, 'B');
        await s2.updateUser('UMA', { realname: 'New Name', modes: 'Bo' });
        const u = await s1.getUser('uma');
        assert.deepEqual([u?.realname, u?.modes], ['New Name', 'Bo']);
        await s2.updateUser('uma', { modes: '' });
        assert.equal((await s1.getUser('uma'))?.modes, undefined);
        await s2.updateUser('ghost', { realname: 'x' });
        assert.equal(await s1.getUser('ghost'), null, 'no stub for a nick nobody holds');
      });
    });

    it('outage: every operation rejects (none hangs), and works again once the backend is back', TIMEOUT, async () => {
      await withCluster(factory, { outage: true }, async (node, cluster) => {
        const outage = cluster.outage;
        assert.ok(outage, 'the factory gives an outage control when asked');
        const [s1, s2] = [await node(), await node()];
        await s1.claimNick(user('Ivy', 'i1'));
        await s1.join('#o', '#o', 'Ivy', MAX);

        await outage.stop();
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['claimNick', () => s1.claimNick(user('Jon', 'i1'))],
          ['changeNick', () => s1.changeNick('ivy', 'Ivy2', 'i1')],
          ['releaseUser', () => s1.releaseUser('ivy', 'i1')],
          ['getUser', () => s2.getUser('ivy')],
          ['getUsers', () => s2.getUsers(['ivy'])],
          ['setAway', () => s1.setAway('ivy', 'x')],
          ['userChannels', () => s2.userChannels('ivy')],
          ['join', () => s2.join('#o', '#o', 'Kim', MAX)],
          ['part', () => s1.part('#o', 'ivy')],
          ['kick', () => s1.kick('#o', 'ivy', 'kim')],
          ['setTopic', () => s1.setTopic('#o', 'ivy', 't', 'Ivy', 1)],
          ['setModes', () => s1.setModes('#o', 'ivy', [{ add: true, mode: 'n' }])],
          ['listModes', () => s1.listModes('#o')],
          ['invite', () => s1.invite('#o', 'ivy', 'kim')],
          ['registerChannel', () => s1.registerChannel('#o', 'ivy', 'ivy', 1)],
          ['registration', () => s1.registration('#o')],
          ['setAccess', () => s1.setAccess('#o', 'ivy', 'op')],
          ['dropRegistration', () => s1.dropRegistration('#o')],
          ['addServerBan', () => s1.addServerBan({ mask: 'x!*@*', reason: 'r', setBy: 'o', setAt: 1 })],
          ['removeServerBan', () => s1.removeServerBan('x!*@*')],
          ['serverBans', () => s1.serverBans()],
          ['updateUser', () => s1.updateUser('ivy', { realname: 'x' })],
          ['channel', () => s2.channel('#o')],
          ['channels', () => s2.channels(['#o'])],
          ['members', () => s2.members('#o')],
          ['memberCounts', () => s2.memberCounts(['#o'])],
          ['isMember', () => s2.isMember('#o', 'ivy')],
          ['listChannels', () => s2.listChannels()],
          ['addInstance', () => s2.addInstance('i2')],
          ['knownInstances', () => s2.knownInstances()],
          ['claimReap', () => s2.claimReap('i9')],
          ['instanceUsers', () => s2.instanceUsers('i1')],
          ['reapInProgress', () => s2.reapInProgress('i9')],
          ['forgetInstance', () => s2.forgetInstance('i9')],
        ];
        const t0 = performance.now();
        const results = await Promise.allSettled(calls.map(([, f]) => f()));
        const ms = performance.now() - t0;
        results.forEach((r, i) => {
          assert.equal(r.status, 'rejected', `${calls[i]![0]} while down`);
          if (r.status === 'rejected') assert.ok(r.reason instanceof Error, `${calls[i]![0]} rejects with an Error`);
        });
        assert.ok(ms < 5000, `all rejected within ${ms.toFixed(0)} ms`);

        await outage.restart();
        // The data may be gone (a Redis restart without persistence): work on fresh names.
        assert.equal(await s2.claimNick(user('Lou', 'i2')), true);
        const j = await s2.join('#after', '#after', 'Lou', MAX);
        assert.equal(j.kind === 'joined' && j.created, true);
        assert.deepEqual(await s1.members('#after'), [{ nick: 'Lou', op: true }]);
      });
    });
  });
}
