import { z } from 'zod';

/**
 * The cluster-wide configuration, stored as JSON under `<prefix>/config` in etcd and watched live
 * by every instance. One schema validates etcd, files and the CLI alike: defaults are explicit,
 * unknown keys are refused.
 */
export const ClusterConfigSchema = z
  .object({
    networkName: z.string().min(1).max(32).regex(/^[A-Za-z0-9_.-]+$/).default('Parley'),
    motd: z.array(z.string().max(400)).max(100).default(['Welcome to Parley.']),
    /** server password (IRC `PASS`); null = none */
    password: z.string().min(1).max(256).nullable().default(null),
    limits: z
      .object({
        /** bytes of an IRC line without its tags, CRLF included (RFC: 512) */
        lineBytes: z.number().int().min(512).max(16384).default(512),
        /** bytes of the tags section (IRCv3: 8191) */
        tagBytes: z.number().int().min(512).max(8191).default(8191),
        nickLen: z.number().int().min(9).max(64).default(30),
        channelLen: z.number().int().min(16).max(200).default(64),
        topicLen: z.number().int().min(16).max(400).default(390),
        awayLen: z.number().int().min(16).max(400).default(200),
        kickLen: z.number().int().min(16).max(400).default(255),
        channelsPerUser: z.number().int().min(1).max(10000).default(100),
        /** most messages one CHATHISTORY request returns */
        historyMax: z.number().int().min(1).max(10000).default(1000),
        /**
         * messages this instance may have waiting for one shard's commit; above it new messages
         * to rooms of that shard are refused (FAIL ... RATE_LIMITED) instead of queueing
         */
        storeBacklog: z.number().int().min(1).max(1_000_000).default(20000),
      })
      .strict()
      .prefault({}),
    flood: z
      .object({
        /** sustained lines per second a connection may send; 0 disables the limit */
        linesPerSecond: z.number().min(0).max(1_000_000).default(20),
        /** lines a connection may send at once above the sustained rate */
        burst: z.number().int().min(1).max(1_000_000).default(200),
      })
      .strict()
      .prefault({}),
    /** seconds of silence before the server PINGs a client; twice that without reply drops it */
    pingIntervalSeconds: z.number().int().min(5).max(3600).default(90),
  })
  .strict();

export type ClusterConfig = z.infer<typeof ClusterConfigSchema>;

export const defaultClusterConfig = (): ClusterConfig => ClusterConfigSchema.parse({});

/** Turns a zod error into one line a human can act on. */
export function describeZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

export function parseClusterConfig(text: string): { ok: true; config: ClusterConfig } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  const r = ClusterConfigSchema.safeParse(raw);
  return r.success ? { ok: true, config: r.data } : { ok: false, error: describeZodError(r.error) };
}

const port = z.coerce.number().int().min(0).max(65535);

/** Options of one server instance (command line and environment), validated at start. */
export const InstanceOptionsSchema = z
  .object({
    /** unique instance id in the registry; default derived from host name and pid */
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
    /** the IRC server name this instance announces */
    serverName: z.string().regex(/^[A-Za-z0-9.-]{1,63}$/).default('parley.local'),
    /** address to listen on */
    host: z.string().default('127.0.0.1'),
    /** address other processes use to reach this instance (registry); default: host */
    advertiseHost: z.string().optional(),
    tcpPort: port.default(6667),
    wsPort: port.default(8080),
    etcd: z.array(z.string().url()).min(1).default(['http://127.0.0.1:2379']),
    redis: z.string().url().default('redis://127.0.0.1:6379'),
    /** namespace of every etcd key (`/parley`) and Redis key (`parley`) of this cluster */
    prefix: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/).default('parley'),
    /** PostgreSQL shards to register in etcd when the cluster has none yet */
    pg: z.array(z.string().url()).default([]),
    /** connections per shard */
    pgPoolSize: z.number().int().min(1).max(100).default(4),
    /** seconds of the registry lease: how fast others notice that this instance died */
    leaseSeconds: z.number().int().min(2).max(600).default(5),
    /** seconds to wait for etcd at start before giving up */
    etcdTimeoutSeconds: z.number().min(0.5).max(600).default(5),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type InstanceOptions = z.infer<typeof InstanceOptionsSchema>;
