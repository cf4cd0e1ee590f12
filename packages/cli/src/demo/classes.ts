/**
 * The QoS classes of `parley demo qos`: which classes exist, and what share of the rooms and of
 * the shards gets each. The default mix, or a JSON file (`--classes FILE`):
 *
 *   { "bronze": { "rate": 1, "burst": 5, "share": 0.5 },
 *     "silver": { "rate": 2, "burst": 10, "share": 0.3 },
 *     "gold":   { "rate": 5, "burst": 20, "share": 0.2, "poolSize": 2 } }
 *
 * Each entry is a QoS class (QosClassSchema: rate, burst, shardWriteBudget, poolSize, postgres,
 * description) plus `share`, the fraction of rooms and shards that get it; shares add up to 1.
 */
import fs from 'node:fs/promises';
import { z } from 'zod';
import { QOS_CLASS_NAME, QosClassSchema, describeZodError, type QosClass } from '@parley/contracts';

export interface DemoClass {
  name: string;
  cls: QosClass;
  share: number;
}

/**
 * The default mix: limits low enough that 1000 rooms offered twice their limit stay within what
 * two shared cores carry (≈4,200 messages/s offered at the start, ≈2,100 accepted), bursts a few
 * seconds of the rate. `poolSize: 2` keeps an instance at two connections per shard it writes to.
 */
export const DEFAULT_CLASSES: readonly DemoClass[] = [
  { name: 'bronze', share: 0.5, cls: { rate: 1, burst: 5, poolSize: 2, description: 'parley demo qos: half the rooms' } },
  { name: 'silver', share: 0.3, cls: { rate: 2, burst: 10, poolSize: 2, description: 'parley demo qos: 30% of the rooms' } },
  { name: 'gold', share: 0.2, cls: { rate: 5, burst: 20, poolSize: 2, description: 'parley demo qos: 20% of the rooms' } },
];

const EntrySchema = QosClassSchema.extend({ share: z.number().positive().max(1) }).strict();

export class ClassesError extends Error {}

/** Validates a classes file's parsed JSON; `file` only names it in errors. */
export function parseClasses(file: string, raw: unknown): DemoClass[] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ClassesError(`${file}: expected a JSON object of classes: {"bronze": {"rate": 1, "burst": 5, "share": 0.5}, ...}`);
  const out: DemoClass[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (!QOS_CLASS_NAME.test(name)) throw new ClassesError(`${file}: class name "${name}": a class name is 1-40 of a-z, 0-9, _ and -, starting with a letter or digit`);
    const r = EntrySchema.safeParse(value);
    if (!r.success) throw new ClassesError(`${file}: ${name}: ${describeZodError(r.error)}`);
    const { share, ...cls } = r.data;
    out.push({ name, cls, share });
  }
  if (out.length === 0) throw new ClassesError(`${file}: no class given`);
  const sum = out.reduce((s, c) => s + c.share, 0);
  if (Math.abs(sum - 1) > 1e-6) throw new ClassesError(`${file}: the shares add up to ${Number(sum.toFixed(6))}, not 1`);
  return out;
}

export async function readClasses(file: string): Promise<DemoClass[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ClassesError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ClassesError(`${file}: not JSON: ${(err as Error).message}`);
  }
  return parseClasses(file, raw);
}

/**
 * Splits `n` items over the classes by their shares, exactly (largest remainder: the counts add
 * up to n; ties go to the earlier class).
 */
export function apportion(n: number, shares: readonly number[]): number[] {
  const exact = shares.map((s) => s * n);
  const counts = exact.map(Math.floor);
  let left = n - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of order) {
    if (left <= 0) break;
    counts[i]!++;
    left--;
  }
  return counts;
}

/** Class of item i when the classes take consecutive blocks of the given sizes. */
export function blockClass(counts: readonly number[], i: number): number {
  let acc = 0;
  for (let c = 0; c < counts.length; c++) {
    acc += counts[c]!;
    if (i < acc) return c;
  }
  return counts.length - 1;
}
