import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { LineError } from '@parley/protocol';
import type { ChatNode } from '../core/node.js';
import type { Transport } from '../core/session.js';
import { REFUSAL_TEXT, type Door } from './door.js';

/*
 * IRC over WebSocket (the IRCv3 binding) on the HTTP server's port: one IRC line per frame,
 * text or binary subprotocol; upgrades are refused while draining, from a foreign origin, and
 * over the client address's connection limits.
 */

export const WS_TEXT = 'text.ircv3.net';
export const WS_BINARY = 'binary.ircv3.net';

/**
 * Takes the HTTP server's upgrades as IRC connections; `address` is the client's address of a
 * request. Every WebSocket is terminated when the server closes.
 */
export function acceptWebSockets(app: FastifyInstance, node: ChatNode, door: Door, address: (req: IncomingMessage) => string): void {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    handleProtocols: (protocols: Set<string>) => (protocols.has(WS_TEXT) ? WS_TEXT : protocols.has(WS_BINARY) ? WS_BINARY : false),
  });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (node.draining) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
      return;
    }
    // A browser says which page opens the socket: only listed origins may drive a user's session.
    const origin = req.headers.origin;
    if (!door.originAllowed(origin)) {
      node.log.debug({ origin }, 'WebSocket from a foreign origin refused');
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n\r\nthis origin may not connect here');
      return;
    }
    const addr = address(req);
    door.admit(addr).then(
      (v) => {
        if (socket.destroyed) {
          if (!('refused' in v)) v.release();
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          if ('refused' in v) {
            // A browser cannot read the status of a refused upgrade: say why in IRC, then close.
            ws.send(`ERROR :Closing Link: ${addr} (${REFUSAL_TEXT[v.refused]})`);
            ws.close(1008, 'too many connections');
            return;
          }
          attach(node, door, ws, socket, req, addr, v.release);
        });
      },
      (err: Error) => {
        node.log.error({ err: err.message }, 'admitting a WebSocket failed');
        socket.destroy();
      },
    );
  });
  app.addHook('onClose', async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

const OPCODE_TEXT = 0x81; // FIN + text
const OPCODE_BINARY = 0x82; // FIN + binary

/** Unmasked WebSocket frames (RFC 6455 5.2), one per line, in one buffer. */
export function encodeFrames(lines: string[], opcode: number): Buffer {
  let total = 0;
  const sizes = new Array<number>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const n = Buffer.byteLength(lines[i] as string);
    sizes[i] = n;
    total += n + (n < 126 ? 2 : n < 65536 ? 4 : 10);
  }
  const buf = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < lines.length; i++) {
    const n = sizes[i] as number;
    buf[o++] = opcode;
    if (n < 126) {
      buf[o++] = n;
    } else if (n < 65536) {
      buf[o++] = 126;
      buf.writeUInt16BE(n, o);
      o += 2;
    } else {
      buf[o++] = 127;
      buf.writeUInt32BE(Math.floor(n / 2 ** 32), o);
      buf.writeUInt32BE(n >>> 0, o + 4);
      o += 8;
    }
    o += buf.write(lines[i] as string, o);
  }
  return buf;
}

function attach(node: ChatNode, door: Door, ws: WebSocket, socket: Duplex, req: IncomingMessage, address: string, release: () => void): void {
  const binary = ws.protocol === WS_BINARY;
  const transport: Transport = {
    kind: 'ws',
    remoteAddress: address,
    host: door.displayHost(address),
    secure: (req.socket as { encrypted?: boolean }).encrypted === true,
    writeLines(lines: string[]): void {
      if (ws.readyState !== ws.OPEN) return;
      // One frame per line, all frames of one flush in one buffer and one write. Server frames
      // are unmasked, so they are plain header + payload; the ws library only writes whole frames
      // of its own (close, pong) to the same socket, so they cannot interleave with these.
      socket.write(encodeFrames(lines, binary ? OPCODE_BINARY : OPCODE_TEXT));
    },
    bufferedBytes: () => socket.writableLength + ws.bufferedAmount,
    close: () => ws.close(1000),
    // A reset, not a close (see tcp.ts), then ws's own clean-up.
    destroy: () => {
      if (socket instanceof net.Socket && !socket.destroyed) socket.resetAndDestroy();
      ws.terminate();
    },
  };
  const s = node.connect(transport);
  const limits = node.config.limits;
  const max = limits.tagBytes + limits.lineBytes;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (data.length > max) {
      node.lineError(s, new LineError('TOO_LONG', 'line too long'));
      return;
    }
    let text: string;
    if (isBinary) {
      try {
        text = utf8.decode(data);
      } catch {
        node.lineError(s, new LineError('BAD_ENCODING', 'invalid UTF-8'));
        return;
      }
    } else {
      text = data.toString('utf8');
    }
    // The binding sends one line per frame without CRLF; tolerate clients that add one.
    if (text.includes('\n') || text.includes('\r')) {
      for (const line of text.split(/\r?\n/)) if (line) node.onLine(s, line);
    } else {
      node.onLine(s, text);
    }
  });
  ws.on('error', () => undefined);
  ws.on('close', () => {
    release();
    node.disconnected(s, 'Connection closed');
  });
}
