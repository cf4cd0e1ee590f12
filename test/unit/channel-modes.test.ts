/**
 * Channel modes, owned channels (ChanServ) and INVITE on two in-process nodes: every rule is set
 * on one instance and enforced for a client of the other. Numerics as RFC 2812 and
 * modern.ircdocs.horse describe them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ALL_CAPS, kinds, TestCluster, type TestClient } from './support/core.js';

let cluster: TestCluster;
let seq = 0;
const fresh = (p: string): string => `${p}${++seq}`;
const text = (m: { params: string[] }): string => m.params[m.params.length - 1] ?? '';

before(async () => {
  cluster = await TestCluster.start(2);
});
after(() => cluster.close());

/** a's channel on node 0 (a is its operator) and b, a client of node 1. */
async function setup(caps: string[] = ALL_CAPS): Promise<{ chan: string; a: TestClient; b: TestClient }> {
  const chan = fresh('#cm');
  const a = await cluster.client(0, fresh('opa'));
  const b = await cluster.client(1, fresh('usb'), caps);
  await a.cmd(`JOIN ${chan}`);
  return { chan, a, b };
}

async function loggedIn(i: number, nick: string): Promise<TestClient> {
  const c = await cluster.client(i, nick);
  const res = await c.cmd('REGISTER * * :correct-horse');
  assert.deepEqual(kinds(res), ['REGISTER', '900']);
  return c;
}

describe('channel modes across instances', () => {
  it('ISUPPORT says what is supported: CHANMODES=beI,k,l,imnpst, PREFIX=(ov)@+, MAXLIST, EXCEPTS, INVEX, TARGMAX', async () => {
    const c = await cluster.client(1, fresh('is'));
    const tokens = c.messages.filter((m) => m.command === '005').flatMap((m) => m.params);
    for (const t of ['CHANMODES=beI,k,l,imnpst', 'PREFIX=(ov)@+', 'MAXLIST=beI:100', 'EXCEPTS', 'INVEX', 'ELIST=MNU', 'BOT=B', 'WHOX', 'MONITOR=100']) {
      assert.ok(tokens.includes(t), `${t} in ${tokens.join(' ')}`);
    }
    assert.ok(tokens.some((t) => /^TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:,PART:10,NAMES:10,KICK:10,/.test(t)));
    const myinfo = c.messages.find((m) => m.command === '004');
    assert.deepEqual(myinfo?.params.slice(3), ['Biow', 'Ibeiklmnopstv', 'Ibeklov']);
  });

  it('+b refuses a matching JOIN (474) on the other instance, +e lets it in; a banned member cannot speak (404)', async () => {
    const { chan, a, b } = await setup();
    const res = await a.cmd(`MODE ${chan} +b ${b.session.nick}`);
    assert.deepEqual(res[0]?.params.slice(1), ['+b', `${b.session.nick}!*@*`], 'a nick becomes nick!*@*');
    assert.deepEqual(kinds(await b.cmd(`JOIN ${chan}`)), ['474']);
    await a.cmd(`MODE ${chan} +e *!~u@127.0.0.1`);
    assert.equal((await b.cmd(`JOIN ${chan}`))[0]?.command, 'JOIN');
    const list = await a.cmd(`MODE ${chan} b`);
    assert.deepEqual(kinds(list), ['367', '368']);
    assert.deepEqual(list[0]?.params.slice(1, 4), [chan, `${b.session.nick}!*@*`, a.session.source]);
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} e`)), ['348', '349']);
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} I`)), ['347']);

    // Now banned without exception while a member: the message is refused, nobody gets it.
    const bSeesMode = b.next((m) => m.command === 'MODE' && m.params[1] === '-e');
    await a.cmd(`MODE ${chan} -e *!~u@127.0.0.1`);
    await bSeesMode;
    assert.deepEqual(kinds(await b.cmd(`PRIVMSG ${chan} :let me speak`)), ['404']);
    const bSeesVoice = b.next((m) => m.command === 'MODE' && m.params[1] === '+v');
    await a.cmd(`MODE ${chan} +v ${b.session.nick}`);
    await bSeesVoice;
    const aGets = a.next((m) => text(m) === 'voiced now');
    await b.cmd(`PRIVMSG ${chan} :voiced now`);
    await aGets;
  });

  it('$a:<account> bans by account and never matches a guest', async () => {
    const { chan, a } = await setup();
    const member = await loggedIn(1, fresh('acct'));
    await a.cmd(`MODE ${chan} +b $a:${member.session.nick}`);
    assert.deepEqual(kinds(await member.cmd(`JOIN ${chan}`)), ['474']);
    const guest = await cluster.client(1, fresh('guest'));
    assert.equal((await guest.cmd(`JOIN ${chan}`))[0]?.command, 'JOIN');
  });

  it('+k needs the key (475), +l caps the members (471); the key is shown to members only', async () => {
    const { chan, a, b } = await setup();
    await a.cmd(`MODE ${chan} +k s3cret`);
    assert.deepEqual(kinds(await b.cmd(`JOIN ${chan}`)), ['475']);
    assert.deepEqual(kinds(await b.cmd(`JOIN ${chan} wrong`)), ['475']);
    const outside = await b.cmd(`MODE ${chan}`);
    assert.deepEqual(outside[0]?.params.slice(1), [chan, '+nt'], 'the key is not shown to non-members (Ergo)');
    assert.equal((await b.cmd(`JOIN ${chan} s3cret`))[0]?.command, 'JOIN');
    assert.deepEqual((await b.cmd(`MODE ${chan}`))[0]?.params.slice(1), [chan, '+ntk', 's3cret']);
    await a.cmd(`MODE ${chan} -k+l * 2`);
    const c = await cluster.client(1, fresh('third'));
    assert.deepEqual(kinds(await c.cmd(`JOIN ${chan}`)), ['471']);
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} +l nope`)), ['696']);
    await a.cmd(`MODE ${chan} -l`);
    assert.equal((await c.cmd(`JOIN ${chan}`))[0]?.command, 'JOIN');
  });

  it('+i needs an INVITE (473): the invited user on the other instance gets INVITE, the inviter 341, members with invite-notify see it; +I exempts', async () => {
    const { chan, a, b } = await setup();
    const watcher = await cluster.client(1, fresh('watch'), [...ALL_CAPS, 'invite-notify']);
    const plain = await cluster.client(1, fresh('plain'));
    await watcher.cmd(`JOIN ${chan}`);
    await plain.cmd(`JOIN ${chan}`);
    await a.cmd(`MODE ${chan} +i`);
    assert.deepEqual(kinds(await b.cmd(`JOIN ${chan}`)), ['473']);
    assert.deepEqual(kinds(await plain.cmd(`INVITE ${b.session.nick} ${chan}`)), ['482'], 'on +i only operators invite');
    assert.deepEqual(kinds(await a.cmd(`INVITE nobody ${chan}`)), ['401']);
    assert.deepEqual(kinds(await a.cmd(`INVITE ${plain.session.nick} ${chan}`)), ['443']);
    const bGets = b.next((m) => m.command === 'INVITE');
    const notified = watcher.next((m) => m.command === 'INVITE');
    const res = await a.cmd(`INVITE ${b.session.nick} ${chan}`);
    assert.deepEqual(res[0]?.params, [a.session.nick, b.session.nick, chan]);
    assert.equal(res[0]?.command, '341');
    assert.deepEqual((await bGets).params, [b.session.nick, chan]);
    assert.equal((await notified).source, a.session.source);
    assert.equal((await b.cmd(`JOIN ${chan}`))[0]?.command, 'JOIN');
    assert.equal(plain.messages.some((m) => m.command === 'INVITE'), false, 'no invite-notify without the cap');
    await b.cmd(`PART ${chan}`);
    assert.deepEqual(kinds(await b.cmd(`JOIN ${chan}`)), ['473'], 'the invite is used up');
    await a.cmd(`MODE ${chan} +I ${b.session.nick}!*@*`);
    assert.equal((await b.cmd(`JOIN ${chan}`))[0]?.command, 'JOIN');
  });

  it('+m lets only voiced and operators speak; NAMES shows @ and + (both with multi-prefix), hosts with userhost-in-names', async () => {
    const { chan, a, b } = await setup([...ALL_CAPS, 'multi-prefix', 'userhost-in-names']);
    await b.cmd(`JOIN ${chan}`);
    const bSees = b.next((m) => m.command === 'MODE' && m.params[1] === '+m');
    await a.cmd(`MODE ${chan} +m`);
    await bSees;
    assert.deepEqual(kinds(await b.cmd(`PRIVMSG ${chan} :hello?`)), ['404']);
    const outsider = await cluster.client(1, fresh('out'));
    await a.cmd(`MODE ${chan} -n`);
    assert.deepEqual(kinds(await outsider.cmd(`PRIVMSG ${chan} :from outside`)), ['404'], '+m holds outsiders too');
    await a.cmd(`MODE ${chan} +vo ${b.session.nick} ${b.session.nick}`);
    const names = await b.cmd(`NAMES ${chan}`);
    const items = text(names[0] ?? { params: [] }).split(' ').sort();
    assert.deepEqual(items, [`@${a.session.source}`, `@+${b.session.source}`].sort());
    const plainNames = await a.cmd(`NAMES ${chan}`);
    assert.deepEqual(text(plainNames[0] ?? { params: [] }).split(' ').sort(), [`@${a.session.nick}`, `@${b.session.nick}`].sort());
    await a.cmd(`MODE ${chan} -o ${b.session.nick}`);
    assert.ok(text((await a.cmd(`NAMES ${chan}`))[0] ?? { params: [] }).split(' ').includes(`+${b.session.nick}`));
    const aGets = a.next((m) => text(m) === 'voiced');
    assert.equal((await b.cmd(`PRIVMSG ${chan} :voiced`))[0]?.command, 'PRIVMSG');
    await aGets;
  });

  it('+s and +p hide a channel from LIST, NAMES and WHOIS of non-members; members see it', async () => {
    const { chan, a, b } = await setup();
    await a.cmd(`TOPIC ${chan} :hidden topic`);
    const listed = async (c: TestClient): Promise<boolean> => (await c.cmd('LIST')).some((m) => m.command === '322' && m.params[1] === chan);
    assert.equal(await listed(b), true);
    await a.cmd(`MODE ${chan} +s`);
    assert.equal(await listed(b), false, 'not listed to a non-member');
    assert.equal(await listed(a), true, 'listed to a member');
    assert.deepEqual(kinds(await b.cmd(`NAMES ${chan}`)), ['366']);
    assert.deepEqual(kinds(await b.cmd(`TOPIC ${chan}`)), ['442']);
    assert.deepEqual(kinds(await b.cmd(`WHO ${chan}`)), ['315']);
    const whois = await b.cmd(`WHOIS ${a.session.nick}`);
    assert.equal(whois.some((m) => m.command === '319'), false);
    const own = await a.cmd(`WHOIS ${a.session.nick}`);
    assert.ok(own.some((m) => m.command === '319' && text(m).includes(chan)));
    const names = await a.cmd(`NAMES ${chan}`);
    assert.equal(names[0]?.params[1], '@', 'RPL_NAMREPLY symbol @ for a secret channel');
    await a.cmd(`MODE ${chan} -s+p`);
    assert.equal(await listed(b), false, '+p hides too');
    assert.equal((await a.cmd(`NAMES ${chan}`))[0]?.params[1], '*');
  });

  it('MODE +o for a nick that exists nowhere is 401, for one elsewhere 441; bad masks 696; list full 478', async () => {
    const { chan, a, b } = await setup();
    // modern.ircdocs.horse: "ERR_NOSUCHNICK (401): the given nickname does not exist"; ERR_USERNOTINCHANNEL (441) when it is not on that channel.
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} +o nobody${seq}`)), ['401']);
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} +o ${b.session.nick}`)), ['441']);
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} +b bad,mask`)), ['696']);
    for (let i = 0; i < 100; i += 10) {
      const res = await a.cmd(`MODE ${chan} +bbbbbbbbbb ${Array.from({ length: 10 }, (_, j) => `x${i + j}`).join(' ')}`);
      assert.equal(res[0]?.params.length, 12, 'ten bans in one MODE');
    }
    assert.deepEqual(kinds(await a.cmd(`MODE ${chan} +b one-too-many`)), ['478']);
  });

  it('bot mode: +B shows in WHO (B) and tags the bot\'s messages with `bot`', async () => {
    const { chan, a, b } = await setup();
    await b.cmd(`JOIN ${chan}`);
    assert.deepEqual((await b.cmd(`MODE ${b.session.nick} +B`))[0]?.params, [b.session.nick, '+B']);
    const who = await a.cmd(`WHO ${b.session.nick}`);
    assert.equal(who[0]?.params[6], 'HB');
    const got = a.next((m) => text(m) === 'beep');
    await b.cmd(`PRIVMSG ${chan} :beep`);
    assert.equal((await got).tags.bot, '');
    assert.deepEqual((await b.cmd(`MODE ${b.session.nick}`))[0]?.params, [b.session.nick, '+B']);
  });
});

describe('owned channels (ChanServ)', () => {
  const cs = async (c: TestClient, line: string): Promise<string[]> => (await c.cmd(`PRIVMSG ChanServ :${line}`)).map(text);

  it('the founder regains ops after everyone left; the first one back is not op; modes and topic stay', async () => {
    const chan = fresh('#owned');
    const founder = await loggedIn(0, fresh('founder'));
    await founder.cmd(`JOIN ${chan}`);
    const guest = await cluster.client(1, fresh('g'));
    assert.match((await cs(guest, `REGISTER ${chan}`))[0] ?? '', /logged in/);
    assert.match((await cs(founder, `REGISTER ${chan}`))[0] ?? '', /registered to/);
    assert.match((await cs(founder, `REGISTER ${chan}`))[0] ?? '', /already registered/);
    await founder.cmd(`TOPIC ${chan} :kept while empty`);
    await founder.cmd(`MODE ${chan} +m`);
    await founder.cmd(`PART ${chan}`);
    assert.equal((await guest.cmd(`LIST ${chan}`)).some((m) => m.command === '322'), false, 'empty: gone');

    const back = await guest.cmd(`JOIN ${chan}`);
    assert.equal(back[0]?.command, 'JOIN');
    assert.equal(text(back.find((m) => m.command === '332') ?? { params: [] }), 'kept while empty');
    assert.deepEqual(text(back.find((m) => m.command === '353') ?? { params: [] }), guest.session.nick, 'not an operator');
    assert.deepEqual(kinds(await guest.cmd(`PRIVMSG ${chan} :+m stayed`)), ['404']);

    const guestSees = guest.next((m) => m.command === 'MODE');
    const join = await founder.cmd(`JOIN ${chan}`);
    assert.ok(join.some((m) => m.command === 'MODE' && m.params[1] === '+o'), 'the founder is op again');
    assert.deepEqual((await guestSees).params.slice(1), ['+o', founder.session.nick]);
  });

  it('ACCESS ADD/DEL/LIST by the founder; op and voice access applied on join; ChanServ OP', async () => {
    const chan = fresh('#acl');
    const founder = await loggedIn(0, fresh('fnd'));
    const helper = await loggedIn(1, fresh('hlp'));
    const voiced = await loggedIn(1, fresh('vcd'));
    await founder.cmd(`JOIN ${chan}`);
    await cs(founder, `REGISTER ${chan}`);
    assert.match((await cs(helper, `ACCESS ${chan} ADD ${helper.session.nick} op`))[0] ?? '', /Only the founder/);
    assert.match((await cs(founder, `ACCESS ${chan} ADD nobody${seq} op`))[0] ?? '', /not a registered account/);
    await cs(founder, `ACCESS ${chan} ADD ${helper.session.nick} op`);
    await cs(founder, `ACCESS ${chan} ADD ${voiced.session.nick} voice`);
    const listing = await cs(founder, `ACCESS ${chan} LIST`);
    assert.deepEqual(listing.slice(1, 3).sort(), [`${chan}: ${helper.session.nick.toLowerCase()} op`, `${chan}: ${voiced.session.nick.toLowerCase()} voice`].sort());
    const hj = await helper.cmd(`JOIN ${chan}`);
    assert.ok(hj.some((m) => m.command === 'MODE' && m.params[1] === '+o'));
    const vj = await voiced.cmd(`JOIN ${chan}`);
    assert.ok(vj.some((m) => m.command === 'MODE' && m.params[1] === '+v'));
    await founder.cmd(`MODE ${chan} -o ${helper.session.nick}`);
    const helperOp = helper.next((m) => m.command === 'MODE' && m.params[1] === '+o');
    await cs(helper, `OP ${chan}`);
    assert.equal((await helperOp).source, 'ChanServ!ChanServ@services.parley');
    assert.match((await cs(voiced, `OP ${chan}`))[0] ?? '', /no operator access/);
    await cs(founder, `ACCESS ${chan} DEL ${helper.session.nick}`);
    await helper.cmd(`PART ${chan}`);
    const again = await helper.cmd(`JOIN ${chan}`);
    assert.equal(again.some((m) => m.command === 'MODE'), false, 'access removed');
    assert.match((await cs(founder, `INFO ${chan}`))[0] ?? '', new RegExp(`founder ${founder.session.nick.toLowerCase()}`));
    assert.match((await cs(founder, `DROP ${chan}`))[0] ?? '', /no longer registered/);
  });

  it('nobody may use the nick ChanServ', async () => {
    const c = await cluster.client(0, fresh('cs'));
    assert.deepEqual(kinds(await c.cmd('NICK ChanServ')), ['432']);
  });
});
