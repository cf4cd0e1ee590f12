import * as hdr from 'hdr-histogram-js';
import type { Percentiles, TimelineEntry } from './result.js';

/** Latencies in milliseconds, kept as an HDR histogram of microseconds (3 significant digits, up to 1 h). */
export class LatencyHistogram {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });

  record(ms: number): void {
    const us = ms * 1000;
    this.h.recordValue(us < 1 ? 1 : us > 3_600_000_000 ? 3_600_000_000 : Math.round(us));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Percentile in ms; 0 when empty (the result file holds no NaN). */
  at(p: number): number {
    return this.h.totalCount === 0 ? 0 : round3(this.h.getValueAtPercentile(p) / 1000);
  }

  percentiles(): Percentiles {
    const h = this.h;
    if (h.totalCount === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      count: h.totalCount,
      mean: round3(h.mean / 1000),
      p50: this.at(50),
      p90: this.at(90),
      p99: this.at(99),
      p999: this.at(99.9),
      max: round3(h.maxValue / 1000),
    };
  }

  reset(): void {
    this.h.reset();
  }
}

export const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/**
 * Per-second counts and latency percentiles, by the time each event was seen. `roll(now)` closes
 * every second before `now`, so a silent second still gets its (empty) entry.
 */
export class Timeline {
  readonly entries: TimelineEntry[] = [];
  private sec = 0;
  private sent = 0;
  private acked = 0;
  private refused = 0;
  private errors = 0;
  private deliveries = 0;
  private readonly ack = new LatencyHistogram();
  private readonly deliver = new LatencyHistogram();

  /** t0: performance.now() at the start of the send phase */
  constructor(private readonly t0: number) {}

  roll(now: number): void {
    const s = Math.floor((now - this.t0) / 1000);
    while (this.sec < s) this.close();
  }

  addSent(now: number, n = 1): void {
    this.roll(now);
    this.sent += n;
  }

  addAck(now: number, latencyMs: number): void {
    this.roll(now);
    this.acked++;
    this.ack.record(latencyMs);
  }

  addRefused(now: number): void {
    this.roll(now);
    this.refused++;
  }

  addErrors(now: number, n: number): void {
    this.roll(now);
    this.errors += n;
  }

  addDelivery(now: number, latencyMs: number): void {
    this.roll(now);
    this.deliveries++;
    this.deliver.record(latencyMs);
  }

  /** Closes the current second and any before `now`, then the partial last one if it saw anything. */
  finish(now: number): TimelineEntry[] {
    this.roll(now);
    if (this.sent + this.acked + this.refused + this.errors + this.deliveries > 0) this.close();
    return this.entries;
  }

  /** The last complete second, for the progress line. */
  last(): TimelineEntry | undefined {
    return this.entries[this.entries.length - 1];
  }

  private close(): void {
    this.entries.push({
      t: this.sec,
      sent: this.sent,
      acked: this.acked,
      refused: this.refused,
      errors: this.errors,
      deliveries: this.deliveries,
      ack: { p50: this.ack.at(50), p99: this.ack.at(99) },
      deliver: { p50: this.deliver.at(50), p99: this.deliver.at(99) },
    });
    this.sec++;
    this.sent = this.acked = this.refused = this.errors = this.deliveries = 0;
    this.ack.reset();
    this.deliver.reset();
  }
}

/** Growable typed arrays indexed by message number. */
export class GrowableF64 {
  a: Float64Array;
  constructor(initial = 1 << 14) {
    this.a = new Float64Array(initial);
  }
  ensure(n: number): void {
    if (n <= this.a.length) return;
    let len = this.a.length;
    while (len < n) len *= 2;
    const b = new Float64Array(len);
    b.set(this.a);
    this.a = b;
  }
}

export class GrowableI32 {
  a: Int32Array;
  constructor(initial = 1 << 14) {
    this.a = new Int32Array(initial);
  }
  ensure(n: number): void {
    if (n <= this.a.length) return;
    let len = this.a.length;
    while (len < n) len *= 2;
    const b = new Int32Array(len);
    b.set(this.a);
    this.a = b;
  }
}

export class GrowableU8 {
  a: Uint8Array;
  constructor(initial = 1 << 14) {
    this.a = new Uint8Array(initial);
  }
  ensure(n: number): void {
    if (n <= this.a.length) return;
    let len = this.a.length;
    while (len < n) len *= 2;
    const b = new Uint8Array(len);
    b.set(this.a);
    this.a = b;
  }
}

/** Population count of one byte. */
export const POPCOUNT = (() => {
  const t = new Uint8Array(256);
  for (let i = 1; i < 256; i++) t[i] = (t[i >> 1] as number) + (i & 1);
  return t;
})();
