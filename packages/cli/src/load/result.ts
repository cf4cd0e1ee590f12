import type { QosSection } from './report-schema.js';

/*
 * The result file of `parley load` (version 1). `parley report` reads it (report-schema.ts holds
 * the reader's schema); a change that breaks readers bumps `version`. Counts are integers,
 * latencies milliseconds.
 */

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export type TargetKind = 'parley' | 'irc' | 'socketio' | 'ws';

export interface Totals {
  /** PRIVMSGs (or baseline messages) written to a socket */
  sent: number;
  /** acknowledged: the echo (echo-message) came back, i.e. the message is durable */
  acked: number;
  /** answered with a FAIL (by code in `refusedByCode`) */
  refused: number;
  /** neither: an error numeric, the connection closed first, or no answer before the drain ended */
  errors: number;
  /** every receipt by a room member other than the sender, duplicates included */
  deliveries: number;
  /** acked × (joined members − 1), summed over the rooms */
  expectedDeliveries: number;
  /** (member, acked message) pairs never received */
  lost: number;
  /** receipts of a message the member already had */
  duplicated: number;
  connectionsOpened: number;
  connectionsFailed: number;
  /** closed during the run by the server or the network (not by the load tool) */
  connectionsDropped: number;
}

export interface TimelineEntry {
  /** seconds since the start of the send phase (this entry counts [t, t+1)) */
  t: number;
  sent: number;
  acked: number;
  refused: number;
  errors: number;
  deliveries: number;
  ack: { p50: number; p99: number };
  deliver: { p50: number; p99: number };
}

export interface RoomResult {
  room: string;
  sent: number;
  acked: number;
  refused: number;
  deliveries: number;
  /** ms from the start of the send phase to the room's first and last send (absent when nothing was sent to it) */
  firstSentMs?: number;
  lastSentMs?: number;
  /** the rate offered to this room (messages/s), when the run had per-room rates */
  offeredRate?: number;
  /**
   * with per-room steady windows: the messages sent to the room from `fromMs` (since the start of
   * the send phase) on, and how many of those were acknowledged
   */
  steady?: { fromMs: number; sent: number; acked: number };
}

/**
 * What the load generator itself saw: not part of the version-1 contract that `parley report`
 * reads (its schema ignores unknown keys), but what tells whether a figure is the server's or
 * the generator's.
 */
export interface GeneratorFacts {
  /** CPU of the load process during send + drain, percent of one core */
  cpuPercent: number;
  /** event-loop delay of the load process (ms) */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** how late the scheduler's ticks ran behind the intended send times (ms) */
  scheduleLagMs: { p50: number; p99: number; max: number };
  /** sends the schedule asked for that were not made: the sender's window was full or its connection gone */
  skipped: number;
  /** offered rate (messages per second) the schedule asked for; null for --rate max or 0 */
  offeredRate: number | null;
  connectSeconds: number;
  joinSeconds: number;
  drainSeconds: number;
  /** from the start of the send phase to the last answer or delivery (or the end of sending, if later) */
  completionSeconds: number;
  /** false when the drain timed out with messages unanswered or deliveries missing */
  drained: boolean;
  interrupted: boolean;
  errorsByCode: Record<string, number>;
  connectErrorsByCode: Record<string, number>;
  dropReasons: Record<string, number>;
  /** receipts whose msgid differs from the one the sender's echo carried */
  msgidMismatches: number;
  /** receipts whose room sequence number is lower than the member's previous one in that room */
  outOfOrder: number;
  /** receipts of messages that were never acknowledged (refused, failed or unanswered) */
  deliveredNotAcked: number;
  /** acknowledgements that arrived after the message had been given up (counted in errors) */
  lateAcks: number;
  /** answers and receipts that match no message of this run (another run in the same rooms, a second answer) */
  unmatched: number;
  /** why the send phase ended early, when it did (e.g. the server disconnected users for flooding) */
  stoppedBecause?: string;
}

export interface LoadResult {
  version: 1;
  name: string;
  /** ISO time the send phase started */
  startedAt: string;
  /** the measured send phase, seconds */
  durationSeconds: number;
  target: { kind: TargetKind; transport: 'tcp' | 'ws'; addresses: string[] };
  /** the validated options */
  options: Record<string, unknown>;
  totals: Totals;
  refusedByCode: Record<string, number>;
  latency: { ack: Percentiles; deliver: Percentiles };
  timeline: TimelineEntry[];
  rooms: RoomResult[];
  machine: { cores: number; node: string; hostname: string };
  generator: GeneratorFacts;
  /** per-room QoS figures (`parley demo qos`); absent from plain `parley load` results */
  qos?: QosSection;
}
