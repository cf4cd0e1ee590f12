/**
 * The lab with TLS, through the real CLI: `parley up --tls` (1 instance, 1 shard) in a temp state
 * directory on free ports, then through the front door (HAProxy):
 *
 * - IRC over TLS and WSS work with the lab's CA (node:tls, ws with `ca`) and fail without it; the
 *   CA's key is 0600 in a 0700 directory; HAProxy holds no key (TLS is passed through);
 * - every client shows its own address to the instance (plain IRC and TLS by a PROXY header, the
 *   WebSocket by X-Forwarded-For): connected from 127.0.0.2..5, each sees its address in WHOIS of
 *   itself, and others see cloaks that differ between addresses;
 * - the per-address limit applies through the front door (a third connection from one address is
 *   refused while another address still connects), and direct connections from loopback stay exempt;
 * - `CAP LS 302` shows `sts=port=<front door TLS port>,duration=3600` on plain IRC (through the door
 *   and straight to the instance) and `sts=duration=3600` over TLS;
 * - `parley down` stops everything.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { parseCapList } from '@parley/protocol';
import { freePort, haproxyStats, readStatus, sameProcess, statePaths, type StatePaths } from '@parley/agent';
import { escapeRe } from '../harness/raw.js';
import { runCli, ok, type CliResult } from '../harness/cli.js';

const parley = (args: string[], timeoutMs = 120_000): Promise<CliResult> => runCli([...args, '--state-dir', stateDir], { timeoutMs });

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');



const open: { close(): void }[] = [];

/** An IRC connection over any stream (TCP, TLS, WebSocket), keeping what it received. */
class Conn {
  data = '';
  private closedFlag = false;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly write: (s: string) => void, readonly close: () => void) {
    open.push(this);
  }

  /** A stream's bytes arrived (IRC lines) / the stream closed. */
  feed(s: string): void {
    this.data += s;
    for (const w of [...this.waiters]) w();
  }

  ended(): void {
    this.closedFlag = true;
    for (const w of [...this.waiters]) w();
  }

  static tcp(port: number, localAddress: string): Conn {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    const c = new Conn((s) => sock.write(s), () => sock.destroy());
    sock.setEncoding('utf8').on('data', (d: string) => c.feed(d));
    sock.on('error', () => undefined).on('close', () => c.ended());
    return c;
  }

  /** Resolves once the TLS handshake is done; rejects with its error (e.g. an unknown CA). */
  static tls(port: number, localAddress: string, ca: Buffer | undefined): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const raw = net.connect({ port, host: '127.0.0.1', localAddress });
      raw.on('error', () => undefined);
      const sock = tls.connect({ socket: raw, servername: 'localhost', ...(ca ? { ca } : {}) });
      const c = new Conn((s) => sock.write(s), () => sock.destroy());
      sock.setEncoding('utf8').on('data', (d: string) => c.feed(d));
      sock.once('secureConnect', () => resolve(c));
      sock.once('error', (err) => reject(err));
      sock.on('close', () => c.ended());
    });
  }

  /** IRC over WebSocket (ws:// or wss://); resolves once open, rejects with the connection's error. */
  static ws(url: string, localAddress: string, ca: Buffer | undefined): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'text.ircv3.net', { localAddress, ...(ca ? { ca } : {}) });
      // A frame carries one line, without CRLF.
      const c = new Conn((s) => {
        for (const l of s.split('\r\n')) if (l) ws.send(l);
      }, () => ws.terminate());
      ws.on('message', (d: WebSocket.RawData) => c.feed(`${d.toString()}\r\n`));
      ws.once('open', () => resolve(c));
      ws.once('error', (err) => reject(err));
      ws.on('close', () => c.ended());
    });
  }

  send(s: string): void {
    this.write(s);
  }

  until(re: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(this.data)) done(null);
        else if (this.closedFlag) done(new Error(`closed while waiting for ${re}; got:\n${this.data.slice(-1500)}`));
      };
      const done = (err: Error | null): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve(this.data);
      };
      const timer = setTimeout(() => done(new Error(`no ${re} within ${timeoutMs} ms; got:\n${this.data.slice(-1500)}`)), timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** `CAP LS 302` (before registering): the capabilities with their values. */
  async capLs(): Promise<Map<string, string>> {
    this.send('CAP LS 302\r\n');
    const data = await this.until(/ CAP \* LS :[^\r\n]*\r\n/);
    return parseCapList(/ CAP \* LS :([^\r\n]*)\r\n/.exec(data)?.[1] ?? '');
  }

  async register(nick: string): Promise<void> {
    this.send(`NICK ${nick}\r\nUSER u 0 * :${nick}\r\nCAP END\r\n`);
    await this.until(new RegExp(` 001 ${escapeRe(nick)} `));
  }

  /** The host WHOIS shows for `nick` (311), asked by this connection. */
  async whoisHost(nick: string): Promise<string> {
    const from = this.data.length;
    this.send(`WHOIS ${nick}\r\n`);
    const re = new RegExp(` 311 \\S+ ${escapeRe(nick)} \\S+ (\\S+) `);
    await this.until(new RegExp(` 318 \\S+ ${escapeRe(nick)} `));
    const host = re.exec(this.data.slice(from))?.[1];
    assert.ok(host, `no 311 for ${nick} in:\n${this.data.slice(from)}`);
    return host;
  }
}

/** Resolves when a line matching `re` is appended to `file` after byte `since` (fs.watch, no polling). */
function logLine(file: string, re: RegExp, since: number, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const text = fsSync.readFileSync(file, 'utf8').slice(since);
      if (re.test(text)) done(null);
    };
    const w = fsSync.watch(file, () => check());
    const timer = setTimeout(() => done(new Error(`no ${re} in ${file} within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      w.close();
      if (err) reject(err);
      else resolve();
    };
    check();
  });
}

let stateDir: string;
let paths: StatePaths;
let ca: Buffer;
const port = { irc: 0, http: 0, tlsIrc: 0, https: 0, instanceTcp: 0 };
let nickSeq = 0;
const nick = (p: string): string => `${p}${++nickSeq}`;

before(async () => {
  stateDir = await fs.mkdtemp(path.join(process.env.PARLEY_TEST_TMPDIR || os.tmpdir(), 'parley-lab-tls-'));
  paths = statePaths(stateDir);
  for (const k of ['irc', 'http', 'tlsIrc', 'https'] as const) {
    let p = await freePort();
    while (Object.values(port).includes(p)) p = await freePort();
    port[k] = p;
  }
});

after(async () => {
  for (const c of open) c.close();
  await parley(['down'], 90_000).catch(() => undefined);
  const st = await readStatus(paths).catch(() => undefined);
  for (const p of [...(st?.processes ?? []).map((x) => ({ pid: x.pid, ticks: x.startTicks })), { pid: st?.agent.pid ?? null, ticks: st?.agent.startTicks ?? null }]) {
    if (sameProcess(p.pid, p.ticks)) {
      try {
        process.kill(p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (!process.env.PARLEY_KEEP_TEST_DIR) await fs.rm(stateDir, { recursive: true, force: true, maxRetries: 3 });
  else console.error(`[lab-tls.test] kept ${stateDir}`);
});

describe('the lab with TLS through the front door', { timeout: 240_000 }, () => {
  it('parley up --tls makes a CA and certificates, and prints the TLS addresses and how to trust the CA', async () => {
    const out = ok(await parley([
      'up', '--tls', '--instances', '1', '--shards', '1',
      '--irc-port', String(port.irc), '--http-port', String(port.http), '--tls-irc-port', String(port.tlsIrc), '--https-port', String(port.https),
    ]), 'up --tls');
    const caFile = path.join(paths.tlsDir, 'ca.pem');
    assert.ok(out.includes(`IRC over TLS:       ircs://127.0.0.1:${port.tlsIrc}`), out);
    assert.ok(out.includes(`-tls -tls_cafile ${caFile}`), out);
    assert.ok(out.includes(`curl --cacert ${caFile} https://127.0.0.1:${port.https}/healthz`), out);
    const mode = (p: string): number => fsSync.statSync(p).mode & 0o777;
    assert.equal(mode(paths.tlsDir), 0o700);
    assert.equal(mode(path.join(paths.tlsDir, 'ca-key.pem')), 0o600);
    assert.equal(mode(path.join(paths.tlsDir, 'server-key.pem')), 0o600);
    ca = await fs.readFile(caFile);
    // Passed through: HAProxy's configuration has no certificate, and sends PROXY headers.
    const cfg = await fs.readFile(paths.haproxyCfg, 'utf8');
    assert.doesNotMatch(cfg, /\bssl\b|\bcrt\b/);
    assert.match(cfg, /frontend irc-tls[\s\S]*backend irc-tls[\s\S]*send-proxy check port/);
    assert.match(cfg, /option forwardfor/);
    // Every backend's health check passes with send-proxy on the server lines.
    const st = await readStatus(paths);
    const slot = st?.frontDoor?.members.find((m) => m.id === 'i1')?.slot;
    assert.ok(slot && st?.frontDoor?.members[0]?.tlsPort, JSON.stringify(st?.frontDoor));
    port.instanceTcp = st.frontDoor.members[0]!.tcpPort;
    const rows = await haproxyStats(paths.haproxySocket);
    for (const px of ['irc', 'web', 'irc-tls', 'web-tls']) {
      assert.match(rows.find((r) => r.proxy === px && r.server === slot)?.status ?? '', /^UP/, `${px}/${slot}`);
    }
  });

  it('IRC over TLS works with the lab CA, with sts=duration; without the CA the handshake fails', async () => {
    await assert.rejects(Conn.tls(port.tlsIrc, '127.0.0.1', undefined), (err: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_VERIFY|unable to (get|verify)/i.test(`${err.code} ${err.message}`));
    const c = await Conn.tls(port.tlsIrc, '127.0.0.3', ca);
    assert.equal((await c.capLs()).get('sts'), 'duration=3600');
    const n = nick('tls');
    await c.register(n);
    assert.equal(await c.whoisHost(n), '127.0.0.3', 'the instance sees the address behind the front door (PROXY header)');
  });

  it('plain IRC gets sts=port=<front door TLS port>, through the door and straight to the instance', async () => {
    const door = Conn.tcp(port.irc, '127.0.0.2');
    assert.equal((await door.capLs()).get('sts'), `port=${port.tlsIrc},duration=3600`);
    const direct = Conn.tcp(port.instanceTcp, '127.0.0.1');
    assert.equal((await direct.capLs()).get('sts'), `port=${port.tlsIrc},duration=3600`);
    const a = nick('plain');
    await door.register(a);
    assert.equal(await door.whoisHost(a), '127.0.0.2', 'a PROXY header named the client');
    const b = nick('direct');
    await direct.register(b);
    assert.equal(await direct.whoisHost(b), '127.0.0.1');
    // Others see cloaks, different for different addresses.
    const cloakA = await direct.whoisHost(a);
    const other = await Conn.tls(port.tlsIrc, '127.0.0.3', ca);
    const c = nick('other');
    await other.register(c);
    const cloakC = await direct.whoisHost(c);
    assert.match(cloakA, /^parley-[0-9a-f]{8}\.ip$/);
    assert.match(cloakC, /^parley-[0-9a-f]{8}\.ip$/);
    assert.notEqual(cloakA, cloakC);
  });

  it('WebSocket and WSS through the door carry the client address; WSS fails without the CA', async () => {
    await assert.rejects(Conn.ws(`wss://localhost:${port.https}/`, '127.0.0.1', undefined), (err: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_VERIFY|unable to (get|verify)/i.test(`${err.code} ${err.message}`));
    const wss = await Conn.ws(`wss://localhost:${port.https}/`, '127.0.0.4', ca);
    const a = nick('wss');
    await wss.register(a);
    assert.equal(await wss.whoisHost(a), '127.0.0.4', 'WSS: PROXY header to the HTTPS port');
    const ws = await Conn.ws(`ws://127.0.0.1:${port.http}/`, '127.0.0.5', undefined);
    const b = nick('ws');
    await ws.register(b);
    assert.equal(await ws.whoisHost(b), '127.0.0.5', 'WebSocket: X-Forwarded-For from the front door');
    const res = await fetch(`http://127.0.0.1:${port.http}/healthz`);
    assert.equal(res.status, 200);
  });

  it('the per-address limit applies through the front door; another address still connects, direct loopback stays exempt', async () => {
    const log = paths.log('i1');
    const since = fsSync.statSync(log).size;
    ok(await parley(['config', 'set', JSON.stringify({ door: { connectionsPerIp: 2 } })]), 'config set');
    await logLine(log, /cluster configuration changed/, since);
    const held: Conn[] = [];
    for (const via of ['plain', 'tls'] as const) {
      const c = via === 'plain' ? Conn.tcp(port.irc, '127.0.0.6') : await Conn.tls(port.tlsIrc, '127.0.0.6', ca);
      await c.register(nick('lim'));
      held.push(c);
    }
    const third = Conn.tcp(port.irc, '127.0.0.6');
    await third.until(/ERROR :Closing Link: 127\.0\.0\.6 \(Too many connections from your address\)/);
    const elsewhere = Conn.tcp(port.irc, '127.0.0.7');
    await elsewhere.register(nick('free'));
    // Loopback (127.0.0.1) is exempt by default: straight to the instance, as benchmarks connect.
    for (let i = 0; i < 3; i++) await Conn.tcp(port.instanceTcp, '127.0.0.1').register(nick('bench'));
  });

  it('parley down stops everything', async () => {
    const st = await readStatus(paths);
    ok(await parley(['down'], 90_000), 'down');
    for (const p of st?.processes ?? []) assert.equal(sameProcess(p.pid, p.startTicks), false, `${p.name} still runs`);
  });
});
