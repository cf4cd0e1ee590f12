import { ClusterConfigSchema, describeZodError } from '@parley/contracts';
import type { ApiContext } from './context.js';
import { ApiError, ErrorSchema } from './errors.js';
import { ifMatchOf, readKey, setEtag } from './etcd.js';
import { route } from './route.js';

/**
 * `/api/config`: the cluster configuration (`/<prefix>/config`), the same value `parley config
 * get/set` reads and writes. Without a stored key the defaults apply and the ETag is `"0"`.
 */
export function configRoutes(c: ApiContext): void {
  const { app, auth, etcd, keys } = c;

  route(app, auth, {
    method: 'GET',
    url: '/api/config',
    summary: 'The cluster configuration in force (defaults filled in)',
    tags: ['config'],
    responses: {
      200: { description: 'the configuration', schema: ClusterConfigSchema, etag: true },
      409: { description: 'the stored configuration is invalid (instances keep their last valid one; replace it with PUT)', schema: ErrorSchema },
    },
    handler: async (_in, reply) => {
      const s = await readKey(etcd, keys.config);
      const parsed = ClusterConfigSchema.safeParse(s ? (s.value ?? null) : {});
      if (!parsed.success) throw new ApiError(409, `the stored configuration is invalid: ${describeZodError(parsed.error)}`);
      setEtag(reply, s?.revision ?? '0');
      return parsed.data;
    },
  });

  route(app, auth, {
    method: 'PUT',
    url: '/api/config',
    summary: 'Replace the cluster configuration',
    description: 'Members left out take their defaults; unknown members are refused. Every instance applies it within a second.',
    tags: ['config'],
    write: true,
    ifMatch: true,
    body: ClusterConfigSchema,
    examples: [{ networkName: 'Parley', flood: { linesPerSecond: 20, burst: 200 }, limits: { storeBacklog: 20000 } }],
    responses: {
      200: { description: 'replaced', schema: ClusterConfigSchema, etag: true },
      201: { description: 'stored for the first time', schema: ClusterConfigSchema, etag: true },
    },
    handler: async ({ body, headers }, reply) => {
      const w = await c.write(keys.config, ifMatchOf(headers), () => body);
      setEtag(reply, w.revision);
      return reply.status(w.created ? 201 : 200).send(body);
    },
  });
}
