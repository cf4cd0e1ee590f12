import type { Etcd3 } from 'etcd3';
import type { FastifyInstance } from 'fastify';
import type { Histogram } from 'prom-client';
import { z } from 'zod';
import { readInstances, type InstanceRecord } from '@parley/contracts';
import { route } from './route.js';

/**
 * `GET /api/instances`: the registry's records (every live instance as it describes itself, with
 * its own counters), and the sampler that fills the `stats` member of this instance's record.
 * Each instance measures itself, so the numbers do not depend on which instance serves the page.
 */

export type InstanceStats = NonNullable<InstanceRecord['stats']>;

/** What the sampler reads: the node's running totals and two latency histograms. */
export interface SampleSource {
  stats: { messagesIn: number; stored: number; deliveries: number };
  persistLatency: Histogram;
  fanoutLatency: Histogram;
}

/** Cumulative bucket counts of a histogram, by upper bound in seconds (+Inf last). */
async function buckets(h: Histogram): Promise<Array<[number, number]>> {
  const m = await h.get();
  return m.values
    .filter((v) => v.metricName?.endsWith('_bucket') === true)
    .map((v): [number, number] => [v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le), v.value])
    .sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of the observations between two reads of the same histogram, as the upper
 * bound of the bucket it falls in (in ms); null when nothing was observed. Above the last finite
 * bound it is that bound (the histogram knows no more).
 */
export function quantileMs(prev: Array<[number, number]>, now: Array<[number, number]>, q: number): number | null {
  const before = new Map(prev);
  const delta = now.map(([le, n]): [number, number] => [le, n - (before.get(le) ?? 0)]);
  const total = delta.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const finite = delta.filter(([le]) => Number.isFinite(le));
  for (const [le, n] of finite) if (n >= q * total) return Math.round(le * 1000 * 100) / 100;
  const last = finite.at(-1);
  return last === undefined ? null : Math.round(last[0] * 1000 * 100) / 100;
}

/** Samples an instance's counters; each call covers the time since the previous one. */
export class InstanceSampler {
  private prev: { at: number; messagesIn: number; stored: number; deliveries: number; commit: Array<[number, number]>; fanout: Array<[number, number]> } | null = null;

  constructor(private readonly src: SampleSource) {}

  async sample(now = Date.now()): Promise<InstanceStats> {
    const [commit, fanout] = await Promise.all([buckets(this.src.persistLatency), buckets(this.src.fanoutLatency)]);
    const { messagesIn, stored, deliveries } = this.src.stats;
    const p = this.prev;
    const dt = p ? Math.max(0, (now - p.at) / 1000) : 0;
    const rate = (a: number, b: number | undefined): number => (b === undefined || dt <= 0 ? 0 : Math.round(((a - b) / dt) * 10) / 10);
    this.prev = { at: now, messagesIn, stored, deliveries, commit, fanout };
    return {
      at: now,
      intervalSeconds: dt,
      messagesIn,
      messagesStored: stored,
      deliveries,
      messagesInPerSecond: rate(messagesIn, p?.messagesIn),
      storedPerSecond: rate(stored, p?.stored),
      deliveriesPerSecond: rate(deliveries, p?.deliveries),
      commitP99Ms: p ? quantileMs(p.commit, commit, 0.99) : null,
      fanoutP99Ms: p ? quantileMs(p.fanout, fanout, 0.99) : null,
    };
  }
}

const StatsSchema = z.object({
  at: z.number().int(),
  intervalSeconds: z.number(),
  messagesIn: z.number().int(),
  messagesStored: z.number().int(),
  deliveries: z.number().int(),
  messagesInPerSecond: z.number(),
  storedPerSecond: z.number(),
  deliveriesPerSecond: z.number(),
  commitP99Ms: z.number().nullable(),
  fanoutP99Ms: z.number().nullable(),
});

export const InstanceViewSchema = z.object({
  id: z.string(),
  serverName: z.string(),
  host: z.string(),
  tcpPort: z.number().int(),
  wsPort: z.number().int(),
  pid: z.number().int(),
  startedAt: z.number().int(),
  connections: z.number().int(),
  state: z.enum(['ready', 'draining']),
  /** the instance's own sample (absent from servers that predate it) */
  stats: StatsSchema.optional(),
});

const InstancesSchema = z.object({ instances: z.array(InstanceViewSchema), at: z.number().int() });

/** Every valid registration, by id. */
export async function readInstanceViews(etcd: Etcd3, prefix: string): Promise<InstanceRecord[]> {
  return (await readInstances(etcd, prefix)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function instancesRoute(app: FastifyInstance, etcd: Etcd3, prefix: string): void {
  route(app, null, {
    method: 'GET',
    url: '/api/instances',
    summary: 'Every live instance from the registry, with its own counters',
    description:
      'The registry records (etcd), each rewritten by its instance every 5 s: connections, state, and `stats` (message totals, rates and p99 latencies over its last interval). The same whichever instance answers.',
    tags: ['instance'],
    responses: { 200: { description: 'the instances, by id', schema: InstancesSchema } },
    handler: async () => ({ instances: await readInstanceViews(etcd, prefix), at: Date.now() }),
  });
}
