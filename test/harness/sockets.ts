import { spawn } from 'node:child_process';
import net from 'node:net';

/** A TCP socket the kernel has just destroyed (its memory, queues included, is freed). */
export interface DestroyedSocket {
  localPort: number;
  /** unread bytes it still held */
  recvQ: number;
  /** unsent bytes it still held */
  sendQ: number;
  line: string;
}

export interface SocketDestroyWatch {
  /** every destroyed socket seen since the watch started */
  readonly seen: DestroyedSocket[];
  /**
   * Resolves with the first destroyed socket (seen before or after the call) that matches;
   * rejects after `timeoutMs` with `what` and what was seen.
   */
  waitFor(pred: (s: DestroyedSocket) => boolean, what: string, timeoutMs: number): Promise<DestroyedSocket>;
  close(): void;
}

/**
 * Kernel events for TCP sockets as they are destroyed (`ss -E`, sock_diag destroy events), from
 * the moment the returned promise resolves. This is how a test sees that a server really let go
 * of a connection (and the kernel buffers behind it) without the peer having to read: a socket
 * whose unsent data cannot leave (the peer's window is zero) is destroyed only when the server
 * resets it; closing it gracefully leaves an orphan that lingers for minutes.
 * Needs CAP_NET_ADMIN (root); rejects with a clear message when `ss -E` cannot run.
 */
export async function watchSocketDestroys(): Promise<SocketDestroyWatch> {
  // stdbuf: ss writes to a pipe in blocks otherwise, and an event would sit in its buffer.
  const child = spawn('stdbuf', ['-oL', 'ss', '-E', '-t', '-n', '-H'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const seen: DestroyedSocket[] = [];
  const listeners = new Set<(s: DestroyedSocket) => void>();
  let errText = '';
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // State Recv-Q Send-Q Local:Port Peer:Port
      const f = line.trim().split(/\s+/);
      const local = f[3]?.match(/:(\d+)$/);
      if (!local || f[1] === undefined || f[2] === undefined) continue;
      const s: DestroyedSocket = { localPort: Number(local[1]), recvQ: Number(f[1]), sendQ: Number(f[2]), line: line.trim() };
      seen.push(s);
      for (const l of listeners) l(s);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    errText += d;
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (err) => resolve(err.message));
    child.once('exit', (code, sig) => resolve(`exited (${sig ?? code})`));
  });
  // ss does not say when it has joined the kernel's event group: it is ready once it reports a
  // loopback connection of our own. One opened before it joined goes unreported, so probes are
  // made until one is (a start-up handshake with an external tool, bounded to 5 s).
  const probes = new Set<number>();
  let probing = true;
  const ready = new Promise<null>((resolve) => {
    const l = (s: DestroyedSocket) => {
      if (!probes.has(s.localPort)) return;
      listeners.delete(l);
      resolve(null);
    };
    listeners.add(l);
  });
  const deadline = Date.now() + 5000;
  const probeLoop = (async (): Promise<string> => {
    while (probing && Date.now() < deadline) {
      probes.add(await closedProbeConnection());
      await new Promise((r) => setTimeout(r, 50));
    }
    return 'reported none of its probe connections within 5 s';
  })().catch((err: Error) => `probe connection failed: ${err.message}`);
  const failed = await Promise.race([ready, exited, probeLoop]);
  probing = false;
  if (failed !== null) {
    child.kill('SIGKILL');
    throw new Error(`\`ss -E\` (kernel socket-destroy events) is unavailable: ${failed} ${errText.trim()}; it needs iproute2 and CAP_NET_ADMIN`);
  }
  child.unref();
  return {
    seen,
    waitFor(pred, what, timeoutMs) {
      const old = seen.find(pred);
      if (old) return Promise.resolve(old);
      return new Promise((resolve, reject) => {
        const l = (s: DestroyedSocket) => {
          if (!pred(s)) return;
          clearTimeout(timer);
          listeners.delete(l);
          resolve(s);
        };
        const timer = setTimeout(() => {
          listeners.delete(l);
          const list = seen.map((s) => s.line).join('\n') || '(none)';
          reject(new Error(`no ${what} within ${timeoutMs} ms; sockets destroyed meanwhile:\n${list}`));
        }, timeoutMs);
        listeners.add(l);
      });
    },
    close() {
      child.kill('SIGTERM');
    },
  };
}

/** Opens a loopback connection and closes both ends; resolves with the server's port once closed. */
function closedProbeConnection(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((conn) => conn.destroy());
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      const c = net.connect(port, '127.0.0.1');
      c.on('error', () => undefined);
      c.once('close', () => srv.close(() => resolve(port)));
      c.resume();
    });
  });
}
