import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { parseProxyV1, plainAddress } from './door.js';

/** The certificate and key files of the TLS listeners, and a way to notice that they changed. */
export interface TlsFilesOptions {
  certFile: string;
  keyFile: string;
  log: Logger;
  /** called with the new files' contents after they changed and were valid */
  changed: (pair: { cert: Buffer; key: Buffer }) => void;
}

export class TlsConfigError extends Error {}

/**
 * Reads a certificate and its key (PEM) and watches both: when either changes (a renewal writes
 * the files, often by renaming new ones over them), they are read again and, if they make a valid
 * context, handed to `changed` (the listeners' `setSecureContext`); a bad pair is logged and the
 * old one stays. Watches the directories, not the files, so a rename over a file is seen.
 */
export class TlsFiles {
  private pair: { cert: Buffer; key: Buffer };
  private readonly watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: TlsFilesOptions) {
    try {
      this.pair = this.read();
    } catch (err) {
      throw new TlsConfigError(`TLS: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  get current(): { cert: Buffer; key: Buffer } {
    return this.pair;
  }

  private read(): { cert: Buffer; key: Buffer } {
    const cert = fs.readFileSync(this.o.certFile);
    const key = fs.readFileSync(this.o.keyFile);
    // Throws on a malformed certificate, a malformed key, or a key that is not the certificate's.
    tls.createSecureContext({ cert, key });
    return { cert, key };
  }

  watch(): void {
    const names = new Map<string, Set<string>>();
    for (const f of [this.o.certFile, this.o.keyFile]) {
      const dir = path.dirname(path.resolve(f));
      if (!names.has(dir)) names.set(dir, new Set());
      names.get(dir)?.add(path.basename(f));
    }
    for (const [dir, files] of names) {
      const w = fs.watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || files.has(name.toString())) this.soon();
      });
      w.on('error', (err) => this.o.log.warn({ err: err.message, dir }, 'watching the TLS files failed'));
      this.watchers.push(w);
    }
  }

  /** A renewal writes two files, maybe in several steps: read once things settle. */
  private soon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload();
    }, 200);
    this.timer.unref();
  }

  /** Reads the files again; true if the new pair is in use. */
  reload(): boolean {
    let next;
    try {
      next = this.read();
    } catch (err) {
      this.o.log.error({ err: (err as Error).message.split('\n')[0], cert: this.o.certFile }, 'TLS files changed but are not usable: the previous certificate stays');
      return false;
    }
    if (next.cert.equals(this.pair.cert) && next.key.equals(this.pair.key)) return false;
    this.pair = next;
    this.o.changed(next);
    this.o.log.info({ cert: this.o.certFile }, 'TLS certificate reloaded');
    return true;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
  }
}

/** What a listener learnt about one accepted connection. */
export interface Accepted {
  /** the client's address: the peer's, or the one a trusted proxy's PROXY header named */
  address: string;
  secure: boolean;
}

export interface ListenerOptions {
  /** peers whose PROXY header (v1, `send-proxy` in HAProxy) is believed */
  trusted: ReadonlySet<string>;
  /** present: connections are TLS (after the PROXY header, if any) */
  tls?: { context: () => { cert: Buffer; key: Buffer } };
  /** the socket is not flowing yet: the callee attaches its listeners and calls `resume()` */
  onConnection: (sock: net.Socket, a: Accepted) => void;
}

/** How long a trusted peer has to send its PROXY header (or the first bytes of something else). */
const HEADER_MS = 5_000;

/**
 * A listener that takes connections from a trusted proxy with or without a PROXY v1 header (a
 * direct connection from the same address keeps working), optionally as TLS. From any other peer
 * the bytes are never looked at: its address is the peer's. Returns the server and, for TLS, a
 * function that installs a new certificate for new connections.
 */
export function createListener(o: ListenerOptions): { server: net.Server; setSecureContext: (pair: { cert: Buffer; key: Buffer }) => void } {
  let context: tls.SecureContext | null = o.tls ? tls.createSecureContext(o.tls.context()) : null;
  const handOver = (sock: net.Socket, address: string): void => {
    if (context === null) {
      o.onConnection(sock, { address, secure: false });
      return;
    }
    const t = new tls.TLSSocket(sock, { isServer: true, secureContext: context });
    t.on('error', () => t.destroy());
    const timer = setTimeout(() => t.destroy(), HEADER_MS);
    timer.unref();
    t.once('secure', () => {
      clearTimeout(timer);
      o.onConnection(t, { address, secure: true });
    });
  };
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (sock) => {
    const peer = plainAddress(sock.remoteAddress ?? 'unknown');
    sock.on('error', () => undefined);
    if (!o.trusted.has(peer)) {
      handOver(sock, peer);
      return;
    }
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), HEADER_MS);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const h = parseProxyV1(buf);
      if (h === 'incomplete') return;
      clearTimeout(timer);
      sock.off('data', onData);
      sock.pause();
      // What follows the header (a TLS ClientHello, an IRC line) is read by whoever takes the socket.
      const rest = h === null ? buf : buf.subarray(h.length);
      if (rest.length > 0) sock.unshift(rest);
      handOver(sock, h?.address ? plainAddress(h.address) : peer);
    };
    sock.on('data', onData);
    sock.resume();
  });
  return {
    server,
    setSecureContext: (pair) => {
      context = tls.createSecureContext(pair);
    },
  };
}
