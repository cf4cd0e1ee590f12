import { z } from 'zod';

/**
 * Quality of service. A QoS class (`/<prefix>/qos/classes/<name>`) sets, for every room that has
 * it, a sustained write rate and a burst (a token bucket enforced cluster-wide), and for every
 * shard that has it, a write budget over all of the shard's rooms, the connection pool an instance
 * opens to it, and the PostgreSQL settings the agent starts it with.
 *
 * Which class applies: a room's own override (`qos` in its `/rooms/<room>` entry), else its shard's
 * class (`qos` in the `/shards/<n>` entry), else the class named `default`. When the cluster has no
 * class named `default`, such a room has no limit (a cluster without QoS classes behaves as before
 * QoS existed; the only protection is the store backlog). A class that is named but missing counts
 * as `default` (and is reported by the API).
 */

export const QOS_CLASS_NAME = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export const QosClassNameSchema = z.string().regex(QOS_CLASS_NAME, 'a class name is 1-40 of a-z, 0-9, _ and -, starting with a letter or digit');

/**
 * PostgreSQL settings of a shard of this class (applied by the agent when it writes the shard's
 * configuration; a change takes effect at the shard's next restart). Values are PostgreSQL's own
 * units and spellings (`shared_buffers: "128kB"`).
 */
export const PostgresSettingsSchema = z
  .object({
    max_connections: z.number().int().min(5).max(10_000).optional(),
    shared_buffers: z.string().regex(/^\d+(kB|MB|GB)$/).optional(),
    work_mem: z.string().regex(/^\d+(kB|MB|GB)$/).optional(),
    synchronous_commit: z.enum(['on', 'off', 'local', 'remote_write', 'remote_apply']).optional(),
    statement_timeout: z.string().regex(/^\d+(ms|s|min)?$/).optional(),
    fsync: z.enum(['on', 'off']).optional(),
    wal_buffers: z.string().regex(/^\d+(kB|MB)$/).optional(),
    max_wal_size: z.string().regex(/^\d+(MB|GB)$/).optional(),
  })
  .strict();

export type PostgresSettings = z.infer<typeof PostgresSettingsSchema>;

export const QosClassSchema = z
  .object({
    /** sustained messages per second each room of this class may write, cluster-wide */
    rate: z.number().positive().max(1_000_000),
    /** messages a room may write at once above the sustained rate (bucket size) */
    burst: z.number().int().min(1).max(1_000_000),
    /** rows per second a shard of this class accepts over all its rooms; absent = no budget */
    shardWriteBudget: z.number().positive().max(10_000_000).optional(),
    /** connections an instance opens to a shard of this class (opened lazily, closed when idle) */
    poolSize: z.number().int().min(1).max(100).optional(),
    /** PostgreSQL settings of shards of this class */
    postgres: PostgresSettingsSchema.optional(),
    /** free text for operators */
    description: z.string().max(400).optional(),
  })
  .strict();

export type QosClass = z.infer<typeof QosClassSchema>;

export const DEFAULT_CLASS_NAME = 'default';

/** Counters kept per room and per shard, cluster-wide. */
export const QOS_COUNTERS = ['accepted', 'refusedQos', 'refusedBacklog', 'failed'] as const;
export type QosCounter = (typeof QOS_COUNTERS)[number];
export type QosCounts = Record<QosCounter, number>;

export const zeroCounts = (): QosCounts => ({ accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 0 });

/**
 * The class of a room: its override, else its shard's, else `default`; `cls` null = no class
 * applies (no `default` defined): no limit. `classes` maps names to classes.
 */
export function resolveQosClass(
  classes: ReadonlyMap<string, QosClass>,
  roomOverride: string | undefined,
  shardClass: string | undefined,
): { name: string; cls: QosClass | null } {
  for (const name of [roomOverride, shardClass]) {
    if (name === undefined) continue;
    const cls = classes.get(name);
    if (cls) return { name, cls };
  }
  return { name: DEFAULT_CLASS_NAME, cls: classes.get(DEFAULT_CLASS_NAME) ?? null };
}
