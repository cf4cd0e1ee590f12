import type { LoadResult, Percentiles, QosSection } from './report-schema.js';

/*
 * Deterministic, made-up load results (version 1) for the report's tests and for trying
 * `parley report` without a cluster. The books balance: sent = acked + refused + errors, and
 * deliveries = acked × (members − 1) less what is lost.
 */

export interface SampleOptions {
  name?: string;
  seconds?: number;
  /** Rooms in the per-room figures; 0 leaves them out (the traffic is there all the same). */
  rooms?: number;
  membersPerRoom?: number;
  /** Messages sent per second across all rooms. */
  rate?: number;
  /** Share of sent messages refused (0..1). */
  refuse?: number;
  /** Share of sent messages that fail with an error (0..1). */
  errorShare?: number;
  /** Median ack latency in ms; the rest of the shape follows from it. */
  latencyMs?: number;
  lost?: number;
  duplicated?: number;
  seed?: number;
  transport?: 'tcp' | 'ws';
  kind?: 'parley' | 'irc' | 'socketio' | 'ws';
  /** a made-up QoS section over this many rooms (bronze 2/s, silver 5/s, gold 10/s); 0 or absent: none */
  qosRooms?: number;
}

/** Rooms offered twice their limit for `seconds`: accepted ≈ burst + rate × window, a little noise. */
export function sampleQos(roomCount: number, seconds: number, rand: () => number): QosSection {
  const classes = [
    { name: 'bronze', rate: 2, burst: 4 },
    { name: 'silver', rate: 5, burst: 10 },
    { name: 'gold', rate: 10, burst: 20 },
  ];
  const rooms = Array.from({ length: roomCount }, (_, i) => {
    const c = classes[i % classes.length]!;
    const window = seconds;
    const sent = Math.round(c.rate * 2 * window) + 1;
    const noise = (rand() - 0.5) * 0.06 * c.rate * window;
    const accepted = Math.min(sent, Math.round(c.burst + c.rate * window + noise));
    const acceptedRate = (accepted - c.burst) / window;
    return {
      room: `#qos-${i}`, class: c.name, shard: i % 7, rate: c.rate, burst: c.burst, sent, offeredRate: c.rate * 2, windowSeconds: window,
      accepted, refusedQos: sent - accepted, refusedBacklog: 0, failed: 0, acked: accepted, refused: sent - accepted,
      acceptedRate: r3(acceptedRate), errorPct: r3(((acceptedRate - c.rate) / c.rate) * 100),
    };
  });
  return {
    method: 'made up: accepted = burst + rate × window, with noise.',
    tolerancePct: 5,
    rateMultiple: 2,
    classes: classes.map((c) => ({ ...c, rooms: rooms.filter((r) => r.class === c.name).length, shards: 3 })),
    rooms,
    run: { shards: 9, instances: 2, phases: [{ name: 'provision', seconds: 12.5 }, { name: 'load', seconds }], memory: [{ label: 'shards (PSS)', bytes: 36 * 1024 ** 2 }], disk: [{ label: 'shards', bytes: 250 * 1024 ** 2 }], notes: ['a sample'] },
  };
}

/** xorshift32: the same seed gives the same run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const r3 = (v: number): number => Math.round(v * 1000) / 1000;

function percentiles(count: number, p50: number): Percentiles {
  if (!count) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return { count, mean: r3(p50 * 1.3), p50: r3(p50), p90: r3(p50 * 2.4), p99: r3(p50 * 6), p999: r3(p50 * 14), max: r3(p50 * 31) };
}

export function sampleResult(o: SampleOptions = {}): LoadResult {
  const seconds = o.seconds ?? 30;
  const roomCount = o.rooms ?? 10;
  const members = o.membersPerRoom ?? 5;
  const rate = o.rate ?? 1000;
  const refuse = o.refuse ?? 0;
  const errorShare = o.errorShare ?? 0;
  const lat = o.latencyMs ?? 2;
  const rand = rng(o.seed ?? 1);

  const timeline: LoadResult['timeline'] = [];
  const rooms = Array.from({ length: roomCount }, (_, i) => ({ room: `#room-${i + 1}`, sent: 0, acked: 0, refused: 0, deliveries: 0 }));
  const totals = { sent: 0, acked: 0, refused: 0, errors: 0 };
  // Entry t counts the second [t, t+1) of the send phase, as `parley load` writes it.
  for (let t = 0; t < seconds; t++) {
    // A ramp over the first fifth of the run, then noise around the rate, and a slow spell.
    const ramp = Math.min(1, (t + 1) / Math.max(1, seconds / 5));
    const dip = t > seconds * 0.6 && t <= seconds * 0.7 ? 0.55 : 1;
    const sent = Math.round(rate * ramp * dip * (0.9 + 0.2 * rand()));
    const refused = Math.round(sent * refuse * (0.5 + rand()));
    const errors = Math.min(sent - refused, Math.round(sent * errorShare));
    const acked = sent - refused - errors;
    const slow = dip < 1 ? 4 : 1;
    timeline.push({
      t, sent, acked, refused, errors,
      deliveries: acked * (members - 1),
      ack: { p50: r3(lat * slow * (0.8 + 0.4 * rand())), p99: r3(lat * slow * (5 + 3 * rand())) },
      deliver: { p50: r3(lat * 1.5 * slow * (0.8 + 0.4 * rand())), p99: r3(lat * 1.5 * slow * (6 + 4 * rand())) },
    });
    totals.sent += sent;
    totals.acked += acked;
    totals.refused += refused;
    totals.errors += errors;
    // Spread the second over the rooms, busier rooms first (a skew like real chat).
    let leftSent = sent;
    let leftRefused = refused;
    let leftAcked = acked;
    rooms.forEach((room, i) => {
      const last = i === rooms.length - 1;
      const share = last ? 1 : Math.min(1, 2 / (rooms.length - i + 1) * (0.5 + rand()));
      const s = last ? leftSent : Math.round(leftSent * share);
      const ref = last ? leftRefused : Math.min(s, Math.round(leftRefused * share));
      const ack = last ? leftAcked : Math.min(s - ref, Math.round(leftAcked * share));
      room.sent += s;
      room.refused += ref;
      room.acked += ack;
      room.deliveries += ack * (members - 1);
      leftSent -= s;
      leftRefused -= ref;
      leftAcked -= ack;
    });
  }
  const expectedDeliveries = totals.acked * (members - 1);
  const lost = Math.min(o.lost ?? 0, expectedDeliveries);
  const users = roomCount * members;
  return {
    version: 1,
    name: o.name ?? 'sample',
    startedAt: new Date(Date.UTC(2025, 0, 2, 3, 4, 5) + (o.seed ?? 1) * 60_000).toISOString(),
    durationSeconds: seconds,
    target: { kind: o.kind ?? 'parley', transport: o.transport ?? 'tcp', addresses: ['127.0.0.1:6667'] },
    options: { users, rooms: roomCount, membersPerRoom: members, rate, payloadBytes: 64, transport: o.transport ?? 'tcp' },
    totals: {
      ...totals,
      deliveries: expectedDeliveries - lost + (o.duplicated ?? 0),
      expectedDeliveries,
      lost,
      duplicated: o.duplicated ?? 0,
      connectionsOpened: users,
      connectionsFailed: 0,
      connectionsDropped: 0,
    },
    refusedByCode: totals.refused ? { RATE_LIMITED: Math.ceil(totals.refused * 0.8), FLOOD: totals.refused - Math.ceil(totals.refused * 0.8) } : {},
    latency: { ack: percentiles(totals.acked, lat), deliver: percentiles(expectedDeliveries, lat * 1.5) },
    timeline,
    rooms,
    machine: { cores: 2, node: 'v20.20.2', hostname: 'bench-1' },
    ...(o.qosRooms ? { qos: sampleQos(o.qosRooms, seconds, rand) } : {}),
  };
}
