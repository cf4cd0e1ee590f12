import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ChatNode } from '../core/node.js';
import { forwardedAddress, type Door } from './door.js';
import { createListener } from './tls.js';
import { ApiError, apiRoutes, registerDocumented, route, useZodRoutes, type ApiDeps } from './api/index.js';
import { instancesRoute } from './api/instances.js';
import { LiveFeed, liveRoute } from './api/live.js';
import { sendStatic, staticFiles } from './static-files.js';
import { acceptWebSockets } from './websocket.js';

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
 * generated OpenAPI document, the browser client (static-files.ts), and the IRCv3 WebSocket
 * binding on the same port (websocket.ts: one IRC line per frame). Every route is declared with
 * `route()` (net/api/route.ts).
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

  acceptWebSockets(app, node, door, (req) => clientAddress(req, door));
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
