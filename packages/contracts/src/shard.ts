import { isDeepStrictEqual } from 'node:util';
import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { QosClassNameSchema } from './qos.js';
import { etcdKeys } from './keys.js';
import { describeZodError } from './util.js';

/**
 * `/<prefix>/shards/<n>`: one PostgreSQL shard. `id` must equal `<n>`. Fields beyond these are
 * allowed, ignored by the instances and kept by every writer (`mergeShardEntry`), so an operator
 * or a later release can add some (host, QoS class ...) without older instances refusing the map.
 */
export const ShardEntrySchema = z.looseObject({
  id: z.number().int().nonnegative(),
  /** libpq-style connection URL */
  url: z.string().url(),
  /** connections per instance; absent = each instance's `--pg-pool-size` */
  poolSize: z.number().int().min(1).max(100).optional(),
  /** `draining`: no new rooms go there; absent = `active` */
  state: z.enum(['active', 'draining']).optional(),
  /** the QoS class of the shard and (unless they override it) of its rooms; see qos.ts */
  qos: QosClassNameSchema.optional(),
});

export type ShardEntry = z.infer<typeof ShardEntrySchema>;

/**
 * What a writer says about a shard. `id` and `url` (and `poolSize` when given) are the writer's to
 * decide and replace what is stored; `defaultPoolSize` only fills a missing pool size.
 */
export interface ShardChange {
  id: number;
  url: string;
  poolSize?: number;
  defaultPoolSize?: number;
}

export class ShardEntryError extends Error {
  override name = 'ShardEntryError';
}

/**
 * The one merge rule for shard entries, used by `parley server --pg`, the agent and `parley config
 * import`: a new entry is `{id, url, poolSize?, state: "active"}`; an existing one keeps every
 * field it has (state, pool size, unknown fields) except the ones the change decides. `current` is
 * the stored entry as parsed JSON (undefined when there is none). Throws ShardEntryError when the
 * result is not a valid entry (e.g. a stored `state` that is neither active nor draining).
 */
export function mergeShardEntry(current: Record<string, unknown> | undefined, change: ShardChange): ShardEntry {
  const fresh: Record<string, unknown> = {
    id: change.id,
    url: change.url,
    ...(change.defaultPoolSize !== undefined ? { poolSize: change.defaultPoolSize } : {}),
    state: 'active',
  };
  const next = { ...fresh, ...current, id: change.id, url: change.url, ...(change.poolSize !== undefined ? { poolSize: change.poolSize } : {}) };
  const r = ShardEntrySchema.safeParse(next);
  if (!r.success) throw new ShardEntryError(`invalid shard entry for shard ${change.id}: ${describeZodError(r.error)}`);
  return r.data;
}

export interface ShardWrite {
  key: string;
  entry: ShardEntry;
  /** the stored entry before (undefined when there was none or it was not a JSON object) */
  previous: Record<string, unknown> | undefined;
  /** `replaced`: the stored value was not a JSON object and was overwritten */
  outcome: 'created' | 'updated' | 'unchanged' | 'replaced';
}

const CAS_ATTEMPTS = 10;

/**
 * Writes a shard entry by `mergeShardEntry`, with a compare-and-swap on the key's revision
 * (retried when another writer got there first), so concurrent writers never lose each other's
 * fields. Nothing is written when the entry would not change.
 */
export async function putShardEntry(client: Etcd3, prefix: string, change: ShardChange): Promise<ShardWrite> {
  const key = etcdKeys(prefix).shard(change.id);
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const kv = (await client.get(key).exec()).kvs[0];
    const stored = kv ? jsonObject(kv.value.toString()) : undefined;
    const entry = mergeShardEntry(stored, change);
    if (stored && isDeepStrictEqual(stored, entry)) return { key, entry, previous: stored, outcome: 'unchanged' };
    const txn = await client
      .if(key, 'Mod', '==', kv ? kv.mod_revision : 0)
      .then(client.put(key).value(JSON.stringify(entry)))
      .commit();
    if (txn.succeeded) return { key, entry, previous: stored, outcome: !kv ? 'created' : stored ? 'updated' : 'replaced' };
  }
  throw new ShardEntryError(`${key} keeps changing under us; tried ${CAS_ATTEMPTS} times`);
}

export interface ShardLogger {
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * `parley server --pg URL...`: the URLs are shards 0, 1, ... in order. A missing entry is created
 * with `poolSize` (the instance's `--pg-pool-size`); an existing one gets the command line's URL
 * (logged when it changed) and keeps everything else.
 */
export async function registerShards(client: Etcd3, prefix: string, urls: readonly string[], poolSize: number, log: ShardLogger): Promise<void> {
  for (const [id, url] of urls.entries()) {
    const w = await putShardEntry(client, prefix, { id, url, defaultPoolSize: poolSize });
    if (w.outcome === 'updated' && w.previous?.url !== url) {
      log.warn({ shard: id, from: w.previous?.url, to: url }, 'shard URL changed on the command line; updating the shard map');
    } else if (w.outcome === 'replaced') {
      log.warn({ shard: id, key: w.key }, 'shard entry was not a JSON object; replaced it');
    }
  }
}

/** The text as a JSON object, or undefined (not JSON, or an array or a scalar). */
export function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
