/**
 * What a host runs, as data: the host plan under `/<prefix>/hosts/<host>/plan`, applied by that
 * host's agent and written by `parley up`, `scale` and `restart`. Defaults explicit, unknown keys
 * refused at every level.
 */
import { z } from 'zod';
import { QosClassNameSchema } from './qos.js';
import { parseJson } from './util.js';

const port = z.number().int().min(0).max(65535);
/** Bumped to make the agent restart that process (e.g. `parley restart --rolling`). */
const generation = z.number().int().min(0).default(0);

/** Unit names the agent uses for the processes that are not instances. */
export const RESERVED_UNIT_NAMES = ['agent', 'etcd', 'redis', 'haproxy'] as const;
const SHARD_UNIT = /^pg\d+$/;

export const InstancePlanSchema = z
  .object({
    /** registry id, also the unit name (`parley logs i1`) */
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    /** IRC server name; distinct per instance so a client can tell where it landed */
    serverName: z.string().regex(/^[A-Za-z0-9.-]{1,63}$/),
    /** address the instance listens on (and publishes in the registry) */
    host: z.string().default('127.0.0.1'),
    /** 0 = any free port: the front door follows the registry, so nothing needs it fixed */
    tcpPort: port.default(0),
    wsPort: port.default(0),
    /** registry lease; default the server's own */
    leaseSeconds: z.number().int().min(2).max(600).optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    generation,
  })
  .strict();

export const ShardPlanSchema = z
  .object({
    /** shard number: `/<prefix>/shards/<id>` */
    id: z.number().int().min(0).max(100_000),
    /** 0 = the agent picks a free port and keeps it for this shard (state dir `ports.json`) */
    port: port.default(0),
    database: z.string().regex(/^[A-Za-z0-9_]{1,63}$/).default('parley'),
    /** written into the shard entry; default: each instance's --pg-pool-size */
    poolSize: z.number().int().min(1).max(100).optional(),
    /**
     * QoS class whose `postgres` settings the agent writes into the shard's postgresql.conf (over
     * the low-footprint profile) each time it starts it; absent = the profile alone. A change of
     * the name restarts the shard; a change of the class's settings applies at its next restart.
     */
    qos: QosClassNameSchema.optional(),
    /**
     * Whether the agent writes the shard's `/<prefix>/shards/<id>` entry once the shard is ready.
     * false: whoever planned it registers it (`parley provision shards`, through the REST API),
     * so that no room is pinned to a shard before it is ready and has its class.
     */
    register: z.boolean().optional(),
    generation,
  })
  .strict();

export const RedisPlanSchema = z
  .object({
    port: port.default(0),
    /** append-only file (fsync every second), so a restarted Redis still knows nicks and channels */
    persist: z.boolean().default(true),
    generation,
  })
  .strict();

export const FrontDoorPlanSchema = z
  .object({
    /** address both front-door ports bind to */
    bind: z.string().default('127.0.0.1'),
    /** IRC over TCP */
    ircPort: port.default(6667),
    /** HTTP API and IRC over WebSocket */
    httpPort: port.default(8080),
    /**
     * IRC over TLS (6697 by convention), passed through to the instances' TLS ports with a PROXY
     * header (the keys stay on the instances); needs `tls` in the plan. Absent: no TLS frontend
     */
    tlsIrcPort: port.optional(),
    /** HTTPS and WSS, passed through like `tlsIrcPort`; needs `tls` in the plan. Absent: none */
    httpsPort: port.optional(),
    /** backend slots (the most instances the front door can hold without a restart) */
    slots: z.number().int().min(1).max(1000).default(32),
    generation,
  })
  .strict();

/**
 * TLS for the instances of this host: the agent keeps a local CA and a server certificate in its
 * state directory (`tls/`, made when missing or when the names change) and starts every instance
 * with IRC over TLS and HTTPS/WSS on ports of their own, and the `sts` capability pointing at the
 * front door's TLS port (or the instance's own without a front door).
 */
export const TlsPlanSchema = z
  .object({
    /**
     * seconds a client keeps the STS policy (the `duration` of `sts`). Short in the lab: a client
     * that learnt it refuses plain IRC to the same host for that long, even after a lab without TLS
     */
    stsDurationSeconds: z.number().int().min(0).max(31_536_000).default(3600),
    generation,
  })
  .strict();

export const HostPlanSchema = z
  .object({
    version: z.literal(1).default(1),
    redis: RedisPlanSchema.nullable().default(null),
    /** Redis of the instances when this host runs none itself */
    redisUrl: z.string().url().optional(),
    shards: z.array(ShardPlanSchema).default([]),
    instances: z.array(InstancePlanSchema).default([]),
    frontDoor: FrontDoorPlanSchema.nullable().default(null),
    /** null: plain IRC and HTTP only */
    tls: TlsPlanSchema.nullable().default(null),
  })
  .strict()
  .superRefine((p, ctx) => {
    const dup = <T>(xs: T[]): T | undefined => {
      const seen = new Set<T>();
      return xs.find((x) => seen.has(x) || (seen.add(x), false));
    };
    const shardDup = dup(p.shards.map((s) => s.id));
    if (shardDup !== undefined) ctx.addIssue({ code: 'custom', path: ['shards'], message: `shard ${shardDup} appears twice` });
    const idDup = dup(p.instances.map((i) => i.id));
    if (idDup !== undefined) ctx.addIssue({ code: 'custom', path: ['instances'], message: `instance id ${idDup} appears twice` });
    const nameDup = dup(p.instances.map((i) => i.serverName));
    if (nameDup !== undefined) ctx.addIssue({ code: 'custom', path: ['instances'], message: `server name ${nameDup} appears twice` });
    for (const [n, i] of p.instances.entries()) {
      if ((RESERVED_UNIT_NAMES as readonly string[]).includes(i.id) || SHARD_UNIT.test(i.id)) {
        ctx.addIssue({ code: 'custom', path: ['instances', n, 'id'], message: `"${i.id}" is reserved for another process kind` });
      }
    }
    if (p.instances.length > 0 && !p.redis && !p.redisUrl) {
      ctx.addIssue({ code: 'custom', path: ['redisUrl'], message: 'instances need Redis: plan a local one (redis) or give redisUrl' });
    }
    const ports = p.shards.filter((s) => s.port > 0).map((s) => s.port);
    const portDup = dup(ports);
    if (portDup !== undefined) ctx.addIssue({ code: 'custom', path: ['shards'], message: `port ${portDup} is planned for two shards` });
    if (p.frontDoor && !p.tls && (p.frontDoor.tlsIrcPort !== undefined || p.frontDoor.httpsPort !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['frontDoor'], message: 'TLS ports on the front door need tls in the plan (the instances serve TLS)' });
    }
    if (p.frontDoor) {
      const fd = p.frontDoor;
      const named = [fd.ircPort, fd.httpPort, fd.tlsIrcPort, fd.httpsPort].filter((x): x is number => x !== undefined && x > 0);
      const same = dup(named);
      if (same !== undefined) ctx.addIssue({ code: 'custom', path: ['frontDoor'], message: `port ${same} is planned for two front-door listeners` });
    }
    if (p.frontDoor && p.instances.length > p.frontDoor.slots) {
      ctx.addIssue({ code: 'custom', path: ['frontDoor', 'slots'], message: `${p.instances.length} instances do not fit in ${p.frontDoor.slots} slots` });
    }
  });

export type HostPlan = z.infer<typeof HostPlanSchema>;
export type InstancePlan = z.infer<typeof InstancePlanSchema>;
export type ShardPlan = z.infer<typeof ShardPlanSchema>;
export type FrontDoorPlan = z.infer<typeof FrontDoorPlanSchema>;
export type TlsPlan = z.infer<typeof TlsPlanSchema>;

export const emptyPlan = (): HostPlan => HostPlanSchema.parse({});

export function parsePlan(text: string): { ok: true; plan: HostPlan } | { ok: false; error: string } {
  const r = parseJson(HostPlanSchema, text);
  return r.ok ? { ok: true, plan: r.value } : r;
}
