import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { etcdKeys } from '@parley/contracts';
import { apiContext, type ApiDeps } from './context.js';
import { configRoutes } from './config.js';
import { qosClassRoutes } from './qos-classes.js';
import { roomRoutes } from './rooms.js';
import { route } from './route.js';
import { shardRoutes } from './shards.js';

export type { ApiDeps } from './context.js';
export { AdminAuth, AdminTokenError, readAdminToken } from './auth.js';
export { ApiError, ErrorSchema } from './errors.js';
export { route, useZodRoutes } from './route.js';

const OpenApiSchema = z.looseObject({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) });

/**
 * Registers @fastify/swagger; every route declared after it (in `routes`, a plugin loaded after
 * swagger, so swagger's onRoute hook sees them all) is in the generated document at
 * `/api/openapi.json`.
 */
export function registerDocumented(app: FastifyInstance, routes: (app: FastifyInstance) => void): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Parley instance HTTP API',
        version: '2',
        description:
          'Health, metrics and statistics of one Parley instance, and the cluster-wide QoS classes, shards, rooms and configuration (the same on every instance). Reads are open; writes need `Authorization: Bearer <admin token>`. Chat itself is IRC (TCP, or WebSocket on this same port).',
      },
      tags: [
        { name: 'instance', description: 'this instance' },
        { name: 'qos', description: 'QoS classes' },
        { name: 'shards', description: 'PostgreSQL shards' },
        { name: 'rooms', description: 'rooms: shard, class, limit, counters' },
        { name: 'config', description: 'the cluster configuration' },
        { name: 'web', description: 'the browser client and the dashboard' },
      ],
      components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'the admin token (`<state-dir>/admin-token` of `parley up`)' } } },
    },
  });
  void app.register(async (scoped) => {
    routes(scoped);
    route(scoped, null, {
      method: 'GET',
      url: '/api/openapi.json',
      summary: 'This description (OpenAPI 3.1, generated from the route schemas)',
      tags: ['instance'],
      responses: { 200: { description: 'the OpenAPI document', schema: OpenApiSchema } },
      handler: async () => scoped.swagger(),
    });
  });
}

/** The QoS, shard, room and configuration routes. */
export function apiRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const ctx = apiContext(app, deps, etcdKeys(deps.prefix));
  qosClassRoutes(ctx);
  configRoutes(ctx);
  shardRoutes(ctx);
  roomRoutes(ctx);
}
