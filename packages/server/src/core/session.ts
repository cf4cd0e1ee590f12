import { randomBytes } from 'node:crypto';
import type { IrcMessage } from '@parley/protocol';
import type { SaslExchange } from '../accounts/sasl.js';
import { Cap } from './caps.js';
import type { Responder } from './reply.js';
import type { LocalRoom } from './room.js';

/** What the network layer gives a session: a way to write lines and to hang up. */
export interface Transport {
  readonly kind: 'tcp' | 'ws';
  /** the client's address (through a trusted front door: the one it named) */
  readonly remoteAddress: string;
  /** what other users see as the client's host (a cloak); absent: the address */
  readonly host?: string;
  /** the connection is TLS (IRC over TLS, WSS) */
  readonly secure?: boolean;
  /** writes lines (no CRLF) in one go */
  writeLines(lines: string[]): void;
  /** bytes queued in the socket and not yet sent */
  bufferedBytes(): number;
  /** flushes what is queued, then closes */
  close(): void;
  /** closes at once and frees what is queued: for a peer that does not read */
  destroy(): void;
}

/** Called by a session when it has output, so that all output of a tick is flushed at once. */
export interface FlushScheduler {
  scheduleFlush(s: Session): void;
}

let nextId = 1;

/**
 * One client connection: its identity, negotiated capabilities, channels, command queue and output
 * queue. Without a label a session is its own responder: a command's lines go straight to it.
 */
export class Session implements Responder {
  readonly id = nextId++;
  private _nick = '*';
  /** lower-cased nick ('' until a nick is held) */
  nickKey = '';
  private _user = '';
  realname = '';
  /** the host in this user's prefix, WHO and WHOIS: a cloak of the address unless cloaking is off */
  readonly host: string;
  /** the client's address, shown only to opers (and to the user itself) */
  readonly realHost: string;
  /** an IRC operator (OPER): sees real hosts */
  isOper = false;
  /** the oper block (config `opers[].name`) this session logged in to with OPER, null when none */
  operName: string | null = null;
  /** user modes without '+': `B` bot, `o` operator, `w` wallops, `i` invisible (kept in the cluster state too) */
  umodes = '';
  /** lower-case nicks this connection MONITORs */
  readonly monitors = new Set<string>();
  registered = false;
  capNegotiating = false;
  caps = 0;
  passOk = false;
  away: string | null = null;
  /**
   * The cluster state holds this session's nick (claimed at registration). Whoever releases the
   * session's nick clears it, so a nick is released exactly once, whatever raced.
   */
  claimed = false;
  readonly rooms = new Map<string, LocalRoom>();
  /** the account this connection is logged in to (its display form), null when not */
  account: string | null = null;
  /**
   * Random and unique in the cluster, never reused: a guest's direct conversations are keyed by
   * it (accounts/identity.ts), so they end with the connection.
   */
  readonly conn = randomBytes(12).toString('base64url');
  /** an AUTHENTICATE exchange in progress */
  sasl: SaslExchange | null = null;
  /** the grace timer of a registered nick this session holds without its account (one at most) */
  nickGrace: { nickKey: string; timer: NodeJS.Timeout } | null = null;
  readonly connectedAt = Date.now();
  lastActivity = Date.now();
  pingSent = false;
  closed = false;
  /** a blocking command is running: further lines wait in `queue` */
  busy = false;
  readonly queue: IrcMessage[] = [];
  /** the blocking command running now; the disconnect clean-up runs after it */
  current: Promise<void> | null = null;
  /** the latest non-blocking command still running (QUIT and PING wait for it) */
  inflight: Promise<void> | null = null;

  /** flood control token bucket */
  tokens: number;
  tokensAt = Date.now();

  private source_: string | null = null;
  private out: string[] = [];
  private scheduled = false;

  constructor(
    readonly transport: Transport,
    private readonly flusher: FlushScheduler,
    burst: number,
  ) {
    this.realHost = transport.remoteAddress;
    this.host = transport.host ?? transport.remoteAddress;
    this.tokens = burst;
  }

  get nick(): string {
    return this._nick;
  }

  set nick(v: string) {
    this._nick = v;
    this.source_ = null;
  }

  get user(): string {
    return this._user;
  }

  set user(v: string) {
    this._user = v;
    this.source_ = null;
  }

  /** `nick!user@host`, built once per nick */
  get source(): string {
    return (this.source_ ??= `${this._nick}!${this._user}@${this.host}`);
  }

  has(cap: number): boolean {
    return (this.caps & cap) !== 0;
  }

  get echo(): boolean {
    return (this.caps & Cap.EchoMessage) !== 0;
  }

  /** lines queued and not yet flushed */
  get pending(): number {
    return this.out.length;
  }

  write(line: string): void {
    if (this.closed) return;
    this.out.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      this.flusher.scheduleFlush(this);
    }
  }

  // Responder: without a label, a command's lines go straight out.
  send(line: string): void {
    this.write(line);
  }

  end(): void {}

  markSingleBatch(): void {}

  takeAsOnly(line: string): string {
    return line;
  }

  /** Sends what is queued; returns the bytes still buffered in the socket. */
  flush(): number {
    this.scheduled = false;
    if (this.out.length === 0 || this.closed) return 0;
    const lines = this.out;
    this.out = [];
    this.transport.writeLines(lines);
    return this.transport.bufferedBytes();
  }

  /**
   * Marks the session closed and closes the transport: after flushing (graceful), or at once,
   * dropping what is queued (a peer that does not read would otherwise pin it in memory).
   */
  hangUp(graceful = true): void {
    if (this.closed) {
      if (!graceful) this.transport.destroy();
      return;
    }
    if (graceful) this.flush();
    this.closed = true;
    if (graceful) this.transport.close();
    else this.transport.destroy();
  }
}
