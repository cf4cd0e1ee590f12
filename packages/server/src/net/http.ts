import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { LineError } from '@parley/protocol';
import type { ChatNode } from '../core/node.js';
import type { Transport } from '../core/session.js';
import { OPENAPI } from './openapi.js';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WEB_ROOT } from '@parley/web';

export const WS_TEXT = 'text.ircv3.net';
export const WS_BINARY = 'binary.ircv3.net';

export interface HttpDeps {
  node: ChatNode;
  /** true once the instance is registered and serving */
  ready: () => boolean;
  /** cluster-wide facts for /api/stats */
  clusterStats: () => Promise<Record<string, unknown>>;
}

const RoomsQuery = z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(1000) }).strict();

/**
 * The HTTP side of an instance: health, readiness, Prometheus metrics, the JSON API, and the
 * IRCv3 WebSocket binding on the same port (one IRC line per frame).
 */
export function createHttpServer(deps: HttpDeps): FastifyInstance {
  const { node } = deps;
  const app = Fastify({ logger: false });

  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) node.log.error({ err: err.message }, 'http error');
    void reply.status(status).send({ error: status >= 500 ? 'internal error' : err.message, statusCode: status });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: `no route ${req.method} ${req.url}`, statusCode: 404 });
  });

  app.get('/api/openapi.json', async () => OPENAPI);
  // The browser client and the dashboard: a handful of static files, read once at start.
  for (const [route, file] of staticFiles()) {
    app.get(route, async (_req, reply) => reply.type(file.type).header('cache-control', 'no-cache').send(file.body));
  }
  app.get('/healthz', async () => ({ status: 'ok', instance: node.id }));
  app.get('/readyz', async (_req, reply) => {
    const ok = deps.ready() && !node.draining;
    return reply.status(ok ? 200 : 503).send({ ready: ok, draining: node.draining });
  });
  app.get('/metrics', async (_req, reply) => {
    const text = await node.metrics.registry.metrics();
    return reply.type(node.metrics.registry.contentType).send(text);
  });
  app.get('/api/rooms', async (req, reply) => {
    const q = RoomsQuery.safeParse(req.query);
    if (!q.success) return reply.status(400).send({ error: q.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), statusCode: 400 });
    const keys = (await node.state.listChannels()).sort().slice(0, q.data.limit);
    const [infos, members, counts] = await Promise.all([
      node.state.channels(keys),
      node.state.memberCounts(keys),
      node.store.counts(keys),
    ]);
    const byRoom = new Map(counts.map((c) => [c.room, c.messages]));
    const rooms = keys.flatMap((k, i) => {
      const ch = infos[i];
      if (!ch) return [];
      return [{ name: ch.name, topic: ch.topic, members: members[i] ?? 0, messages: byRoom.get(k) ?? 0, modes: `+${ch.modes}` }];
    });
    return { rooms };
  });
  app.get('/api/stats', async () => ({
    instance: {
      id: node.id,
      serverName: node.serverName,
      uptimeSeconds: Math.round((Date.now() - node.startedAt) / 1000),
      connections: node.sessions.size,
      users: node.users.size,
      localRooms: node.rooms.size,
      messagesIn: node.stats.messagesIn,
      messagesStored: node.stats.stored,
      deliveries: node.stats.deliveries,
      draining: node.draining,
    },
    cluster: await deps.clusterStats(),
  }));

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
    wss.handleUpgrade(req, socket, head, (ws) => attach(node, ws, socket, req));
  });
  app.addHook('onClose', async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return app;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

function staticFiles(): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(WEB_ROOT)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const file = { type, body: readFileSync(path.join(WEB_ROOT, name)) };
    files.set(`/${name}`, file);
    if (name === 'index.html') files.set('/', file);
  }
  return files;
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

function attach(node: ChatNode, ws: WebSocket, socket: Duplex, req: IncomingMessage): void {
  const binary = ws.protocol === WS_BINARY;
  const transport: Transport = {
    kind: 'ws',
    remoteAddress: req.socket.remoteAddress ?? 'unknown',
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
  ws.on('close', () => node.disconnected(s, 'Connection closed'));
}
