import net from 'node:net';
import { LineSplitter } from '@parley/protocol';
import type { ChatNode } from '../core/node.js';
import type { Transport } from '../core/session.js';
import { REFUSAL_TEXT, type Door } from './door.js';
import { createListener, type Accepted } from './tls.js';

export interface TcpOptions {
  node: ChatNode;
  door: Door;
  /** present: IRC over TLS (port 6697 by convention) */
  tls?: { context: () => { cert: Buffer; key: Buffer } };
}

/**
 * IRC over TCP (or TLS): CRLF-terminated lines on a socket. A connection is first admitted at the
 * door (per-address limits, cluster-wide); a refused one gets `ERROR :Closing Link` and is closed.
 * Lines are not read until then.
 */
export function createTcpServer(o: TcpOptions): { server: net.Server; setSecureContext: (pair: { cert: Buffer; key: Buffer }) => void } {
  const { node, door } = o;
  return createListener({
    trusted: door.trusted,
    ...(o.tls ? { tls: o.tls } : {}),
    onConnection: (sock, a) => {
      if (node.draining) {
        sock.end('ERROR :Server is draining, please reconnect\r\n');
        return;
      }
      // Until admitted, nothing is read; a socket that closes meanwhile is not counted.
      sock.pause();
      let gone = false;
      sock.once('close', () => (gone = true));
      door.admit(a.address).then(
        (v) => {
          if ('refused' in v) {
            sock.end(`ERROR :Closing Link: ${a.address} (${REFUSAL_TEXT[v.refused]})\r\n`);
            return;
          }
          if (gone) {
            v.release();
            return;
          }
          attach(node, door, sock, a, v.release);
        },
        (err: Error) => {
          node.log.error({ err: err.message }, 'admitting a connection failed');
          sock.destroy();
        },
      );
    },
  });
}

function attach(node: ChatNode, door: Door, sock: net.Socket, a: Accepted, release: () => void): void {
  const transport: Transport = {
    kind: 'tcp',
    remoteAddress: a.address,
    host: door.displayHost(a.address),
    secure: a.secure,
    writeLines(lines: string[]): void {
      if (sock.writable) sock.write(`${lines.join('\r\n')}\r\n`);
    },
    bufferedBytes: () => sock.writableLength,
    close: () => {
      sock.end();
    },
    // A reset, not a close: closing a socket whose peer reads nothing leaves its unsent data
    // (and the socket) in the kernel for minutes. A TLS socket has no reset of its own: its
    // underlying TCP socket is reset.
    destroy: () => {
      const raw = sock instanceof net.Socket && !(sock as { encrypted?: boolean }).encrypted ? sock : null;
      if (raw && !raw.destroyed) raw.resetAndDestroy();
      else if (!sock.destroyed) sock.destroy();
    },
  };
  const s = node.connect(transport);
  const limits = node.config.limits;
  const splitter = new LineSplitter({
    maxLineBytes: limits.tagBytes + limits.lineBytes,
    onLine: (line) => node.onLine(s, line),
    onError: (err) => node.lineError(s, err),
  });
  sock.on('data', (chunk: Buffer) => splitter.push(chunk));
  sock.on('error', () => undefined);
  sock.on('close', () => {
    release();
    node.disconnected(s, 'Connection closed');
  });
  sock.resume();
}
