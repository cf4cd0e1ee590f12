import type { IrcMessage } from '@parley/protocol';
import { Cap } from './caps.js';
import type { LocalRoom } from './room.js';

/** What the network layer gives a session: a way to write lines and to hang up. */
export interface Transport {
  readonly kind: 'tcp' | 'ws';
  readonly remoteAddress: string;
  /** writes lines (no CRLF) in one go */
  writeLines(lines: string[]): void;
  /** bytes queued in the socket and not yet sent */
  bufferedBytes(): number;
  /** flushes what is queued, then closes */
  close(): void;
}

/** Called by a session when it has output, so that all output of a tick is flushed at once. */
export interface FlushScheduler {
  scheduleFlush(s: Session): void;
}

let nextId = 1;

/**
 * One client connection: its identity, negotiated capabilities, channels and output queue.
 * The command logic lives in the chat node; the session is state plus cheap helpers.
 */
export class Session {
  readonly id = nextId++;
  nick = '*';
  /** lower-cased nick ('' until a nick is held) */
  nickKey = '';
  user = '';
  realname = '';
  host: string;
  registered = false;
  registering = false;
  capNegotiating = false;
  caps = 0;
  passOk = false;
  away: string | null = null;
  readonly rooms = new Map<string, LocalRoom>();
  readonly connectedAt = Date.now();
  lastActivity = Date.now();
  pingSent = false;
  closed = false;
  /** a blocking command is running: further lines wait in `queue` */
  busy = false;
  readonly queue: IrcMessage[] = [];
  /** the latest non-blocking command still running (QUIT waits for it, so its effects come first) */
  inflight: Promise<void> | null = null;

  /** flood control token bucket */
  tokens: number;
  tokensAt = Date.now();

  private out: string[] = [];
  private scheduled = false;

  constructor(
    readonly transport: Transport,
    private readonly flusher: FlushScheduler,
    burst: number,
  ) {
    this.host = transport.remoteAddress;
    this.tokens = burst;
  }

  get source(): string {
    return `${this.nick}!${this.user}@${this.host}`;
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

  /** Sends what is queued; returns the bytes still buffered in the socket. */
  flush(): number {
    this.scheduled = false;
    if (this.out.length === 0 || this.closed) return 0;
    const lines = this.out;
    this.out = [];
    this.transport.writeLines(lines);
    return this.transport.bufferedBytes();
  }

  /** Marks the session closed after flushing; the node does the cluster clean-up. */
  hangUp(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.transport.close();
  }
}
