import net from 'node:net';

/**
 * A raw TCP connection to an IRC server, for tests that need bytes the project's client would not
 * send (broken lines, a write and a hang-up in the same tick) or a client that stops reading.
 * Everything received is kept in `data`; `until` waits on the socket's own events.
 */
export class Raw {
  readonly sock: net.Socket;
  data = '';
  /** bytes received so far */
  received = 0;
  /** resolves when the socket is closed, from either side */
  readonly closed: Promise<void>;
  private isClosed = false;

  /** Connects to `port` on `host`, or takes a socket already made (TLS, a chosen local address). */
  constructor(port: number | net.Socket, host = '127.0.0.1') {
    this.sock = typeof port === 'number' ? net.connect(port, host) : port;
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => {
      this.data += d;
      this.received += Buffer.byteLength(d);
    });
    // A reset is a way of being closed, which `closed` reports; the error itself is expected.
    this.sock.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      this.sock.once('close', () => {
        this.isClosed = true;
        resolve();
      });
    });
  }

  send(s: string | Buffer): void {
    this.sock.write(s);
  }

  /**
   * Resolves with everything received once `re` matches it; rejects when the connection closes
   * first or after `timeoutMs`, saying what did arrive.
   */
  until(re: RegExp, timeoutMs = 5000): Promise<string> {
    if (re.test(this.data)) return Promise.resolve(this.data);
    return new Promise((resolve, reject) => {
      const tail = () => this.data.slice(-2000);
      const finish = (err: Error | null) => {
        clearTimeout(timer);
        this.sock.off('data', onData);
        this.sock.off('close', onClose);
        if (err) reject(err);
        else resolve(this.data);
      };
      // Listeners run in order: the constructor's, which appends, comes first.
      const onData = () => {
        if (re.test(this.data)) finish(null);
      };
      const onClose = () => finish(new Error(`connection closed while waiting for ${re}; got:\n${tail()}`));
      const timer = setTimeout(() => finish(new Error(`no ${re} within ${timeoutMs} ms; got:\n${tail()}`)), timeoutMs);
      this.sock.on('data', onData);
      if (this.isClosed) onClose();
      else this.sock.once('close', onClose);
    });
  }

  /** Registers with NICK/USER (no CAP) and resolves after the welcome. */
  async register(nick: string, timeoutMs = 5000): Promise<void> {
    this.send(`NICK ${nick}\r\nUSER u 0 * :${nick}\r\n`);
    await this.until(new RegExp(` 001 ${escapeRe(nick)} `), timeoutMs);
  }

  end(): void {
    this.sock.destroy();
  }
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
