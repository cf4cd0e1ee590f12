import { z } from 'zod';
import { QosClassNameSchema } from './qos.js';

/**
 * `/<prefix>/rooms/<url-encoded room>`: the room's shard pin, written once by the first instance
 * that resolves the room (compare-and-swap) and never rewritten. The entry may carry other
 * per-room fields beside the pin; they are allowed and kept when the pin is written.
 */
export const RoomPinSchema = z.looseObject({
  /** the shard holding the room's history; absent until the room is first resolved */
  shard: z.number().int().nonnegative().optional(),
  /** the room's own QoS class (overrides its shard's); see qos.ts */
  qos: QosClassNameSchema.optional(),
});

export type RoomPin = z.infer<typeof RoomPinSchema>;

/** The entry with its pin set, every other field kept. */
export const withPin = (entry: RoomPin, shard: number): RoomPin => ({ ...entry, shard });
