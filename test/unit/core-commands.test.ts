/**
 * The fast suite: every command of the table, its edge cases and its cross-instance rules, on two
 * or three chat nodes in one process with in-memory backends. Milliseconds per test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseMsgid, SUPPORTED_CAPS } from '@parley/protocol';
import { COMMANDS } from '../../packages/server/src/core/commands/table.js';
import { StoreUnavailableError } from '../../packages/server/src/store/errors.js';
import { kinds, TestCluster, type TestClient } from './support/core.js';

let cluster: TestCluster;
let seq = 0;
/** a fresh nick or channel name per test */
const fresh = (p: string) => `${p}${++seq}`;

before(async () => {
  cluster = await TestCluster.start(2);
});
after(() => cluster.close());

const text = (m: { params: string[] }) => m.params[m.params.length - 1] ?? '';

describe('registration', () => {
  it('welcomes with 001-005 and the MOTD, and CAP negotiates every capability', async () => {
    const c = cluster.raw(0);
    c.send('CAP LS 302');
    const ls = await c.next((m) => m.command === 'CAP');
    assert.equal(ls.params[1], 'LS');
    assert.deepEqual(text(ls).split(' ').map((c) => c.split('=')[0]).sort(), [...SUPPORTED_CAPS].sort());
    c.send('CAP REQ :echo-message nope');
    assert.equal((await c.next((m) => m.command === 'CAP')).params[1], 'NAK', 'one unknown cap refuses the whole request');
    c.send('CAP REQ :echo-message -batch');
    assert.equal((await c.next((m) => m.command === 'CAP')).params[1], 'ACK');
    c.send('CAP LIST');
    assert.equal(text(await c.next((m) => m.command === 'CAP')), 'echo-message');
    c.send('CAP FOO');
    assert.equal((await c.next((m) => m.command === '410')).params[1], 'FOO');
    const nick = fresh('reg');
    c.send(`NICK ${nick}`);
    c.send('USER u 0 * :Real Name');
    assert.equal(c.messages.some((m) => m.command === '001'), false, 'registration waits for CAP END');
    c.send('CAP END');
    await c.next((m) => m.command === '376');
    assert.deepEqual(kinds(c.messages).filter((k) => /^00\d$|^37\d$/.test(k)), ['001', '002', '003', '004', '005', '005', '375', '372', '376']);
    const isupport = c.messages.filter((m) => m.command === '005').flatMap((m) => m.params);
    assert.ok(isupport.includes('CHATHISTORY=1000') && isupport.includes('UTF8ONLY'));
  });

  it('refuses commands before registration (451), unknown commands after it (421), and wrong parameters (461)', async () => {
    const c = cluster.raw(0);
    c.send('JOIN #x');
    assert.equal((await c.next((m) => m.command === '451')).params[0], '*');
    c.send('FROBNICATE');
    await c.next((m) => m.command === '451');
    c.send('USER u');
    assert.deepEqual((await c.next((m) => m.command === '461')).params.slice(0, 2), ['*', 'USER']);
    c.send('PASS');
    await c.next((m) => m.command === '461' && m.params[1] === 'PASS');
    await c.register(fresh('p'), []);
    c.send('FROBNICATE');
    assert.equal((await c.next((m) => m.command === '421')).params[1], 'FROBNICATE');
    c.send('USER a b c d');
    await c.next((m) => m.command === '462');
    for (const cmd of ['JOIN', 'PART', 'TOPIC', 'MODE', 'KICK #x']) {
      c.send(cmd);
      await c.next((m) => m.command === '461' && m.params[1] === cmd.split(' ')[0]);
    }
  });

  it('checks nicks: 431 none, 432 erroneous, 433 taken on another instance', async () => {
    const nick = fresh('taken');
    await cluster.client(1, nick);
    const c = cluster.raw(0);
    c.send('NICK');
    await c.next((m) => m.command === '431');
    c.send('NICK 1bad');
    assert.equal((await c.next((m) => m.command === '432')).params[1], '1bad');
    c.send(`NICK ${nick.toUpperCase()}`);
    c.send('USER u 0 * :x');
    assert.equal((await c.next((m) => m.command === '433')).params[1], nick.toUpperCase());
    c.send(`NICK ${fresh('ok')}`);
    await c.next((m) => m.command === '001');
  });

  it('changes a nick everywhere: NICK reaches channel members on both instances; 433 for a taken one', async () => {
    const chan = fresh('#nick');
    const a = await cluster.client(0, fresh('na'));
    const b = await cluster.client(1, fresh('nb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    const renamed = fresh('renamed');
    const seenByB = b.next((m) => m.command === 'NICK');
    const res = await a.cmd(`NICK ${renamed}`);
    assert.equal(res[0]?.command, 'NICK');
    assert.equal((await seenByB).params[0], renamed);
    assert.equal((await b.cmd(`NICK ${renamed}`))[0]?.command, '433');
    assert.equal((await b.cmd(`ISON ${renamed}`))[0]?.params[1], renamed);
  });

  it('answers PING with PONG (409 without origin), ignores PONG, and QUIT closes after an ERROR', async () => {
    const c = await cluster.client(0, fresh('pp'));
    assert.equal(text((await c.cmd('PING :abc'))[0] ?? { params: [] }), 'abc');
    assert.equal((await c.cmd('PING'))[0]?.command, '409');
    assert.deepEqual(await c.cmd('PONG :x'), [], 'ACK only');
    c.send('QUIT :bye');
    await c.closedP;
    assert.match(c.lines[c.lines.length - 1] ?? '', /^ERROR :Closing Link: .* \(Quit: bye\)$/);
  });

  it('refuses a wrong server password with 464 and closes', async () => {
    const cl = await TestCluster.start(1, { password: 'sesame' });
    try {
      const bad = cl.raw(0);
      bad.send('PASS wrong');
      bad.send('NICK pw1');
      bad.send('USER u 0 * :x');
      await bad.next((m) => m.command === '464');
      await bad.closedP;
      const good = cl.raw(0);
      good.send('PASS sesame');
      await good.register('pw2', []);
    } finally {
      await cl.close();
    }
  });

  it('sends the MOTD on request (and 422 when there is none) and counts users (LUSERS)', async () => {
    const c = await cluster.client(0, fresh('m'));
    assert.deepEqual(kinds(await c.cmd('MOTD')), ['375', '372', '376']);
    assert.match(text((await c.cmd('LUSERS'))[0] ?? { params: [] }), /^There are \d+ users on this server$/);
    const cl = await TestCluster.start(1, { motd: [] });
    try {
      const d = await cl.client(0, 'nomotd');
      assert.deepEqual(kinds(await d.cmd('MOTD')), ['422']);
    } finally {
      await cl.close();
    }
  });
});

describe('channels', () => {
  it('JOIN answers JOIN, topic, NAMES; others on both instances see the JOIN; the first member is op', async () => {
    const chan = fresh('#j');
    const a = await cluster.client(0, fresh('ja'));
    const b = await cluster.client(1, fresh('jb'));
    const ra = await a.cmd(`JOIN ${chan}`);
    assert.deepEqual(kinds(ra), ['JOIN', '353', '366']);
    assert.equal(text(ra[1] ?? { params: [] }), `@${a.session.nick}`);
    await a.cmd(`TOPIC ${chan} :hello there`);
    const aSees = a.next((m) => m.command === 'JOIN');
    const rb = await b.cmd(`JOIN ${chan}`);
    assert.deepEqual(kinds(rb), ['JOIN', '332', '333', '353', '366']);
    assert.equal((await aSees).source?.split('!')[0], b.session.nick);
    assert.deepEqual(await b.cmd(`JOIN ${chan}`), [], 'joining again does nothing');
    assert.equal((await b.cmd('JOIN bad'))[0]?.command, '403');
  });

  it('PART leaves (others see it), 442 when not a member, 403 for no channel; JOIN 0 leaves all', async () => {
    const chan = fresh('#p');
    const a = await cluster.client(0, fresh('pa'));
    const b = await cluster.client(1, fresh('pb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    const aSees = a.next((m) => m.command === 'PART');
    assert.equal((await b.cmd(`PART ${chan} :later`))[0]?.command, 'PART');
    assert.equal(text(await aSees), 'later');
    assert.equal((await b.cmd(`PART ${chan}`))[0]?.command, '442');
    assert.equal((await b.cmd(`PART ${fresh('#none')}`))[0]?.command, '403');
    await a.cmd(`JOIN ${fresh('#p')}`);
    const left = await a.cmd('JOIN 0');
    assert.deepEqual(kinds(left), ['PART', 'PART']);
    assert.equal(a.session.rooms.size, 0);
  });

  it('TOPIC reads and sets; +t makes it op-only (482); 331 without one; 442 for non-members', async () => {
    const chan = fresh('#t');
    const a = await cluster.client(0, fresh('ta'));
    const b = await cluster.client(1, fresh('tb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    assert.equal((await a.cmd(`TOPIC ${chan}`))[0]?.command, '331');
    assert.equal((await b.cmd(`TOPIC ${chan} :by b`))[0]?.command, '482', 'channels start +nt');
    await a.cmd(`MODE ${chan} -t`);
    assert.equal((await b.cmd(`TOPIC ${chan} :by b`))[0]?.command, 'TOPIC', 'anyone may, without +t');
    const c = await cluster.client(0, fresh('tc'));
    assert.equal((await c.cmd(`TOPIC ${chan} :x`))[0]?.command, '442');
    assert.deepEqual(kinds(await c.cmd(`TOPIC ${chan}`)), ['332', '333']);
    await a.cmd(`MODE ${chan} +t`);
    assert.equal((await b.cmd(`TOPIC ${chan} :again`))[0]?.command, '482');
    const bSees = b.next((m) => m.command === 'TOPIC');
    await a.cmd(`TOPIC ${chan} :by op`);
    assert.equal(text(await bSees), 'by op');
    assert.equal((await a.cmd(`TOPIC ${fresh('#none')}`))[0]?.command, '403');
  });

  it('NAMES and LIST show members and channels across instances', async () => {
    const chan = fresh('#n');
    const a = await cluster.client(0, fresh('Na'));
    const b = await cluster.client(1, fresh('Nb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    const names = await b.cmd(`NAMES ${chan}`);
    assert.deepEqual(kinds(names), ['353', '366']);
    assert.deepEqual(text(names[0] ?? { params: [] }).split(' ').sort(), [`@${a.session.nick}`, b.session.nick].sort());
    assert.deepEqual(kinds(await b.cmd('NAMES')), ['366']);
    assert.deepEqual(kinds(await b.cmd(`NAMES ${fresh('#none')}`)), ['366']);
    const list = await b.cmd(`LIST ${chan}`);
    assert.deepEqual(kinds(list), ['321', '322', '323']);
    assert.equal(list[1]?.params[2], '2');
    assert.ok((await b.cmd('LIST')).some((m) => m.command === '322' && m.params[1] === chan));
  });

  it('MODE: +o/+t/+n by ops, 482 otherwise, 401 for a nick online nowhere, 472 unknown, query 324/329, user modes', async () => {
    const chan = fresh('#m');
    const a = await cluster.client(0, fresh('ma'));
    const b = await cluster.client(1, fresh('mb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    assert.deepEqual(kinds(await b.cmd(`MODE ${chan}`)), ['324', '329']);
    assert.equal((await b.cmd(`MODE ${chan} -t`))[0]?.command, '482');
    const bSees = b.next((m) => m.command === 'MODE');
    const res = await a.cmd(`MODE ${chan} +o-n ${b.session.nick}`);
    assert.equal(res[0]?.command, 'MODE');
    assert.deepEqual((await bSees).params.slice(1), ['+o-n', b.session.nick]);
    assert.equal((await b.cmd(`MODE ${chan} -t`))[0]?.command, 'MODE', 'b is op now');
    assert.equal((await a.cmd(`MODE ${chan} +o nobody`))[0]?.command, '401', 'a nick that exists nowhere');
    assert.equal((await a.cmd(`MODE ${chan} +z`))[0]?.command, '472');
    assert.equal((await a.cmd(`MODE ${chan} +o`))[0]?.command, '461');
    assert.equal((await a.cmd(`MODE ${chan} b`))[0]?.command, '368');
    assert.equal((await a.cmd(`MODE ${fresh('#none')} +t`))[0]?.command, '403');
    assert.equal((await a.cmd(`MODE ${a.session.nick}`))[0]?.command, '221');
    assert.equal((await a.cmd(`MODE ${a.session.nick} +x`))[0]?.command, '501');
    assert.equal((await a.cmd(`MODE ${b.session.nick} +i`))[0]?.command, '502');
  });

  it('KICK removes a member on the other instance (it stops receiving), with 482/441/442/403', async () => {
    const chan = fresh('#k');
    const a = await cluster.client(0, fresh('ka'));
    const b = await cluster.client(1, fresh('kb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    assert.equal((await b.cmd(`KICK ${chan} ${a.session.nick}`))[0]?.command, '482');
    assert.equal((await a.cmd(`KICK ${chan} nobody`))[0]?.command, '441');
    const bSees = b.next((m) => m.command === 'KICK');
    assert.equal((await a.cmd(`KICK ${chan} ${b.session.nick} :out`))[0]?.command, 'KICK');
    assert.equal(text(await bSees), 'out');
    await a.cmd(`PRIVMSG ${chan} :after the kick`);
    assert.equal(b.session.rooms.has(chan), false);
    assert.equal((await b.cmd(`KICK ${chan} ${a.session.nick}`))[0]?.command, '442');
    assert.equal((await b.cmd(`KICK ${fresh('#none')} x`))[0]?.command, '403');
    assert.ok(!b.messages.some((m) => text(m) === 'after the kick'));
  });
});

describe('messages', () => {
  it('delivers channel messages in order to members on both instances, each acknowledged once stored', async () => {
    const chan = fresh('#msg');
    const a = await cluster.client(0, fresh('ca'));
    const b = await cluster.client(1, fresh('cb'));
    const c = await cluster.client(0, fresh('cc'), []);
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    c.send(`JOIN ${chan}`);
    await c.next((m) => m.command === '366');
    const n = 50;
    const got = b.next((m) => text(m) === `m${n - 1}`);
    const gotC = c.next((m) => text(m) === `m${n - 1}`);
    for (let i = 0; i < n; i++) a.send(`PRIVMSG ${chan} :m${i}`);
    await Promise.all([got, gotC]);
    const seqs = (cl: TestClient) => cl.messages.filter((m) => m.command === 'PRIVMSG').map((m) => text(m));
    const want = Array.from({ length: n }, (_, i) => `m${i}`);
    assert.deepEqual(seqs(b), want);
    assert.deepEqual(seqs(c), want);
    await a.seen((m) => text(m) === `m${n - 1}`);
    assert.deepEqual(seqs(a), want, 'echoes, in order');
    const ids = b.messages.filter((m) => m.command === 'PRIVMSG').map((m) => parseMsgid(m.tags.msgid ?? '')?.seq);
    assert.deepEqual(ids, Array.from({ length: n }, (_, i) => i + 1), 'gap-free room sequence in the msgids');
    assert.equal(c.messages.find((m) => m.command === 'PRIVMSG')?.tags.msgid, undefined, 'no tags without message-tags');
  });

  it('refuses: 411 no recipient, 412 no text, 407 over 4 targets, 403 no channel, 404 +n, 401 no nick; NOTICE never answers', async () => {
    const chan = fresh('#r');
    const a = await cluster.client(0, fresh('ra'));
    const b = await cluster.client(1, fresh('rb'));
    await a.cmd(`JOIN ${chan}`);
    assert.equal((await b.cmd('PRIVMSG'))[0]?.command, '411');
    assert.equal((await b.cmd(`PRIVMSG ${chan}`))[0]?.command, '412');
    assert.deepEqual(kinds(await b.cmd(`PRIVMSG ${chan},#nothere${seq} :x`)), ['404', '403'], 'each target answers');
    assert.equal((await b.cmd(`PRIVMSG ${chan},#b,#c,#d,#e :x`))[0]?.command, '407', 'more than TARGMAX 4');
    assert.equal((await b.cmd(`PRIVMSG ${fresh('#none')} :x`))[0]?.command, '403');
    assert.equal((await b.cmd(`PRIVMSG ${chan} :x`))[0]?.command, '404');
    assert.equal((await b.cmd('PRIVMSG nobody :x'))[0]?.command, '401');
    for (const line of ['NOTICE', `NOTICE ${chan}`, `NOTICE ${fresh('#none')} :x`, `NOTICE ${chan} :x`, 'NOTICE nobody :x']) {
      assert.deepEqual(await b.cmd(line), [], `${line}: no reply`);
    }
    await a.cmd(`MODE ${chan} -n`);
    const aSees = a.next((m) => text(m) === 'from outside');
    assert.equal((await b.cmd(`PRIVMSG ${chan} :from outside`))[0]?.command, 'PRIVMSG', 'allowed without +n');
    await aSees;
  });

  it('delivers direct messages across instances and locally, with 301 for an away recipient', async () => {
    const a = await cluster.client(0, fresh('da'));
    const b = await cluster.client(1, fresh('db'));
    const c = await cluster.client(0, fresh('dc'));
    const bSees = b.next((m) => text(m) === 'hi b');
    const echo = await a.cmd(`PRIVMSG ${b.session.nick} :hi b`);
    assert.equal(echo[0]?.command, 'PRIVMSG');
    const got = await bSees;
    assert.equal(got.tags.msgid, echo[0]?.tags.msgid);
    const cSees = c.next((m) => text(m) === 'hi c');
    await a.cmd(`PRIVMSG ${c.session.nick.toUpperCase()} :hi c`);
    await cSees;
    await b.cmd('AWAY :gone fishing');
    const res = await a.cmd(`PRIVMSG ${b.session.nick} :still there?`);
    assert.deepEqual(kinds(res), ['PRIVMSG', '301']);
    assert.equal(text(res[1] ?? { params: [] }), 'gone fishing');
    assert.deepEqual(kinds(await a.cmd(`NOTICE ${b.session.nick} :no away reply`)), ['NOTICE']);
  });

  it('relays client tags only to clients with message-tags, and acknowledges with ACK without echo-message', async () => {
    const chan = fresh('#tags');
    const a = await cluster.client(0, fresh('ga'), ['message-tags', 'labeled-response', 'batch']);
    const b = await cluster.client(1, fresh('gb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    const bSees = b.next((m) => text(m) === 'tagged');
    assert.deepEqual(await a.cmd(`@+draft/reply=x1 PRIVMSG ${chan} :tagged`), [], 'ACK once stored');
    assert.equal((await bSees).tags['+draft/reply'], 'x1');
  });

  it('answers FAIL MESSAGE_ERROR when the store refuses, SHARD_UNAVAILABLE when the shard is down, delivering nothing', async () => {
    const chan = fresh('#fail');
    const a = await cluster.client(0, fresh('fa'));
    const b = await cluster.client(1, fresh('fb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    cluster.store.setFault((m) => (m.room === chan ? new Error('disk on fire') : null));
    try {
      const res = await a.cmd(`PRIVMSG ${chan} :lost`);
      assert.deepEqual(res.map((m) => [m.command, ...m.params]), [['FAIL', 'PRIVMSG', 'MESSAGE_ERROR', chan, 'Message could not be stored, it was not delivered; try again']]);
    } finally {
      cluster.store.setFault(null);
    }
    cluster.store.setFault((m) => (m.room === chan ? new StoreUnavailableError(3) : null));
    try {
      const res = await a.cmd(`PRIVMSG ${chan} :down`);
      assert.deepEqual(res.map((m) => m.params.slice(0, 3)), [['PRIVMSG', 'SHARD_UNAVAILABLE', chan]]);
    } finally {
      cluster.store.setFault(null);
    }
    const c = await cluster.client(0, fresh('fc'));
    const counts = cluster.store.counts.bind(cluster.store);
    cluster.store.counts = () => Promise.reject(new StoreUnavailableError(3));
    try {
      const down = fresh('#down');
      const res = await c.cmd(`JOIN ${down}`);
      assert.deepEqual(res.map((m) => m.params.slice(0, 3)), [['JOIN', 'SHARD_UNAVAILABLE', down]]);
    } finally {
      cluster.store.counts = counts;
    }
    await a.cmd(`PRIVMSG ${chan} :kept`);
    await b.seen((m) => text(m) === 'kept');
    assert.ok(!b.messages.some((m) => text(m) === 'lost' || text(m) === 'down'));
  });
});

describe('history', () => {
  it('CHATHISTORY LATEST/BEFORE/AFTER/AROUND/BETWEEN in a chathistory batch, for members only', async () => {
    const chan = fresh('#h');
    const a = await cluster.client(0, fresh('ha'));
    await a.cmd(`JOIN ${chan}`);
    for (let i = 1; i <= 10; i++) await a.cmd(`PRIVMSG ${chan} :h${i}`);
    const body = (ms: Awaited<ReturnType<TestClient['cmd']>>) => ms.filter((m) => m.command === 'PRIVMSG').map(text);
    const latest = await a.cmd(`CHATHISTORY LATEST ${chan} * 3`);
    assert.equal(latest[0]?.command, 'BATCH');
    assert.equal(latest[0]?.params[1], 'chathistory');
    assert.deepEqual(body(latest), ['h8', 'h9', 'h10']);
    const id5 = latest.find((m) => text(m) === 'h8')?.tags.msgid ?? '';
    assert.deepEqual(body(await a.cmd(`CHATHISTORY BEFORE ${chan} msgid=${id5} 2`)), ['h6', 'h7']);
    assert.deepEqual(body(await a.cmd(`CHATHISTORY AFTER ${chan} msgid=${id5} 2`)), ['h9', 'h10']);
    assert.deepEqual(body(await a.cmd(`CHATHISTORY AROUND ${chan} msgid=${id5} 3`)), ['h7', 'h8', 'h9']);
    const tag = id5.split('-')[0];
    assert.deepEqual(body(await a.cmd(`CHATHISTORY BETWEEN ${chan} msgid=${tag}-2 msgid=${tag}-5 10`)), ['h3', 'h4']);
    const b = await cluster.client(1, fresh('hb'));
    const refused = await b.cmd(`CHATHISTORY LATEST ${chan} * 3`);
    assert.deepEqual(refused[0]?.params.slice(0, 2), ['CHATHISTORY', 'INVALID_TARGET']);
  });

  it('CHATHISTORY refuses bad subcommands, limits, targets and references; TARGETS lists conversations', async () => {
    const a = await cluster.client(0, fresh('hx'));
    const b = await cluster.client(1, fresh('hy'));
    const code = async (line: string) => (await a.cmd(line))[0]?.params[1];
    assert.equal(await code('CHATHISTORY FOO #x * 1'), 'INVALID_PARAMS');
    assert.equal(await code('CHATHISTORY LATEST'), 'INVALID_PARAMS');
    assert.equal(await code(`CHATHISTORY LATEST ${b.session.nick} * 0`), 'INVALID_PARAMS');
    assert.equal(await code('CHATHISTORY LATEST 1bad * 5'), 'INVALID_TARGET');
    assert.equal(await code(`CHATHISTORY BEFORE ${b.session.nick} * 5`), 'INVALID_MSGREFTYPE');
    assert.equal(await code(`CHATHISTORY BEFORE ${b.session.nick} msgid=00000000-1 5`), 'INVALID_MSGREFTYPE');
    assert.equal(await code('CHATHISTORY TARGETS x y 5'), 'INVALID_PARAMS');
    await a.cmd(`PRIVMSG ${b.session.nick} :dm for history`);
    const dm = await a.cmd(`CHATHISTORY LATEST ${b.session.nick} * 10`);
    assert.deepEqual(dm.filter((m) => m.command === 'PRIVMSG').map(text), ['dm for history']);
    const targets = await b.cmd('CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10');
    assert.equal(targets[0]?.params[1], 'draft/chathistory-targets');
    assert.ok(targets.some((m) => m.command === 'CHATHISTORY' && m.params[1] === a.session.nick));
  });

  it('counts CHATHISTORY against flood control by rows asked', async () => {
    const cl = await TestCluster.start(1, { flood: { linesPerSecond: 1, burst: 25 } });
    try {
      const a = await cl.client(0, 'rows');
      const code = async () => (await a.cmd('CHATHISTORY LATEST someone * 1000'))[0]?.params[1];
      assert.notEqual(await code(), 'RATE_LIMITED', 'first: 11 tokens of the remaining burst');
      assert.equal(await code(), 'RATE_LIMITED', 'second: not enough tokens left for 1000 rows');
      assert.equal(a.closed, false, 'refused, not disconnected');
    } finally {
      await cl.close();
    }
  });
});

describe('queries', () => {
  it('WHO lists a channel across instances and one nick; WHOIS shows channels, server, away; 401/431', async () => {
    const chan = fresh('#w');
    const a = await cluster.client(0, fresh('wa'));
    const b = await cluster.client(1, fresh('wb'));
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    await b.cmd('AWAY :out');
    const who = await a.cmd(`WHO ${chan}`);
    assert.deepEqual(kinds(who), ['352', '352', '315']);
    assert.ok(who.some((m) => m.params[5] === b.session.nick && m.params[6] === 'G'));
    assert.ok(who.some((m) => m.params[5] === a.session.nick && m.params[6] === 'H@'));
    assert.deepEqual(kinds(await a.cmd(`WHO ${b.session.nick}`)), ['352', '315']);
    assert.deepEqual(kinds(await a.cmd('WHO')), ['315']);
    const whois = await a.cmd(`WHOIS ${b.session.nick}`);
    assert.deepEqual(kinds(whois), ['311', '319', '312', '301', '317', '318']);
    assert.equal(whois[2]?.params[2], 'n2.test');
    assert.deepEqual(kinds(await a.cmd('WHOIS nobody')), ['401', '318']);
    assert.deepEqual(kinds(await a.cmd('WHOIS')), ['431']);
  });

  it('AWAY sets and clears (306/305); ISON lists who is online anywhere', async () => {
    const a = await cluster.client(0, fresh('aa'));
    const b = await cluster.client(1, fresh('ab'));
    assert.deepEqual(kinds(await a.cmd('AWAY :brb')), ['306']);
    assert.deepEqual(kinds(await a.cmd('AWAY')), ['305']);
    const ison = await a.cmd(`ISON ${b.session.nick} nobody ${a.session.nick}`);
    assert.deepEqual(text(ison[0] ?? { params: [] }).split(' ').sort(), [a.session.nick, b.session.nick].sort());
  });
});

describe('the command table', () => {
  it('is covered by the fast suite: every command appears in a test above or in another test of the in-process cluster', async () => {
    const fs = await import('node:fs');
    const here = new URL(import.meta.url);
    const src = fs.readFileSync(here, 'utf8').replace(/describe\('the command table'[\s\S]*$/, '');
    // The other files of the fast suite that run the in-process cluster (accounts, ...).
    const dir = new URL('.', here);
    const others = fs.readdirSync(dir).filter((f) => f.endsWith('.test.ts') && f !== 'core-commands.test.ts')
      .map((f) => fs.readFileSync(new URL(f, dir), 'utf8')).filter((t) => t.includes('./support/core.js'));
    const all = [src, ...others].join('\n');
    const missing = [...COMMANDS.keys()].filter((cmd) => !new RegExp(`['\`"@ ]${cmd}\\b`).test(all));
    assert.deepEqual(missing, []);
  });

  it('labels every response: one line, ACK, or a labeled-response batch', async () => {
    const a = await cluster.client(0, fresh('lab'));
    a.send('@label=x1 PING :p');
    assert.equal((await a.next((m) => m.tags.label === 'x1')).command, 'PONG');
    a.send('@label=x2 PONG :p');
    assert.equal((await a.next((m) => m.tags.label === 'x2')).command, 'ACK');
    a.send('@label=x3 MOTD');
    const head = await a.next((m) => m.tags.label === 'x3');
    assert.deepEqual([head.command, head.params[1]], ['BATCH', 'labeled-response']);
  });

  it('drops a flooding connection with ERROR (Excess Flood)', async () => {
    const cl = await TestCluster.start(1, { flood: { linesPerSecond: 1, burst: 10 } });
    try {
      const a = await cl.client(0, 'flood');
      for (let i = 0; i < 20; i++) a.send('PING :x');
      await a.closedP;
      assert.match(a.lines[a.lines.length - 1] ?? '', /Excess Flood/);
    } finally {
      await cl.close();
    }
  });

  it('answers 417 for an over-long line and FAIL INVALID_UTF8 / INVALID_MESSAGE for bad ones', async () => {
    const a = await cluster.client(0, fresh('bad'));
    a.send(`PRIVMSG #x :${'y'.repeat(600)}`);
    await a.next((m) => m.command === '417');
    a.send('@bad\0tag PING');
    await a.next((m) => m.command === 'FAIL' && m.params[1] === 'INVALID_MESSAGE');
  });
});
