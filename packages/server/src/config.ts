import { z } from 'zod';
import { PrefixSchema } from '@parley/contracts';

// The cluster configuration is a contract of the whole cluster (etcd, agent, CLI): it lives in
// @parley/contracts; re-exported here for the server's own modules.
export {
  ClusterConfigSchema,
  defaultClusterConfig,
  parseClusterConfig,
  describeZodError,
  type ClusterConfig,
} from '@parley/contracts';

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
    prefix: PrefixSchema.default('parley'),
    /** PostgreSQL shards to register in etcd when the cluster has none yet */
    pg: z.array(z.string().url()).default([]),
    /** connections per shard (commit + readers) when neither its QoS class nor its entry sets a pool size */
    pgPoolSize: z.number().int().min(1).max(100).default(4),
    /** seconds a shard's connections may stay unused before they are closed (reopened by the next use); 0 = never */
    pgIdleSeconds: z.number().min(0).max(86_400).default(60),
    /** seconds of the registry lease: how fast others notice that this instance died */
    leaseSeconds: z.number().int().min(2).max(600).default(5),
    /** seconds to wait for etcd at start before giving up */
    etcdTimeoutSeconds: z.number().min(0.5).max(600).default(5),
    /**
     * file holding the admin token that write routes of the HTTP API require (`Authorization:
     * Bearer <token>`), read once at start; without it every write route answers 403
     */
    adminTokenFile: z.string().min(1).optional(),
    /**
     * file holding the Redis password (its first line), for the user named in the `--redis` URL
     * (`redis://parley@host:port`; none: Redis's `default` user); read once at start
     */
    redisPasswordFile: z.string().min(1).optional(),
    /** file holding the PostgreSQL password of the user named in each shard's URL; read once at start */
    pgPasswordFile: z.string().min(1).optional(),
    /** etcd user, when `etcdPasswordFile` is given */
    etcdUser: z.string().min(1).default('parley'),
    /** file holding the etcd password of `etcdUser` (none: etcd without authentication); read once at start */
    etcdPasswordFile: z.string().min(1).optional(),
    /**
     * file holding the cluster key (its first line): every payload between instances carries an
     * HMAC with it and one without a valid MAC is dropped; all instances of a cluster need the same
     * key. None: payloads unauthenticated (tests, development; docs/security.md)
     */
    clusterKeyFile: z.string().min(1).optional(),
    /** PEM certificate (chain) of the TLS listeners; reloaded when the file changes */
    tlsCert: z.string().min(1).optional(),
    /** PEM private key of `tlsCert`; reloaded when the file changes */
    tlsKey: z.string().min(1).optional(),
    /** IRC over TLS port (6697 by convention; 0 = any free); none: no IRC over TLS. Needs tlsCert and tlsKey */
    tlsPort: port.optional(),
    /** HTTPS and WSS port (0 = any free); none: no HTTPS. Needs tlsCert and tlsKey */
    httpsPort: port.optional(),
    /**
     * advertise the `sts` capability (IRCv3 STS) when IRC over TLS is served (`tlsPort`): plain
     * clients are told to reconnect with TLS, TLS clients to keep doing so for `stsDuration`
     */
    sts: z.boolean().default(true),
    /** the TLS port `sts` names (the front door's when there is one); default: this instance's `tlsPort` */
    stsPort: z.coerce.number().int().min(1).max(65535).optional(),
    /** seconds a client keeps the STS policy (0: clients forget it) */
    stsDuration: z.coerce.number().int().min(0).max(31_536_000).default(604_800),
    /**
     * addresses of the front door(s): their PROXY header (IRC, HTTPS) and X-Forwarded-For (HTTP)
     * name the client's address; from anyone else both are ignored
     */
    trustedProxies: z.array(z.string().min(1)).default([]),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type InstanceOptions = z.infer<typeof InstanceOptionsSchema>;
