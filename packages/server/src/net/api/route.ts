import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { AdminAuth } from './auth.js';
import { ApiError, ErrorSchema, zodError } from './errors.js';

/**
 * Routes are declared once, with zod schemas (from @parley/contracts where the value is a cluster
 * contract). `route()` derives everything else from them: the JSON Schemas Fastify keeps for
 * @fastify/swagger (so /api/openapi.json is generated and cannot drift), the validation of the
 * request (by the zod schema itself, so the 400 names the field by the zod issue path), the error
 * statuses each route can answer, and the admin-token check of write routes. Fastify's own
 * validation and serialization are off (`useZodRoutes`): the JSON Schemas are documentation.
 */

type Part = z.ZodType | undefined;
type Out<S extends Part> = S extends z.ZodType ? z.output<S> : undefined;
type In<S extends Part> = S extends z.ZodType ? z.input<S> : never;

export interface ResponseSpec {
  description: string;
  /** the JSON body; absent = no body (204) or, with `contentType`, a non-JSON body */
  schema?: z.ZodType;
  /** a non-JSON body (`text/plain`, `text/html`) */
  contentType?: string;
  /** the response carries `ETag: "<etcd mod_revision>"` */
  etag?: boolean;
}

export interface RouteInput<P extends Part, Q extends Part, B extends Part> {
  params: Out<P>;
  query: Out<Q>;
  body: Out<B>;
  headers: IncomingHttpHeaders;
}

export interface RouteSpec<P extends Part, Q extends Part, B extends Part> {
  method: 'GET' | 'PUT' | 'PATCH' | 'DELETE' | 'POST';
  /** Fastify's form: `/api/qos/classes/:name` */
  url: string;
  summary: string;
  description?: string;
  tags: string[];
  params?: P;
  query?: Q;
  body?: B;
  /** request bodies shown in the document; the API test sends each and expects a 2xx */
  examples?: In<B>[];
  /** needs `Authorization: Bearer <admin token>` (401, 403) */
  write?: boolean;
  /** honours `If-Match: "<revision>"` (412 when stale) */
  ifMatch?: boolean;
  /** success and on-purpose statuses; 400 (when the route takes input), 401/403, 412 and 500 are added */
  responses: Record<number, ResponseSpec>;
  handler(input: RouteInput<P, Q, B>, reply: FastifyReply): Promise<unknown>;
}

/** A zod schema as a JSON Schema (2020-12, which OpenAPI 3.1 uses) without its `$schema` line. */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** Turns off Fastify's ajv validation and schema-driven serialization for the whole app. */
export function useZodRoutes(app: FastifyInstance): void {
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
}

const errorJson = jsonSchema(ErrorSchema, 'output');
const errorResponse = (description: string): Record<string, unknown> => ({ ...errorJson, description });

export const IF_MATCH_HEADER = 'if-match';

export function route<P extends Part = undefined, Q extends Part = undefined, B extends Part = undefined>(
  app: FastifyInstance,
  auth: AdminAuth | null,
  spec: RouteSpec<P, Q, B>,
): void {
  if (spec.write && !auth) throw new Error(`${spec.method} ${spec.url} is a write route but no AdminAuth was given`);
  const response: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    const headers = r.etag ? { headers: { ETag: { type: 'string', description: 'the etcd mod_revision of the resource, quoted' } } } : {};
    if (r.schema) response[status] = { ...jsonSchema(r.schema, 'output'), description: r.description, ...headers };
    else if (r.contentType) response[status] = { description: r.description, content: { [r.contentType]: { schema: { type: 'string' } } }, ...headers };
    else response[status] = { type: 'null', description: r.description, ...headers };
  }
  const takesInput = spec.params !== undefined || spec.query !== undefined || spec.body !== undefined || spec.ifMatch;
  if (takesInput) response['400'] ??= errorResponse('invalid request: `field` names the offending parameter or body member');
  if (spec.write) {
    response['401'] = errorResponse('no or wrong admin token');
    response['403'] = errorResponse('writes are disabled: this instance has no admin token configured');
    response['409'] ??= errorResponse('the resource kept changing while this write was retried; send it again');
  }
  if (spec.ifMatch) response['412'] = errorResponse('If-Match is not the current revision; `etag` is the current one');
  response['500'] ??= errorResponse('backend failure (etcd, Redis or PostgreSQL); the message is logged, not exposed');

  const schema: Record<string, unknown> = { summary: spec.summary, tags: spec.tags, response };
  if (spec.description) schema.description = spec.description;
  if (spec.params) schema.params = jsonSchema(spec.params, 'input');
  if (spec.query) schema.querystring = jsonSchema(spec.query, 'input');
  if (spec.body) schema.body = { ...jsonSchema(spec.body, 'input'), ...(spec.examples?.length ? { examples: spec.examples } : {}) };
  if (spec.ifMatch) {
    schema.headers = {
      type: 'object',
      properties: { [IF_MATCH_HEADER]: { type: 'string', description: 'write only if the resource is at this revision (its ETag); "0": only if it does not exist' } },
    };
  }
  if (spec.write) schema.security = [{ adminToken: [] }];

  app.route({
    method: spec.method,
    url: spec.url,
    schema,
    handler: async (req, reply) => {
      if (spec.write) {
        try {
          auth?.check(req.headers.authorization);
        } catch (err) {
          if (err instanceof ApiError && err.statusCode === 401) void reply.header('www-authenticate', 'Bearer');
          throw err;
        }
      }
      const input = {
        params: parse(spec.params, req.params, 'params'),
        query: parse(spec.query, req.query, 'query'),
        body: parse(spec.body, req.body, 'body'),
        headers: req.headers,
      } as RouteInput<P, Q, B>;
      return spec.handler(input, reply);
    },
  });
}

function parse(schema: z.ZodType | undefined, value: unknown, part: 'params' | 'query' | 'body'): unknown {
  if (!schema) return undefined;
  const r = schema.safeParse(value ?? (part === 'body' ? undefined : {}));
  if (!r.success) throw zodError(r.error, part);
  return r.data;
}
