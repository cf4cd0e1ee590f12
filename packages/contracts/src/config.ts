import { z } from 'zod';
import { parseJson } from './util.js';

/** A cluster's name: etcd keys `/<prefix>/...`, Redis keys `<prefix>:...`. */
export const PrefixSchema = z.string().regex(/^[A-Za-z0-9_-]{1,40}$/);

/**
 * The cluster-wide configuration, stored as JSON under `<prefix>/config` in etcd and watched live
 * by every instance. One schema validates etcd, files and the CLI alike: defaults are explicit,
 * unknown keys are refused at every level.
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
        /**
         * bytes of a client's tags section, '@' and the closing space included. message-tags
         * gives clients 4094 bytes of tag data (the other half of 8191 is the server's), and asks
         * for 417 above it: hence 4096
         */
        tagBytes: z.number().int().min(512).max(8191).default(4096),
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
    /** what an instance lets in at its door (docs/security.md "At the door"), applied live */
    door: z
      .object({
        /**
         * browser origins allowed to open a WebSocket: exact (`https://chat.example.org`), any port
         * (`http://localhost:*`), or `*` (any page on the web: only when meant). A request without
         * an `Origin` (not a browser) is always allowed; any other origin gets 403.
         */
        wsOrigins: z
          .array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, 'an origin is `*` or scheme://host[:port|:*] without a path'))
          .max(1000)
          .default(['http://localhost:*', 'https://localhost:*', 'http://127.0.0.1:*', 'https://127.0.0.1:*', 'http://[::1]:*', 'https://[::1]:*']),
        /** open connections (IRC and WebSocket) from one address, cluster-wide; 0: no limit */
        connectionsPerIp: z.number().int().min(0).max(1_000_000).default(50),
        /** new connections (each a registration attempt) from one address per minute, cluster-wide; 0: no limit */
        connectsPerIpPerMinute: z.number().int().min(0).max(1_000_000).default(120),
        /**
         * addresses the two limits above do not apply to (exact IPs): loopback by default, so the
         * load tool and benchmarks on one machine can open thousands of connections
         */
        exemptIps: z.array(z.string().min(1).max(64)).max(1000).default(['127.0.0.1', '::1', '::ffff:127.0.0.1']),
        /**
         * show users a cloak (`parley-<8 hex>.ip`, a keyed hash of the address) instead of their
         * address, in prefixes, WHO and WHOIS; opers see the address
         */
        cloakHosts: z.boolean().default(true),
        /** sustained requests per second one address may make to the HTTP API's read routes (per instance); 0: no limit */
        apiReadsPerSecond: z.number().min(0).max(1_000_000).default(20),
        /** requests one address may make at once above that rate */
        apiReadBurst: z.number().int().min(1).max(1_000_000).default(100),
      })
      .strict()
      .prefault({}),
    /** seconds of silence before the server PINGs a client; twice that without reply drops it */
    pingIntervalSeconds: z.number().int().min(5).max(3600).default(90),
    /**
     * server operators (`OPER <name> <password>`): the password as an scrypt hash
     * (`scrypt$N$r$p$<salt>$<hash>`, the format of account passwords; docs/operations.md shows how
     * to make one), and optionally a
     * `nick!user@host` glob the connection must match
     */
    opers: z
      .array(
        z
          .object({
            name: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/),
            passwordHash: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/),
            hostmask: z.string().min(1).max(100).optional(),
          })
          .strict(),
      )
      .max(100)
      .default([]),
    /** MONITOR entries one connection may hold (ISUPPORT `MONITOR=`) */
    monitorMax: z.number().int().min(0).max(1000).default(100),
    accounts: z
      .object({
        /**
         * seconds a registered nick may be used without logging in to its account before the
         * session is renamed to a guest nick (0: at once)
         */
        nickGraceSeconds: z.number().int().min(0).max(3600).default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ClusterConfig = z.infer<typeof ClusterConfigSchema>;

export const defaultClusterConfig = (): ClusterConfig => ClusterConfigSchema.parse({});

export function parseClusterConfig(text: string): { ok: true; config: ClusterConfig } | { ok: false; error: string } {
  const r = parseJson(ClusterConfigSchema, text);
  return r.ok ? { ok: true, config: r.value } : r;
}
