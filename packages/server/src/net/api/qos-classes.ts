import { z } from 'zod';
import { describeZodError, QosClassNameSchema, QosClassSchema } from '@parley/contracts';
import type { ApiContext } from './context.js';
import { ApiError, ErrorSchema, notFound } from './errors.js';
import { deleteKey, ifMatchOf, parseText, readKey, readPrefix, setEtag } from './etcd.js';
import { route } from './route.js';
import { InvalidEntrySchema } from './schemas.js';

/** `/api/qos/classes`: the QoS classes of the cluster (`/<prefix>/qos/classes/<name>`). */

const NameParams = z.object({ name: QosClassNameSchema }).strict();

export const QosClassViewSchema = QosClassSchema.extend({
  name: z.string(),
  /** the etcd mod_revision of the class (its ETag) */
  revision: z.string(),
});

const ClassListSchema = z.object({
  classes: z.array(QosClassViewSchema),
  invalid: z.array(InvalidEntrySchema),
  /** the etcd revision of the read */
  revision: z.string(),
});

const TAGS = ['qos'];

export function qosClassRoutes(c: ApiContext): void {
  const { app, auth, etcd, keys } = c;

  route(app, auth, {
    method: 'GET',
    url: '/api/qos/classes',
    summary: 'Every QoS class of the cluster',
    tags: TAGS,
    responses: { 200: { description: 'the classes, by name', schema: ClassListSchema, etag: true } },
    handler: async (_in, reply) => {
      const { kvs, revision } = await readPrefix(etcd, keys.qosClasses);
      const classes: z.infer<typeof QosClassViewSchema>[] = [];
      const invalid: z.infer<typeof InvalidEntrySchema>[] = [];
      for (const kv of kvs) {
        const key = kv.key.toString();
        const ref = keys.parse(key);
        const parsed = QosClassSchema.safeParse(parseText(kv.value.toString()));
        if (ref?.kind !== 'qosClass' || !QosClassNameSchema.safeParse(ref.name).success) invalid.push({ key, error: 'not a class name' });
        else if (!parsed.success) invalid.push({ key, error: describeZodError(parsed.error) });
        else classes.push({ name: ref.name, ...parsed.data, revision: kv.mod_revision });
      }
      classes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      setEtag(reply, revision);
      return { classes, invalid, revision };
    },
  });

  route(app, auth, {
    method: 'GET',
    url: '/api/qos/classes/:name',
    summary: 'One QoS class',
    tags: TAGS,
    params: NameParams,
    responses: {
      200: { description: 'the class', schema: QosClassViewSchema, etag: true },
      404: { description: 'no class of that name', schema: ErrorSchema },
      409: { description: 'the stored value is not a valid class (replace it with PUT)', schema: ErrorSchema },
    },
    handler: async ({ params }, reply) => {
      const s = await readKey(etcd, keys.qosClass(params.name));
      if (!s) throw notFound(`QoS class ${params.name}`);
      const parsed = QosClassSchema.safeParse(s.value);
      if (!parsed.success) throw new ApiError(409, `the stored class ${params.name} is invalid: ${describeZodError(parsed.error)}`);
      setEtag(reply, s.revision);
      return { name: params.name, ...parsed.data, revision: s.revision };
    },
  });

  route(app, auth, {
    method: 'PUT',
    url: '/api/qos/classes/:name',
    summary: 'Create or replace a QoS class',
    description: 'Every instance applies the change within a second. Rooms and shards of this class follow it at once.',
    tags: TAGS,
    write: true,
    ifMatch: true,
    params: NameParams,
    body: QosClassSchema,
    examples: [
      { rate: 10, burst: 20, description: 'ten messages a second per room' },
      { rate: 50, burst: 100, shardWriteBudget: 2000, poolSize: 2, postgres: { shared_buffers: '128kB', max_connections: 20, synchronous_commit: 'off' } },
    ],
    responses: {
      200: { description: 'replaced', schema: QosClassViewSchema, etag: true },
      201: { description: 'created', schema: QosClassViewSchema, etag: true },
    },
    handler: async ({ params, body, headers }, reply) => {
      const w = await c.write(keys.qosClass(params.name), ifMatchOf(headers), () => body);
      setEtag(reply, w.revision);
      return reply.status(w.created ? 201 : 200).send({ name: params.name, ...body, revision: w.revision });
    },
  });

  route(app, auth, {
    method: 'DELETE',
    url: '/api/qos/classes/:name',
    summary: 'Delete a QoS class',
    description: 'Rooms and shards that name it fall back to the class `default` (deleting `default` itself is allowed: rooms without a class have no limit then).',
    tags: TAGS,
    write: true,
    ifMatch: true,
    params: NameParams,
    responses: {
      204: { description: 'deleted' },
      404: { description: 'no class of that name', schema: ErrorSchema },
    },
    handler: async ({ params, headers }, reply) => {
      await deleteKey(etcd, keys.qosClass(params.name), ifMatchOf(headers), `QoS class ${params.name}`);
      c.changed();
      return reply.status(204).send();
    },
  });
}
