/**
 * IrcClient: the project's own IRC client, used by tests, benchmarks, the load tool and the
 * browser client. Negotiates IRCv3 caps, answers PING, and offers promise helpers (`connect`,
 * `request` with labeled-response, `waitFor`). The connection itself is an injected `IrcTransport`
 * (transport.ts); this core is pure (no Node built-ins) so the browser bundles this very file.
 * Which `transport` names it knows depends on the entry: `@parley/client` (Node) makes 'tcp' and
 * 'ws' with node:net and `ws`; `@parley/client/browser` makes 'ws' with the browser's WebSocket.
 *
 * Hot-path rules: no closure or timer per received or sent message (only `request`/`waitFor` create
 * them); everything written in one tick goes out in one transport write.
 */
import { SUPPORTED_CAPS, parseCapList } from '@parley/protocol';
import { parseLine, serialize } from '@parley/protocol';
import type { IrcMessage } from '@parley/protocol';
import { N } from '@parley/protocol';
import { Emitter } from './emitter.js';
import { BrowserWebSocketTransport } from './transport-browser.js';
import { wsUrl, type IrcTransport, type TransportHandler, type TransportName } from './transport.js';

export { WS_SUBPROTOCOL } from './transport.js';

export interface IrcClientOptions {
  /**
   * A transport name ('tcp', 'ws': `host` and `port` required) or a transport object for one
   * connection (used as it is; `host`, `port`, `path`, `localAddress` are ignored).
   */
  transport: TransportName | IrcTransport;
  host?: string;
  port?: number;
  /** WebSocket path, default '/'. */
  path?: string;
  /** WebSocket subprotocols offered in the handshake; default [WS_SUBPROTOCOL] (Node 'ws' transport) */
  wsProtocols?: string[];
  /** Origin header of the WebSocket handshake (some servers, e.g. InspIRCd, refuse one without) */
  origin?: string;
  nick: string;
  /** Default: the nick. */
  user?: string;
  /** Default: the nick. */
  realname?: string;
  /** Sent as PASS before NICK/USER. */
  password?: string;
  /**
   * Log in to an account (SASL PLAIN) or create one (draft/account-registration REGISTER) during
   * registration, before CAP END. `connect()` rejects when it fails (the `reply` is the `904` or
   * the `FAIL REGISTER …`): asked to log in, the client never goes on as a guest.
   */
  auth?: AccountAuth;
  /** Caps to request when the server lists them; default `DEFAULT_CLIENT_CAPS`. */
  caps?: string[];
  /** Source IP address (load tests spread connections over several). */
  localAddress?: string;
  /** Keep every received message in `messages`; default true (the load tool turns it off). */
  keepHistory?: boolean;
  /** `connect()` rejects when registration has not completed by then; default 10000. */
  connectTimeoutMs?: number;
  /** Default timeout of `request()`; default 10000. */
  requestTimeoutMs?: number;
}

/**
 * The client asks for every capability Parley supports but `sasl`: asking for it says "I am going
 * to authenticate", so it is requested only with `auth` (or when named in `caps`).
 */
export const DEFAULT_CLIENT_CAPS: readonly string[] = SUPPORTED_CAPS.filter((c) => c !== 'sasl');

/** An account to log in to, or to create and be logged in to, before registration completes. */
export interface AccountAuth {
  mode: 'login' | 'register';
  account: string;
  password: string;
}

/** Numerics that end a SASL exchange unsuccessfully. */
const SASL_FAILURES = new Set<string>([N.ERR_SASLFAIL, N.ERR_SASLTOOLONG, N.ERR_SASLABORTED]);
/** SASL messages from the client go in lines of at most this many base64 characters. */
const SASL_CHUNK = 400;

/** A timer handle in Node (an object with `unref`) or in a browser (a number). */
type Timer = ReturnType<typeof setTimeout>;

/** Timers must not keep a Node process alive; browsers have nothing to unref. */
function unref(t: Timer): Timer {
  const u = (t as { unref?: unknown }).unref;
  if (typeof u === 'function') u.call(t);
  return t;
}

export interface WelcomeInfo {
  /** The nick the server registered (001's first param). */
  nick: string;
  /** Source of 001. */
  server: string;
  caps: Set<string>;
  isupport: Map<string, string>;
  /** MOTD text lines (372), empty on ERR_NOMOTD. */
  motd: string[];
  /** The account logged in to (900), or null. */
  account: string | null;
}

/** Failures of the client's own promises: registration refused, timeouts, connection closed. */
export class IrcClientError extends Error {
  override readonly name = 'IrcClientError';
  constructor(
    message: string,
    /** The server message that caused it (ERROR, 433, ...), when there is one. */
    readonly reply?: IrcMessage,
  ) {
    super(message);
  }
}

export interface IrcClientEvents {
  /** Every parsed message from the server, with its raw line. */
  message: [msg: IrcMessage, raw: string];
  /** Once, when the connection is gone; the error that ended it, if any. */
  close: [err: Error | undefined];
  /**
   * Transport errors and unreadable or unparsable lines from the server. Only emitted when a
   * listener is attached (no listener is not a crash); every error that ends the connection also
   * reaches 'close' and rejects pending promises.
   */
  error: [err: Error];
}

export interface RequestOptions {
  timeoutMs?: number;
  /** Default: a fresh per-client label. */
  label?: string;
}

interface PendingRequest {
  label: string;
  resolve: (msgs: IrcMessage[]) => void;
  reject: (err: Error) => void;
  timer: Timer | undefined;
  /** Reference of the batch that carries the response, once its start has arrived. */
  batch: string | null;
  /** The batch is the labeled-response wrapper (its BATCH lines are not part of the result). */
  wrapper: boolean;
  messages: IrcMessage[];
}

interface Waiter {
  pred: (m: IrcMessage) => boolean;
  resolve: (m: IrcMessage) => void;
  reject: (err: Error) => void;
  timer: Timer | undefined;
}

// Lines from the server are parsed leniently: a test client should show what the server sent.
const PARSE_LIMITS = { maxBodyBytes: 1 << 20, maxTagBytes: 1 << 20 };

/** Numerics that end registration with a failure. */
const REGISTRATION_FAILURES = new Set<string>([
  N.ERR_NONICKNAMEGIVEN,
  N.ERR_ERRONEUSNICKNAME,
  N.ERR_NICKNAMEINUSE,
  N.ERR_NICKCOLLISION,
  N.ERR_UNAVAILRESOURCE,
  N.ERR_NEEDMOREPARAMS,
  N.ERR_PASSWDMISMATCH,
  N.ERR_YOUREBANNEDCREEP,
]);

export class IrcClient extends Emitter<IrcClientEvents> {
  /** Everything received, in order, when `keepHistory` is on. */
  readonly messages: IrcMessage[] = [];
  /** Caps the server acknowledged (kept up to date by CAP ACK/DEL). */
  readonly acceptedCaps = new Set<string>();
  /** Caps the server listed in CAP LS / CAP NEW, with their values. */
  readonly serverCaps = new Map<string, string>();
  /** ISUPPORT (005) tokens; a token without value maps to ''. */
  readonly isupport = new Map<string, string>();
  /** Current nick (follows the server's 001 and our own NICK changes). */
  nick: string;
  serverName = '';
  /** The account this connection is logged in to (900), null before or after (901). */
  account: string | null = null;
  registered = false;
  closed = false;

  private readonly opts: IrcClientOptions;
  private readonly keepHistory: boolean;
  private readonly wantedCaps: readonly string[];
  private transport: IrcTransport | null = null;
  private open = false;
  /** close() was called: further sends are dropped (the socket is being ended). */
  private closing = false;
  private outQueue: string[] = [];
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  /** One handler for the life of the client: nothing is allocated per line. */
  private readonly handler: TransportHandler = {
    onOpen: () => this.onOpen(),
    onLine: (line) => this.handleLine(line),
    onLineError: (err) => this.emitError(err),
    onError: (err) => this.onTransportError(err),
    onClose: () => this.onClosed(),
  };

  private connectPromise: Promise<WelcomeInfo> | null = null;
  private connectResolve: ((w: WelcomeInfo) => void) | null = null;
  private connectReject: ((err: Error) => void) | null = null;
  private connectTimer: Timer | undefined;
  private capEndSent = false;
  /** The `auth` exchange: not begun, waiting for the server, or over. */
  private authState: 'idle' | 'running' | 'done' = 'idle';
  private lsBuffer = '';
  private motd: string[] = [];
  private lastError: Error | undefined;
  private errorReply: IrcMessage | undefined;
  private closeTimer: Timer | undefined;

  private labelSeq = 0;
  private readonly pending = new Map<string, PendingRequest>();
  /** Batch reference → the request it answers (labeled wrapper and batches nested in it). */
  private readonly batches = new Map<string, PendingRequest>();
  private readonly waiters: Waiter[] = [];

  constructor(opts: IrcClientOptions) {
    super();
    this.opts = opts;
    this.nick = opts.nick;
    this.keepHistory = opts.keepHistory ?? true;
    const caps = opts.caps ?? DEFAULT_CLIENT_CAPS;
    this.wantedCaps = opts.auth?.mode === 'login' && !caps.includes('sasl') ? [...caps, 'sasl'] : caps;
    if (opts.auth === undefined) this.authState = 'done';
  }

  /** Connects and registers; resolves at the end of the MOTD (376 or 422). Idempotent. */
  connect(): Promise<WelcomeInfo> {
    if (this.connectPromise !== null) return this.connectPromise;
    this.connectPromise = new Promise<WelcomeInfo>((resolve, reject) => {
      this.connectResolve = resolve;
      this.connectReject = reject;
    });
    if (this.closed) {
      this.failConnect(new IrcClientError('client is closed'));
      return this.connectPromise;
    }
    let transport: IrcTransport;
    const reg: string[] = ['CAP LS 302'];
    try {
      // A nick or password that cannot be put on a line is the caller's error: reject, not throw.
      const auth = this.opts.auth;
      if (auth !== undefined && (auth.account === '' || /[\0\r\n]/.test(auth.account + auth.password))) {
        throw new IrcClientError('the account must not be empty, and neither it nor the password may contain NUL, CR or LF');
      }
      if (this.opts.password !== undefined) reg.push(serialize(msgOf('PASS', [this.opts.password])));
      reg.push(serialize(msgOf('NICK', [this.opts.nick])));
      reg.push(serialize(msgOf('USER', [this.opts.user ?? this.opts.nick, '0', '*', this.opts.realname ?? this.opts.nick])));
      const t = this.opts.transport;
      transport = typeof t === 'string' ? this.createTransport(t, this.opts) : t;
    } catch (err) {
      this.failConnect(err instanceof IrcClientError ? err : new IrcClientError(`cannot connect: ${(err as Error).message}`));
      this.onClosed();
      return this.connectPromise;
    }
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    this.connectTimer = unref(
      setTimeout(() => {
        this.failConnect(new IrcClientError(`registration did not complete within ${timeoutMs} ms`));
        this.destroy();
      }, timeoutMs),
    );
    for (const line of reg) this.sendRaw(line);
    this.transport = transport;
    transport.open(this.handler);
    return this.connectPromise;
  }

  /**
   * Makes the transport for a name. This core knows 'ws' through a WHATWG WebSocket
   * (`globalThis.WebSocket`); the Node entry (`@parley/client`) overrides it with node:net and `ws`.
   */
  protected createTransport(name: TransportName, opts: IrcClientOptions): IrcTransport {
    const { host, port } = opts;
    if (host === undefined || port === undefined) throw new IrcClientError(`transport '${name}' needs host and port`);
    if (name === 'ws') return new BrowserWebSocketTransport(wsUrl(host, port, opts.path));
    throw new IrcClientError(`transport '${name}' is not available here: use IrcClient from '@parley/client' in Node, or pass a transport object`);
  }

  /**
   * Sends a message (serialised at once, so a bad message throws here) or a raw line (no CRLF).
   * Lines written in one tick share one socket write. Dropped silently once `close()` was called.
   */
  send(msg: IrcMessage | string): void {
    this.sendRaw(typeof msg === 'string' ? msg : serialize(msg));
  }

  /** Queues a raw line without CRLF; it is not checked (tests use it to send broken input). */
  sendRaw(line: string): void {
    if (this.closing || this.closed) return;
    this.outQueue.push(line);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushBound);
    }
  }

  /**
   * Sends `msg` with a `label` tag and resolves with the response: [the single labelled message],
   * the messages inside the labelled BATCH (nested batches included with their BATCH lines; the
   * labeled-response wrapper's own BATCH lines left out), or [] for ACK. Requires the
   * labeled-response cap. Rejects on timeout or close.
   */
  request(msg: IrcMessage | string, opts?: RequestOptions): Promise<IrcMessage[]> {
    if (this.closed) return Promise.reject(new IrcClientError('connection closed'));
    if (!this.acceptedCaps.has('labeled-response')) {
      return Promise.reject(new IrcClientError('labeled-response was not negotiated with the server'));
    }
    let m: IrcMessage;
    try {
      m = typeof msg === 'string' ? parseLine(msg, PARSE_LIMITS) : msg;
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const label = opts?.label ?? `L${(++this.labelSeq).toString(36)}`;
    if (this.pending.has(label)) return Promise.reject(new IrcClientError(`label ${label} is already in use`));
    const timeoutMs = opts?.timeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    let line: string;
    try {
      line = serialize({ tags: { ...m.tags, label }, source: m.source, command: m.command, params: m.params });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<IrcMessage[]>((resolve, reject) => {
      const p: PendingRequest = { label, resolve, reject, timer: undefined, batch: null, wrapper: false, messages: [] };
      p.timer = unref(
        setTimeout(() => {
          this.dropRequest(p);
          reject(new IrcClientError(`no response to ${m.command} (label ${label}) within ${timeoutMs} ms`));
        }, timeoutMs),
      );
      this.pending.set(label, p);
      this.sendRaw(line);
    });
  }

  /** Resolves with the first message received from now on that satisfies `pred`. */
  waitFor(pred: (m: IrcMessage) => boolean, timeoutMs = 5000): Promise<IrcMessage> {
    if (this.closed) return Promise.reject(new IrcClientError('connection closed'));
    return new Promise<IrcMessage>((resolve, reject) => {
      const w: Waiter = { pred, resolve, reject, timer: undefined };
      w.timer = unref(
        setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i !== -1) this.waiters.splice(i, 1);
          reject(new IrcClientError(`waitFor: no matching message within ${timeoutMs} ms`));
        }, timeoutMs),
      );
      this.waiters.push(w);
    });
  }

  /** Sends QUIT, closes gracefully, resolves once closed (the socket is dropped after 2 s at most). */
  close(quitMessage?: string): Promise<void> {
    const closed = this.closed ? Promise.resolve() : new Promise<void>((res) => this.once('close', () => res()));
    if (this.closed) return closed;
    if (!this.open) {
      this.destroy();
      return closed;
    }
    this.outQueue.push(serialize(msgOf('QUIT', quitMessage === undefined ? [] : [quitMessage])));
    this.flush();
    this.closing = true;
    this.transport?.end();
    this.closeTimer ??= unref(setTimeout(() => this.destroy(), 2000));
    return closed;
  }

  /** Drops the connection at once. */
  destroy(): void {
    if (this.transport !== null) this.transport.destroy();
    else this.onClosed();
  }

  /** Bytes written and not yet sent by the transport (back-pressure for the load tool). */
  get bufferedAmount(): number {
    return this.transport?.bufferedAmount ?? 0;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.open || this.closed || this.outQueue.length === 0) return;
    const q = this.outQueue;
    this.outQueue = [];
    (this.transport as IrcTransport).write(q);
  }

  private onOpen(): void {
    this.open = true;
    this.flush();
  }

  private handleLine(raw: string): void {
    let msg: IrcMessage;
    try {
      msg = parseLine(raw, PARSE_LIMITS);
    } catch (err) {
      this.emitError(err as Error);
      return;
    }
    if (this.keepHistory) this.messages.push(msg);
    switch (msg.command) {
      case 'PING':
        this.sendRaw(serialize(msgOf('PONG', msg.params)));
        break;
      case 'CAP':
        this.handleCap(msg);
        break;
      case 'NICK':
        if (msg.source !== undefined && nickOf(msg.source) === this.nick && msg.params[0] !== undefined) this.nick = msg.params[0];
        break;
      case 'ERROR':
        this.errorReply = msg;
        if (!this.registered) this.failConnect(new IrcClientError(`server closed the link: ${msg.params[0] ?? ''}`, msg));
        break;
      case N.RPL_LOGGEDIN:
        this.account = msg.params[2] ?? null;
        break;
      case N.RPL_LOGGEDOUT:
        this.account = null;
        break;
      default:
        if (this.authState === 'running') this.handleAuth(msg);
        if (!this.registered) this.handleRegistration(msg);
    }
    if (this.pending.size !== 0) this.routeResponse(msg);
    if (this.waiters.length !== 0) this.checkWaiters(msg);
    this.emit('message', msg, raw);
  }

  private handleRegistration(msg: IrcMessage): void {
    switch (msg.command) {
      case N.RPL_WELCOME:
        this.nick = msg.params[0] ?? this.nick;
        this.serverName = msg.source ?? '';
        break;
      case N.RPL_ISUPPORT:
        this.parseIsupport(msg.params);
        break;
      case N.RPL_MOTD:
        this.motd.push(msg.params[1] ?? '');
        break;
      case N.RPL_ENDOFMOTD:
      case N.ERR_NOMOTD: {
        this.registered = true;
        const resolve = this.connectResolve;
        this.clearConnect();
        resolve?.({
          nick: this.nick,
          server: this.serverName,
          caps: this.acceptedCaps,
          isupport: this.isupport,
          motd: this.motd,
          account: this.account,
        });
        break;
      }
      default:
        if (REGISTRATION_FAILURES.has(msg.command)) {
          const text = msg.params[msg.params.length - 1] ?? '';
          this.failConnect(new IrcClientError(`registration refused: ${msg.command} ${text}`, msg));
          this.destroy();
        }
    }
  }

  private handleCap(msg: IrcMessage): void {
    const sub = msg.params[1]?.toUpperCase();
    const more = msg.params.length >= 4 && msg.params[2] === '*';
    const list = msg.params[msg.params.length - 1] ?? '';
    switch (sub) {
      case 'LS': {
        if (this.capEndSent) break;
        this.lsBuffer = this.lsBuffer === '' ? list : this.lsBuffer + ' ' + list;
        if (more) break;
        for (const [name, value] of parseCapList(this.lsBuffer)) this.serverCaps.set(name, value);
        this.lsBuffer = '';
        const wanted = this.wantedCaps.filter((c) => this.serverCaps.has(c));
        if (wanted.length === 0) this.capsSettled();
        else this.sendRaw(`CAP REQ :${wanted.join(' ')}`);
        break;
      }
      case 'ACK':
        for (const name of parseCapList(list).keys()) {
          if (name.startsWith('-')) this.acceptedCaps.delete(name.slice(1));
          else this.acceptedCaps.add(name);
        }
        if (!more) this.capsSettled();
        break;
      case 'NAK':
        if (!more) this.capsSettled();
        break;
      case 'NEW': {
        const added = parseCapList(list);
        for (const [name, value] of added) this.serverCaps.set(name, value);
        const wanted = this.wantedCaps.filter((c) => added.has(c) && !this.acceptedCaps.has(c));
        if (wanted.length !== 0) this.sendRaw(`CAP REQ :${wanted.join(' ')}`);
        break;
      }
      case 'DEL':
        for (const name of parseCapList(list).keys()) {
          this.serverCaps.delete(name);
          this.acceptedCaps.delete(name);
        }
        break;
    }
  }

  /** The caps are agreed: log in or register first when asked to, then CAP END. */
  private capsSettled(): void {
    const auth = this.opts.auth;
    if (auth === undefined || this.authState !== 'idle') return this.endCap();
    this.authState = 'running';
    const missing = (what: string): void => {
      this.failConnect(new IrcClientError(`cannot ${auth.mode === 'login' ? 'log in' : 'register'}: the server offers no ${what}`));
      this.destroy();
    };
    try {
      if (auth.mode === 'register') {
        if (!this.serverCaps.has('draft/account-registration')) return missing('account registration (draft/account-registration)');
        this.sendRaw(serialize(msgOf('REGISTER', [auth.account, '*', auth.password])));
        return;
      }
      const mechs = this.serverCaps.get('sasl');
      if (!this.acceptedCaps.has('sasl') || (mechs !== undefined && mechs !== '' && !mechs.split(',').includes('PLAIN'))) {
        return missing('SASL PLAIN');
      }
      this.sendRaw('AUTHENTICATE PLAIN');
    } catch (err) {
      // An account or password that cannot be put on a line: the caller's error.
      this.failConnect(new IrcClientError(`cannot ${auth.mode === 'login' ? 'log in' : 'register'}: ${(err as Error).message}`));
      this.destroy();
    }
  }

  /** Replies to the REGISTER or AUTHENTICATE exchange started by `capsSettled`. */
  private handleAuth(msg: IrcMessage): void {
    const auth = this.opts.auth as AccountAuth;
    const fail = (why: string): void => {
      this.authState = 'done';
      this.failConnect(new IrcClientError(why, msg));
      this.destroy();
    };
    const succeed = (): void => {
      this.authState = 'done';
      this.endCap();
    };
    switch (msg.command) {
      case 'AUTHENTICATE':
        if (msg.params[0] === '+') for (const line of plainLines(auth.account, auth.password)) this.sendRaw(line);
        return;
      case N.RPL_SASLSUCCESS:
      case N.ERR_SASLALREADY:
        return succeed();
      case 'REGISTER':
        if (msg.params[0] === 'SUCCESS') succeed();
        return;
      case 'FAIL':
        if (msg.params[0] === 'REGISTER') fail(`registration of account ${auth.account} refused: ${msg.params.slice(1, -1).join(' ')} ${msg.params[msg.params.length - 1] ?? ''}`);
        return;
      default:
        if (SASL_FAILURES.has(msg.command)) fail(`log-in to account ${auth.account} failed: ${msg.command} ${msg.params[msg.params.length - 1] ?? ''}`);
    }
  }

  private endCap(): void {
    if (this.capEndSent) return;
    this.capEndSent = true;
    this.sendRaw('CAP END');
  }

  private parseIsupport(params: string[]): void {
    // params: <nick> token... :are supported by this server
    for (let i = 1; i < params.length - 1; i++) {
      const token = params[i] as string;
      if (token.startsWith('-')) {
        this.isupport.delete(token.slice(1));
        continue;
      }
      const eq = token.indexOf('=');
      if (eq === -1) this.isupport.set(token, '');
      else this.isupport.set(token.slice(0, eq), unescapeIsupport(token.slice(eq + 1)));
    }
  }

  private routeResponse(msg: IrcMessage): void {
    const tags = msg.tags;
    if (msg.command === 'BATCH') {
      const ref = msg.params[0] ?? '';
      const name = ref.slice(1);
      if (ref.startsWith('-')) {
        const p = this.batches.get(name);
        if (p === undefined) return;
        this.batches.delete(name);
        if (p.batch === name) {
          if (!p.wrapper) p.messages.push(msg);
          this.finishRequest(p, p.messages);
        } else {
          p.messages.push(msg);
        }
        return;
      }
      if (ref.startsWith('+')) {
        const label = tags['label'];
        const labelled = label === undefined ? undefined : this.pending.get(label);
        if (labelled !== undefined && labelled.batch === null) {
          labelled.batch = name;
          labelled.wrapper = msg.params[1] === 'labeled-response';
          if (!labelled.wrapper) labelled.messages.push(msg);
          this.batches.set(name, labelled);
          return;
        }
        const outer = tags['batch'];
        const p = outer === undefined ? undefined : this.batches.get(outer);
        if (p !== undefined) {
          this.batches.set(name, p);
          p.messages.push(msg);
        }
        return;
      }
    }
    const label = tags['label'];
    if (label !== undefined) {
      const p = this.pending.get(label);
      if (p !== undefined && p.batch === null) {
        this.finishRequest(p, msg.command === 'ACK' ? [] : [msg]);
        return;
      }
    }
    const ref = tags['batch'];
    if (ref !== undefined) this.batches.get(ref)?.messages.push(msg);
  }

  private finishRequest(p: PendingRequest, result: IrcMessage[]): void {
    this.dropRequest(p);
    p.resolve(result);
  }

  private dropRequest(p: PendingRequest): void {
    clearTimeout(p.timer);
    this.pending.delete(p.label);
    if (p.batch !== null) {
      for (const [ref, q] of this.batches) if (q === p) this.batches.delete(ref);
    }
  }

  private checkWaiters(msg: IrcMessage): void {
    const waiters = this.waiters;
    for (let i = 0; i < waiters.length; ) {
      const w = waiters[i] as Waiter;
      let hit: boolean;
      try {
        hit = w.pred(msg);
      } catch (err) {
        waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (hit) {
        waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(msg);
      } else {
        i++;
      }
    }
  }

  private onTransportError(err: Error): void {
    this.lastError ??= err;
    this.emitError(err);
  }

  private emitError(err: Error): void {
    if (this.listenerCount('error') !== 0) this.emit('error', err);
  }

  private failConnect(err: Error): void {
    const reject = this.connectReject;
    this.clearConnect();
    reject?.(err);
  }

  private clearConnect(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.connectResolve = null;
    this.connectReject = null;
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.outQueue = [];
    clearTimeout(this.closeTimer);
    const why = this.errorReply !== undefined ? `: ${this.errorReply.params[0] ?? 'ERROR'}` : this.lastError !== undefined ? `: ${this.lastError.message}` : '';
    if (this.connectReject !== null) {
      this.failConnect(new IrcClientError(`connection closed before registration completed${why}`, this.errorReply));
    }
    for (const p of [...this.pending.values()]) {
      this.dropRequest(p);
      p.reject(new IrcClientError(`connection closed before the response to label ${p.label}${why}`));
    }
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new IrcClientError(`connection closed while waiting for a message${why}`));
    }
    this.emit('close', this.lastError);
  }
}

/**
 * `AUTHENTICATE` lines carrying SASL PLAIN's `\0account\0password` (empty authzid) in base64: in
 * pieces of 400 characters, and `AUTHENTICATE +` after a last piece of exactly 400 (IRCv3 sasl).
 * Throws when the account or password contains NUL, which PLAIN cannot carry.
 */
export function plainLines(account: string, password: string): string[] {
  if (account.includes('\0') || password.includes('\0')) throw new IrcClientError('an account or password cannot contain NUL');
  const bytes = new TextEncoder().encode(`\0${account}\0${password}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  const b64 = btoa(bin);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += SASL_CHUNK) lines.push(`AUTHENTICATE ${b64.slice(i, i + SASL_CHUNK)}`);
  if (b64.length % SASL_CHUNK === 0) lines.push('AUTHENTICATE +');
  return lines;
}

function msgOf(command: string, params: string[]): IrcMessage {
  return { tags: {}, source: undefined, command, params };
}

function nickOf(source: string): string {
  const bang = source.indexOf('!');
  return bang === -1 ? source : source.slice(0, bang);
}

function unescapeIsupport(v: string): string {
  return v.indexOf('\\x') === -1 ? v : v.replace(/\\x([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

