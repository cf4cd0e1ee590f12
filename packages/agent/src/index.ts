export { freePort, freePorts, looksLikeAddrInUse, startOnFreePorts, type StartOnFreePortsOptions } from './ports.js';
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
export { startRedis, redisPing, redisCommand, labAclUsers, aclPasswordHash, type RedisOptions, type RedisHandle, type RedisAuth } from './redis.js';
export { ensureSecrets, readSecret, readSecretFile, secretFile, secretsDir, SecretError, SECRET_NAMES, LAB_USERS, type SecretName } from './secrets.js';
export { ensureEtcdAuth, EtcdAuthError, type EtcdAuthSetup } from './etcd-auth.js';
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
export {
  HostPlanSchema,
  HostFileSchema,
  InstancePlanSchema,
  ShardPlanSchema,
  FrontDoorPlanSchema,
  RedisPlanSchema,
  RESERVED_UNIT_NAMES,
  emptyPlan,
  parsePlan,
  planUnitNames,
  etcdEndpoints,
  defaultHostName,
  type HostPlan,
  type HostFile,
  type InstancePlan,
  type ShardPlan,
  type FrontDoorPlan,
} from './plan.js';
export {
  statePaths,
  stateDirKind,
  initStateDir,
  lockDir,
  runDirFor,
  writeJsonAtomic,
  readJsonFile,
  readStatus,
  liveAgent,
  procStartTicks,
  procCmdline,
  pidAlive,
  sameProcess,
  StateDirError,
  MARKER_FILE,
  type StatePaths,
  type StateDirKind,
  type AgentStatus,
  type ProcessStatus,
  type FrontDoorMember,
} from './statedir.js';
export { Supervisor, errorLine, type UnitSpec, type UnitKind, type UnitState, type UnitSnapshot, type Running } from './supervisor.js';
export { renderHaproxyConfig, haproxyBinary, haproxyCommand, haproxyStats, haproxyInfo, startHaproxy, slotName, type StatRow, type SlotConfig } from './haproxy.js';
export { FrontDoorController } from './frontdoor.js';
export { Agent, AgentError, type AgentOptions } from './agent.js';
export {
  SHARD_PROFILE,
  SHARD_ROLE,
  TEMPLATE_MARKER,
  renderShardConf,
  renderShardHba,
  superuserClient,
  initShardTemplate,
  createShardDataDir,
  startShardProcess,
  Limiter,
  type ShardConfOptions,
} from './shards.js';
export { certificatePaths, ensureCertificates, makeCertificates, OpensslError, type CertificateOptions, type LabCertificates } from './tls-certs.js';
