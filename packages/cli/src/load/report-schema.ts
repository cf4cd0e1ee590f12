import fs from 'node:fs';
import { z } from 'zod';
import { describeZodError } from '@parley/contracts';

/*
 * The result file `parley load` writes and `parley report` reads (version 1). Counts are
 * non-negative integers, latencies non-negative milliseconds. Keys this version does not know are
 * ignored rather than refused, so a newer `parley load` that adds a field stays readable; a change
 * that breaks readers bumps `version`.
 */

const count = z.number().int('expected a whole number').nonnegative('expected a count (0 or more)');
const ms = z.number().nonnegative('expected milliseconds (0 or more)');

export const PercentilesSchema = z.object({
  count, mean: ms, p50: ms, p90: ms, p99: ms, p999: ms, max: ms,
});

const TimelineEntrySchema = z.object({
  /** Seconds since the run started; one entry per second. */
  t: z.number().nonnegative(),
  sent: count,
  acked: count,
  refused: count,
  errors: count,
  deliveries: count,
  ack: z.object({ p50: ms, p99: ms }),
  deliver: z.object({ p50: ms, p99: ms }),
});

const rate = z.number().nonnegative('expected messages per second (0 or more)');
const bytes = z.number().nonnegative('expected bytes (0 or more)');

/**
 * The optional QoS section (`parley demo qos` writes it): every room's limit against what it was
 * offered and what it got, measured by the load tool and by the cluster's own counters, plus what
 * the whole run cost. Older results have none; the report then has no QoS section.
 */
export const QosSectionSchema = z.object({
  /** how `acceptedRate` is measured, in a sentence (shown on the page) */
  method: z.string(),
  /** a room is "within" when |errorPct| ≤ this */
  tolerancePct: z.number().positive(),
  /** offered rate ÷ the room's limit */
  rateMultiple: z.number().positive(),
  classes: z.array(z.object({ name: z.string(), rate, burst: count, rooms: count, shards: count })),
  rooms: z.array(z.object({
    room: z.string(),
    class: z.string(),
    shard: z.number().int().nonnegative().nullable(),
    /** the room's limit: sustained messages/s and bucket size */
    rate,
    burst: count,
    /** messages sent to the room, and at what rate */
    sent: count,
    offeredRate: rate,
    /** from the room's first to its last send, seconds */
    windowSeconds: z.number().nonnegative(),
    /** the steady window (after the burst) the accepted rate is measured over, and its counts */
    steadySeconds: z.number().nonnegative().nullable().optional(),
    steadySent: count.optional(),
    steadyAccepted: count.optional(),
    /** the whole window's estimate, (accepted − burst + ½) ÷ windowSeconds, for comparison */
    acceptedRateWhole: rate.nullable().optional(),
    /** the cluster's counters for the room (GET /api/rooms) */
    accepted: count,
    refusedQos: count,
    refusedBacklog: count,
    failed: count,
    /** what the load tool saw: acknowledged (echoed) and refused */
    acked: count,
    refused: count,
    /** messages/s accepted (see `method`); null when the window is empty */
    acceptedRate: rate.nullable(),
    /** (acceptedRate − rate) ÷ rate, in percent */
    errorPct: z.number().nullable(),
  })),
  /** what the whole run took and used */
  run: z.object({
    shards: count,
    instances: count,
    phases: z.array(z.object({ name: z.string(), seconds: z.number().nonnegative() })),
    memory: z.array(z.object({ label: z.string(), bytes })),
    disk: z.array(z.object({ label: z.string(), bytes })),
    notes: z.array(z.string()),
  }).optional(),
});

export const LoadResultSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  startedAt: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not a date'),
  durationSeconds: z.number().nonnegative(),
  target: z.object({
    kind: z.enum(['parley', 'irc', 'socketio', 'ws']),
    transport: z.enum(['tcp', 'ws']),
    addresses: z.array(z.string()),
  }),
  options: z.record(z.string(), z.unknown()),
  totals: z.object({
    sent: count,
    acked: count,
    refused: count,
    errors: count,
    deliveries: count,
    expectedDeliveries: count,
    lost: count,
    duplicated: count,
    connectionsOpened: count,
    connectionsFailed: count,
    connectionsDropped: count,
  }),
  refusedByCode: z.record(z.string(), count),
  latency: z.object({ ack: PercentilesSchema, deliver: PercentilesSchema }),
  timeline: z.array(TimelineEntrySchema),
  rooms: z.array(z.object({ room: z.string(), sent: count, acked: count, refused: count, deliveries: count })),
  machine: z.object({ cores: count, node: z.string(), hostname: z.string() }),
  qos: QosSectionSchema.optional(),
});

export type Percentiles = z.infer<typeof PercentilesSchema>;
export type LoadResult = z.infer<typeof LoadResultSchema>;
export type TimelineEntry = LoadResult['timeline'][number];
export type RoomResult = LoadResult['rooms'][number];
export type QosSection = z.infer<typeof QosSectionSchema>;
export type QosRoom = QosSection['rooms'][number];

/** A result file that cannot be used; `message` is one line that starts with the file's name. */
export class ResultFileError extends Error {
  override name = 'ResultFileError';
}

/** `totals.sent: expected a non-negative integer, got -1; ...`: at most three issues, on one line. */
export function describeIssues(err: z.ZodError): string {
  return describeZodError(err);
}

const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim();

/** Validates parsed JSON as a result; `file` only names it in the error. */
export function parseResult(file: string, raw: unknown): LoadResult {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ResultFileError(`${file}: not a parley load result (expected a JSON object)`);
  }
  // The version first: a file from another version fails on it alone, not on a dozen fields.
  const version = (raw as { version?: unknown }).version;
  if (version === undefined) throw new ResultFileError(`${file}: not a parley load result (no "version")`);
  if (version !== 1) {
    throw new ResultFileError(`${file}: unsupported result version ${oneLine(JSON.stringify(version))} (this parley reads version 1)`);
  }
  const r = LoadResultSchema.safeParse(raw);
  if (!r.success) throw new ResultFileError(`${file}: ${describeIssues(r.error)}`);
  return r.data;
}

/** Reads and validates one result file. Throws ResultFileError, with a one-line message. */
export function readResultFile(file: string): LoadResult {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.code === 'EACCES' ? 'permission denied' : oneLine(err.message);
    throw new ResultFileError(`${file}: cannot read: ${why}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ResultFileError(`${file}: not JSON: ${oneLine((e as Error).message)}`);
  }
  return parseResult(file, raw);
}
