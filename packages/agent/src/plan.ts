/**
 * The agent's side of the host plan. The plan itself (`/<prefix>/hosts/<host>/plan`, its schema
 * and parser) is a cluster contract in @parley/contracts, re-exported here; this module adds the
 * host file (`host.json` in the state directory), which tells the agent which host it is and where
 * etcd is, since etcd cannot come from the plan it stores. Defaults explicit, unknown keys refused.
 */
import os from 'node:os';
import { z } from 'zod';
import { PrefixSchema, type HostPlan } from '@parley/contracts';

export {
  HostPlanSchema,
  InstancePlanSchema,
  ShardPlanSchema,
  RedisPlanSchema,
  FrontDoorPlanSchema,
  RESERVED_UNIT_NAMES,
  emptyPlan,
  parsePlan,
  type HostPlan,
  type InstancePlan,
  type ShardPlan,
  type FrontDoorPlan,
} from '@parley/contracts';

const port = z.number().int().min(0).max(65535);

/** The agent's local bootstrap file: which host it is, and where etcd is. */
export const HostFileSchema = z
  .object({
    version: z.literal(1),
    /** host name in `/<prefix>/hosts/<host>/plan` */
    host: z.string().regex(/^[A-Za-z0-9_.-]{1,253}$/),
    prefix: PrefixSchema.default('parley'),
    etcd: z.discriminatedUnion('managed', [
      /** the agent runs a single-member etcd on loopback with its data in the state directory */
      z.object({ managed: z.literal(true), clientPort: port.min(1), peerPort: port.min(1) }).strict(),
      /** etcd runs elsewhere */
      z.object({ managed: z.literal(false), endpoints: z.array(z.string().url()).min(1) }).strict(),
    ]),
    /**
     * How the agent and the CLI log in to etcd: a user and the file with its password (`parley up`
     * writes `root` and `<state>/secrets/etcd-root`). Absent: etcd without authentication.
     */
    etcdAuth: z.object({ user: z.string().min(1), passwordFile: z.string().min(1) }).strict().optional(),
  })
  .strict();

export type HostFile = z.infer<typeof HostFileSchema>;

export const etcdEndpoints = (h: HostFile): string[] =>
  h.etcd.managed ? [`http://127.0.0.1:${h.etcd.clientPort}`] : h.etcd.endpoints;

/** A host name usable as an etcd key segment. */
export function defaultHostName(): string {
  return os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 253) || 'localhost';
}

/** Unit names of a plan, in start order (etcd is the agent's own and not part of it). */
export function planUnitNames(p: HostPlan): string[] {
  return [
    ...(p.redis ? ['redis'] : []),
    ...p.shards.map((s) => `pg${s.id}`),
    ...(p.frontDoor ? ['haproxy'] : []),
    ...p.instances.map((i) => i.id),
  ];
}
