/**
 * Accounts on the in-process cluster (two nodes, memory backends): draft/account-registration,
 * SASL PLAIN and SCRAM-SHA-256, NickServ, nick reservation, account-notify, account-tag, WHOIS
 * 330, and the privacy of direct messages (keyed by account, or by connection for a guest).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import type { IrcMessage } from '@parley/protocol';
import { MemoryAccountStore } from '../../packages/server/src/accounts/store-memory.js';
import { kinds, TestCluster, type TestClient } from './support/core.js';
import { accountContract } from '../contract/accounts.contract.js';

let cluster: TestCluster;
let seq = 0;
const fresh = (p: string) => `${p}${++seq}`;
const text = (m: { params: string[] }) => m.params[m.params.length - 1] ?? '';
const CAPS = ['message-tags', 'server-time', 'echo-message', 'batch', 'labeled-response', 'draft/chathistory', 'sasl', 'account-notify', 'account-tag'];
const PASSWORD = 'correct-horse-battery';
const EVER = 'timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z';

before(async () => {
  cluster = await TestCluster.start(2);
});
after(() => cluster.close());

accountContract('memory', async () => {
  const store = new MemoryAccountStore();
  return { stores: [store, store] };
});

/** A registered client that created `account` (its nick) with REGISTER and is logged in to it. */
async function registered(i: number, account: string, caps = CAPS, password = PASSWORD): Promise<TestClient> {
  const c = await cluster.client(i, account, caps);
  const res = await c.cmd(`REGISTER * * :${password}`);
  assert.deepEqual(kinds(res), ['REGISTER', '900'], res.map((m) => m.command + ' ' + m.params.join(' ')).join(' | '));
  return c;
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

/** SASL PLAIN before registration; resolves with the numeric that ended it (903 or 90x). */
async function saslPlain(c: TestClient, account: string, password: string): Promise<IrcMessage> {
  c.send('CAP REQ :sasl');
  c.send('AUTHENTICATE PLAIN');
  await c.next((m) => m.command === 'AUTHENTICATE' && m.params[0] === '+');
  c.send(`AUTHENTICATE ${b64(`\0${account}\0${password}`)}`);
  return c.next((m) => ['903', '904', '905', '906', '907'].includes(m.command));
}

async function finishRegistration(c: TestClient, nick: string): Promise<void> {
  c.send(`NICK ${nick}`);
  c.send('USER u 0 * :Test User');
  c.send('CAP END');
  await c.seen((m) => m.command === '376' || m.command === '422');
}

/** A SCRAM-SHA-256 client (RFC 5802) driven over AUTHENTICATE; resolves with the final numeric. */
async function saslScram(c: TestClient, account: string, password: string): Promise<IrcMessage> {
  c.send('AUTHENTICATE SCRAM-SHA-256');
  await c.next((m) => m.command === 'AUTHENTICATE' && m.params[0] === '+');
  const cnonce = randomBytes(12).toString('base64');
  const bare = `n=${account},r=${cnonce}`;
  const serverFirstP = c.next((m) => m.command === 'AUTHENTICATE' || m.command === '904');
  c.send(`AUTHENTICATE ${b64(`n,,${bare}`)}`);
  const sf = await serverFirstP;
  if (sf.command !== 'AUTHENTICATE') return sf;
  const serverFirst = Buffer.from(sf.params[0] ?? '', 'base64').toString();
  const a = new Map(serverFirst.split(',').map((p) => [p[0], p.slice(2)] as const));
  const nonce = a.get('r') ?? '';
  assert.ok(nonce.startsWith(cnonce), 'the server nonce extends the client nonce');
  const salted = pbkdf2Sync(password, Buffer.from(a.get('s') ?? '', 'base64'), Number(a.get('i')), 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const withoutProof = `c=${b64('n,,')},r=${nonce}`;
  const authMessage = `${bare},${serverFirst},${withoutProof}`;
  const sig = createHmac('sha256', storedKey).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((byte, i) => byte ^ (sig[i] as number)));
  const finalP = c.next((m) => m.command === 'AUTHENTICATE' || m.command === '904');
  c.send(`AUTHENTICATE ${b64(`${withoutProof},p=${proof.toString('base64')}`)}`);
  const fin = await finalP;
  if (fin.command !== 'AUTHENTICATE') return fin;
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  const expected = `v=${createHmac('sha256', serverKey).update(authMessage).digest('base64')}`;
  assert.equal(Buffer.from(fin.params[0] ?? '', 'base64').toString(), expected, 'the server proves it knows the keys');
  c.send('AUTHENTICATE +');
  return c.next((m) => ['903', '904'].includes(m.command));
}

describe('capabilities', () => {
  it('CAP LS 302 gives the SASL mechanisms and the registration flags as values; plain LS none', async () => {
    const c = cluster.raw(0);
    c.send('CAP LS 302');
    const caps = text(await c.next((m) => m.command === 'CAP')).split(' ');
    for (const want of ['sasl=PLAIN,SCRAM-SHA-256', 'draft/account-registration=before-connect,custom-account-name', 'account-tag', 'account-notify']) {
      assert.ok(caps.includes(want), `${want} in ${caps.join(' ')}`);
    }
    c.send('CAP LS');
    const plain = text(await c.next((m) => m.command === 'CAP')).split(' ');
    assert.ok(plain.includes('sasl') && !plain.some((x) => x.includes('=')));
  });
});

describe('REGISTER and VERIFY (draft/account-registration)', () => {
  it('registers before connecting, logs in at once, and WHOIS on the other instance shows 330', async () => {
    const nick = fresh('reg');
    const c = cluster.raw(0);
    c.send('CAP REQ :sasl');
    c.send(`REGISTER * * :${PASSWORD}`);
    const needNick = await c.next((m) => m.command === 'FAIL');
    assert.deepEqual(needNick.params.slice(0, 3), ['REGISTER', 'NEED_NICK', '*']);
    c.send(`NICK ${nick}`);
    c.send(`REGISTER * * :${PASSWORD}`);
    const ok = await c.seen((m) => m.command === 'REGISTER');
    assert.deepEqual(ok.params.slice(0, 2), ['SUCCESS', nick]);
    const logged = await c.seen((m) => m.command === '900');
    assert.deepEqual(logged.params.slice(2), [nick, `You are now logged in as ${nick}`]);
    c.send('USER u 0 * :x');
    c.send('CAP END');
    await c.seen((m) => m.command === '376');
    const other = await cluster.client(1, fresh('who'));
    const whois = await other.cmd(`WHOIS ${nick}`);
    const acct = whois.find((m) => m.command === '330');
    assert.deepEqual(acct?.params.slice(1), [nick, nick, 'is logged in as']);
    assert.equal(c.messages.some((m) => m.command === 'NOTICE' && m.params[0] === nick), false, 'no reservation notice for the owner');
  });

  it('refuses a taken name in any case, a bad name, a weak or too long password, a second account; VERIFY has nothing to verify', async () => {
    const name = fresh('Taken');
    await registered(0, name);
    const c = await cluster.client(1, fresh('other'), CAPS);
    const code = async (line: string) => (await c.cmd(line))[0]?.params.slice(0, 3);
    assert.deepEqual(await code(`REGISTER ${name.toUpperCase()} * :${PASSWORD}`), ['REGISTER', 'ACCOUNT_EXISTS', name.toUpperCase()]);
    assert.deepEqual(await code(`REGISTER NickServ * :${PASSWORD}`), ['REGISTER', 'BAD_ACCOUNT_NAME', 'NickServ']);
    assert.deepEqual(await code(`REGISTER 9lives * :${PASSWORD}`), ['REGISTER', 'BAD_ACCOUNT_NAME', '9lives']);
    assert.deepEqual(await code('REGISTER * * :short'), ['REGISTER', 'WEAK_PASSWORD', c.session.nick]);
    assert.deepEqual(await code(`REGISTER * * :${'x'.repeat(301)}`), ['REGISTER', 'UNACCEPTABLE_PASSWORD', c.session.nick]);
    assert.deepEqual(await code(`VERIFY ${name} 123456`), ['VERIFY', 'INVALID_CODE', name]);
    const custom = fresh('custom');
    const res = await c.cmd(`REGISTER ${custom} someone@example.com :${PASSWORD}`);
    assert.deepEqual(kinds(res), ['REGISTER', '900'], 'custom-account-name: any free valid name');
    assert.deepEqual(await code(`REGISTER * * :${PASSWORD}`), ['REGISTER', 'ALREADY_AUTHENTICATED', custom]);
    assert.equal((await c.cmd('REGISTER a b'))[0]?.command, '461');
  });

  it('two instances registering one name at once: exactly one wins', async () => {
    const name = fresh('race');
    const [a, b] = [await cluster.client(0, fresh('ra'), CAPS), await cluster.client(1, fresh('rb'), CAPS)];
    const res = await Promise.all([a.cmd(`REGISTER ${name} * :${PASSWORD}`), b.cmd(`REGISTER ${name} * :${PASSWORD}`)]);
    assert.deepEqual(res.map((r) => r[0]?.command).sort(), ['FAIL', 'REGISTER']);
  });
});

describe('SASL', () => {
  it('PLAIN logs in before registration: 900 and 903, the account in WHOIS and in the claimed user', async () => {
    const name = fresh('plain');
    (await registered(0, name)).send('QUIT');
    const c = cluster.raw(1);
    const done = await saslPlain(c, name, PASSWORD);
    assert.equal(done.command, '903');
    assert.deepEqual(c.messages.find((m) => m.command === '900')?.params.slice(2, 3), [name]);
    await finishRegistration(c, fresh('nick'));
    assert.equal((await cluster.node(0).state.getUser(c.session.nick))?.account, name);
    c.send('AUTHENTICATE PLAIN');
    await c.next((m) => m.command === '907');
  });

  it('PLAIN refuses a wrong password, an unknown account, another authzid and bad base64 with 904', async () => {
    const name = fresh('plainbad');
    (await registered(0, name)).send('QUIT');
    for (const [acct, pw] of [[name, 'wrong password'], [fresh('nobody'), PASSWORD]] as const) {
      assert.equal((await saslPlain(cluster.raw(1), acct, pw)).command, '904');
    }
    const c = cluster.raw(0);
    c.send('AUTHENTICATE PLAIN');
    c.send(`AUTHENTICATE ${b64(`someone\0${name}\0${PASSWORD}`)}`);
    await c.next((m) => m.command === '904');
    c.send('AUTHENTICATE PLAIN');
    c.send('AUTHENTICATE !!notbase64');
    await c.next((m) => m.command === '904');
    await finishRegistration(c, fresh('after'));
    assert.equal(cluster.node(0).users.get(c.session.nickKey)?.account, null, 'a failed SASL leaves the connection a guest');
  });

  it('PLAIN in 400-byte chunks; 905 for a chunk too long, 906 for an abort, 908 and 904 for an unknown mechanism', async () => {
    const name = fresh('chunk');
    const long = 'p'.repeat(300);
    (await registered(0, name, CAPS, long)).send('QUIT');
    const c = cluster.raw(1);
    c.send('AUTHENTICATE PLAIN');
    await c.next((m) => m.command === 'AUTHENTICATE');
    const payload = b64(`\0${name}\0${long}`);
    assert.ok(payload.length > 400);
    for (let i = 0; i < payload.length; i += 400) c.send(`AUTHENTICATE ${payload.slice(i, i + 400)}`);
    if (payload.length % 400 === 0) c.send('AUTHENTICATE +');
    assert.equal((await c.next((m) => /^90\d$/.test(m.command) && m.command !== '900')).command, '903');

    const d = cluster.raw(1);
    d.send('AUTHENTICATE PLAIN');
    d.send(`AUTHENTICATE ${'A'.repeat(401)}`);
    await d.next((m) => m.command === '905');
    d.send('AUTHENTICATE PLAIN');
    d.send('AUTHENTICATE *');
    await d.next((m) => m.command === '906');
    d.send('AUTHENTICATE EXTERNAL');
    const mechs = await d.next((m) => m.command === '908');
    assert.equal(mechs.params[1], 'PLAIN,SCRAM-SHA-256');
    await d.seen((m) => m.command === '904');
  });

  it('SCRAM-SHA-256 logs in with a proof checked against the stored keys; a wrong password gets 904', async () => {
    const name = fresh('scram');
    (await registered(0, name)).send('QUIT');
    const c = cluster.raw(1);
    c.send('CAP REQ :sasl');
    assert.equal((await saslScram(c, name, PASSWORD)).command, '903');
    await finishRegistration(c, name);
    assert.equal(cluster.node(1).users.get(name.toLowerCase())?.account, name);
    const bad = cluster.raw(0);
    assert.equal((await saslScram(bad, name, 'not the password')).command, '904');
    const unknown = cluster.raw(0);
    assert.equal((await saslScram(unknown, fresh('ghost'), PASSWORD)).command, '904');
  });

  it('CAP END during an unfinished exchange aborts it (906) and registers as a guest', async () => {
    const c = cluster.raw(0);
    c.send('CAP REQ :sasl');
    c.send('AUTHENTICATE PLAIN');
    await c.next((m) => m.command === 'AUTHENTICATE');
    c.send(`NICK ${fresh('half')}`);
    c.send('USER u 0 * :x');
    c.send('CAP END');
    await c.next((m) => m.command === '906');
    await c.seen((m) => m.command === '001');
  });
});

describe('NickServ', () => {
  const ns = (c: TestClient) => c.messages.filter((m) => m.command === 'NOTICE' && m.source?.startsWith('NickServ!') === true).map(text);

  it('REGISTER, LOGOUT (901), IDENTIFY, INFO, HELP; its messages are answered, never stored', async () => {
    const nick = fresh('ns');
    const c = await cluster.client(0, nick, CAPS);
    const reg = await c.cmd(`PRIVMSG NickServ :REGISTER ${PASSWORD}`);
    assert.deepEqual(kinds(reg), ['900', 'NOTICE']);
    assert.match(text(reg[1] as IrcMessage), /registered; you are now logged in/);
    assert.equal(reg[1]?.source?.split('!')[0], 'NickServ');
    const out = await c.cmd('PRIVMSG NickServ :LOGOUT');
    assert.deepEqual(kinds(out), ['901', 'NOTICE']);
    assert.equal(cluster.node(0).users.get(nick.toLowerCase())?.account, null);
    assert.match(text((await c.cmd('PRIVMSG NickServ :IDENTIFY wrong-password'))[0] as IrcMessage), /Invalid account or password/);
    const idf = await c.cmd(`PRIVMSG nickserv :IDENTIFY ${nick} ${PASSWORD}`);
    assert.deepEqual(kinds(idf), ['900', 'NOTICE']);
    assert.match(text((await c.cmd('PRIVMSG NickServ :INFO'))[0] as IrcMessage), new RegExp(`^Account ${nick}, registered \\d{4}-`));
    assert.ok((await c.cmd('PRIVMSG NickServ :HELP')).length >= 5);
    assert.match(text((await c.cmd('PRIVMSG NickServ :FROB'))[0] as IrcMessage), /Unknown command FROB/);
    const stored = await cluster.store.targets([], `a.${nick.toLowerCase()}`, 0, Date.now() + 1000, 10);
    assert.deepEqual(stored, [], 'nothing of the conversation with NickServ was stored');
    assert.ok(ns(c).length > 5);
  });

  it('nobody can take the nick NickServ (432)', async () => {
    const c = cluster.raw(0);
    c.send('NICK NickServ');
    assert.equal((await c.next((m) => m.command === '432')).params[1], 'NickServ');
    const d = await cluster.client(1, fresh('n'));
    d.send('NICK nickserv');
    await d.next((m) => m.command === '432');
  });

  it('GHOST disconnects the holder of your nick on another instance', async () => {
    const nick = fresh('gh');
    const owner = await registered(0, nick);
    owner.send('NICK ' + fresh('away'));
    await owner.next((m) => m.command === 'NICK');
    const squatter = await cluster.client(1, nick, CAPS);
    const bye = squatter.closedP;
    const res = await owner.cmd(`PRIVMSG NickServ :GHOST ${nick}`);
    assert.match(text(res[0] as IrcMessage), /has been disconnected/);
    await bye;
    assert.match(squatter.lines.at(-1) ?? '', /ERROR :Closing Link: .*GHOST command used by/);
    const stranger = await cluster.client(1, fresh('st'), CAPS);
    assert.match(text((await stranger.cmd(`PRIVMSG NickServ :GHOST ${owner.session.nick}`))[0] as IrcMessage), /Log in/);
  });
});

describe('nick reservation', () => {
  it('a registered nick used without its account is renamed to a guest nick after the grace period, once', async () => {
    const cl = await TestCluster.start(2, { accounts: { nickGraceSeconds: 0 } });
    try {
      const owner = await cl.client(0, 'dana', CAPS);
      assert.equal((await owner.cmd(`REGISTER * * :${PASSWORD}`))[0]?.command, 'REGISTER');
      await owner.cmd('JOIN #res');
      owner.send('QUIT');
      await owner.closedP;
      const watcher = await cl.client(0, 'wat', CAPS);
      await watcher.cmd('JOIN #res');
      const imp = cl.raw(1);
      const renamed = imp.next((m) => m.command === 'NICK', 3000);
      imp.send('NICK dana');
      imp.send('USER u 0 * :x');
      await imp.seen((m) => m.command === '001');
      imp.send('JOIN #res');
      const notice = await imp.seen((m) => m.command === 'NOTICE' && m.source?.startsWith('NickServ!') === true);
      assert.match(text(notice), /This nickname is registered/);
      const nick = await renamed;
      assert.match(text(nick), /^Guest\d{4,6}$/);
      assert.equal(imp.session.nick, text(nick));
      assert.equal(imp.messages.filter((m) => m.command === 'NOTICE' && /This nickname is registered/.test(text(m))).length, 1);
      // The owner logs in on a new connection and takes the nick back.
      const back = cl.raw(0);
      back.send('CAP REQ :sasl');
      back.send('AUTHENTICATE PLAIN');
      back.send(`AUTHENTICATE ${b64(`\0dana\0${PASSWORD}`)}`);
      await back.next((m) => m.command === '903');
      back.send('NICK dana');
      back.send('USER u 0 * :x');
      back.send('CAP END');
      await back.seen((m) => m.command === '376');
      assert.equal(back.session.nick, 'dana');
      assert.equal(back.session.nickGrace, null);
    } finally {
      await cl.close();
    }
  });

  it('identifying within the grace period keeps the nick (the timer is cancelled)', async () => {
    const nick = fresh('keep');
    (await registered(0, nick)).send('QUIT');
    const c = await cluster.client(1, fresh('tmp'), CAPS);
    await c.cmd(`NICK ${nick}`);
    await c.seen((m) => m.command === 'NOTICE' && /within 30 seconds/.test(text(m)));
    assert.notEqual(c.session.nickGrace, null, 'a grace timer runs');
    await c.cmd(`PRIVMSG NickServ :IDENTIFY ${PASSWORD}`);
    assert.equal(c.session.nickGrace, null, 'the timer is gone once identified');
    assert.equal(c.session.nick, nick);
  });
});

describe('account-notify and account-tag', () => {
  it('ACCOUNT reaches channel members with account-notify on every instance, and nobody else', async () => {
    const chan = `#${fresh('acn')}`;
    const nick = fresh('acc');
    const a = await registered(0, nick);
    await a.cmd('PRIVMSG NickServ :LOGOUT');
    await a.cmd(`JOIN ${chan}`);
    const withCap = await cluster.client(1, fresh('wc'), CAPS);
    const without = await cluster.client(1, fresh('wo'));
    await withCap.cmd(`JOIN ${chan}`);
    await without.cmd(`JOIN ${chan}`);
    const seen = withCap.next((m) => m.command === 'ACCOUNT');
    await a.cmd(`PRIVMSG NickServ :IDENTIFY ${PASSWORD}`);
    const acc = await seen;
    assert.equal(acc.source?.split('!')[0], nick);
    assert.deepEqual(acc.params, [nick]);
    const logout = withCap.next((m) => m.command === 'ACCOUNT');
    await a.cmd('PRIVMSG NickServ :LOGOUT');
    assert.deepEqual((await logout).params, ['*']);
    assert.equal(without.messages.some((m) => m.command === 'ACCOUNT'), false);
    assert.equal(a.messages.some((m) => m.command === 'ACCOUNT'), false, 'not to the user itself (it gets 900/901)');
  });

  it('messages of a logged-in user carry account=, live and from history; a client cannot forge it', async () => {
    const chan = `#${fresh('tag')}`;
    const nick = fresh('tagged');
    const a = await registered(0, nick);
    const b = await cluster.client(1, fresh('rd'), CAPS);
    await a.cmd(`JOIN ${chan}`);
    await b.cmd(`JOIN ${chan}`);
    const live = b.next((m) => m.command === 'PRIVMSG');
    await a.cmd(`PRIVMSG ${chan} :hello`);
    assert.equal((await live).tags.account, nick);
    const forged = a.next((m) => m.command === 'PRIVMSG');
    const g = await cluster.client(0, fresh('forger'), CAPS);
    await g.cmd(`JOIN ${chan}`);
    const fromGuest = b.next((m) => m.command === 'PRIVMSG' && text(m) === 'forged');
    g.send(`@account=${nick};+x=1 PRIVMSG ${chan} :forged`);
    assert.equal((await fromGuest).tags.account, undefined);
    await forged;
    const hist = await b.cmd(`CHATHISTORY LATEST ${chan} * 10`);
    const first = hist.find((m) => m.command === 'PRIVMSG' && text(m) === 'hello');
    assert.equal(first?.tags.account, nick);
  });
});

describe('direct messages belong to accounts', () => {
  const dmTexts = (ms: IrcMessage[]) => ms.filter((m) => m.command === 'PRIVMSG').map(text);
  const targetsOf = async (c: TestClient) => (await c.cmd(`CHATHISTORY TARGETS ${EVER} 50`)).filter((m) => m.command === 'CHATHISTORY').map((m) => m.params[1]);

  it('after alice (logged in) quits, a guest named alice reads nothing and lists nothing; alice logged in again reads all', async () => {
    const alice = fresh('alice');
    const bob = fresh('bob');
    const a = await registered(0, alice);
    const b = await cluster.client(1, bob, CAPS);
    await a.cmd(`PRIVMSG ${bob} :secret one`);
    await b.cmd(`PRIVMSG ${alice} :secret two`);
    assert.deepEqual(dmTexts(await a.cmd(`CHATHISTORY LATEST ${bob} * 10`)), ['secret one', 'secret two']);
    a.send('QUIT');
    await a.closedP;

    // bob, still connected, reads the conversation with the account alice while she is away.
    assert.deepEqual(dmTexts(await b.cmd(`CHATHISTORY LATEST ${alice} * 10`)), ['secret one', 'secret two']);

    const impostor = cluster.raw(0);
    impostor.send(`NICK ${alice}`);
    impostor.send('USER u 0 * :x');
    await impostor.seen((m) => m.command === '376' || m.command === '422');
    impostor.send('CAP REQ :batch labeled-response message-tags');
    await impostor.next((m) => m.command === 'CAP');
    assert.deepEqual(dmTexts(await impostor.cmd(`CHATHISTORY LATEST ${bob} * 10`)), []);
    assert.deepEqual(await targetsOf(impostor), []);
    impostor.send('QUIT');
    await impostor.closedP;

    const back = cluster.raw(1);
    assert.equal((await saslPlain(back, alice, PASSWORD)).command, '903');
    back.send('CAP REQ :batch labeled-response message-tags');
    await finishRegistration(back, alice);
    assert.deepEqual(dmTexts(await back.cmd(`CHATHISTORY LATEST ${bob} * 10`)), ['secret one', 'secret two']);
    assert.deepEqual(await targetsOf(back), [bob]);
    assert.deepEqual(await targetsOf(b), [alice], 'bob lists the account he talked to');
  });

  it('a guest conversation is readable only by the connections that had it', async () => {
    const dave = fresh('dave');
    const erin = fresh('erin');
    const d = await cluster.client(0, dave, CAPS);
    const e = await cluster.client(1, erin, CAPS);
    await d.cmd(`PRIVMSG ${erin} :between guests`);
    assert.deepEqual(dmTexts(await e.cmd(`CHATHISTORY LATEST ${dave} * 10`)), ['between guests']);
    assert.deepEqual(await targetsOf(e), [dave]);
    d.send('QUIT');
    await d.closedP;
    assert.deepEqual(await targetsOf(e), [], 'a guest that left cannot be reached by any name');
    const d2 = await cluster.client(1, dave, CAPS);
    assert.deepEqual(dmTexts(await d2.cmd(`CHATHISTORY LATEST ${erin} * 10`)), []);
    assert.deepEqual(await targetsOf(d2), []);
    assert.deepEqual(dmTexts(await e.cmd(`CHATHISTORY LATEST ${dave} * 10`)), [], 'the new dave is another person');
  });

  it('DMs keyed by nick (before accounts) are not readable by nick any more', async () => {
    const x = fresh('old');
    const y = fresh('pal');
    await cluster.store.append({ room: `dm:${x},${y}`, source: `${y}!u@h`, command: 'PRIVMSG', target: x, text: 'legacy', tags: null });
    const c = await cluster.client(0, x, CAPS);
    await cluster.client(1, y, CAPS);
    assert.deepEqual(dmTexts(await c.cmd(`CHATHISTORY LATEST ${y} * 10`)), []);
    assert.deepEqual(await targetsOf(c), []);
  });
});
