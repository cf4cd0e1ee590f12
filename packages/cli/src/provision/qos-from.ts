/**
 * `parley provision shards --qos-from FILE`: which QoS class each shard gets, by shard number.
 *
 *   {
 *     "default": "bronze",                               // shards no range covers (optional)
 *     "ranges": [
 *       { "from": 0,   "to": 99,  "class": "gold" },     // shards 0..99, both ends included
 *       { "from": 100, "to": 499, "class": "silver" }
 *     ]
 *   }
 *
 * Ranges may not overlap; a shard that no range covers and no `default` names gets no class (its
 * rooms use the class named `default` of the cluster, if any). Unknown keys are refused.
 */
import fs from 'node:fs/promises';
import { z } from 'zod';
import { describeZodError, QosClassNameSchema } from '@parley/contracts';
import { LabError } from '../lab/common.js';

const shardNumber = z.number().int().min(0).max(100_000);

export const QosFromSchema = z
  .object({
    default: QosClassNameSchema.optional(),
    ranges: z
      .array(z.object({ from: shardNumber, to: shardNumber, class: QosClassNameSchema }).strict().refine((r) => r.from <= r.to, { message: '"from" must not be above "to"', path: ['to'] }))
      .default([]),
  })
  .strict()
  .superRefine((m, ctx) => {
    const sorted = m.ranges.map((r, i) => ({ ...r, i })).sort((a, b) => a.from - b.from);
    for (let k = 1; k < sorted.length; k++) {
      const prev = sorted[k - 1]!;
      const cur = sorted[k]!;
      if (cur.from <= prev.to) ctx.addIssue({ code: 'custom', path: ['ranges', cur.i], message: `shards ${cur.from}-${Math.min(cur.to, prev.to)} are also in range ${prev.from}-${prev.to}` });
    }
  });

export type QosFrom = z.infer<typeof QosFromSchema>;

/** The class of shard `id` under the mapping (undefined: none). */
export function classOf(m: QosFrom, id: number): string | undefined {
  return m.ranges.find((r) => id >= r.from && id <= r.to)?.class ?? m.default;
}

/** Reads and checks a --qos-from file; every problem is one LabError line naming the file. */
export async function readQosFrom(file: string): Promise<QosFrom> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new LabError(`--qos-from ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new LabError(`--qos-from ${file}: not JSON (${(err as Error).message})`);
  }
  const r = QosFromSchema.safeParse(raw);
  if (!r.success) throw new LabError(`--qos-from ${file}: ${describeZodError(r.error)}`);
  return r.data;
}
