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
});

export type Percentiles = z.infer<typeof PercentilesSchema>;
export type LoadResult = z.infer<typeof LoadResultSchema>;
export type TimelineEntry = LoadResult['timeline'][number];
export type RoomResult = LoadResult['rooms'][number];

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
