import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket as NodeWebSocket, WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { LineSplitter, parseLine, serialize } from '../../packages/protocol/src/index.js';
import { BrowserWebSocketTransport, IrcClient, IrcClientError, plainLines, wsUrl } from '../../packages/client/src/index.js';
import { IrcClient as BrowserIrcClient } from '../../packages/client/src/browser.js';
import type { IrcMessage } from '../../packages/protocol/src/index.js';
import type { IrcClientOptions, IrcTransport, TransportHandler, WebSocketConstructor } from '../../packages/client/src/index.js';

const SERVER = 'fake.test';
/** Accounts of the fake server: name → password. */
const ACCOUNTS = new Map([['alice', 'right-password']]);

/** One client connection on the fake server; transport-independent. */
class Session extends EventEmitter<{ line: [msg: IrcMessage, raw: string] }> {
  readonly received: string[] = [];
  /** Transport reads (TCP chunks or WebSocket frames). */
  reads = 0;
  nick = '*';
  private user = false;
  private capEnd = false;
  private welcomed = false;
  /** SASL PLAIN pieces received so far (null: no exchange running). */
  private sasl: string | null = null;

  constructor(
    private readonly write: (line: string) => void,
    private readonly end: () => void,
    /** The last CAP LS line's caps. */
    private readonly ls = 'batch labeled-response echo-message sasl=PLAIN,EXTERNAL',
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
          this.send(`:${SERVER} CAP * LS :${this.ls}`);
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
      case 'AUTHENTICATE': {
        const arg = m.params[0] ?? '';
        if (this.sasl === null) {
          this.sasl = '';
          this.send(arg === 'PLAIN' ? 'AUTHENTICATE +' : `:${SERVER} 904 ${this.nick} :SASL authentication failed`);
          if (arg !== 'PLAIN') this.sasl = null;
          break;
        }
        if (arg !== '+') this.sasl += arg;
        if (arg.length === 400) break;
        const [, account = '', password = ''] = Buffer.from(this.sasl, 'base64').toString('utf8').split('\0');
        this.sasl = null;
        if (ACCOUNTS.get(account) === password) {
          this.send(`:${SERVER} 900 ${this.nick} ${this.nick}!u@h ${account} :You are now logged in as ${account}`);
          this.send(`:${SERVER} 903 ${this.nick} :SASL authentication successful`);
        } else {
          this.send(`:${SERVER} 904 ${this.nick} :SASL authentication failed`);
        }
        break;
      }
      case 'REGISTER': {
        const account = m.params[0] === '*' ? this.nick : (m.params[0] ?? '');
        if (ACCOUNTS.has(account)) this.send(`:${SERVER} FAIL REGISTER ACCOUNT_EXISTS ${account} :Account already exists`);
        else if ((m.params[2] ?? '').length < 8) this.send(`:${SERVER} FAIL REGISTER WEAK_PASSWORD ${account} :Password too short`);
        else {
          this.send(`:${SERVER} REGISTER SUCCESS ${account} :Account created`);
          this.send(`:${SERVER} 900 ${this.nick} ${this.nick}!u@h ${account} :You are now logged in as ${account}`);
        }
        break;
      }
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

  /** An in-process connection to this server: no socket, lines handed over in microtasks. */
  memoryTransport(opts: { refuse?: boolean; ls?: string } = {}): MemoryTransport {
    return new MemoryTransport(this, opts.refuse ?? false, opts.ls);
  }

  attachMemory(t: MemoryTransport, ls?: string): Session {
    const session = new Session(
      (line) => t.deliver(line),
      () => t.serverEnd(),
      ls,
    );
    this.addSession(session);
    return session;
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
    // The binding allows binary frames carrying UTF-8: one invalid, then one valid.
    session.on('line', (m) => {
      if (m.command !== 'BINARY') return;
      ws.send(Buffer.from([0x3a, 0xff, 0xfe]), { binary: true });
      ws.send(Buffer.from(`:${SERVER} NOTICE ${session.nick} :after binary`), { binary: true });
    });
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

/**
 * The transport contract, implemented without I/O: each side's lines reach the other side in a
 * later microtask, in order, as a network would deliver them; `writes` counts write calls.
 */
class MemoryTransport implements IrcTransport {
  writes = 0;
  private h: TransportHandler | null = null;
  private session: Session | null = null;
  private state: 'new' | 'open' | 'ending' | 'closed' = 'new';

  constructor(
    private readonly server: FakeServer,
    private readonly refuse: boolean,
    private readonly ls: string | undefined,
  ) {}

  open(h: TransportHandler): void {
    assert.equal(this.h, null, 'open() called twice');
    this.h = h;
    queueMicrotask(() => {
      if (this.state !== 'new') return;
      if (this.refuse) {
        h.onError(new Error('connect ECONNREFUSED (memory)'));
        this.finish();
        return;
      }
      this.state = 'open';
      this.session = this.server.attachMemory(this, this.ls);
      h.onOpen();
    });
  }

  write(lines: readonly string[]): void {
    assert.equal(this.state, 'open', 'write() outside onOpen..onClose');
    this.writes++;
    const session = this.session as Session;
    const copy = [...lines];
    queueMicrotask(() => {
      session.reads++;
      for (const line of copy) session.handle(line);
    });
  }

  end(): void {
    if (this.state === 'open') this.state = 'ending';
    queueMicrotask(() => this.finish());
  }

  destroy(): void {
    this.finish();
  }

  get bufferedAmount(): number {
    return 0;
  }

  /** From the server side. */
  deliver(line: string): void {
    queueMicrotask(() => {
      if (this.state === 'open' || this.state === 'ending') this.h?.onLine(line);
    });
  }

  serverEnd(): void {
    queueMicrotask(() => this.finish());
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.h?.onClose();
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

// `ws` implements the WHATWG WebSocket API, so it stands in for the browser's here.
const WhatwgWebSocket = NodeWebSocket as unknown as WebSocketConstructor;

/*
 * The same behaviour over every transport: the Node ones by name ('tcp', 'ws'), the browser's
 * WebSocket transport (with `ws` as its WebSocket) and an in-process memory transport, both
 * injected as objects.
 */
for (const transport of ['tcp', 'ws', 'browser-ws', 'memory'] as const) {
  describe(`IrcClient over ${transport}`, () => {
    const server = new FakeServer();
    const clients: IrcClient[] = [];

    before(() => server.start());
    after(async () => {
      for (const c of clients) c.destroy();
      await server.close();
    });

    function transportOption(port?: number): IrcClientOptions['transport'] {
      switch (transport) {
        case 'tcp':
        case 'ws':
          return transport;
        case 'browser-ws':
          return new BrowserWebSocketTransport(wsUrl('127.0.0.1', port ?? server.wsPort), { WebSocket: WhatwgWebSocket });
        case 'memory':
          return server.memoryTransport({ refuse: port !== undefined });
      }
    }

    function client(extra: Partial<IrcClientOptions> = {}): IrcClient {
      const c = new IrcClient({
        transport: transportOption(),
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
      if (transport === 'ws' || transport === 'browser-ws') assert.equal(server.wsProtocols.at(-1), 'text.ircv3.net');
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
      const c = new IrcClient({ transport: transportOption(port), host: '127.0.0.1', port, nick: 'x' });
      // A browser is told nothing about why a WebSocket failed.
      const why = transport === 'browser-ws' ? /WebSocket error/ : /ECONNREFUSED/;
      await assert.rejects(c.connect(), (err: Error) => /connection closed before registration completed: /.test(err.message) && why.test(err.message));
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
      if (transport === 'tcp' || transport === 'memory') assert.ok(s.reads - readsBefore <= 3, `${s.reads - readsBefore} reads for one write`);
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

    if (transport === 'ws' || transport === 'browser-ws') {
      it('reads binary frames as UTF-8 lines; an invalid one is an error event, not the end', async () => {
        const { c } = await connected();
        const errors: Error[] = [];
        c.on('error', (err) => errors.push(err));
        const after = c.waitFor((m) => m.command === 'NOTICE' && m.params[1] === 'after binary');
        c.sendRaw('BINARY');
        await after;
        assert.equal(errors.length, 1, errors.map((e) => e.message).join('; '));
        assert.equal(c.closed, false);
        await c.close();
      });
    }

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

describe('IrcClient with an injected transport', () => {
  const server = new FakeServer();
  before(() => server.start());
  after(() => server.close());

  it('writes only between open and close, and uses the transport it was given', async () => {
    const t = server.memoryTransport();
    const c = new IrcClient({ transport: t, nick: 'mem' });
    const [s, welcome] = await Promise.all([server.nextSession(), c.connect()]);
    assert.equal(welcome.nick, 'mem');
    // Registration lines queued before open left in one write once the transport opened.
    assert.deepEqual(s.received.slice(0, 3), ['CAP LS 302', 'NICK mem', 'USER mem 0 * mem']);
    const before = t.writes;
    for (let i = 0; i < 50; i++) c.sendRaw(`NOOP ${i}`);
    await waitForLine(s, (m) => m.command === 'NOOP' && m.params[0] === '49');
    assert.equal(t.writes - before, 1, 'one write for one tick of lines');
    await c.close();
    assert.equal(c.closed, true);
  });

  it('rejects connect(), never throws, when the registration cannot be written or no transport fits', async () => {
    const bad = new IrcClient({ transport: server.memoryTransport(), nick: 'has space' });
    await assert.rejects(bad.connect(), (err: unknown) => err instanceof IrcClientError && /cannot connect: USER: param 0/.test(err.message));
    assert.equal(bad.closed, true);

    const noHost = new IrcClient({ transport: 'tcp', nick: 'x' });
    await assert.rejects(noHost.connect(), /transport 'tcp' needs host and port/);

    // The browser entry has no TCP, and Node 20 has no global WebSocket for its 'ws'.
    const browserTcp = new BrowserIrcClient({ transport: 'tcp', host: '127.0.0.1', port: server.tcpPort, nick: 'x' });
    await assert.rejects(browserTcp.connect(), /transport 'tcp' is not available here/);
    if ((globalThis as { WebSocket?: unknown }).WebSocket === undefined) {
      const browserWs = new BrowserIrcClient({ transport: 'ws', host: '127.0.0.1', port: server.wsPort, nick: 'x' });
      await assert.rejects(browserWs.connect(), /before registration completed: no WebSocket in this runtime/);
    }
  });

  it('the browser entry connects with an injected WebSocket transport', async () => {
    const c = new BrowserIrcClient({ transport: new BrowserWebSocketTransport(wsUrl('127.0.0.1', server.wsPort), { WebSocket: WhatwgWebSocket }), nick: 'web' });
    const [, welcome] = await Promise.all([server.nextSession(), c.connect()]);
    assert.equal(welcome.nick, 'web');
    await c.close();
  });
});

describe('IrcClient accounts: SASL PLAIN and REGISTER before CAP END', () => {
  const server = new FakeServer();
  const b64 = (s: string): string => Buffer.from(s).toString('base64');

  async function attempt(auth: IrcClientOptions['auth'], ls = 'sasl=PLAIN,EXTERNAL draft/account-registration'): Promise<{ c: IrcClient; s: Session; result: Promise<unknown> }> {
    const c = new IrcClient({ transport: server.memoryTransport({ ls }), nick: 'alice', caps: ['message-tags'], auth });
    const result = c.connect();
    const s = await server.nextSession();
    // Whatever the outcome, the caller looks at it: no unhandled rejection.
    result.catch(() => undefined);
    return { c, s, result };
  }

  it('logs in with PLAIN (sasl requested even when not among the caps), then CAP END; 900 sets the account', async () => {
    const { c, s, result } = await attempt({ mode: 'login', account: 'alice', password: 'right-password' });
    const welcome = (await result) as Awaited<ReturnType<IrcClient['connect']>>;
    assert.equal(welcome.account, 'alice');
    assert.equal(c.account, 'alice');
    assert.deepEqual(s.received, [
      'CAP LS 302',
      'NICK alice',
      'USER alice 0 * alice',
      'CAP REQ :message-tags sasl',
      'AUTHENTICATE PLAIN',
      `AUTHENTICATE ${b64('\0alice\0right-password')}`,
      'CAP END',
    ]);
    await c.close();
  });

  it('a wrong password rejects connect() with the 904, and CAP END is never sent', async () => {
    const { c, s, result } = await attempt({ mode: 'login', account: 'alice', password: 'wrong' });
    await assert.rejects(result, (err: unknown) => err instanceof IrcClientError && err.reply?.command === '904' && /log-in to account alice failed: 904/.test(err.message));
    if (!c.closed) await once(c, 'close');
    assert.equal(c.account, null);
    assert.ok(!s.received.includes('CAP END'), s.received.join(' | '));
  });

  it('registers the account with REGISTER, then CAP END; FAIL REGISTER rejects with its code', async () => {
    const ok = await attempt({ mode: 'register', account: 'newbie', password: 'long enough' });
    const welcome = (await ok.result) as Awaited<ReturnType<IrcClient['connect']>>;
    assert.equal(welcome.account, 'newbie');
    assert.deepEqual(ok.s.received.slice(3), ['CAP REQ :message-tags', 'REGISTER newbie * :long enough', 'CAP END']);
    await ok.c.close();

    for (const [account, password, code] of [['alice', 'long enough', 'ACCOUNT_EXISTS'], ['shorty', 'short', 'WEAK_PASSWORD']] as const) {
      const { c, s, result } = await attempt({ mode: 'register', account, password });
      await assert.rejects(result, (err: unknown) => err instanceof IrcClientError && err.reply?.command === 'FAIL' && err.reply.params[1] === code);
      if (!c.closed) await once(c, 'close');
      assert.ok(!s.received.includes('CAP END'));
    }
  });

  it('refuses at once without the capability, or with an account or password that cannot be sent', async () => {
    const noSasl = await attempt({ mode: 'login', account: 'alice', password: 'right-password' }, 'batch');
    await assert.rejects(noSasl.result, /cannot log in: the server offers no SASL PLAIN/);
    const noPlain = await attempt({ mode: 'login', account: 'alice', password: 'right-password' }, 'sasl=EXTERNAL');
    await assert.rejects(noPlain.result, /no SASL PLAIN/);
    const noReg = await attempt({ mode: 'register', account: 'x', password: 'long enough' }, 'sasl');
    await assert.rejects(noReg.result, /cannot register: the server offers no account registration/);
    for (const auth of [{ mode: 'login', account: '', password: 'p' }, { mode: 'register', account: 'a', password: 'p\r\nQUIT' }] as const) {
      const c = new IrcClient({ transport: server.memoryTransport(), nick: 'alice', auth });
      await assert.rejects(c.connect(), /must not be empty.*NUL, CR or LF/);
      assert.equal(c.closed, true);
    }
  });

  it('PLAIN goes in pieces of 400 base64 characters, with AUTHENTICATE + after an exact multiple', async () => {
    // \0 + 'alice' + \0 + password: 300 bytes → 400 base64 characters exactly.
    const exact = 'p'.repeat(300 - 7);
    assert.deepEqual(plainLines('alice', exact), [`AUTHENTICATE ${b64(`\0alice\0${exact}`)}`, 'AUTHENTICATE +']);
    const long = 'é'.repeat(250);
    const lines = plainLines('alice', long);
    assert.deepEqual(lines.map((l) => l.length - 'AUTHENTICATE '.length), [400, b64(`\0alice\0${long}`).length - 400]);
    assert.throws(() => plainLines('a\0b', 'x'), /NUL/);
    ACCOUNTS.set('bob', long);
    try {
      const { c, result } = await attempt({ mode: 'login', account: 'bob', password: long });
      assert.equal(((await result) as { account: string | null }).account, 'bob');
      await c.close();
    } finally {
      ACCOUNTS.delete('bob');
    }
  });
});

describe('IrcClient events (its own emitter, Node and browser)', () => {
  it('once, off, prepend, removal during emit, listeners, error without listener', async () => {
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: 1, nick: 'x' });
    const calls: string[] = [];
    const a = (): void => void calls.push('a');
    const b = (): void => {
      calls.push('b');
      c.off('close', a); // removing during an emit does not skip or repeat anyone in this emit
    };
    c.on('close', b);
    c.on('close', a);
    c.once('close', () => calls.push('once'));
    c.prependListener('close', () => calls.push('first'));
    assert.equal(c.listenerCount('close'), 4);
    const viaEventsOnce = once(c, 'close');
    c.emit('close', undefined);
    assert.deepEqual(calls, ['first', 'b', 'a', 'once']);
    await viaEventsOnce;
    calls.length = 0;
    c.emit('close', undefined);
    assert.deepEqual(calls, ['first', 'b']);
    const onceFn = (): void => void calls.push('never');
    c.once('message', onceFn);
    assert.deepEqual(c.listeners('message'), [onceFn]);
    c.off('message', onceFn);
    assert.equal(c.listenerCount('message'), 0);
    assert.equal(c.emit('error', new Error('nobody listens')), false);
    c.removeAllListeners();
    assert.deepEqual(c.eventNames(), []);
    c.destroy();
  });
});
