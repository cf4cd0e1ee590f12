import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { etcdKeys } from './keys.js';
import { parseJson, type Parsed } from './util.js';

const port = z.number().int().min(1).max(65535);
const count = z.number().int().nonnegative();
const ms = z.number().nonnegative().nullable();

/**
 * An instance's own message counters, sampled when it rewrites its record (every few seconds):
 * totals since its start, and rates and latencies over the interval since its previous sample.
 * What the dashboard shows per instance (read from the registry, so each instance speaks for
 * itself whichever one serves the page).
 */
export const InstanceStatsSchema = z.object({
  /** ms since the epoch when sampled */
  at: z.number().int().nonnegative(),
  /** seconds the rates below cover (0 on the first sample) */
  intervalSeconds: z.number().nonnegative(),
  /** PRIVMSG/NOTICE received from this instance's clients */
  messagesIn: count,
  /** messages this instance made durable */
  messagesStored: count,
  /** messages delivered to this instance's clients */
  deliveries: count,
  messagesInPerSecond: z.number().nonnegative(),
  storedPerSecond: z.number().nonnegative(),
  deliveriesPerSecond: z.number().nonnegative(),
  /** 99th percentile of one group commit round trip over the interval (histogram bucket bound); null: no commit */
  commitP99Ms: ms,
  /** 99th percentile from commit to delivery here over the interval; null: no delivery */
  fanoutP99Ms: ms,
});

export type InstanceStats = z.infer<typeof InstanceStatsSchema>;

/**
 * What a running instance publishes about itself under `/<prefix>/instances/<id>`, attached to its
 * lease and rewritten every few seconds (connection count, state). Read by the other instances
 * (who is alive), the front door (backends) and the CLI (status). Unknown fields are dropped when
 * read, so a tool keeps reading the records of a newer server that adds some.
 */
export const InstanceRecordSchema = z.object({
  id: z.string().min(1),
  /** the IRC server name the instance announces */
  serverName: z.string().min(1),
  /** where other processes reach it (`--advertise-host`, else `--host`) */
  host: z.string().min(1),
  /** the ports it actually listens on (never 0: written after listening) */
  tcpPort: port,
  wsPort: port,
  /** IRC over TLS (`--tls-port`), absent when the instance serves none; the front door's TLS backends route here */
  tlsPort: port.optional(),
  /** HTTPS and WSS (`--https-port`), absent when the instance serves none */
  httpsPort: port.optional(),
  pid: z.number().int().positive(),
  /** ms since the epoch */
  startedAt: z.number().int().nonnegative(),
  connections: z.number().int().nonnegative(),
  /** `draining`: stopping; takes no new clients (the front door takes it out) */
  state: z.enum(['ready', 'draining']),
  /** absent in the records of servers that predate it */
  stats: InstanceStatsSchema.optional(),
});

export type InstanceRecord = z.infer<typeof InstanceRecordSchema>;

export const parseInstanceRecord = (text: string): Parsed<InstanceRecord> => parseJson(InstanceRecordSchema, text);

/**
 * Every valid registration of the cluster, in key order. An unreadable one is left out and
 * reported to `onInvalid` (it is the writing instance's problem, not the reader's).
 */
export async function readInstances(client: Etcd3, prefix: string, onInvalid?: (key: string, error: string) => void): Promise<InstanceRecord[]> {
  const all = await client.getAll().prefix(etcdKeys(prefix).instances).strings();
  const out: InstanceRecord[] = [];
  for (const [key, text] of Object.entries(all)) {
    const r = parseInstanceRecord(text);
    if (r.ok) out.push(r.value);
    else onInvalid?.(key, r.error);
  }
  return out;
}
