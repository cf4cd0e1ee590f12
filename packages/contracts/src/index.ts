/**
 * The contracts of a Parley cluster: where things live in etcd and what the values there look
 * like, shared by the server, the agent and the CLI so that each of them reads and writes them the
 * same way. Also the two small helpers every one of them needs: a zod error as one line, and a
 * promise with a time limit.
 */
export { etcdKeys, type EtcdKeys, type KeyRef } from './keys.js';
export { describeZodError, parseJson, withTimeout, TimeoutError, type Parsed } from './util.js';
export { ClusterConfigSchema, PrefixSchema, defaultClusterConfig, parseClusterConfig, type ClusterConfig } from './config.js';
export { InstanceRecordSchema, parseInstanceRecord, readInstances, type InstanceRecord } from './instance.js';
export {
  ShardEntrySchema,
  ShardEntryError,
  mergeShardEntry,
  putShardEntry,
  registerShards,
  jsonObject,
  type ShardEntry,
  type ShardChange,
  type ShardWrite,
  type ShardLogger,
} from './shard.js';
export { RoomPinSchema, withPin, type RoomPin } from './room.js';
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
} from './plan.js';
export {
  QOS_CLASS_NAME,
  QOS_COUNTERS,
  QosClassNameSchema,
  QosClassSchema,
  PostgresSettingsSchema,
  DEFAULT_CLASS_NAME,
  resolveQosClass,
  zeroCounts,
  type QosClass,
  type QosCounter,
  type QosCounts,
  type PostgresSettings,
} from './qos.js';
