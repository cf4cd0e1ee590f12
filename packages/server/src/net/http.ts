import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { LineError } from '@parley/protocol';
import type { ChatNode } from '../core/node.js';
import type { Transport } from '../core/session.js';
import { REFUSAL_TEXT, forwardedAddress, type Door } from './door.js';
import { createListener } from './tls.js';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyReply } from 'fastify';
import { WEB_ROOT, compressed } from '@parley/web';
import { ApiError, apiRoutes, registerDocumented, route, useZodRoutes, type ApiDeps } from './api/index.js';
import { instancesRoute } from './api/instances.js';
import { LiveFeed, liveRoute } from './api/live.js';

export const WS_TEXT = 'text.ircv3.net';
export const WS_BINARY = 'binary.ircv3.net';

export interface HttpDeps {
  node: ChatNode;
  /** true once the instance is registered and serving */
  ready: () => boolean;
  /** cluster-wide facts for /api/stats */
  clusterStats: () => Promise<Record<string, unknown>>;
  /** the QoS, shard, room and configuration API (net/api) */
  api: ApiDeps;
  /** origins, per-address limits, cloaks, the API's read budget (net/door.ts) */
  door: Door;
}

const ChannelsQuery = z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(1000) }).strict();

const ChannelsSchema = z.object({
  rooms: z.array(z.object({ name: z.string(), topic: z.string(), members: z.number().int(), messages: z.number().int(), modes: z.string() })),
});

const ReadinessSchema = z.object({ ready: z.boolean(), draining: z.boolean() });

const StatsSchema = z.object({
  instance: z.object({
    id: z.string(),
    serverName: z.string(),
    uptimeSeconds: z.number().int(),
    connections: z.number().int(),
    users: z.number().int(),
    localRooms: z.number().int(),
    messagesIn: z.number().int(),
    messagesStored: z.number().int(),
    deliveries: z.number().int(),
    draining: z.boolean(),
  }),
  cluster: z.looseObject({
    instances: z.array(z.looseObject({ id: z.string() })),
    channels: z.number().int(),
    shards: z.number().int(),
  }),
});

/**
 * The HTTP side of an instance: health, readiness, Prometheus metrics, the JSON API (instance
 * statistics, and in net/api the cluster's QoS classes, shards, rooms and configuration), its
 * generated OpenAPI document, the browser client, and the IRCv3 WebSocket binding on the same
 * port (one IRC line per frame). Every route is declared with `route()` (net/api/route.ts).
 */
export function createHttpServer(deps: HttpDeps): FastifyInstance {
  const { node } = deps;
  const app = Fastify({ logger: false });
  useZodRoutes(app);
  const { door } = deps;

  // The API's read routes cost one token of the client address's bucket (in-process requests of
  // the live feed, `app.inject`, have no socket and cost nothing).
  app.addHook('onRequest', async (req, reply) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url.startsWith('/api/') || !(req.raw.socket instanceof net.Socket)) return;
    const retry = door.apiRetryAfter(clientAddress(req.raw, door));
    if (retry > 0) {
      return reply.status(429).header('retry-after', String(retry))
        .send({ error: `too many requests from your address: retry in ${retry} s`, statusCode: 429, retryAfterSeconds: retry });
    }
  });

  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    if (err instanceof ApiError && err.statusCode < 500) return reply.status(err.statusCode).send(err.body());
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) node.log.error({ err: err.message }, 'http error');
    return reply.status(status).send({ error: status >= 500 ? 'internal error' : err.message, statusCode: status });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: `no route ${req.method} ${req.url}`, statusCode: 404 });
  });

  const live = new LiveFeed({
    etcd: deps.api.etcd,
    prefix: deps.api.prefix,
    counters: deps.api.counters,
    get: async (url) => {
      const r = await app.inject({ method: 'GET', url });
      if (r.statusCode !== 200) throw new Error(`GET ${url}: ${r.statusCode} ${r.body.slice(0, 200)}`);
      return r.json<unknown>();
    },
    warn: (err, msg) => node.log.warn({ err }, msg),
  });
  // Event streams never end by themselves: they are ended before the server waits for its connections.
  app.addHook('preClose', async () => live.close());

  registerDocumented(app, (scoped) => {
    instanceRoutes(scoped, deps);
    instancesRoute(scoped, deps.api.etcd, deps.api.prefix);
    liveRoute(scoped, live);
    apiRoutes(scoped, deps.api);
  });

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
    const address = clientAddress(req, door);
    door.admit(address).then(
      (v) => {
        if (socket.destroyed) {
          if (!('refused' in v)) v.release();
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          if ('refused' in v) {
            // A browser cannot read the status of a refused upgrade: say why in IRC, then close.
            ws.send(`ERROR :Closing Link: ${address} (${REFUSAL_TEXT[v.refused]})`);
            ws.close(1008, 'too many connections');
            return;
          }
          attach(node, door, ws, socket, req, address, v.release);
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
  return app;
}

/** This instance's own routes: health, readiness, metrics, statistics, channels, static files. */
function instanceRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { node } = deps;
  // The browser client, the dashboard and the configuration page: a handful of static files,
  // read and compressed once at start.
  const files = staticFiles();
  node.log.info({ files: [...new Set(files.values())].map((f) => ({ name: f.name, bytes: f.identity.length, gzip: f.gzip.length, br: f.br.length })) }, 'web files');
  for (const [url, file] of files) {
    route(app, null, {
      method: 'GET',
      url,
      summary: `browser client file ${url}`,
      description: 'Compressed (br or gzip) as Accept-Encoding allows; `Cache-Control: no-cache` with an ETag of the content, so a revalidation costs a 304.',
      tags: ['web'],
      responses: { 200: { description: 'the file', contentType: file.type }, 304: { description: 'not modified (If-None-Match)' } },
      handler: async ({ headers }, reply) => sendStatic(file, headers['accept-encoding'], headers['if-none-match'], reply),
    });
  }
  route(app, null, {
    method: 'GET',
    url: '/healthz',
    summary: 'Liveness of this process',
    tags: ['instance'],
    responses: { 200: { description: 'serving', schema: z.object({ status: z.literal('ok'), instance: z.string() }) } },
    handler: async () => ({ status: 'ok', instance: node.id }),
  });
  route(app, null, {
    method: 'GET',
    url: '/readyz',
    summary: 'Readiness for traffic (load balancers)',
    tags: ['instance'],
    responses: {
      200: { description: 'ready', schema: ReadinessSchema },
      503: { description: 'starting or draining', schema: ReadinessSchema },
    },
    handler: async (_in, reply) => {
      const ok = deps.ready() && !node.draining;
      return reply.status(ok ? 200 : 503).send({ ready: ok, draining: node.draining });
    },
  });
  route(app, null, {
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics of this instance',
    tags: ['instance'],
    responses: { 200: { description: 'Prometheus text format', contentType: 'text/plain' } },
    handler: async (_in, reply) => {
      const text = await node.metrics.registry.metrics();
      return reply.type(node.metrics.registry.contentType).send(text);
    },
  });
  route(app, null, {
    method: 'GET',
    url: '/api/channels',
    summary: 'Channels of the cluster (Redis) with member and message counts',
    tags: ['instance'],
    query: ChannelsQuery,
    responses: { 200: { description: 'channels, sorted by key', schema: ChannelsSchema } },
    handler: async ({ query }) => {
      const keys = (await node.state.listChannels()).sort().slice(0, query.limit);
      const [infos, members, counts] = await Promise.all([node.state.channels(keys), node.state.memberCounts(keys), node.store.counts(keys)]);
      const byRoom = new Map(counts.map((c) => [c.room, c.messages]));
      const rooms = keys.flatMap((k, i) => {
        const ch = infos[i];
        if (!ch || ch.secret) return [];  // +s/+p channels are not listed
        return [{ name: ch.name, topic: ch.topic, members: members[i] ?? 0, messages: byRoom.get(k) ?? 0, modes: `+${ch.modes}` }];
      });
      return { rooms };
    },
  });
  route(app, null, {
    method: 'GET',
    url: '/api/stats',
    summary: "This instance's counters and a cluster summary",
    tags: ['instance'],
    responses: { 200: { description: 'statistics', schema: StatsSchema } },
    handler: async () => ({
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
    }),
  });
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

interface StaticFile {
  name: string;
  type: string;
  identity: Buffer;
  gzip: Buffer;
  br: Buffer;
  /** the content's hash: one ETag per encoding, `"<hash>"`, `"<hash>-gzip"`, `"<hash>-br"` */
  hash: string;
}

/** Paths served besides `/<file name>`. */
const ALIASES: Record<string, string[]> = { 'index.html': ['/'], 'dashboard.html': ['/dashboard'], 'config.html': ['/config'] };

function staticFiles(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const name of readdirSync(WEB_ROOT)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const identity = readFileSync(path.join(WEB_ROOT, name));
    const file = { name, type, identity, ...compressed(identity), hash: createHash('sha256').update(identity).digest('base64url').slice(0, 22) };
    files.set(`/${name}`, file);
    for (const alias of ALIASES[name] ?? []) files.set(alias, file);
  }
  return files;
}

type Encoding = 'br' | 'gzip' | 'identity';

/**
 * The encoding to send for an `Accept-Encoding` header (RFC 9110 12.5.3): brotli, else gzip,
 * else none, each only when the client accepts it with a non-zero q (`*` stands for those it
 * does not name); identity unless the client refuses it too, which it cannot really.
 */
export function chooseEncoding(header: string | undefined): Encoding {
  if (!header) return 'identity';
  const q = new Map<string, number>();
  for (const part of header.split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    if (!token) continue;
    const qp = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const value = qp === undefined ? 1 : Number(qp.slice(2));
    q.set(token, Number.isFinite(value) ? value : 0);
  }
  const accepts = (e: string): boolean => (q.get(e) ?? q.get('*') ?? 0) > 0;
  if (accepts('br')) return 'br';
  if (accepts('gzip')) return 'gzip';
  return 'identity';
}

function sendStatic(file: StaticFile, acceptEncoding: string | undefined, ifNoneMatch: string | undefined, reply: FastifyReply): FastifyReply {
  let enc = chooseEncoding(acceptEncoding);
  // A tiny file can come out larger compressed.
  if (enc !== 'identity' && file[enc].length >= file.identity.length) enc = 'identity';
  const etag = `"${file.hash}${enc === 'identity' ? '' : `-${enc}`}"`;
  void reply.header('vary', 'Accept-Encoding').header('cache-control', 'no-cache').header('etag', etag);
  if (ifNoneMatch !== undefined && matches(ifNoneMatch, file.hash)) return reply.status(304).send();
  if (enc !== 'identity') void reply.header('content-encoding', enc);
  return reply.type(file.type).send(file[enc]);
}

/** `If-None-Match` names this content in any encoding (a weak comparison, RFC 9110 13.1.2), or is `*`. */
function matches(header: string, hash: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
    return tag === hash || tag === `${hash}-gzip` || tag === `${hash}-br`;
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

/** Sockets accepted by the HTTPS listener, with the client address their PROXY header named. */
const proxied = new WeakMap<object, string>();

/** The client's address of a request: from the PROXY header, a trusted X-Forwarded-For, or the peer. */
function clientAddress(req: IncomingMessage, door: Door): string {
  return proxied.get(req.socket) ?? forwardedAddress(req.socket.remoteAddress ?? 'unknown', req.headers['x-forwarded-for'], door.trusted);
}

/**
 * HTTPS and WSS for the same routes: a TLS listener (a PROXY header from a trusted front door
 * first, if any) whose connections the HTTP server takes as its own.
 */
export function createHttpsListener(app: FastifyInstance, door: Door, context: () => { cert: Buffer; key: Buffer }): ReturnType<typeof createListener> {
  return createListener({
    trusted: door.trusted,
    tls: { context },
    onConnection: (sock, a) => {
      proxied.set(sock, a.address);
      app.server.emit('connection', sock);
      sock.resume();
    },
  });
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
