import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { LineSplitter, parseLine, serialize } from '../../packages/protocol/src/index.js';
import { IrcClient, IrcClientError } from '../../packages/client/src/index.js';
import type { IrcMessage } from '../../packages/protocol/src/index.js';
import type { IrcClientOptions } from '../../packages/client/src/index.js';

const SERVER = 'fake.test';

/** One client connection on the fake server; transport-independent. */
class Session extends EventEmitter<{ line: [msg: IrcMessage, raw: string] }> {
  readonly received: string[] = [];
  /** Transport reads (TCP chunks or WebSocket frames). */
  reads = 0;
  nick = '*';
  private user = false;
  private capEnd = false;
  private welcomed = false;

  constructor(
    private readonly write: (line: string) => void,
    private readonly end: () => void,
  ) {
    super();
  }

  send(line: string): void {
    this.write(line);
  }

  handle(raw: string): void {
    this.received.push(raw);
    const m = parseLine(raw);
    this.emit('line', m, raw);
    const label = m.tags['label'];
    const lt = label === undefined ? '' : `@label=${label} `;
    switch (m.command) {
      case 'CAP':
        if (m.params[0] === 'LS') {
          this.send(`:${SERVER} CAP * LS * :message-tags server-time`);
          this.send(`:${SERVER} CAP * LS :batch labeled-response echo-message sasl=PLAIN,EXTERNAL`);
        } else if (m.params[0] === 'REQ') {
          this.send(`:${SERVER} CAP ${this.nick} ACK :${m.params[1] ?? ''}`);
        } else if (m.params[0] === 'END') {
          this.capEnd = true;
          this.maybeWelcome();
        }
        break;
      case 'NICK':
        if (m.params[0] === 'taken') {
          this.send(`:${SERVER} 433 * taken :Nickname is already in use`);
        } else {
          this.nick = m.params[0] ?? '*';
          this.maybeWelcome();
        }
        break;
      case 'USER':
        this.user = true;
        this.maybeWelcome();
        break;
      case 'ECHO1':
        this.send(`${lt}:${SERVER} ECHO1 ${this.nick} :${m.params[0] ?? ''}`);
        break;
      case 'ACKME':
        this.send(`${lt}:${SERVER} ACK`);
        break;
      case 'BATCHME':
        this.send(`${lt}:${SERVER} BATCH +b1 labeled-response`);
        this.send(`@batch=b1 :${SERVER} NOTICE ${this.nick} :one`);
        this.send(`@batch=b1 :${SERVER} BATCH +b2 chathistory #c`);
        this.send(`@batch=b2;msgid=abc :x!y@z PRIVMSG #c :h1`);
        this.send(`@batch=b1 :${SERVER} BATCH -b2`);
        this.send(`:${SERVER} NOTICE ${this.nick} :not part of the response`);
        this.send(`@batch=b1 :${SERVER} NOTICE ${this.nick} :two`);
        this.send(`:${SERVER} BATCH -b1`);
        break;
      case 'HISTORY':
        // A response that is a single batch of another type, labelled directly.
        this.send(`${lt}:${SERVER} BATCH +h chathistory #c`);
        this.send(`@batch=h :x!y@z PRIVMSG #c :old`);
        this.send(`:${SERVER} BATCH -h`);
        break;
      case 'SAY':
        this.send(`:${SERVER} NOTICE ${this.nick} :${m.params[0] ?? ''}`);
        break;
      case 'PINGME':
        this.send(`PING :${m.params[0] ?? ''}`);
        break;
      case 'KILLME':
        this.send(`ERROR :Closing Link: killed`);
        this.end();
        break;
      case 'QUIT':
        this.send(`ERROR :Closing Link: quit`);
        this.end();
        break;
    }
  }

  private maybeWelcome(): void {
    if (this.welcomed || !this.capEnd || !this.user || this.nick === '*') return;
    this.welcomed = true;
    const n = this.nick;
    this.send(`:${SERVER} 001 ${n} :Welcome to the fake network ${n}`);
    this.send(`:${SERVER} 005 ${n} CHANTYPES=# NETWORK=Fake\\x20Net CHATHISTORY=100 :are supported by this server`);
    this.send(`:${SERVER} 375 ${n} :- ${SERVER} Message of the day -`);
    this.send(`:${SERVER} 372 ${n} :- hello`);
    this.send(`:${SERVER} 376 ${n} :End of /MOTD command.`);
  }
}

class FakeServer extends EventEmitter<{ session: [session: Session] }> {
  readonly sessions: Session[] = [];
  private readonly tcp = net.createServer((socket) => this.onTcp(socket));
  private wss: WebSocketServer | null = null;
  private readonly sockets = new Set<net.Socket>();
  /** Subprotocol each WebSocket connection agreed on. */
  readonly wsProtocols: string[] = [];

  async start(): Promise<void> {
    const wss = new WebSocketServer({
      port: 0,
      host: '127.0.0.1',
      handleProtocols: (protocols) => (protocols.has('text.ircv3.net') ? 'text.ircv3.net' : false),
    });
    this.wss = wss;
    wss.on('connection', (ws) => this.onWs(ws));
    this.tcp.listen(0, '127.0.0.1');
    await Promise.all([once(this.tcp, 'listening'), once(wss, 'listening')]);
  }

  get tcpPort(): number {
    return (this.tcp.address() as AddressInfo).port;
  }

  get wsPort(): number {
    return (this.wss?.address() as AddressInfo).port;
  }

  /** The next session to connect. */
  async nextSession(): Promise<Session> {
    const [session] = await once(this, 'session');
    return session as Session;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const wss = this.wss;
    for (const c of wss?.clients ?? []) c.terminate();
    await Promise.all([new Promise((r) => this.tcp.close(r)), new Promise((r) => (wss ? wss.close(r) : r(undefined)))]);
  }

  private addSession(s: Session): void {
    this.sessions.push(s);
    this.emit('session', s);
  }

  private onTcp(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const session = new Session(
      (line) => socket.write(line + '\r\n'),
      () => socket.end(),
    );
    const splitter = new LineSplitter({
      maxLineBytes: 8703,
      onLine: (line) => session.handle(line),
      onError: (err) => assert.fail(err),
    });
    socket.on('data', (chunk: Buffer) => {
      session.reads++;
      splitter.push(chunk);
    });
    this.addSession(session);
  }

  private onWs(ws: WebSocket): void {
    this.wsProtocols.push(ws.protocol);
    const session = new Session(
      (line) => ws.send(line),
      () => ws.close(1000),
    );
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false);
      session.reads++;
      const text = String(data);
      assert.ok(!text.includes('\n') && !text.includes('\r'), 'no CR/LF inside frames');
      session.handle(text);
    });
    this.addSession(session);
  }
}

function waitForLine(session: Session, pred: (m: IrcMessage) => boolean): Promise<IrcMessage> {
  return new Promise((resolve) => {
    const onLine = (m: IrcMessage): void => {
      if (pred(m)) {
        session.off('line', onLine);
        resolve(m);
      }
    };
    session.on('line', onLine);
  });
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`IrcClient over ${transport}`, () => {
    const server = new FakeServer();
    const clients: IrcClient[] = [];

    before(() => server.start());
    after(async () => {
      for (const c of clients) c.destroy();
      await server.close();
    });

    function client(extra: Partial<IrcClientOptions> = {}): IrcClient {
      const c = new IrcClient({
        transport,
        host: '127.0.0.1',
        port: transport === 'tcp' ? server.tcpPort : server.wsPort,
        nick: 'alice',
        ...extra,
      });
      clients.push(c);
      return c;
    }

    async function connected(extra: Partial<IrcClientOptions> = {}): Promise<{ c: IrcClient; s: Session }> {
      const c = client(extra);
      const [s] = await Promise.all([server.nextSession(), c.connect()]);
      return { c, s };
    }

    it('registers: CAP LS 302, requests the offered wanted caps, CAP END, NICK/USER', async () => {
      const c = client({ password: 'secret', user: 'al', realname: 'Alice Liddell' });
      const [s, welcome] = await Promise.all([server.nextSession(), c.connect()]);
      assert.equal(welcome.nick, 'alice');
      assert.equal(welcome.server, SERVER);
      assert.deepEqual([...welcome.caps].sort(), ['batch', 'echo-message', 'labeled-response', 'message-tags', 'server-time']);
      assert.equal(welcome.isupport.get('NETWORK'), 'Fake Net');
      assert.equal(welcome.isupport.get('CHATHISTORY'), '100');
      assert.deepEqual(welcome.motd, ['- hello']);
      assert.equal(c.serverCaps.get('sasl'), 'PLAIN,EXTERNAL');
      assert.equal(c.registered, true);
      assert.deepEqual(s.received, [
        'CAP LS 302',
        'PASS secret',
        'NICK alice',
        'USER al 0 * :Alice Liddell',
        'CAP REQ :message-tags server-time echo-message batch labeled-response',
        'CAP END',
      ]);
      assert.ok(c.messages.some((m) => m.command === '001'));
      if (transport === 'ws') assert.equal(server.wsProtocols.at(-1), 'text.ircv3.net');
      await c.close();
    });

    it('rejects connect() with a clear error when the nick is taken', async () => {
      const c = client({ nick: 'taken' });
      await assert.rejects(c.connect(), (err: unknown) => {
        assert.ok(err instanceof IrcClientError);
        assert.match(err.message, /433/);
        assert.equal(err.reply?.command, '433');
        return true;
      });
      if (!c.closed) await once(c, 'close');
    });

    it('rejects connect() when nothing listens', async () => {
      const probe = net.createServer();
      probe.listen(0, '127.0.0.1');
      await once(probe, 'listening');
      const port = (probe.address() as AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const c = new IrcClient({ transport, host: '127.0.0.1', port, nick: 'x' });
      await assert.rejects(c.connect(), /connection closed before registration completed: .*ECONNREFUSED/);
    });

    it('request(): single labelled reply, labelled BATCH, ACK', async () => {
      const { c } = await connected();
      const single = await c.request({ tags: {}, command: 'ECHO1', params: ['hello world'] });
      assert.equal(single.length, 1);
      assert.equal(single[0]?.command, 'ECHO1');
      assert.deepEqual(single[0]?.params, ['alice', 'hello world']);
      assert.match(single[0]?.tags['label'] ?? '', /^L/);

      const batch = await c.request('BATCHME');
      assert.deepEqual(
        batch.map((m) => `${m.command} ${m.params.join(' ')}`),
        ['NOTICE alice one', 'BATCH +b2 chathistory #c', 'PRIVMSG #c h1', 'BATCH -b2', 'NOTICE alice two'],
      );

      const history = await c.request('HISTORY');
      assert.deepEqual(
        history.map((m) => `${m.command} ${m.params.join(' ')}`),
        ['BATCH +h chathistory #c', 'PRIVMSG #c old', 'BATCH -h'],
      );

      assert.deepEqual(await c.request('ACKME'), []);
      const labelled = await c.request('ECHO1 x', { label: 'mine' });
      assert.equal(labelled[0]?.tags['label'], 'mine');

      // Concurrent requests resolve independently.
      const [a, b] = await Promise.all([c.request('ECHO1 a'), c.request('ECHO1 b')]);
      assert.equal(a[0]?.params[1], 'a');
      assert.equal(b[0]?.params[1], 'b');
      await c.close();
    });

    it('request() rejects on timeout and without labeled-response', async () => {
      const { c } = await connected();
      await assert.rejects(c.request('SILENT', { timeoutMs: 30 }), /no response to SILENT .* within 30 ms/);
      const plain = await connected({ nick: 'bob', caps: ['server-time'] });
      assert.deepEqual([...plain.c.acceptedCaps], ['server-time']);
      await assert.rejects(plain.c.request('ECHO1 x'), /labeled-response was not negotiated/);
      await Promise.all([c.close(), plain.c.close()]);
    });

    it('waitFor(): resolves on a future message only, rejects on timeout', async () => {
      const { c } = await connected();
      // The 001 is in the past: waitFor must not see it.
      await assert.rejects(c.waitFor((m) => m.command === '001', 30), /within 30 ms/);
      const got = c.waitFor((m) => m.command === 'NOTICE' && m.params[1] === 'ping me');
      c.send({ tags: {}, command: 'SAY', params: ['ping me'] });
      assert.equal((await got).source, SERVER);
      await c.close();
    });

    it('answers PING with PONG', async () => {
      const { c, s } = await connected();
      const pong = waitForLine(s, (m) => m.command === 'PONG');
      const seen = c.waitFor((m) => m.command === 'PING');
      c.sendRaw('PINGME :tok en');
      assert.deepEqual((await pong).params, ['tok en']);
      await seen;
      await c.close();
    });

    it('emits message events with the raw line', async () => {
      const { c } = await connected({ keepHistory: false });
      const [msg, raw] = (await Promise.all([once(c, 'message'), c.sendRaw('SAY :hi there')]))[0] as [IrcMessage, string];
      assert.equal(raw, `:${SERVER} NOTICE alice :hi there`);
      assert.deepEqual(msg.params, ['alice', 'hi there']);
      assert.equal(c.messages.length, 0);
      await c.close();
    });

    it('batches lines written in one tick into one socket write', async () => {
      const { c, s } = await connected();
      const readsBefore = s.reads;
      const last = waitForLine(s, (m) => m.command === 'LAST');
      for (let i = 0; i < 200; i++) c.send({ tags: {}, command: 'NOOP', params: [String(i)] });
      c.sendRaw('LAST');
      await last;
      assert.equal(s.received.filter((l) => l.startsWith('NOOP ')).length, 200);
      if (transport === 'tcp') assert.ok(s.reads - readsBefore <= 3, `${s.reads - readsBefore} reads for one write`);
      await c.close();
    });

    it('close() sends QUIT, resolves when closed and rejects pending waits', async () => {
      const { c, s } = await connected();
      const pending = c.waitFor(() => false, 10_000);
      const quit = waitForLine(s, (m) => m.command === 'QUIT');
      const closeEvent = once(c, 'close');
      await c.close('bye now');
      assert.deepEqual((await quit).params, ['bye now']);
      await closeEvent;
      assert.equal(c.closed, true);
      await assert.rejects(pending, /connection closed/);
      await assert.rejects(c.waitFor(() => true), /connection closed/);
      c.send('PING x'); // dropped silently after close
    });

    it('a server ERROR and close rejects pending requests', async () => {
      const { c } = await connected();
      const pending = c.request('SILENT');
      c.sendRaw('KILLME');
      await assert.rejects(pending, /connection closed .*Closing Link: killed/);
      assert.equal(c.closed, true);
    });

    it('destroy() drops the connection at once', async () => {
      const { c } = await connected();
      const closed = once(c, 'close');
      c.destroy();
      await closed;
      assert.equal(c.closed, true);
    });
  });
}

describe('IrcClient send()', () => {
  it('serialises messages', () => {
    // Not connected: lines are queued and dropped on destroy; serialisation errors surface at once.
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: 1, nick: 'x' });
    assert.throws(() => c.send({ tags: {}, command: 'PRIVMSG', params: ['a b', 'x'] }), /must be the last/);
    c.destroy();
    assert.equal(serialize({ tags: {}, command: 'PRIVMSG', params: ['#a', 'x y'] }), 'PRIVMSG #a :x y');
  });
});
