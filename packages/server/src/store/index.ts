export type {
  AppendResult,
  MessageStore,
  NewMessage,
  RoomCount,
  Selector,
  StoredMessage,
  TargetActivity,
} from './store.js';
export type { ShardDirectory, ShardInfo } from './directory.js';
export { migrate, migrations } from './migrations.js';
export type { Migration } from './migrations.js';
export { PgShard } from './pg-shard.js';
export type { BatchListener, PgShardOptions, StoreEvents, StoreLogger } from './pg-shard.js';
export { StoreError, StoreTimeoutError, StoreUnavailableError } from './errors.js';
export { ShardedStore } from './sharded-store.js';
export type { ConnectionCount, ShardedStoreOptions } from './sharded-store.js';
export { StaticShardDirectory, fnv1a32, pickShard } from './static-directory.js';
export { EtcdShardDirectory, ShardEntrySchema } from './etcd-directory.js';
export type { EtcdShardDirectoryOptions, ShardEntry } from './etcd-directory.js';
export { MemoryStore } from './memory-store.js';
export type { AppendFault, MemoryStoreOptions } from './memory-store.js';
