import { z } from 'zod';
import type { QosCounts } from '@parley/contracts';

/** Response pieces shared by several resources. */

/** The cluster-wide counters of a room or a shard (`QOS_COUNTERS` of @parley/contracts). */
export const QosCountsSchema = z.object({
  /** messages stored */
  accepted: z.number().int(),
  /** refused by the QoS limit (FAIL ... RATE_LIMITED) */
  refusedQos: z.number().int(),
  /** refused because the shard's commit backlog was full */
  refusedBacklog: z.number().int(),
  /** failed because the shard was unavailable or the write failed */
  failed: z.number().int(),
}) satisfies z.ZodType<QosCounts>;

/** A stored value that does not validate: listed apart, with the reason. */
export const InvalidEntrySchema = z.object({ key: z.string(), error: z.string() });
export type InvalidEntry = z.infer<typeof InvalidEntrySchema>;
