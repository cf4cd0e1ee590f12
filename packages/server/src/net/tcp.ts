import net from 'node:net';
import { LineSplitter } from '@parley/protocol';
import type { ChatNode } from '../core/node.js';
import type { Transport } from '../core/session.js';

/** IRC over TCP: CRLF-terminated lines on a plain socket. */
export function createTcpServer(node: ChatNode): net.Server {
  return net.createServer({ noDelay: true }, (sock) => {
    if (node.draining) {
      sock.end('ERROR :Server is draining, please reconnect\r\n');
      return;
    }
    const transport: Transport = {
      kind: 'tcp',
      remoteAddress: sock.remoteAddress ?? 'unknown',
      writeLines(lines: string[]): void {
        if (sock.writable) sock.write(`${lines.join('\r\n')}\r\n`);
      },
      bufferedBytes: () => sock.writableLength,
      close: () => {
        sock.end();
      },
      // A reset, not a close: closing a socket whose peer reads nothing leaves its unsent data
      // (and the socket) in the kernel for minutes.
      destroy: () => {
        if (!sock.destroyed) sock.resetAndDestroy();
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
    sock.on('close', () => node.disconnected(s, 'Connection closed'));
  });
}
