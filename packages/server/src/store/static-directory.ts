import type { ShardDirectory, ShardInfo } from './directory.js';

const utf8 = new TextEncoder();

/** 32-bit FNV-1a over the UTF-8 bytes of `s`; stable across processes, versions and languages. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Picks a shard for a room among `candidates` (any order) by a stable hash. */
export function pickShard<T extends { id: number }>(room: string, candidates: readonly T[]): T {
  if (candidates.length === 0) throw new Error(`no shard available for room ${room}`);
  const sorted = [...candidates].sort((a, b) => a.id - b.id);
  return sorted[fnv1a32(room) % sorted.length]!;
}

/**
 * A fixed shard list: a room goes to `shards[fnv1a(room) % count]` (shards sorted by id).
 * The mapping only holds while the list is unchanged, so use it for tests and single-shard
 * setups; a cluster that adds shards needs the etcd directory, which pins rooms.
 */
export class StaticShardDirectory implements ShardDirectory {
  private readonly list: readonly ShardInfo[];

  constructor(shards: readonly ShardInfo[]) {
    if (shards.length === 0) throw new Error('StaticShardDirectory needs at least one shard');
    const ids = new Set(shards.map((s) => s.id));
    if (ids.size !== shards.length) throw new Error('StaticShardDirectory: duplicate shard ids');
    this.list = [...shards].sort((a, b) => a.id - b.id);
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {}

  resolve(room: string): Promise<ShardInfo> {
    return Promise.resolve(this.list[fnv1a32(room) % this.list.length]!);
  }

  shards(): ShardInfo[] {
    return [...this.list];
  }
}
