/**
 * Server operators, the rest of the common IRC surface and the replies the specs ask for, on two
 * in-process nodes. Each fixed reply's test names the spec sentence it follows.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../packages/server/src/accounts/password.js';
import { ALL_CAPS, kinds, TestCluster, type TestClient } from './support/core.js';

let cluster: TestCluster;
let seq = 0;
const fresh = (p: string): string => `${p}${++seq}`;
const text = (m: { params: string[] }): string => m.params[m.params.length - 1] ?? '';

before(async () => {
  const hash = await hashPassword('oper-secret');
  cluster = await TestCluster.start(2, {
    opers: [{ name: 'root', passwordHash: hash }, { name: 'far', passwordHash: hash, hostmask: '*!*@192.0.2.*' }],
    monitorMax: 3,
  });
  // As server.ts does at start: WHO masks look users up through the instances' user lists.
  for (const n of cluster.nodes) await n.state.addInstance(n.id);
});
after(() => cluster.close());

async function oper(i: number): Promise<TestClient> {
  const o = await cluster.client(i, fresh('oper'));
  const res = await o.cmd('OPER root oper-secret');
  assert.deepEqual(kinds(res), ['MODE', '381']);
  return o;
}

describe('server operators', () => {
  it('OPER: 491 for an unknown name or a hostmask that does not match, 464 for a wrong password, else +o and 381', async () => {
    const c = await cluster.client(0, fresh('op'));
    assert.deepEqual(kinds(await c.cmd('OPER nobody x')), ['491']);
    assert.deepEqual(kinds(await c.cmd('OPER far oper-secret')), ['491']);
    assert.deepEqual(kinds(await c.cmd('OPER root wrong')), ['464']);
    assert.equal(c.closed, false, 'a wrong OPER password does not close the connection');
    const res = await c.cmd('OPER root oper-secret');
    assert.deepEqual(res[0]?.params, [c.session.nick, '+o']);
    assert.equal(res[1]?.command, '381');
    const other = await cluster.client(1, fresh('look'));
    const whois = await other.cmd(`WHOIS ${c.session.nick}`);
    assert.ok(whois.some((m) => m.command === '313'), 'WHOIS on the other instance shows 313');
    assert.equal((await other.cmd(`WHO ${c.session.nick}`))[0]?.params[6], 'H*');
    assert.equal(text((await other.cmd(`USERHOST ${c.session.nick}`))[0] ?? { params: [] }), `${c.session.nick}*=+~u@127.0.0.1`);
  });

  it('KILL closes a user on the other instance; WALLOPS reaches +w users everywhere; non-opers get 481', async () => {
    const o = await oper(0);
    const victim = await cluster.client(1, fresh('victim'));
    const plain = await cluster.client(1, fresh('plain'));
    for (const line of [`KILL ${victim.session.nick} :x`, 'WALLOPS :x', 'KLINE x', 'UNKLINE x']) {
      assert.deepEqual(kinds(await plain.cmd(line)), ['481'], line);
    }
    assert.deepEqual(kinds(await o.cmd('KILL nobody :x')), ['401']);
    await o.cmd(`KILL ${victim.session.nick} :spamming`);
    await victim.closedP;
    assert.match(victim.lines.at(-1) ?? '', /^ERROR :Closing Link: .*Killed \(.* \(spamming\)\)/);

    const listener = await cluster.client(1, fresh('wl'));
    await listener.cmd(`MODE ${listener.session.nick} +w`);
    const heard = listener.next((m) => m.command === 'WALLOPS');
    await o.cmd('WALLOPS :maintenance at noon');
    const w = await heard;
    assert.equal(text(w), 'maintenance at noon');
    assert.equal(w.source, o.session.source);
    assert.equal(plain.messages.some((m) => m.command === 'WALLOPS'), false, 'not to users without +w');
  });

  it('KLINE bans a mask from connecting on every instance (465), UNKLINE lifts it', async () => {
    const o = await oper(0);
    const nick = fresh('banned');
    const added = await o.cmd(`KLINE ${nick} :go away`);
    assert.match(text(added[0] ?? { params: [] }), new RegExp(`KLINE ${nick}!\\*@\\* added`));
    const listing = await o.cmd('KLINE LIST');
    assert.ok(listing.some((m) => text(m).includes(`${nick}!*@*`)));
    const c = cluster.raw(1);
    c.send(`NICK ${nick}`);
    c.send('USER u 0 * :x');
    await c.seen((m) => m.command === '465');
    await c.closedP;
    assert.match(c.lines.at(-1) ?? '', /Banned: go away/);
    await o.cmd(`UNKLINE ${nick}`);
    await cluster.client(1, nick);
  });
});

describe('the common surface', () => {
  it('TAGMSG is relayed across instances to message-tags clients only, and not stored', async () => {
    const chan = fresh('#tag');
    const a = await cluster.client(0, fresh('ta'));
    const b = await cluster.client(1, fresh('tb'));
    const old = await cluster.client(1, fresh('told'), []);
    for (const c of [a, b]) await c.cmd(`JOIN ${chan}`);
    old.send(`JOIN ${chan}`);
    await old.next((m) => m.command === '366');
    const bGets = b.next((m) => m.command === 'TAGMSG');
    const echo = await a.cmd(`@+typing=active TAGMSG ${chan}`);
    assert.equal(echo[0]?.command, 'TAGMSG', 'echo-message: the sender gets its TAGMSG back');
    const got = await bGets;
    assert.equal(got.tags['+typing'], 'active');
    assert.equal(got.source, a.session.source);
    const dm = b.next((m) => m.command === 'TAGMSG' && m.params[0] === b.session.nick);
    await a.cmd(`@+typing=paused TAGMSG ${b.session.nick}`);
    assert.equal((await dm).tags['+typing'], 'paused');
    // A PING after the TAGMSG is answered after it: nothing was delivered to `old`.
    old.send('PING :barrier');
    await old.next((m) => m.command === 'PONG');
    assert.equal(old.messages.some((m) => m.command === 'TAGMSG'), false);
    const history = await a.cmd(`CHATHISTORY LATEST ${chan} * 10`);
    assert.equal(history.some((m) => m.command === 'TAGMSG'), false, 'TAGMSG is not stored');
  });

  it('multi-target PRIVMSG/NOTICE (up to 4), KICK and NAMES; 407 above TARGMAX', async () => {
    const [c1, c2] = [fresh('#mt'), fresh('#mt')];
    const a = await cluster.client(0, fresh('ma'));
    const b = await cluster.client(1, fresh('mb'));
    const c = await cluster.client(1, fresh('mc'));
    for (const ch of [c1, c2]) {
      await a.cmd(`JOIN ${ch}`);
      await b.cmd(`JOIN ${ch}`);
    }
    await c.cmd(`JOIN ${c1}`);
    const seen = Promise.all([b.next((m) => m.params[0] === c1 && text(m) === 'to all'), b.next((m) => m.params[0] === c2 && text(m) === 'to all'), c.next((m) => m.params[0] === c.session.nick && text(m) === 'to all')]);
    await a.cmd(`PRIVMSG ${c1},${c2},${c.session.nick} :to all`);
    await seen;
    assert.deepEqual(kinds(await a.cmd(`PRIVMSG ${c1},${c2},#x,#y,#z :x`)), ['407']);
    const noticed = c.next((m) => m.command === 'NOTICE' && text(m) === 'n');
    await a.cmd(`NOTICE ${c1},nobody :n`);
    await noticed;
    const names = await a.cmd(`NAMES ${c1},${c2}`);
    assert.deepEqual(kinds(names), ['353', '366', '353', '366']);
    const kicks = await a.cmd(`KICK ${c1} ${b.session.nick},${c.session.nick} :out`);
    assert.deepEqual(kinds(kicks), ['KICK', 'KICK']);
    assert.deepEqual(kinds(await a.cmd(`KICK ${c2},${c1} ${b.session.nick},nobody`)), ['KICK', '441']);
  });

  it('USERHOST, WHO masks and WHOX (%fields,token), ISON', async () => {
    const tag = fresh('wx');
    const a = await cluster.client(0, `${tag}a`);
    const b = await cluster.client(1, `${tag}b`);
    await b.cmd('AWAY :out');
    const uh = await a.cmd(`USERHOST ${a.session.nick} ${b.session.nick} nobody`);
    assert.equal(text(uh[0] ?? { params: [] }), `${a.session.nick}=+~u@127.0.0.1 ${b.session.nick}=-~u@127.0.0.1`);
    const who = await a.cmd(`WHO ${tag}*`);
    assert.deepEqual(who.filter((m) => m.command === '352').map((m) => m.params[5]).sort(), [a.session.nick, b.session.nick]);
    assert.equal(who.at(-1)?.command, '315');
    const whox = await a.cmd(`WHO ${b.session.nick} %tcuhnfar,42`);
    assert.deepEqual(whox[0]?.params.slice(1), ['42', '*', '~u', '127.0.0.1', b.session.nick, 'G', '0', 'Test User']);
    assert.equal(whox[0]?.command, '354');
    assert.deepEqual(kinds(await a.cmd('WHO *')), ['315']);
  });

  it('LIST with ELIST filters: >n / <n members, masks and !masks', async () => {
    const tag = fresh('el');
    const a = await cluster.client(0, fresh('ela'));
    const b = await cluster.client(1, fresh('elb'));
    await a.cmd(`JOIN #${tag}one`);
    await a.cmd(`JOIN #${tag}two`);
    await b.cmd(`JOIN #${tag}two`);
    const names = async (arg: string): Promise<string[]> => (await a.cmd(`LIST ${arg}`)).filter((m) => m.command === '322').map((m) => m.params[1] ?? '').sort();
    assert.deepEqual(await names(`#${tag}*`), [`#${tag}one`, `#${tag}two`]);
    assert.deepEqual(await names(`#${tag}*,>1`), [`#${tag}two`]);
    assert.deepEqual(await names(`#${tag}*,<2`), [`#${tag}one`]);
    assert.deepEqual(await names(`#${tag}*,!*two`), [`#${tag}one`]);
  });

  it('away-notify and setname reach the channel members who asked for them, on the other instance', async () => {
    const chan = fresh('#an');
    const a = await cluster.client(0, fresh('ana'));
    const b = await cluster.client(1, fresh('anb'), [...ALL_CAPS, 'away-notify', 'setname']);
    const plain = await cluster.client(1, fresh('anp'));
    for (const c of [a, b, plain]) await c.cmd(`JOIN ${chan}`);
    const away = b.next((m) => m.command === 'AWAY' && m.params.length === 1);
    const back = b.next((m) => m.command === 'AWAY' && m.params.length === 0);
    await a.cmd('AWAY :lunch');
    assert.equal(text(await away), 'lunch');
    await a.cmd('AWAY');
    await back;
    const renamed = b.next((m) => m.command === 'SETNAME');
    assert.deepEqual(kinds(await a.cmd('SETNAME :New Real Name')), []);
    assert.equal(text(await renamed), 'New Real Name');
    const whois = await b.cmd(`WHOIS ${a.session.nick}`);
    assert.equal(text(whois.find((m) => m.command === '311') ?? { params: [] }), 'New Real Name');
    // b got both: a PING from a to b's instance is not a barrier for b; ask b's own connection.
    await plain.cmd('PING :barrier');
    assert.equal(plain.messages.some((m) => m.command === 'AWAY' || m.command === 'SETNAME'), false);
  });

  it('MONITOR: online/offline across instances (730/731), list (732/733), full (734)', async () => {
    const w = await cluster.client(0, fresh('mw'));
    const nick = fresh('mtarget');
    const initial = await w.cmd(`MONITOR + ${nick}`);
    assert.deepEqual(initial.map((m) => [m.command, text(m)]), [['731', nick]]);
    const online = w.next((m) => m.command === '730');
    const t = await cluster.client(1, nick);
    assert.equal(text(await online), t.session.source);
    const renamed = fresh('mrenamed');
    await w.cmd(`MONITOR + ${renamed}`);
    const off = w.next((m) => m.command === '731');
    const on2 = w.next((m) => m.command === '730' && text(m).startsWith(renamed));
    await t.cmd(`NICK ${renamed}`);
    assert.equal(text(await off), nick);
    await on2;
    const gone = w.next((m) => m.command === '731' && text(m) === renamed);
    t.hangUp();
    await gone;
    assert.deepEqual(kinds(await w.cmd('MONITOR L')), ['732', '733']);
    assert.deepEqual(kinds(await w.cmd('MONITOR + x1,x2')), ['734', '731'], 'monitorMax 3: the third is refused');
    await w.cmd('MONITOR C');
    assert.deepEqual(kinds(await w.cmd('MONITOR L')), ['733']);
  });
});

describe('replies the specs ask for', () => {
  it('message-tags: "Clients MUST NOT send messages with tag data exceeding 4094 bytes" → 417', async () => {
    const a = await cluster.client(0, fresh('tg'));
    // 4094 bytes of tag data (between '@' and the space) are accepted …
    const ok = `@+x=${'a'.repeat(4094 - 3)} PING :fits`;
    a.send(ok);
    await a.next((m) => m.command === 'PONG' && text(m) === 'fits');
    // … 4118 (the case) are refused with ERR_INPUTTOOLONG.
    a.send(`@+x=${'a'.repeat(4118 - 3)} PRIVMSG ${a.session.nick} :too big`);
    await a.next((m) => m.command === '417');
  });

  it('a PRIVMSG/NOTICE to your own nick is delivered; with echo-message and labeled-response both the labeled echo and the delivery arrive', async () => {
    const a = await cluster.client(0, fresh('self'));
    const delivered = a.next((m) => m.command === 'PRIVMSG' && m.tags.label === undefined && text(m) === 'note to self');
    const res = await a.cmd(`PRIVMSG ${a.session.nick} :note to self`);
    assert.equal(res[0]?.command, 'PRIVMSG', 'the labeled echo');
    await delivered;
    const plain = await cluster.client(1, fresh('selfp'), []);
    const got = plain.next((m) => m.command === 'NOTICE' && text(m) === 'hi me');
    plain.send(`NOTICE ${plain.session.nick} :hi me`);
    await got;
  });

  it('labeled-response: "the server MUST" label its response to a labeled command, an unknown one\'s 421 too', async () => {
    const a = await cluster.client(0, fresh('lbl'));
    const res = await a.cmd('FROBNICATE x');
    assert.deepEqual(kinds(res), ['421']);
  });

  it('CHATHISTORY BETWEEN counts from the first selector, "forwards or backwards in time"', async () => {
    const chan = fresh('#btw');
    const a = await cluster.client(0, fresh('btw'));
    await a.cmd(`JOIN ${chan}`);
    const ids: string[] = [];
    for (let i = 1; i <= 6; i++) ids.push((await a.cmd(`PRIVMSG ${chan} :b${i}`))[0]?.tags.msgid ?? '');
    const texts = async (line: string): Promise<string[]> => (await a.cmd(line)).filter((m) => m.command === 'PRIVMSG').map(text);
    assert.deepEqual(await texts(`CHATHISTORY BETWEEN ${chan} msgid=${ids[0]} msgid=${ids[5]} 2`), ['b2', 'b3'], 'forwards from the first');
    assert.deepEqual(await texts(`CHATHISTORY BETWEEN ${chan} msgid=${ids[5]} msgid=${ids[0]} 2`), ['b4', 'b5'], 'backwards from the first');
    assert.deepEqual(await texts(`CHATHISTORY BETWEEN ${chan} msgid=${ids[5]} msgid=${ids[0]} 10`), ['b2', 'b3', 'b4', 'b5'], 'both bounds excluded, oldest first');
  });

  it('a command name with `_` is answered 421, not refused as malformed', async () => {
    const a = await cluster.client(0, fresh('us'));
    a.send('FOO_BAR x');
    assert.equal((await a.next((m) => m.command === '421')).params[1], 'FOO_BAR');
  });

  it('a PING after a PRIVMSG on the same connection is answered after its echo (also with labels)', async () => {
    const chan = fresh('#ping');
    const a = await cluster.client(0, fresh('pa'));
    await a.cmd(`JOIN ${chan}`);
    const start = a.lines.length;
    a.send(`@label=m1 PRIVMSG ${chan} :first`);
    a.send('@label=p1 PING :after');
    a.send(`PRIVMSG ${chan} :second`);
    a.send('PING :after2');
    await a.next((m) => m.command === 'PONG' && text(m) === 'after2');
    const order = a.messages.slice(start).map((m) => `${m.command}:${text(m)}`);
    assert.deepEqual(order, ['PRIVMSG:first', 'PONG:after', 'PRIVMSG:second', 'PONG:after2']);
    assert.equal(a.messages[start]?.tags.label, 'm1');
    assert.equal(a.messages[start + 1]?.tags.label, 'p1');
  });
});

describe('extended-join', () => {
  it('gives clients with the capability the account and real name of a joiner, on both instances; others the plain JOIN', async () => {
    const chan = fresh('#xj');
    const ext = await cluster.client(0, fresh('xa'), [...ALL_CAPS, 'extended-join']);
    const plain = await cluster.client(1, fresh('xb'), ALL_CAPS.filter((c) => c !== 'extended-join'));
    const far = await cluster.client(1, fresh('xc'), [...ALL_CAPS, 'extended-join']);
    await ext.cmd(`JOIN ${chan}`);
    await plain.cmd(`JOIN ${chan}`);
    await far.cmd(`JOIN ${chan}`);
    const joiner = await cluster.client(0, fresh('xd'));
    const seenExt = ext.next((m) => m.command === 'JOIN' && m.source?.startsWith(`${joiner.session.nick}!`) === true);
    const seenFar = far.next((m) => m.command === 'JOIN' && m.source?.startsWith(`${joiner.session.nick}!`) === true);
    const seenPlain = plain.next((m) => m.command === 'JOIN' && m.source?.startsWith(`${joiner.session.nick}!`) === true);
    await joiner.cmd(`JOIN ${chan}`);
    // extended-join: "JOIN <channel> <accountname> :<realname>", accountname "*" when not logged in.
    assert.deepEqual((await seenExt).params, [chan, '*', 'Test User']);
    assert.deepEqual((await seenFar).params, [chan, '*', 'Test User'], 'across instances');
    assert.deepEqual((await seenPlain).params, [chan]);
  });
});
