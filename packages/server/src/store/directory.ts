/** Where a PostgreSQL shard lives. */
export interface ShardInfo {
  /** shard number, stable for the life of the cluster */
  id: number;
  /** libpq-style connection URL */
  url: string;
  /** connections this instance may open to the shard: the entry's, else the instance's default */
  poolSize: number;
}

/**
 * Resolves a room to its shard. Contract: once a room has been resolved to a shard anywhere in
 * the cluster, every later resolution (on any instance, after restarts, after shards are added)
 * returns the same shard, so a room's history never splits. `shards()` lists every known shard
 * (for queries that must visit all of them). `resolve` may be called on the hot path: it answers
 * from a local cache after the first call for a room.
 */
export interface ShardDirectory {
  start(): Promise<void>;
  close(): Promise<void>;
  resolve(room: string): Promise<ShardInfo>;
  shards(): ShardInfo[];
}
