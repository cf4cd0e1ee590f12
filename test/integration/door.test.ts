import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { makeCertificates, type LabCertificates } from '@parley/agent';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { CONFIG_APPLIED } from '../harness/logs.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';
import { Raw, escapeRe } from '../harness/raw.js';
import { hashPassword } from '../../packages/server/src/accounts/password.js';

/*
 * The door and the bus of real `parley server` processes (real etcd, Redis, PostgreSQL): forged
 * bus payloads never reach a client, WebSocket origins, per-address limits cluster-wide, the API's
 * read budget, IRC over TLS and WSS with a CA made by openssl, certificate reload, cloaks, and the
 * PROXY header of a trusted front door.
 */

let services: Services;
let prefix: string;
let etcd: Etcd3;
let a: ParleyProcess;
let b: ParleyProcess;
let certs: LabCertificates;
let clusterKey: string;
let tlsPorts: { tls: number; https: number };
const open: { end(): void }[] = [];

/** Raw IRC connections (plain or TLS) from a chosen local address, closed after each test. */
function track(r: Raw): Raw {
  open.push(r);
  return r;
}

const Conn = {
  tcp: (port: number, localAddress = '127.0.0.1'): Raw => track(new Raw(net.connect({ port, host: '127.0.0.1', localAddress }))),
};

async function setConfig(config: Record<string, unknown>): Promise<void> {
  const since = { a: a.logs.mark(), b: b.logs.mark() };
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(config));
  await Promise.all([
    a.logs.waitForMsg(CONFIG_APPLIED, { since: since.a, timeoutMs: 10_000 }),
    b.logs.waitForMsg(CONFIG_APPLIED, { since: since.b, timeoutMs: 10_000 }),
  ]);
}

const BASE = { flood: { linesPerSecond: 0 } };

before(async () => {
  services = await startServices();
  prefix = uniqueName('door');
  const db = await services.postgres!.createDatabase(prefix);
  etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(BASE));
  clusterKey = 'k'.repeat(20) + Math.random().toString(36).slice(2);
  const keyFile = path.join(services.dir, 'cluster-key');
  await fs.writeFile(keyFile, `${clusterKey}\n`, { mode: 0o600 });
  certs = await makeCertificates(path.join(services.dir, 'tls'));
  const common = ['--cluster-key-file', keyFile];
  [a, b] = await Promise.all([
    spawnParley(services, {
      id: 'a', prefix, pg: [db],
      extraArgs: [...common, '--tls-cert', certs.cert, '--tls-key', certs.key, '--tls-port', '0', '--https-port', '0', '--trusted-proxies', '127.0.0.1'],
    }),
    spawnParley(services, { id: 'b', prefix, pg: [db], extraArgs: common }),
  ]);
  const listening = a.logs.entries.find((e) => e.msg === 'listening');
  tlsPorts = { tls: Number(listening?.tlsPort), https: Number(listening?.httpsPort) };
  assert.ok(tlsPorts.tls > 0 && tlsPorts.https > 0, `TLS ports in ${JSON.stringify(listening)}`);
});

after(async () => {
  for (const c of open) c.end();
  etcd?.close();
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await services?.stop();
});

describe('the bus', () => {
  it('drops a payload without the cluster key, and a keyed one with CR/LF in a line; delivers a good one', async () => {
    const alice = Conn.tcp(a.tcpPort);
    await alice.register('alice');
    const bob = Conn.tcp(b.tcpPort);
    await bob.register('bob');
    alice.send('JOIN #room\r\n');
    await alice.until(/ 366 alice #room /);
    bob.send('JOIN #room\r\n');
    await alice.until(/:bob!\S+ JOIN #room/);

    // Sealed payloads between two real instances still flow.
    bob.send('PRIVMSG #room :between instances\r\n');
    await alice.until(/:bob!\S+ PRIVMSG #room :between instances/);

    const redis = new Redis(services.redis!.url);
    try {
      const channel = `${prefix}:t:r:#room`;
      const event = (text: string) => ({
        k: 'e', o: 'mallory', r: '#room', t: '2026-01-01T00:00:00.000Z', ms: 1767225600000, i: 'e-0123456789abcdef',
        l: `:mallory!m@evil.example PRIVMSG #room :${text}`,
      });
      const batch = (...e: unknown[]) => JSON.stringify({ o: 'mallory', e });
      const seal = (payload: string) => `${createHmac('sha256', clusterKey).update(payload).digest('hex')}.${payload}`;
      // 1. A client of Redis without the key: a perfectly formed batch, no MAC.
      await redis.publish(channel, batch(event('forged without key')));
      // 2. A MAC made with another key.
      const other = batch(event('forged with another key'));
      await redis.publish(channel, `${createHmac('sha256', 'not the key').update(other).digest('hex')}.${other}`);
      // 3. With the key, but CR/LF in the line (an injected server NOTICE), and a NUL.
      await redis.publish(channel, seal(batch({ ...event('x'), l: ':mallory!m@e PRIVMSG #room :hi\r\n:parley.local NOTICE alice :injected' })));
      await redis.publish(channel, seal(batch({ ...event('nul\0here') })));
      // 4. With the key, a tag value that would leave its tag.
      await redis.publish(channel, seal(batch({ ...event('bad tag'), i: 'x y;z' })));
      // 5. The same publisher, afterwards, well formed and keyed: it arrives, so 1-4 had their chance first.
      await redis.publish(channel, seal(batch(event('sealed and valid'))));
      await Promise.all([
        alice.until(/PRIVMSG #room :sealed and valid\r\n/),
        bob.until(/PRIVMSG #room :sealed and valid\r\n/),
      ]);
      for (const c of [alice, bob]) {
        assert.doesNotMatch(c.data, /forged|injected|nul|bad tag/, 'a forged or invalid payload reached a client');
      }
      const errors = (m: string) => Number(/^parley_bus_errors_total (\d+)/m.exec(m)?.[1] ?? 'NaN');
      assert.ok(errors(await a.metrics()) >= 5, 'the dropped payloads are counted');
      assert.ok(a.logs.entries.some((e) => typeof e.msg === 'string' && e.msg.startsWith('bus payload without a valid cluster-key MAC dropped')));
    } finally {
      redis.disconnect();
      alice.end();
      bob.end();
    }
  });
});

describe('WebSocket origins', () => {
  const tryOrigin = (port: number, origin: string | undefined): Promise<number> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'text.ircv3.net', origin === undefined ? {} : { origin });
      ws.once('open', () => {
        ws.terminate();
        resolve(101);
      });
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('error', (err) => reject(err));
    });

  it('refuses a foreign origin and null with 403; the lab\'s own origin and none get 101', async () => {
    assert.equal(await tryOrigin(a.wsPort, 'http://evil.example'), 403);
    assert.equal(await tryOrigin(a.wsPort, 'null'), 403);
    assert.equal(await tryOrigin(a.wsPort, 'http://127.0.0.1.evil.example:8080'), 403);
    assert.equal(await tryOrigin(a.wsPort, `http://127.0.0.1:${a.wsPort}`), 101);
    assert.equal(await tryOrigin(a.wsPort, 'http://localhost:3000'), 101);
    assert.equal(await tryOrigin(a.wsPort, undefined), 101);
  });

  it('follows the configuration live: an explicit origin, then `*`', async () => {
    await setConfig({ ...BASE, door: { wsOrigins: ['https://chat.example.org'] } });
    assert.equal(await tryOrigin(a.wsPort, 'https://chat.example.org'), 101);
    assert.equal(await tryOrigin(a.wsPort, `http://127.0.0.1:${a.wsPort}`), 403);
    await setConfig({ ...BASE, door: { wsOrigins: ['*'] } });
    assert.equal(await tryOrigin(a.wsPort, 'http://evil.example'), 101);
    await setConfig(BASE);
  });
});

describe('per-address limits', () => {
  it('refuses the N+1st connection from one address across both instances while another address connects', async () => {
    await setConfig({ ...BASE, door: { connectionsPerIp: 3, exemptIps: [] } });
    try {
      const mine = [Conn.tcp(a.tcpPort), Conn.tcp(b.tcpPort), Conn.tcp(a.tcpPort)];
      await Promise.all(mine.map((c, i) => c.register(`lim${i}`)));
      // The fourth, on either instance, is refused with a clear ERROR.
      for (const port of [a.tcpPort, b.tcpPort]) {
        const extra = Conn.tcp(port);
        // Speaking first, as IRC clients do (a listener that trusts a proxy reads before it admits).
        extra.send('NICK extra\r\n');
        await extra.until(/^ERROR :Closing Link: 127\.0\.0\.1 \(Too many connections from your address\)\r\n/);
        await extra.closed;
      }
      // A WebSocket from the same address too.
      const refused = await new Promise<string>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${b.wsPort}/`, 'text.ircv3.net');
        let got = '';
        ws.on('message', (d: Buffer) => (got += d.toString()));
        ws.once('close', () => resolve(got));
        ws.once('error', reject);
      });
      assert.match(refused, /^ERROR :Closing Link: 127\.0\.0\.1 \(Too many connections from your address\)/);
      // Another address still connects.
      const other = Conn.tcp(b.tcpPort, '127.0.0.2');
      await other.register('elsewhere');
      // One closes: once the server has seen it go (its QUIT reached a channel mate), a new one
      // from the same address is let in again.
      const [lim0] = mine;
      lim0?.send('JOIN #lim\r\n');
      await lim0?.until(/ 366 lim0 #lim /);
      other.send('JOIN #lim\r\n');
      await other.until(/ 366 elsewhere #lim /);
      lim0?.end();
      await other.until(/:lim0!\S+ QUIT /);
      const again = Conn.tcp(a.tcpPort);
      await again.register('again');
    } finally {
      for (const c of open) c.end();
      await setConfig(BASE);
    }
  });

  it('throttles new connections per minute from one address', async () => {
    await setConfig({ ...BASE, door: { connectionsPerIp: 0, connectsPerIpPerMinute: 2, exemptIps: [] } });
    try {
      // A fresh address, so earlier tests' attempts do not count.
      const first = [Conn.tcp(a.tcpPort, '127.0.0.3'), Conn.tcp(b.tcpPort, '127.0.0.3')];
      await Promise.all(first.map((c, i) => c.register(`thr${i}`)));
      const third = Conn.tcp(a.tcpPort, '127.0.0.3');
      await third.until(/^ERROR :Closing Link: 127\.0\.0\.3 \(Too many connection attempts from your address, try again in a minute\)\r\n/);
    } finally {
      await setConfig(BASE);
    }
  });

  it('rate-limits the API read routes per address with 429 JSON', async () => {
    await setConfig({ ...BASE, door: { apiReadsPerSecond: 0.01, apiReadBurst: 3, exemptIps: [] } });
    try {
      const statuses: number[] = [];
      let last: Response | null = null;
      for (let i = 0; i < 4; i++) {
        last = await fetch(`http://127.0.0.1:${a.wsPort}/api/stats`);
        statuses.push(last.status);
        if (i < 3) await last.arrayBuffer();
      }
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      const body = (await last?.json()) as { statusCode: number; retryAfterSeconds: number };
      assert.equal(body.statusCode, 429);
      assert.ok(body.retryAfterSeconds >= 1);
      assert.ok(Number(last?.headers.get('retry-after')) >= 1);
      // Health checks are not API reads.
      assert.equal((await fetch(`http://127.0.0.1:${a.wsPort}/readyz`)).status, 200);
    } finally {
      await setConfig(BASE);
    }
  });
});

describe('TLS', () => {
  async function tlsIrc(port: number): Promise<{ conn: Raw; fingerprint: string }> {
    const ca = await fs.readFile(certs.ca);
    const sock = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca });
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    return { conn: track(new Raw(sock)), fingerprint: sock.getPeerCertificate().fingerprint256 };
  }

  it('accepts IRC over TLS with the CA made by openssl, and refuses a client that does not trust another CA', async () => {
    const { conn } = await tlsIrc(tlsPorts.tls);
    await conn.register('secure');
    conn.send('WHOIS secure\r\n');
    await conn.until(/ 318 secure /);
    conn.end();
    // Without the CA the handshake fails: the certificate really is the one checked.
    await assert.rejects(new Promise<void>((resolve, reject) => {
      const s = tls.connect({ port: tlsPorts.tls, host: '127.0.0.1', servername: 'localhost' });
      s.once('secureConnect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    }), /self-signed certificate in certificate chain|unable to verify/);
  });

  it('serves WSS and HTTPS on the same routes', async () => {
    const ca = await fs.readFile(certs.ca);
    const got = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`wss://localhost:${tlsPorts.https}/`, 'text.ircv3.net', { ca });
      let text = '';
      ws.once('open', () => {
        ws.send('NICK wss');
        ws.send('USER u 0 * :wss');
      });
      ws.on('message', (d: Buffer) => {
        text += `${d.toString()}\n`;
        if (/ 001 wss /.test(text)) {
          ws.close();
          resolve(text);
        }
      });
      ws.once('error', reject);
    });
    assert.match(got, / 001 wss /);
    const res = await new Promise<number>((resolve, reject) => {
      const s = tls.connect({ port: tlsPorts.https, host: '127.0.0.1', servername: 'localhost', ca }, () => {
        s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      });
      let t = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (t += d));
      s.once('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(t)?.[1])));
      s.once('error', reject);
    });
    assert.equal(res, 200);
  });

  it('takes a renewed certificate without a restart', async () => {
    const before = await tlsIrc(tlsPorts.tls);
    before.conn.end();
    const since = a.logs.mark();
    await makeCertificates(certs.dir);
    await a.logs.waitForMsg('TLS certificate reloaded', { since, timeoutMs: 10_000 });
    const after = await tlsIrc(tlsPorts.tls);
    after.conn.end();
    const leaf = new X509Certificate((await fs.readFile(certs.cert, 'utf8')).split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '');
    assert.notEqual(after.fingerprint, before.fingerprint);
    assert.equal(after.fingerprint, leaf.fingerprint256);
  });
});

describe('cloaks', () => {
  it('shows users a cloak instead of an address, in WHOIS, WHO and prefixes; a user sees its own address', async () => {
    const carol = Conn.tcp(a.tcpPort);
    await carol.register('carol');
    const dave = Conn.tcp(b.tcpPort, '127.0.0.2');
    await dave.register('dave');
    carol.send('WHOIS dave\r\n');
    const whois = await carol.until(/ 318 carol dave /);
    const host = / 311 carol dave \S+ (\S+) \* /.exec(whois)?.[1];
    assert.match(host ?? '', /^parley-[0-9a-f]{8}\.ip$/);
    assert.doesNotMatch(whois, /127\.0\.0\.2/);
    dave.send('JOIN #cloak\r\n');
    await dave.until(/ 366 dave #cloak /);
    carol.send('JOIN #cloak\r\nWHO #cloak\r\n');
    const who = await carol.until(/ 315 carol #cloak /);
    assert.match(who, new RegExp(` 352 carol #cloak \\S+ ${escapeRe(host ?? '')} `));
    dave.send('PRIVMSG #cloak :hello\r\n');
    await carol.until(new RegExp(`:dave!\\S+@${escapeRe(host ?? '')} PRIVMSG #cloak :hello`));
    // The same address gets the same cloak on the other instance; a user sees its own address.
    dave.send('WHOIS dave\r\n');
    await dave.until(/ 311 dave dave \S+ 127\.0\.0\.2 \* /);
    carol.end();
    dave.end();
  });

  it('shows an oper the address of a user on its instance', async () => {
    await setConfig({ ...BASE, opers: [{ name: 'root', passwordHash: await hashPassword('operpass1') }] });
    try {
      const erin = Conn.tcp(a.tcpPort, '127.0.0.4');
      await erin.register('erin');
      const root = Conn.tcp(a.tcpPort);
      await root.register('root');
      root.send('WHOIS erin\r\n');
      await root.until(/ 311 root erin \S+ parley-[0-9a-f]{8}\.ip \* /);
      root.send('OPER root operpass1\r\n');
      await root.until(/ 381 root /);
      root.send('WHOIS erin\r\nWHO erin\r\n');
      await root.until(/ 311 root erin \S+ 127\.0\.0\.4 \* /);
      await root.until(/ 352 root \* \S+ 127\.0\.0\.4 /);
      erin.end();
      root.end();
    } finally {
      await setConfig(BASE);
    }
  });

  it('believes the PROXY header of a trusted front door (and only that)', async () => {
    const viaDoor = Conn.tcp(a.tcpPort);
    viaDoor.send(`PROXY TCP4 203.0.113.7 127.0.0.1 40000 ${a.tcpPort}\r\n`);
    await viaDoor.register('proxied');
    viaDoor.send('WHOIS proxied\r\n');
    await viaDoor.until(/ 311 proxied proxied \S+ 203\.0\.113\.7 \* /);
    // b trusts nobody: the header is just a bad line there, and the address stays the peer's.
    const direct = Conn.tcp(b.tcpPort);
    direct.send('PROXY TCP4 203.0.113.8 127.0.0.1 40000 1\r\n');
    await direct.register('direct');
    direct.send('WHOIS direct\r\n');
    await direct.until(/ 311 direct direct \S+ 127\.0\.0\.1 \* /);
    viaDoor.end();
    direct.end();
  });
});
