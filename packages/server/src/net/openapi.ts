/**
 * The OpenAPI 3.1 description of an instance's HTTP API, served at `/api/openapi.json`. Written
 * by hand beside the routes in http.ts; test/integration/protocol.test.ts checks that every route
 * the server answers is described here and that the documented responses match real ones.
 */
const error = {
  type: 'object',
  required: ['error', 'statusCode'],
  properties: { error: { type: 'string' }, statusCode: { type: 'integer' } },
} as const;

const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'Parley instance HTTP API',
    version: '1',
    description: 'Health, readiness, metrics and cluster statistics of one Parley instance. Chat itself is IRC (TCP, or WebSocket on this same port).',
  },
  paths: {
    '/healthz': {
      get: {
        summary: 'Liveness of this process',
        responses: {
          200: { description: 'serving', content: { 'application/json': { schema: { type: 'object', required: ['status', 'instance'], properties: { status: { const: 'ok' }, instance: { type: 'string' } } } } } },
        },
      },
    },
    '/readyz': {
      get: {
        summary: 'Readiness for traffic (load balancers)',
        responses: {
          200: { description: 'ready', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
          503: { description: 'starting or draining', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
        },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics of this instance',
        responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    '/api/rooms': {
      get: {
        summary: 'Channels of the cluster with member and message counts',
        parameters: [{ name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 } }],
        responses: {
          200: {
            description: 'channels, sorted by key',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['rooms'],
                  properties: {
                    rooms: {
                      type: 'array',
                      items: {
                        type: 'object',
                        required: ['name', 'topic', 'members', 'messages', 'modes'],
                        properties: {
                          name: { type: 'string' }, topic: { type: 'string' }, members: { type: 'integer' },
                          messages: { type: 'integer' }, modes: { type: 'string' },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
          400: errorResponse('invalid query'),
        },
      },
    },
    '/api/stats': {
      get: {
        summary: "This instance's counters and a cluster summary",
        responses: { 200: { description: 'statistics', content: { 'application/json': { schema: { $ref: '#/components/schemas/Stats' } } } } },
      },
    },
    '/api/openapi.json': {
      get: { summary: 'This description', responses: { 200: { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } } },
    },
  },
  components: {
    schemas: {
      Error: error,
      Readiness: { type: 'object', required: ['ready', 'draining'], properties: { ready: { type: 'boolean' }, draining: { type: 'boolean' } } },
      Stats: {
        type: 'object',
        required: ['instance', 'cluster'],
        properties: {
          instance: {
            type: 'object',
            required: ['id', 'serverName', 'uptimeSeconds', 'connections', 'users', 'localRooms', 'messagesIn', 'messagesStored', 'deliveries', 'draining'],
            properties: {
              id: { type: 'string' }, serverName: { type: 'string' }, uptimeSeconds: { type: 'integer' },
              connections: { type: 'integer' }, users: { type: 'integer' }, localRooms: { type: 'integer' },
              messagesIn: { type: 'integer' }, messagesStored: { type: 'integer' }, deliveries: { type: 'integer' },
              draining: { type: 'boolean' },
            },
          },
          cluster: {
            type: 'object',
            required: ['instances', 'channels', 'shards'],
            properties: {
              instances: { type: 'array', items: { type: 'object' } },
              channels: { type: 'integer' },
              shards: { type: 'integer' },
            },
          },
        },
      },
    },
  },
} as const;
