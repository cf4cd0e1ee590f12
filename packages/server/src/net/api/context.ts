import type { Etcd3 } from 'etcd3';
import type { FastifyInstance } from 'fastify';
import type { EtcdKeys } from '@parley/contracts';
import type { QosCounterStore } from '../../qos/counters.js';
import type { AdminAuth } from './auth.js';
import { writeKey, type Requirement, type Stored, type Written } from './etcd.js';

/** What the QoS and configuration API needs from its instance. */
export interface ApiDeps {
  /** the registry's etcd client (not closed by the API) */
  etcd: Etcd3;
  /** the cluster's name (`parley`) */
  prefix: string;
  /** cluster-wide counters per room and per shard */
  counters: QosCounterStore;
  auth: AdminAuth;
  /** why this instance treats shard `id` as down (its rooms fail at once), or null while it answers */
  shardDown(id: number): string | null;
  /** how long one read of every room entry and the counters serves `GET /api/rooms` (default 1000 ms; 0 = every request reads) */
  roomsCacheMs?: number;
}

export interface ApiContext extends ApiDeps {
  app: FastifyInstance;
  keys: EtcdKeys;
  /** `writeKey` followed by `changed()` */
  write(key: string, ifMatch: string | undefined, change: (current: Stored | null) => Record<string, unknown>, requires?: Requirement[]): Promise<Written>;
  /** a write through this instance: the next room list reads again */
  changed(): void;
  /** the room list cache is dropped by `changed()`; set by rooms.ts */
  onChanged: (() => void)[];
}

export function apiContext(app: FastifyInstance, deps: ApiDeps, keys: EtcdKeys): ApiContext {
  const ctx: ApiContext = {
    ...deps,
    app,
    keys,
    onChanged: [],
    changed: () => {
      for (const f of ctx.onChanged) f();
    },
    write: async (key, ifMatch, change, requires) => {
      const w = await writeKey(deps.etcd, key, ifMatch, change, requires);
      ctx.changed();
      return w;
    },
  };
  return ctx;
}
