export { freePort, freePorts, looksLikeAddrInUse } from './ports.js';
export {
  ManagedProcess,
  spawnManaged,
  runningProcesses,
  killAllSync,
  removeOnExit,
  sleep,
  type ManagedSpawnOptions,
  type ExitInfo,
} from './proc.js';
export { startEtcd, type EtcdOptions, type EtcdHandle } from './etcd.js';
export { startRedis, redisPing, type RedisOptions, type RedisHandle } from './redis.js';
export {
  startPostgres,
  initPostgresTemplate,
  pgBinaries,
  pgRunAs,
  chownForPostgres,
  isPgDataDir,
  DEFAULT_PG_SETTINGS,
  type PgOptions,
  type PgHandle,
  type PgBinaries,
  type RunAs,
  type InitdbOptions,
} from './postgres.js';
