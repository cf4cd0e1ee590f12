import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Etcd3 } from 'etcd3';
import { WebSocket } from 'ws';
import { type IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { seen } from '../harness/irc.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { CONFIG_APPLIED, logTap, type LogWatch } from '../harness/logs.js';
import { Raw } from '../harness/raw.js';

/*
 * One real instance (in this process) on real etcd, Redis and PostgreSQL: bad input of every
 * kind, a third-party IRC library over both transports, and the HTTP API.
 */

let services: Services;
let server: ParleyServer;
let prefix: string;
let logs: LogWatch;
const clients: IrcClient[] = [];
const BASE_CONFIG = { flood: { linesPerSecond: 5, burst: 50 } };

/**
 * Puts a configuration into etcd and resolves once the instance has it in force (its log line,
 * not a probe that behaves differently sooner or later). It must differ from the one in force:
 * an unchanged configuration is not logged.
 */
async function setConfig(cfg: Record<string, unknown>): Promise<void> {
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  try {
    const since = logs.mark();
    await etcd.put(`/${prefix}/config`).value(JSON.stringify(cfg));
    await logs.waitForMsg(CONFIG_APPLIED, { since, timeoutMs: 10_000 });
  } finally {
    etcd.close();
  }
}

async function client(nick: string, transport: 'tcp' | 'ws' = 'tcp', caps?: string[]): Promise<IrcClient> {
  const c = new IrcClient({ transport, host: '127.0.0.1', port: transport === 'tcp' ? server.tcpPort : server.wsPort, nick, ...(caps ? { caps } : {}) });
  clients.push(c);
  await c.connect();
  return c;
}


before(async () => {
  services = await startServices();
  prefix = uniqueName('pr');
  const db = await services.postgres!.createDatabase(prefix);
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(BASE_CONFIG));
  etcd.close();
  const tap = logTap('info');
  logs = tap.watch;
  server = new ParleyServer(
    InstanceOptionsSchema.parse({
      id: 'p1', prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db],
    }),
    tap.logger,
  );
  await server.start();
});

after(async () => {
  for (const c of clients) c.destroy();
  await server?.close();
  await services?.stop();
});

describe('bad input', () => {
  it('answers commands before registration with 451 and unknown commands with 421', async () => {
    const r = new Raw(server.tcpPort);
    r.send('JOIN #x\r\n');
    await r.until(/ 451 \* :You have not registered/);
    r.send('NICK raw1\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 raw1 /);
    r.send('FROBNICATE a b\r\n');
    await r.until(/ 421 raw1 FROBNICATE :Unknown command/);
    r.end();
  });

  it('refuses erroneous and missing nicks, missing parameters, unknown targets', async () => {
    const r = new Raw(server.tcpPort);
    r.send('NICK 1bad\r\n');
    await r.until(/ 432 \* 1bad :Erroneous nickname/);
    r.send('NICK\r\n');
    await r.until(/ 431 \* :No nickname given/);
    r.send('USER onlyone\r\n');
    await r.until(/ 461 \* USER :Not enough parameters/);
    r.send('NICK raw2\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 raw2 /);
    r.send('PRIVMSG nobody :hi\r\nPRIVMSG #nowhere :hi\r\nPART #nowhere\r\nPRIVMSG\r\nPRIVMSG raw2\r\nJOIN bad,chan\r\nKICK #nowhere\r\n');
    await r.until(/ 401 raw2 nobody :No such nick/);
    await r.until(/ 403 raw2 #nowhere :No such channel/);
    await r.until(/ 411 raw2 :No recipient/);
    await r.until(/ 412 raw2 :No text to send/);
    await r.until(/ 403 raw2 bad :No such channel/);
    await r.until(/ 461 raw2 KICK :Not enough parameters/);
    r.send('JOIN #mine\r\nPART #other\r\n');
    await r.until(/ 403 raw2 #other/);
    r.end();
  });

  it('answers over-long lines with 417 and keeps the connection', async () => {
    const r = new Raw(server.tcpPort);
    r.send('NICK raw3\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 raw3 /);
    r.send(`PRIVMSG raw3 :${'x'.repeat(600)}\r\n`);
    await r.until(/ 417 raw3 :Input line was too long/);
    r.send(`@${'a'.repeat(9000)}=1 PING :x\r\n`);
    await r.until(/417[^\n]*\n[\s\S]*417/);
    // A never-ending line is discarded without killing the server or the connection.
    r.send(Buffer.alloc(200_000, 0x61));
    r.send('\r\nPING :still-here\r\n');
    await r.until(/PONG \S+ :still-here/);
    r.end();
  });

  it('rejects invalid UTF-8 with a standard reply and goes on', async () => {
    const r = new Raw(server.tcpPort);
    r.send('NICK raw4\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 raw4 /);
    r.send(Buffer.concat([Buffer.from('PRIVMSG raw4 :'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('\r\nPING :ok\r\n')]));
    await r.until(/FAIL \* INVALID_UTF8/);
    await r.until(/PONG \S+ :ok/);
    r.end();
  });

  it('survives malformed lines', async () => {
    const r = new Raw(server.tcpPort);
    r.send('NICK raw5\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 raw5 /);
    r.send('@\r\n:onlyprefix\r\n@a=b\r\n   \r\n:x PRIVMSG\r\n\x01\x02\r\nPING :alive\r\n');
    await r.until(/PONG \S+ :alive/);
    r.end();
  });

  it('disconnects a flooding connection with ERROR, and the server carries on', async () => {
    const r = new Raw(server.tcpPort);
    r.send('NICK flood1\r\nUSER u 0 * :r\r\n');
    await r.until(/ 001 flood1 /);
    r.send('PING :x\r\n'.repeat(500));
    await r.until(/ERROR :Closing Link: \S+ \(Excess Flood\)/);
    await r.closed;
    const ok = await client('afterflood');
    assert.equal(ok.nick, 'afterflood');
  });

  it('refuses a wrong server password when one is configured', async () => {
    await setConfig({ ...BASE_CONFIG, password: 'sesame' });
    try {
      const r = new Raw(server.tcpPort);
      r.send('PASS wrong\r\nNICK pw1\r\nUSER u 0 * :r\r\n');
      await r.until(/ERROR :Closing Link/);
      assert.match(r.data, / 464 \S+ :Password incorrect/);
      assert.doesNotMatch(r.data, / 001 /);
      await r.closed;
      const good = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: server.tcpPort, nick: 'pw2', password: 'sesame' });
      clients.push(good);
      await good.connect();
    } finally {
      await setConfig(BASE_CONFIG);
    }
  });
});

describe('overload', () => {
  it('refuses messages over the store backlog with FAIL RATE_LIMITED, never dropping one silently', async () => {
    await setConfig({ flood: { linesPerSecond: 0 }, limits: { storeBacklog: 20 } });
    try {
      const c = await client('busy1');
      await c.request('JOIN #busy');
      // The first message of a room finds its shard (an etcd round trip) while later lines wait;
      // after it, messages go straight to the store's queue.
      const first = await c.request('PRIVMSG #busy :first');
      assert.equal(first[0]?.command, 'PRIVMSG', `the first message was answered ${JSON.stringify(first)}`);
      // 300 lines in one write: they are parsed in one tick, before the first commit.
      const n = 300;
      const acked: string[] = [];
      let refused = 0;
      const answered = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`within 10 s only ${acked.length} acknowledged and ${refused} refused of ${n}`)), 10_000);
        c.on('message', (m) => {
          if (m.command === 'PRIVMSG' && !m.tags.batch && m.params[1]?.startsWith('burst ')) acked.push(m.tags.msgid ?? '');
          else if (m.command === 'FAIL' && m.params[1] === 'RATE_LIMITED') refused++;
          else return;
          if (acked.length + refused === n) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      c.sendRaw(Array.from({ length: n }, (_, i) => `PRIVMSG #busy :burst ${i}`).join('\r\n'));
      await answered;
      assert.ok(refused > 0, 'some were refused');
      assert.ok(acked.length >= 20, 'the backlog allowance was stored');
      const hist = await c.request('CHATHISTORY LATEST #busy * 1000');
      const stored = new Set(hist.filter((m) => m.params[1]?.startsWith('burst ')).map((m) => m.tags.msgid));
      assert.equal(stored.size, acked.length, 'exactly the acknowledged ones are stored');
      const metrics = await (await fetch(`http://127.0.0.1:${server.wsPort}/metrics`)).text();
      assert.match(metrics, new RegExp(`parley_messages_refused_total\\{code="RATE_LIMITED"\\} ${refused}`));
    } finally {
      await setConfig(BASE_CONFIG);
    }
  });
});

describe('IRCv3', () => {
  it('labels responses, batches history, and acknowledges with echo-message', async () => {
    const c = await client('v3a');
    const joined = await c.request('JOIN #v3');
    assert.ok(joined.some((m) => m.command === 'JOIN'));
    assert.ok(joined.some((m) => m.command === '366'));
    const ack = await c.request('PRIVMSG #v3 :one');
    assert.equal(ack.length, 1);
    assert.equal(ack[0]?.command, 'PRIVMSG');
    assert.match(ack[0]?.tags.msgid ?? '', /^[0-9a-f]{8}-1$/);
    assert.match(ack[0]?.tags.time ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await c.request('PRIVMSG #v3 :two');
    // A command with no reply is acknowledged with ACK, which the client reports as [].
    const pong = await c.request('PONG :x');
    assert.deepEqual(pong, []);
    const hist = await c.request('CHATHISTORY LATEST #v3 * 10');
    assert.deepEqual(hist.filter((m) => m.command === 'PRIVMSG').map((m) => m.params[1]), ['one', 'two']);
    const bad = await c.request('CHATHISTORY BEFORE #v3 msgid=nonsense 10');
    assert.equal(bad[0]?.command, 'FAIL');
    assert.equal(bad[0]?.params[1], 'INVALID_MSGREFTYPE');
  });

  it('keeps client-only tags for clients with message-tags and strips all tags for plain clients', async () => {
    const tagged = await client('v3b');
    const plain = await client('v3c', 'tcp', []);
    await tagged.request('JOIN #tags');
    plain.send('JOIN #tags');
    await seen(tagged, (m) => m.command === 'JOIN' && m.source?.startsWith('v3c!') === true);
    await tagged.request('@+draft/reply=abc PRIVMSG #tags :tagged');
    const got = await seen(plain, (m) => m.command === 'PRIVMSG' && m.params[1] === 'tagged');
    assert.deepEqual(got.tags, {});
  });
});

describe('a third-party IRC library (irc-framework)', () => {
  it('connects over TCP and over WebSocket and exchanges messages', async () => {
    const require = createRequire(import.meta.url);
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    const IRC = require('irc-framework') as { Client: new () => IrcFrameworkClient };
    const wsTransport = require('irc-framework/src/transports/websocket') as unknown;
    const tcp = new IRC.Client();
    const ws = new IRC.Client();
    const registered = (c: IrcFrameworkClient) => new Promise<void>((r) => c.once('registered', () => r()));
    try {
      const both = Promise.all([registered(tcp), registered(ws)]);
      tcp.connect({ host: '127.0.0.1', port: server.tcpPort, nick: 'fwtcp', auto_reconnect: false });
      ws.connect({ host: '127.0.0.1', port: server.wsPort, nick: 'fwws', transport: wsTransport, auto_reconnect: false });
      await both;
      const joined = (c: IrcFrameworkClient, nick: string) =>
        new Promise<void>((r) => c.on('join', (e: { nick: string }) => { if (e.nick === nick) r(); }));
      const j = Promise.all([joined(tcp, 'fwws'), joined(ws, 'fwws')]);
      tcp.join('#fw');
      await new Promise<void>((r) => tcp.once('join', () => r()));
      ws.join('#fw');
      await j;
      const heard = (c: IrcFrameworkClient, text: string) =>
        new Promise<{ nick: string; target: string }>((r) => c.on('message', (e: { message: string; nick: string; target: string }) => { if (e.message === text) r(e); }));
      const atWs = heard(ws, 'hello from tcp');
      const atTcp = heard(tcp, 'hello from ws');
      tcp.say('#fw', 'hello from tcp');
      ws.say('#fw', 'hello from ws');
      assert.equal((await atWs).nick, 'fwtcp');
      assert.equal((await atTcp).nick, 'fwws');
      const dm = heard(ws, 'private');
      tcp.say('fwws', 'private');
      assert.equal((await dm).target, 'fwws');
    } finally {
      tcp.quit('done');
      ws.quit('done');
    }
  });
});

interface IrcFrameworkClient {
  connect(o: Record<string, unknown>): void;
  join(ch: string): void;
  say(target: string, text: string): void;
  quit(msg: string): void;
  on(ev: string, fn: (e: never) => void): void;
  once(ev: string, fn: (e: never) => void): void;
}

describe('HTTP API', () => {
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${server.wsPort}${path}`);
    const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
    return { status: res.status, body };
  };

  it('serves health, readiness, metrics, channels and stats', async () => {
    const c = await client('httpuser');
    await c.request('JOIN #http');
    await c.request('PRIVMSG #http :counted');
    assert.equal((await get('/healthz')).status, 200);
    assert.deepEqual((await get('/readyz')).body, { ready: true, draining: false });
    const metrics = (await get('/metrics')).body as string;
    for (const name of ['parley_connections', 'parley_messages_in_total', 'parley_deliveries_total', 'parley_persist_batch_size', 'parley_persist_batch_seconds', 'parley_fanout_latency_seconds']) {
      assert.match(metrics, new RegExp(`^# HELP ${name} `, 'm'));
    }
    const rooms = (await get('/api/channels')).body as { rooms: { name: string; members: number; messages: number }[] };
    const http = rooms.rooms.find((r) => r.name === '#http');
    assert.equal(http?.members, 1);
    assert.equal(http?.messages, 1);
    const stats = (await get('/api/stats')).body as { instance: { id: string; connections: number }; cluster: { instances: unknown[] } };
    assert.equal(stats.instance.id, 'p1');
    assert.ok(stats.instance.connections >= 1);
    assert.equal(stats.cluster.instances.length, 1);
  });

  it('publishes an OpenAPI description of every route it serves', async () => {
    const doc = (await get('/api/openapi.json')).body as { openapi: string; paths: Record<string, { get?: { responses: Record<string, unknown> } }> };
    assert.equal(doc.openapi, '3.1.0');
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!item.get) continue;
      const res = await get(path);
      assert.ok(item.get?.responses[String(res.status)], `${path} answered ${res.status}, which its description does not list`);
    }
    // Every GET declared in net/ (route() calls) is described; the API test checks all methods.
    const fs = await import('node:fs');
    const dir = new URL('../../packages/server/src/net/', import.meta.url);
    const source = ['http.ts', ...fs.readdirSync(new URL('api/', dir)).map((f) => `api/${f}`)].map((f) => fs.readFileSync(new URL(f, dir), 'utf8')).join('\n');
    const routes = [...source.matchAll(/method: 'GET',\s*url: '([^']+)'/g)].map((m) => (m[1] as string).replace(/:(\w+)/g, '{$1}'));
    assert.ok(routes.length >= 10, routes.join(', '));
    assert.deepEqual(routes.filter((r) => !(r in doc.paths)), [], 'every route is described');
  });

  it('answers bad requests with a 4xx and a JSON body', async () => {
    const bad = await get('/api/channels?limit=-4');
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { statusCode: number }).statusCode, 400);
    const missing = await get('/api/nothing');
    assert.equal(missing.status, 404);
    assert.match((missing.body as { error: string }).error, /no route/);
  });
});
