import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import {
  describeZodError,
  mergeShardEntry,
  QosClassNameSchema,
  ShardEntryError,
  ShardEntrySchema,
  zeroCounts,
  type QosCounts,
  type ShardEntry,
} from '@parley/contracts';
import type { ApiContext } from './context.js';
import { ApiError, ErrorSchema, badRequest, notFound } from './errors.js';
import { ifMatchOf, parseText, readKey, readPrefix, setEtag, type Requirement, type Stored } from './etcd.js';
import { route } from './route.js';
import { InvalidEntrySchema, QosCountsSchema, type InvalidEntry } from './schemas.js';

/**
 * `/api/shards`: the shard map (`/<prefix>/shards/<n>`) with each shard's cluster-wide counters
 * and whether this instance sees it down. Writes follow the one merge rule of shard entries
 * (`mergeShardEntry`): fields a request does not decide are kept, unknown fields included.
 */

const IdParams = z
  .object({ id: z.string().regex(/^(0|[1-9]\d{0,8})$/, 'a shard number: 0, 1, 2 ...').transform(Number) })
  .strict();

const ShardViewSchema = z.object({
  id: z.number().int(),
  /** the connection URL without its password */
  url: z.string(),
  state: z.enum(['active', 'draining']),
  /** the shard's QoS class; null = none (its rooms use `default`) */
  qos: z.string().nullable(),
  /** connections per instance; null = each instance's --pg-pool-size */
  poolSize: z.number().int().nullable(),
  host: z.string().optional(),
  port: z.number().int().optional(),
  /** this instance treats the shard as down: its rooms fail at once (another instance may see it otherwise) */
  down: z.boolean(),
  /** why, when down */
  downReason: z.string().optional(),
  counts: QosCountsSchema,
  /** the etcd mod_revision of the entry (its ETag) */
  revision: z.string(),
});
type ShardView = z.infer<typeof ShardViewSchema>;

const ShardListSchema = z.object({ shards: z.array(ShardViewSchema), invalid: z.array(InvalidEntrySchema), revision: z.string() });

const PutShardSchema = z
  .object({
    url: z.string().url(),
    qos: QosClassNameSchema.optional(),
    poolSize: z.number().int().min(1).max(100).optional(),
    state: z.enum(['active', 'draining']).optional(),
    /** where the shard runs (for the agent that supervises it) */
    host: z.string().min(1).max(253).optional(),
    port: z.number().int().min(1).max(65535).optional(),
  })
  .strict();

const PatchShardSchema = z
  .object({
    /** null clears the shard's class */
    qos: QosClassNameSchema.nullable().optional(),
    state: z.enum(['active', 'draining']).optional(),
    /** null: each instance's --pg-pool-size */
    poolSize: z.number().int().min(1).max(100).nullable().optional(),
  })
  .strict()
  .refine((p) => Object.keys(p).length > 0, 'give at least one of qos, state, poolSize');

const TAGS = ['shards'];

/** The URL with its password removed (user and everything else kept). */
export function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

export function shardRoutes(c: ApiContext): void {
  const { app, auth, etcd, keys } = c;

  const view = (entry: ShardEntry, revision: string, counts: QosCounts | undefined): ShardView => {
    const down = c.shardDown(entry.id);
    const extra = entry as Record<string, unknown>;
    return {
      id: entry.id,
      url: withoutPassword(entry.url),
      state: entry.state ?? 'active',
      qos: entry.qos ?? null,
      poolSize: entry.poolSize ?? null,
      ...(typeof extra.host === 'string' ? { host: extra.host } : {}),
      ...(typeof extra.port === 'number' ? { port: extra.port } : {}),
      down: down !== null,
      ...(down !== null ? { downReason: down } : {}),
      counts: counts ?? zeroCounts(),
      revision,
    };
  };

  const classRequirement = (name: string | null | undefined, field: string): Requirement[] =>
    name ? [{ key: keys.qosClass(name), missing: () => badRequest(field, `no QoS class named "${name}" (create it first: PUT /api/qos/classes/${name})`) }] : [];

  const parseStored = (s: Stored, id: number): ShardEntry => {
    const r = ShardEntrySchema.safeParse(s.value);
    if (!r.success) throw new ApiError(409, `the stored entry of shard ${id} is invalid: ${describeZodError(r.error)}`);
    return r.data;
  };

  const respond = async (reply: FastifyReply, status: number, entry: ShardEntry, revision: string) => {
    const counts = (await c.counters.shards()).get(entry.id);
    setEtag(reply, revision);
    return reply.status(status).send(view(entry, revision, counts));
  };

  route(app, auth, {
    method: 'GET',
    url: '/api/shards',
    summary: 'Every shard with its state, class and counters',
    tags: TAGS,
    responses: { 200: { description: 'the shards, by number', schema: ShardListSchema, etag: true } },
    handler: async (_in, reply) => {
      const [{ kvs, revision }, counts] = await Promise.all([readPrefix(etcd, keys.shards), c.counters.shards()]);
      const shards: ShardView[] = [];
      const invalid: InvalidEntry[] = [];
      for (const kv of kvs) {
        const key = kv.key.toString();
        const ref = keys.parse(key);
        const r = ShardEntrySchema.safeParse(parseText(kv.value.toString()));
        if (!r.success) invalid.push({ key, error: describeZodError(r.error) });
        else if (ref?.kind !== 'shard' || ref.id !== r.data.id) invalid.push({ key, error: `id ${r.data.id} does not match the key` });
        else shards.push(view(r.data, kv.mod_revision, counts.get(r.data.id)));
      }
      shards.sort((a, b) => a.id - b.id);
      setEtag(reply, revision);
      return { shards, invalid, revision };
    },
  });

  route(app, auth, {
    method: 'GET',
    url: '/api/shards/:id',
    summary: 'One shard',
    tags: TAGS,
    params: IdParams,
    responses: {
      200: { description: 'the shard', schema: ShardViewSchema, etag: true },
      404: { description: 'no such shard', schema: ErrorSchema },
      409: { description: 'the stored entry is invalid', schema: ErrorSchema },
    },
    handler: async ({ params }, reply) => {
      const s = await readKey(etcd, keys.shard(params.id));
      if (!s) throw notFound(`shard ${params.id}`);
      return respond(reply, 200, parseStored(s, params.id), s.revision);
    },
  });

  route(app, auth, {
    method: 'PUT',
    url: '/api/shards/:id',
    summary: 'Register a shard or update its entry (used by parley provision)',
    description:
      'A new entry is {id, url, state: active} plus the fields given; an existing one gets the URL and the fields given and keeps every other field (the merge rule of `parley server --pg` and the agent). A shard never moves rooms: their pins stay.',
    tags: TAGS,
    write: true,
    ifMatch: true,
    params: IdParams,
    body: PutShardSchema,
    examples: [{ url: 'postgres://parley@127.0.0.1:5433/parley', qos: 'default', poolSize: 2, host: 'local', port: 5433 }],
    responses: {
      200: { description: 'updated', schema: ShardViewSchema, etag: true },
      201: { description: 'registered', schema: ShardViewSchema, etag: true },
      409: { description: 'the stored entry is invalid', schema: ErrorSchema },
    },
    handler: async ({ params, body, headers }, reply) => {
      const { url, poolSize, ...rest } = body;
      let entry: ShardEntry | undefined;
      const w = await c.write(
        keys.shard(params.id),
        ifMatchOf(headers),
        (current) => {
          try {
            entry = ShardEntrySchema.parse({ ...mergeShardEntry(current?.value, { id: params.id, url, ...(poolSize !== undefined ? { poolSize } : {}) }), ...rest });
          } catch (err) {
            if (err instanceof ShardEntryError) throw new ApiError(409, err.message);
            throw err;
          }
          return entry;
        },
        classRequirement(body.qos, 'qos'),
      );
      return respond(reply, w.created ? 201 : 200, entry as ShardEntry, w.revision);
    },
  });

  route(app, auth, {
    method: 'PATCH',
    url: '/api/shards/:id',
    summary: "Change a shard's class, state or pool size",
    description: 'The class applies to the rooms of the shard that have no class of their own, within a second. `draining`: no new rooms go to the shard.',
    tags: TAGS,
    write: true,
    ifMatch: true,
    params: IdParams,
    body: PatchShardSchema,
    examples: [{ qos: 'default' }, { state: 'active', poolSize: null }],
    responses: {
      200: { description: 'updated', schema: ShardViewSchema, etag: true },
      404: { description: 'no such shard', schema: ErrorSchema },
      409: { description: 'the stored entry is invalid', schema: ErrorSchema },
    },
    handler: async ({ params, body, headers }, reply) => {
      let entry: ShardEntry | undefined;
      const w = await c.write(
        keys.shard(params.id),
        ifMatchOf(headers),
        (current) => {
          if (!current) throw notFound(`shard ${params.id}`);
          const next: Record<string, unknown> = { ...parseStored(current, params.id) };
          for (const k of ['qos', 'state', 'poolSize'] as const) {
            const v = body[k];
            if (v === null) delete next[k];
            else if (v !== undefined) next[k] = v;
          }
          entry = ShardEntrySchema.parse(next);
          return entry;
        },
        classRequirement(body.qos, 'qos'),
      );
      return respond(reply, 200, entry as ShardEntry, w.revision);
    },
  });
}
