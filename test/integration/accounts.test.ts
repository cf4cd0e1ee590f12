/**
 * Accounts on real services: the AccountStore contract on two PostgreSQL shards, and two real
 * instances (etcd directory, Redis state, PostgreSQL accounts) where an account registered on one
 * logs in on the other with irc-framework's SASL PLAIN and with a raw SCRAM-SHA-256 client, and a
 * guest who takes the nick of a logged-in user who left reads none of her direct messages.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { pino } from 'pino';
import { PgAccountStore } from '../../packages/server/src/accounts/store-pg.js';
import { StaticShardDirectory } from '../../packages/server/src/store/index.js';
import { accountContract } from '../contract/accounts.contract.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { Raw, escapeRe } from '../harness/raw.js';

let services: Services;
const servers: ParleyServer[] = [];
const raws: Raw[] = [];
const PASSWORD = 'integration-secret';

before(async () => {
  services = await startServices();
  const prefix = uniqueName('acct');
  const shards = [await services.postgres!.createDatabase(`${prefix}_0`), await services.postgres!.createDatabase(`${prefix}_1`)];
  for (const id of ['a1', 'a2']) {
    const s = new ParleyServer(
      InstanceOptionsSchema.parse({
        id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: shards,
      }),
      pino({ level: 'silent' }),
    );
    await s.start();
    servers.push(s);
  }
});

after(async () => {
  for (const r of raws) r.end();
  for (const s of servers) await s.close();
  await services?.stop();
});

accountContract('PostgreSQL, two shards, two instances', async () => {
  const name = uniqueName('ac');
  const shards = [0, 1].map(async (id) => ({ id, url: await services.postgres!.createDatabase(`${name}_${id}`), poolSize: 2 }));
  const list = await Promise.all(shards);
  const dirs = [new StaticShardDirectory(list), new StaticShardDirectory(list)];
  return { stores: [new PgAccountStore({ directory: dirs[0]! }), new PgAccountStore({ directory: dirs[1]! })] };
});

function raw(i: number): Raw {
  const r = new Raw(servers[i]!.tcpPort);
  raws.push(r);
  return r;
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

/** The last `AUTHENTICATE <x>` received after `from`, decoded. */
async function nextAuthenticate(r: Raw, from: number): Promise<string> {
  const re = /AUTHENTICATE (\S+)\r\n/g;
  await r.until(new RegExp(`[\\s\\S]{${from}}[\\s\\S]*AUTHENTICATE \\S+\\r\\n`));
  re.lastIndex = from;
  const m = re.exec(r.data);
  return Buffer.from(m?.[1] ?? '', 'base64').toString();
}

interface IrcFramework {
  connect(o: Record<string, unknown>): void;
  quit(msg: string): void;
  on(ev: string, fn: (e: never) => void): void;
  once(ev: string, fn: (e: never) => void): void;
}

describe('accounts across two real instances', () => {
  it('REGISTER on one instance; irc-framework logs in with SASL PLAIN on the other; WHOIS shows 330', async () => {
    const nick = uniqueName('fw').slice(0, 20);
    const r = raw(0);
    r.send(`CAP LS 302\r\n`);
    await r.until(/CAP \* LS :.*sasl=PLAIN,SCRAM-SHA-256/);
    r.send(`NICK ${nick}\r\nREGISTER * * :${PASSWORD}\r\nUSER u 0 * :x\r\nCAP END\r\n`);
    await r.until(new RegExp(`REGISTER SUCCESS ${escapeRe(nick)} `));
    await r.until(/ 376 /);
    r.send('QUIT\r\n');
    await r.closed;

    const require = createRequire(import.meta.url);
    const IRC = require('irc-framework') as { Client: new () => IrcFramework };
    const c = new IRC.Client();
    try {
      const loggedIn = new Promise<{ account: string }>((resolve, reject) => {
        c.once('loggedin', (e: { account: string }) => resolve(e));
        c.once('sasl failed', (e: { reason: string }) => reject(new Error(`sasl failed: ${e.reason}`)));
      });
      const registered = new Promise<void>((resolve) => c.once('registered', () => resolve()));
      c.connect({ host: '127.0.0.1', port: servers[1]!.tcpPort, nick, account: { account: nick, password: PASSWORD }, auto_reconnect: false });
      assert.equal((await loggedIn).account, nick);
      await registered;
      const w = raw(0);
      await w.register(uniqueName('w').slice(0, 20));
      w.send(`WHOIS ${nick}\r\n`);
      await w.until(new RegExp(` 330 \\S+ ${escapeRe(nick)} ${escapeRe(nick)} :is logged in as`));
    } finally {
      c.quit('bye');
    }
  });

  it('a raw SCRAM-SHA-256 client logs in; a wrong proof gets 904', async () => {
    const nick = uniqueName('sc').slice(0, 20);
    const r = raw(1);
    r.send(`NICK ${nick}\r\nUSER u 0 * :x\r\n`);
    await r.until(/ 376 /);
    r.send(`REGISTER * * :${PASSWORD}\r\n`);
    await r.until(/ 900 /);
    r.end();

    for (const [password, want] of [[PASSWORD, '903'], ['wrong-password', '904']] as const) {
      const c = raw(0);
      c.send('CAP REQ :sasl\r\nAUTHENTICATE SCRAM-SHA-256\r\n');
      await c.until(/AUTHENTICATE \+\r\n/);
      const cnonce = randomBytes(12).toString('base64');
      const bare = `n=${nick},r=${cnonce}`;
      let from = c.data.length;
      c.send(`AUTHENTICATE ${b64(`n,,${bare}`)}\r\n`);
      const serverFirst = await nextAuthenticate(c, from);
      const a = new Map(serverFirst.split(',').map((p) => [p[0], p.slice(2)] as const));
      const salted = pbkdf2Sync(password, Buffer.from(a.get('s') ?? '', 'base64'), Number(a.get('i')), 32, 'sha256');
      const clientKey = createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=${b64('n,,')},r=${a.get('r') ?? ''}`;
      const sig = createHmac('sha256', storedKey).update(`${bare},${serverFirst},${withoutProof}`).digest();
      const proof = Buffer.from(clientKey.map((x, i) => x ^ (sig[i] as number)));
      from = c.data.length;
      c.send(`AUTHENTICATE ${b64(`${withoutProof},p=${proof.toString('base64')}`)}\r\n`);
      if (want === '904') {
        await c.until(/ 904 \* :SASL authentication failed/);
        continue;
      }
      assert.match(await nextAuthenticate(c, from), /^v=/);
      c.send('AUTHENTICATE +\r\n');
      await c.until(/ 903 \* :SASL authentication successful/);
      assert.match(c.data, new RegExp(` 900 \\* \\S+ ${escapeRe(nick)} :You are now logged in`));
    }
  });

  it("a guest taking the nick of a logged-in user who left reads none of her DMs; she, logged in again, does", async () => {
    const alice = uniqueName('al').slice(0, 20);
    const bob = uniqueName('bo').slice(0, 20);
    const a = raw(0);
    a.send(`CAP REQ :batch\r\nNICK ${alice}\r\nUSER u 0 * :x\r\nREGISTER * * :${PASSWORD}\r\nCAP END\r\n`);
    await a.until(/ 900 /);
    await a.until(/ 376 /);
    const b = raw(1);
    b.send('CAP REQ :batch\r\nCAP END\r\n');
    await b.register(bob);
    a.send(`PRIVMSG ${bob} :for bob only\r\n`);
    await b.until(/PRIVMSG \S+ :for bob only/);
    a.send('QUIT\r\n');
    await a.closed;

    const g = raw(1);
    g.send('CAP REQ :batch\r\nCAP END\r\n');
    await g.register(alice);
    g.send(`CHATHISTORY LATEST ${bob} * 10\r\nCHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10\r\nPING :done\r\n`);
    await g.until(/PONG \S+ :done/);
    assert.doesNotMatch(g.data, /for bob only/);
    assert.doesNotMatch(g.data, / CHATHISTORY TARGETS /);
    g.send('QUIT\r\n');
    await g.closed;

    const back = raw(0);
    back.send(`CAP REQ :batch sasl\r\nAUTHENTICATE PLAIN\r\n`);
    await back.until(/AUTHENTICATE \+/);
    back.send(`AUTHENTICATE ${b64(`\0${alice}\0${PASSWORD}`)}\r\n`);
    await back.until(/ 903 /);
    back.send(`NICK ${alice}\r\nUSER u 0 * :x\r\nCAP END\r\n`);
    await back.until(/ 376 /);
    back.send(`CHATHISTORY LATEST ${bob} * 10\r\nCHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10\r\n`);
    await back.until(/PRIVMSG \S+ :for bob only/);
    await back.until(new RegExp(` CHATHISTORY TARGETS ${escapeRe(bob)} `));
  });
});
