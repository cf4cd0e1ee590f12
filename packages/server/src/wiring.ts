import type { Logger } from 'pino';
import { Redis } from 'ioredis';
import { resolveQosClass } from '@parley/contracts';
import type { InstanceOptions } from './config.js';
import { RedisBroker } from './cluster/broker-redis.js';
import { sealedBroker, type BrokerFactory } from './core/bus.js';
import type { Metrics } from './metrics.js';
import type { QosDirectory } from './qos/directory.js';
import { ShardedStore, type EtcdShardDirectory } from './store/index.js';

/*
 * How the backends of an instance are built from its options: the message store over the shard
 * map, the cluster bus's broker, and the Redis connection of the QoS buckets and counters.
 * ParleyServer (server.ts) starts and closes them, in its order.
 */

export interface StoreWiring {
  directory: EtcdShardDirectory;
  qosDirectory: QosDirectory;
  opts: InstanceOptions;
  /** the PostgreSQL password (--pg-password-file) */
  password: string | undefined;
  metrics: Metrics;
  /** shards the store reports down (id → why), kept up to date here, for the API's shard list */
  downShards: Map<number, string>;
  log: Logger;
}

/** The message store over the shard map, its batches and shard events counted and logged. */
export function createStore(w: StoreWiring): ShardedStore {
  const { directory, qosDirectory, metrics, downShards, log } = w;
  return new ShardedStore({
    directory,
    ...(w.password !== undefined ? { password: w.password } : {}),
    idleMs: w.opts.pgIdleSeconds * 1000,
    // A shard's pool: its class's poolSize (the class its entry names, else `default`), else the entry's, else --pg-pool-size.
    classPoolSize: (info) => resolveQosClass(qosDirectory.classes, undefined, directory.shardClass(info.id)).cls?.poolSize,
    logger: log,
    onBatch: (rows, ms) => {
      metrics.persistBatchSize.observe(rows);
      metrics.persistLatency.observe(ms / 1000);
    },
    events: {
      shardDown: (shard, cause) => {
        metrics.shardsDown.inc();
        downShards.set(shard, cause.message);
        log.warn({ shard, err: cause.message }, 'shard down: its rooms fail at once until it answers');
      },
      shardUp: (shard, downMs) => {
        metrics.shardsDown.dec();
        downShards.delete(shard);
        log.info({ shard, downMs }, 'shard back');
      },
      lateCommit: (shard, messages) => {
        metrics.lateCommits.inc(messages.length);
        log.error({ shard, messages: messages.length }, 'messages answered with an error were committed after all');
      },
    },
  });
}

export interface BrokerWiring {
  redisUrl: string;
  prefix: string;
  /** --cluster-key-file's key: the bus's payloads are sealed with it; null: plain */
  clusterKey: Buffer | null;
  instanceId: string;
  metrics: Metrics;
  log: Logger;
}

/** The bus's broker: Redis pub/sub, sealed with the cluster key when one is given. */
export function createBroker(w: BrokerWiring): BrokerFactory {
  const redis: BrokerFactory = (handler) => new RedisBroker(w.redisUrl, w.prefix, handler, w.log);
  if (w.clusterKey === null) return redis;
  let rejected = 0;
  let loggedAt = 0;
  return sealedBroker(redis, {
    key: w.clusterKey, instanceId: w.instanceId,
    // A bus payload without a valid cluster-key MAC: a forgery, or an instance with another key.
    // Counted as a bus error; logged at most every 10 s, so a flood cannot fill the log.
    rejected: (topic, bytes) => {
      w.metrics.busErrors.inc();
      rejected++;
      const now = Date.now();
      if (now - loggedAt < 10_000) return;
      loggedAt = now;
      w.log.warn({ topic, bytes, dropped: rejected }, 'bus payload without a valid cluster-key MAC dropped (a forgery, or an instance with another --cluster-key-file)');
      rejected = 0;
    },
  });
}

/**
 * The connection of the QoS buckets and counters: no offline queue and no retries (a call while
 * Redis is away fails at once, and the QoS step admits: fail open), and a short command timeout
 * (a frozen Redis holds a tick's messages for at most 500 ms).
 */
export function qosConnection(url: string, log: Logger): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: 500,
    retryStrategy: (times) => Math.min(times * 50, 1000),
    connectionName: 'parley-qos',
  });
  let last = '';
  redis.on('error', (err: Error) => {
    // ioredis repeats the same error on every reconnection attempt: say it once per outage.
    log[last === err.message ? 'debug' : 'warn']({ err: err.message }, 'redis QoS connection error');
    last = err.message;
  });
  redis.on('ready', () => {
    last = '';
  });
  return redis;
}
