/**
 * Store micro-benchmark: appends/s and append latency through ShardedStore's group committer,
 * against a real PostgreSQL with fsync on.
 *
 *   node --import tsx bench/store-bench.ts [seconds per scenario, default 3]
 *
 * Each scenario keeps a fixed number of appends in flight (closed loop: a worker sends its next
 * append when the previous one has committed) for the given time, after a short warm-up.
 */
import { performance } from 'node:perf_hooks';
import { startServices, uniqueName } from '../test/harness/index.js';
import { ShardedStore, StaticShardDirectory } from '../packages/server/src/store/index.js';

interface Scenario {
  name: string;
  rooms: number;
  inFlight: number;
}

const scenarios: Scenario[] = [
  { name: '1 room', rooms: 1, inFlight: 1 },
  { name: '1 room', rooms: 1, inFlight: 64 },
  { name: '1 room', rooms: 1, inFlight: 1024 },
  { name: '100 rooms', rooms: 100, inFlight: 100 },
  { name: '100 rooms', rooms: 100, inFlight: 1024 },
];

const seconds = Number(process.argv[2] ?? 3);
const WARMUP_MS = 500;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Result {
  appends: number;
  perSecond: number;
  p50: number;
  p99: number;
  batches: number;
  meanBatch: number;
}

async function run(s: Scenario, prefix: string, shardUrl: string): Promise<Result> {
  let batches = 0;
  let batchRows = 0;
  let measuring = false;
  const store = new ShardedStore({
    directory: new StaticShardDirectory([{ id: 0, url: shardUrl, poolSize: 4 }]),
    onBatch: (rows) => {
      if (!measuring) return;
      batches++;
      batchRows += rows;
    },
  });
  await store.start();
  const rooms = Array.from({ length: s.rooms }, (_, i) => `#${prefix}_${i}`);
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  const text = 'x'.repeat(80);
  let stopAt = performance.now() + WARMUP_MS;
  let phase: 'warmup' | 'measure' = 'warmup';

  async function worker(w: number): Promise<void> {
    const room = rooms[w % rooms.length]!;
    for (;;) {
      const t0 = performance.now();
      if (t0 >= stopAt) return;
      await store.append({ room, source: 'bench!b@localhost', command: 'PRIVMSG', target: room, text, tags: null });
      if (phase === 'measure') {
        if (n === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[n++] = performance.now() - t0;
      }
    }
  }

  const workers = Array.from({ length: s.inFlight }, (_, w) => w);
  await Promise.all(workers.map(worker));
  phase = 'measure';
  measuring = true;
  const start = performance.now();
  stopAt = start + seconds * 1000;
  await Promise.all(workers.map(worker));
  const elapsed = (performance.now() - start) / 1000;
  measuring = false;
  await store.close();

  const sorted = latencies.slice(0, n).sort();
  return {
    appends: n,
    perSecond: n / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    batches,
    meanBatch: batches > 0 ? batchRows / batches : 0,
  };
}

function pad(s: string, w: number, right = true): string {
  return right ? s.padStart(w) : s.padEnd(w);
}

async function main(): Promise<void> {
  const svc = await startServices({ postgres: true, etcd: false, redis: false, pgFsync: true });
  try {
    const url = await svc.postgres!.createDatabase(uniqueName('bench'));
    const header = [
      pad('scenario', 10, false),
      pad('in flight', 9),
      pad('appends', 9),
      pad('appends/s', 10),
      pad('p50 ms', 8),
      pad('p99 ms', 8),
      pad('batches', 8),
      pad('rows/batch', 10),
    ].join(' | ');
    const lines = [header, header.replace(/[^|]/g, '-')];
    for (const [i, s] of scenarios.entries()) {
      const r = await run(s, `b${i}`, url);
      lines.push(
        [
          pad(s.name, 10, false),
          pad(String(s.inFlight), 9),
          pad(String(r.appends), 9),
          pad(Math.round(r.perSecond).toLocaleString('en-US'), 10),
          pad(r.p50.toFixed(2), 8),
          pad(r.p99.toFixed(2), 8),
          pad(String(r.batches), 8),
          pad(r.meanBatch.toFixed(1), 10),
        ].join(' | '),
      );
      console.error(lines[lines.length - 1]);
    }
    console.log(`\nShardedStore append, PostgreSQL fsync on, one shard, ${seconds}s per scenario\n`);
    console.log(lines.join('\n'));
  } finally {
    await svc.stop();
  }
}

await main();
