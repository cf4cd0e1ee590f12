import type { QosCounter } from '@parley/contracts';
import type { MessageOutcomes } from '../core/admission.js';
import { COUNTER_INDEX, type QosCounterStore } from './counters.js';
import type { QosDirectory, ShardSeries } from './directory.js';

/**
 * Counts what became of each message: in the cluster-wide counters (per room and per shard) and in
 * this instance's per-shard Prometheus series. Per message: the room's cached `RoomQos` (one map
 * look-up; it holds the shard and that shard's label children) and the counter store's `add`.
 */
export class QosOutcomes implements MessageOutcomes {
  constructor(
    private readonly directory: QosDirectory,
    private readonly counters: QosCounterStore,
    /** the label children of a shard (cached by the caller: called once per room and shard) */
    private readonly seriesOf: (shard: number | null) => ShardSeries,
  ) {}

  count(room: string, outcome: QosCounter): void {
    const q = this.directory.room(room);
    const series = q.series ?? (q.series = this.seriesOf(q.shard));
    series.counters[COUNTER_INDEX[outcome]]?.inc();
    this.counters.add(room, q.shard, outcome);
  }
}
