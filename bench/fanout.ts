/**
 * Fan-out benchmark: one sender at full speed to one room whose members are spread over two real
 * `parley server` instances (real etcd, Redis and PostgreSQL, fsync on by default).
 *
 *   node --import tsx bench/fanout.ts [--seconds 10] [--window 1000] [--members 10]
 *                                     [--transport tcp|ws] [--fsync on|off] [--warmup 2]
 *
 * Member 0 (on instance A) is the sender; the other members alternate between B and A. The sender
 * keeps `window` messages in flight: sent, not yet acknowledged by their echo (a channel message
 * is echoed only once it is durable in PostgreSQL). Each message carries its counter and its send
 * time, so every receiver measures send→deliver latency and checks that it got every acknowledged
 * message exactly once and in order. Reported: acknowledged msgs/s, deliveries/s, ack and delivery
 * latency percentiles, lost/duplicate/out-of-order counts, and the CPU used by the two servers,
 * PostgreSQL, Redis and this process during the measured window; also the servers' group-commit
 * figures from their /metrics. Results go to stdout and to bench/results/fanout-<time>.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import * as hdr from 'hdr-histogram-js';
import { parseMsgid, type IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { startServices, uniqueName, type Services } from '../test/harness/index.js';
import { scrapeMetrics } from './lib/compare.js';
import { spawnParley, type ParleyProcess } from '../test/harness/parley.js';
import { clockTicks, cores, cpuBetween as procCpuBetween, sampleCpu as sampleProcs, type CpuSample, type ProcGroup } from './lib/proc.js';

// ---- arguments -----------------------------------------------------------------------------

interface Options {
  seconds: number;
  window: number;
  members: number;
  transport: 'tcp' | 'ws';
  fsync: boolean;
  warmup: number;
}

const USAGE =
  'usage: node --import tsx bench/fanout.ts [--seconds 10] [--window 1000] [--members 10] [--transport tcp|ws] [--fsync on|off] [--warmup 2]';

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      seconds: { type: 'string', default: '10' },
      window: { type: 'string', default: '1000' },
      members: { type: 'string', default: '10' },
      transport: { type: 'string', default: 'tcp' },
      fsync: { type: 'string', default: 'on' },
      warmup: { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, text: string, min: number, max: number, integer: boolean): number => {
    const v = Number(text);
    if (text.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got '${text}'`);
    }
    return v;
  };
  const transport = values.transport;
  if (transport !== 'tcp' && transport !== 'ws') throw new Error(`--transport must be tcp or ws, got '${transport}'`);
  const fsync = values.fsync;
  if (fsync !== 'on' && fsync !== 'off') throw new Error(`--fsync must be on or off, got '${fsync}'`);
  return {
    seconds: num('seconds', values.seconds, 0.5, 3600, false),
    window: num('window', values.window, 1, 100_000, true),
    members: num('members', values.members, 2, 500, true),
    transport,
    fsync: fsync === 'on',
    warmup: num('warmup', values.warmup, 0, 600, false),
  };
}

let opts: Options;
try {
  opts = parseOptions(process.argv.slice(2));
} catch (err) {
  console.error(`fanout: ${(err as Error).message.split('\n')[0]}; ${USAGE}`);
  process.exit(1);
}

// ---- small helpers -------------------------------------------------------------------------

const CHANNEL = '#bench';
/** Total bytes of `PRIVMSG #bench :<text>` without CRLF. */
const LINE_BYTES = 100;
const TEXT_BYTES = LINE_BYTES - `PRIVMSG ${CHANNEL} :`.length;
const PADDING = 'x'.repeat(TEXT_BYTES);
const DRAIN_TIMEOUT_MS = 30_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A growable Int32Array indexed by message counter; 0 = nothing recorded, else seq + 1. */
class SeqTable {
  a = new Int32Array(1 << 16);
  get(i: number): number {
    return i < this.a.length ? (this.a[i] as number) : 0;
  }
  set(i: number, v: number): void {
    if (i >= this.a.length) {
      let n = this.a.length;
      while (n <= i) n *= 2;
      const grown = new Int32Array(n);
      grown.set(this.a);
      this.a = grown;
    }
    this.a[i] = v;
  }
}

function newHistogram(): hdr.Histogram {
  // microseconds; auto-resizing, 3 significant digits
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

const ms = (h: hdr.Histogram, p: number): number => (h.totalCount === 0 ? NaN : h.getValueAtPercentile(p) / 1000);

// ---- CPU sampling from /proc (bench/lib/proc.ts) ---------------------------------------------

const groupsOf = (a: ParleyProcess, b: ParleyProcess, services: Services): ProcGroup[] => [
  { name: 'a', pids: [a.pid] },
  { name: 'b', pids: [b.pid] },
  { name: 'pg', pids: services.postgres ? [services.postgres.pid] : [], tree: true },
  { name: 'redis', pids: services.redis ? [services.redis.pid] : [] },
];

interface FanoutCpuSample {
  groups: ProcGroup[];
  sample: CpuSample;
}

function sampleCpu(a: ParleyProcess, b: ParleyProcess, services: Services): FanoutCpuSample {
  const groups = groupsOf(a, b, services);
  return { groups, sample: sampleProcs(groups) };
}

/** CPU use between two samples, in percent of one core (the machine has `cores` * 100). */
function cpuBetween(s0: FanoutCpuSample, s1: FanoutCpuSample): Record<'serverA' | 'serverB' | 'servers' | 'postgres' | 'redis' | 'bench' | 'machine', number> {
  const c = procCpuBetween(s0.groups, s0.sample, s1.sample);
  const a = c.groups.a ?? NaN;
  const b = c.groups.b ?? NaN;
  return { serverA: a, serverB: b, servers: a + b, postgres: c.groups.pg ?? NaN, redis: c.groups.redis ?? NaN, bench: c.self, machine: c.machine };
}

// ---- server metrics ------------------------------------------------------------------------

type MetricMap = Map<string, number>;
const scrape = (p: ParleyProcess): Promise<MetricMap> => scrapeMetrics(p.wsPort);

const delta = (m0: MetricMap, m1: MetricMap, key: string): number => (m1.get(key) ?? 0) - (m0.get(key) ?? 0);

/** Approximate percentile from the bucket deltas of a Prometheus histogram (bucket upper bound). */
function bucketPercentile(m0: MetricMap, m1: MetricMap, name: string, p: number): number {
  const buckets: Array<{ le: number; n: number }> = [];
  for (const key of m1.keys()) {
    if (!key.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(key)?.[1];
    if (le === undefined) continue;
    buckets.push({ le: le === '+Inf' ? Infinity : Number(le), n: delta(m0, m1, key) });
  }
  buckets.sort((x, y) => x.le - y.le);
  const total = buckets[buckets.length - 1]?.n ?? 0;
  if (total <= 0) return NaN;
  for (const b of buckets) if (b.n >= (p / 100) * total) return b.le;
  return Infinity;
}

interface ServerFigures {
  stored: number;
  commits: number;
  meanBatch: number;
  batchP50: number;
  batchP99: number;
  meanCommitMs: number;
  commitP50Ms: number;
  commitP99Ms: number;
  deliveries: number;
  brokerIn: number;
  brokerOut: number;
  linesIn: number;
  fanoutP50Ms: number;
  fanoutP99Ms: number;
  eventLoopLagP99Ms: number;
}

function serverFigures(m0: MetricMap, m1: MetricMap): ServerFigures {
  const commits = delta(m0, m1, 'parley_persist_batch_size_count');
  const rows = delta(m0, m1, 'parley_persist_batch_size_sum');
  const commitSecs = delta(m0, m1, 'parley_persist_batch_seconds_sum');
  return {
    stored: delta(m0, m1, 'parley_messages_stored_total'),
    commits,
    meanBatch: commits > 0 ? rows / commits : NaN,
    batchP50: bucketPercentile(m0, m1, 'parley_persist_batch_size', 50),
    batchP99: bucketPercentile(m0, m1, 'parley_persist_batch_size', 99),
    meanCommitMs: commits > 0 ? (commitSecs / commits) * 1000 : NaN,
    commitP50Ms: bucketPercentile(m0, m1, 'parley_persist_batch_seconds', 50) * 1000,
    commitP99Ms: bucketPercentile(m0, m1, 'parley_persist_batch_seconds', 99) * 1000,
    deliveries: delta(m0, m1, 'parley_deliveries_total'),
    brokerIn: delta(m0, m1, 'parley_broker_messages_in_total'),
    brokerOut: delta(m0, m1, 'parley_broker_messages_out_total'),
    linesIn: delta(m0, m1, 'parley_lines_in_total'),
    fanoutP50Ms: bucketPercentile(m0, m1, 'parley_fanout_latency_seconds', 50) * 1000,
    fanoutP99Ms: bucketPercentile(m0, m1, 'parley_fanout_latency_seconds', 99) * 1000,
    eventLoopLagP99Ms: (m1.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000,
  };
}

// ---- the benchmark -------------------------------------------------------------------------

interface Receiver {
  client: IrcClient;
  instance: 'A' | 'B';
  probed: boolean;
  seqs: SeqTable;
  count: number;
  last: number;
  lastSeq: number;
  dup: number;
  outOfOrder: number;
  seqGaps: number;
  measured: number;
}

async function main(): Promise<void> {
  const started = new Date();
  const label = `1 sender -> ${opts.members} members`;
  console.error(`[fanout] ${label}, ${opts.transport}, fsync ${opts.fsync ? 'on' : 'off'}, window ${opts.window}, ${opts.warmup}s warm-up + ${opts.seconds}s measured`);

  let services: Services | undefined;
  let a: ParleyProcess | undefined;
  let b: ParleyProcess | undefined;
  const clients: IrcClient[] = [];
  let failure: Error | undefined;

  // `on`, not `once`: while a handler of ours is installed, the harness leaves shutdown to us
  // (with none, it kills only the services and re-raises, orphaning the parley instances).
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      console.error(`[fanout] second ${sig}: exiting now`);
      process.exit(130);
    }
    signalled = true;
    console.error(`[fanout] ${sig}: cleaning up`);
    for (const c of clients) c.destroy();
    void Promise.allSettled([a?.stop(), b?.stop()])
      .then(() => services?.stop())
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    services = await startServices({ pgFsync: opts.fsync });
    const prefix = uniqueName('fanout');
    const dbUrl = await services.postgres!.createDatabase(prefix);
    const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
    try {
      await etcd.put(`/${prefix}/config`).value(JSON.stringify({ flood: { linesPerSecond: 0 } }));
    } finally {
      etcd.close();
    }
    [a, b] = await Promise.all([
      spawnParley(services, { id: 'a', prefix, pg: [dbUrl] }),
      spawnParley(services, { id: 'b', prefix, pg: [dbUrl] }),
    ]);
    const instA = a;
    const instB = b;
    console.error(`[fanout] services up in ${services.dir}; instance A pid ${instA.pid}, B pid ${instB.pid}`);

    // ---- members
    const portOf = (p: ParleyProcess): number => (opts.transport === 'tcp' ? p.tcpPort : p.wsPort);
    const nicks = Array.from({ length: opts.members }, (_, i) => `m${i}`);
    const instanceOf = (i: number): 'A' | 'B' => (i % 2 === 0 ? 'A' : 'B');
    for (let i = 0; i < opts.members; i++) {
      const p = instanceOf(i) === 'A' ? instA : instB;
      const c = new IrcClient({ transport: opts.transport, host: '127.0.0.1', port: portOf(p), nick: nicks[i]!, keepHistory: false, requestTimeoutMs: 15_000 });
      c.on('close', (err) => {
        failure ??= new Error(`client ${nicks[i]} lost its connection${err ? `: ${err.message}` : ''}`);
      });
      c.on('error', () => {
        /* reported through 'close' */
      });
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.connect()));
    for (const c of clients) {
      const res = await c.request(`JOIN ${CHANNEL}`);
      if (!res.some((m) => m.command === 'JOIN')) throw new Error(`JOIN refused for ${c.nick}: ${res.map((m) => `${m.command} ${m.params.join(' ')}`).join(' | ')}`);
    }
    // Every member must see every other member in NAMES (channel state is shared through Redis).
    const deadline = Date.now() + 10_000;
    for (const c of clients) {
      for (;;) {
        const res = await c.request(`NAMES ${CHANNEL}`);
        // params[3] should hold all nicks; joining the rest also copes with a 353 whose trailing
        // parameter lacks its ':' (then every nick is a parameter of its own).
        const seen = new Set(
          res.filter((m) => m.command === '353').flatMap((m) => m.params.slice(3).join(' ').split(' ').map((n) => n.replace(/^[~&@%+]+/, ''))),
        );
        if (nicks.every((n) => seen.has(n))) break;
        if (Date.now() > deadline) throw new Error(`${c.nick} sees only ${[...seen].join(' ')} in NAMES`);
        await sleep(100);
      }
    }

    // ---- state and hot paths
    const sender = clients[0]!;
    const senderNick = nicks[0]!;
    const receivers: Receiver[] = clients.slice(1).map((client, i) => ({
      client,
      instance: instanceOf(i + 1),
      probed: false,
      seqs: new SeqTable(),
      count: 0,
      last: -1,
      lastSeq: -1,
      dup: 0,
      outOfOrder: 0,
      seqGaps: 0,
      measured: 0,
    }));

    const ackHist = newHistogram();
    const deliverHist = newHistogram();
    const deliverHistA = newHistogram();
    const deliverHistB = newHistogram();
    const acked = new SeqTable();
    let sending = false;
    let measuring = false;
    let next = 0;
    let inFlight = 0;
    let ackedTotal = 0;
    let ackedMeasured = 0;
    let ackOutOfOrder = 0;
    let ackDup = 0;
    let lastAck = -1;
    let rejected = 0;
    const rejections: string[] = [];
    let deliveredMeasured = 0;

    const parse = (text: string): { counter: number; t: number } | null => {
      const c0 = text.charCodeAt(0);
      if (c0 < 48 || c0 > 57) return null; // a probe
      const i1 = text.indexOf(' ');
      const i2 = text.indexOf(' ', i1 + 1);
      return { counter: Number(text.slice(0, i1)), t: Number(text.slice(i1 + 1, i2)) };
    };

    const pump = (): void => {
      while (sending && inFlight < opts.window) {
        const head = `${next++} ${performance.now().toFixed(3)} `;
        sender.send(`PRIVMSG ${CHANNEL} :${head}${PADDING.slice(head.length)}`);
        inFlight++;
      }
    };

    sender.on('message', (msg: IrcMessage) => {
      const cmd = msg.command;
      if (cmd === 'PRIVMSG') {
        if (msg.params[0] !== CHANNEL || !msg.source?.startsWith(`${senderNick}!`)) return;
        const p = parse(msg.params[1] ?? '');
        if (p === null) return;
        const now = performance.now();
        inFlight--;
        ackedTotal++;
        if (acked.get(p.counter) !== 0) ackDup++;
        else if (p.counter < lastAck) ackOutOfOrder++;
        if (p.counter > lastAck) lastAck = p.counter;
        acked.set(p.counter, (parseMsgid(msg.tags.msgid ?? '')?.seq ?? -1) + 1);
        if (measuring) {
          ackedMeasured++;
          ackHist.recordValue(Math.max(0, Math.round((now - p.t) * 1000)));
        }
        pump();
      } else if (cmd === 'FAIL' || (cmd.length === 3 && cmd >= '400' && cmd < '600')) {
        // A refused message (MESSAGE_ERROR, ...): not acknowledged, frees its slot.
        rejected++;
        if (rejections.length < 5) rejections.push(`${cmd} ${msg.params.join(' ')}`);
        if (cmd === 'FAIL' && msg.params[0] === 'PRIVMSG') {
          inFlight--;
          pump();
        }
      }
    });

    for (const r of receivers) {
      const hist = r.instance === 'A' ? deliverHistA : deliverHistB;
      r.client.on('message', (msg: IrcMessage) => {
        if (msg.command !== 'PRIVMSG' || msg.params[0] !== CHANNEL) return;
        const p = parse(msg.params[1] ?? '');
        if (p === null) {
          r.probed = true;
          return;
        }
        const now = performance.now();
        const seq = parseMsgid(msg.tags.msgid ?? '')?.seq ?? -1;
        r.count++;
        if (r.seqs.get(p.counter) !== 0) r.dup++;
        else if (p.counter < r.last) r.outOfOrder++;
        if (p.counter > r.last) r.last = p.counter;
        if (r.lastSeq >= 0 && seq !== r.lastSeq + 1) r.seqGaps++;
        r.lastSeq = seq;
        r.seqs.set(p.counter, seq + 1);
        if (measuring) {
          r.measured++;
          deliveredMeasured++;
          const us = Math.max(0, Math.round((now - p.t) * 1000));
          deliverHist.recordValue(us);
          hist.recordValue(us);
        }
      });
    }

    // ---- probe: every receiver gets messages before the counted ones start
    for (let k = 0; !receivers.every((r) => r.probed); k++) {
      if (k > 50) throw new Error('receivers did not get the probe messages within 10 s');
      sender.send(`PRIVMSG ${CHANNEL} :probe ${k}`);
      await sleep(200);
    }
    await sleep(200);

    // ---- warm up, measure, drain
    const check = (): void => {
      if (failure) throw failure;
    };
    sending = true;
    pump();
    await sleep(opts.warmup * 1000);
    check();
    const cpu0 = sampleCpu(instA, instB, services);
    const mA0p = scrape(instA);
    const mB0p = scrape(instB);
    measuring = true;
    const t0 = performance.now();
    const [mA0, mB0] = await Promise.all([mA0p, mB0p]);
    await sleep(opts.seconds * 1000);
    measuring = false;
    const t1 = performance.now();
    const cpu1 = sampleCpu(instA, instB, services);
    const [mA1, mB1] = await Promise.all([scrape(instA), scrape(instB)]);
    sending = false;
    check();
    const elapsed = (t1 - t0) / 1000;
    const sentTotal = next;

    const drainStart = performance.now();
    while (performance.now() - drainStart < DRAIN_TIMEOUT_MS) {
      check();
      if (inFlight <= 0 && receivers.every((r) => r.count >= ackedTotal)) break;
      await sleep(50);
    }
    const drainMs = performance.now() - drainStart;
    const drained = inFlight <= 0 && receivers.every((r) => r.count >= ackedTotal);
    await sleep(300); // late duplicates would show up here

    // ---- correctness
    let lost = 0;
    let unacked = 0;
    let seqMismatch = 0;
    for (const r of receivers) {
      for (let c = 0; c < sentTotal; c++) {
        const ack = acked.get(c);
        const got = r.seqs.get(c);
        if (ack !== 0 && got === 0) lost++;
        else if (ack === 0 && got !== 0) unacked++;
        else if (ack !== 0 && got !== ack) seqMismatch++;
      }
    }
    const dup = receivers.reduce((s, r) => s + r.dup, 0);
    const outOfOrder = receivers.reduce((s, r) => s + r.outOfOrder, 0);
    const seqGaps = receivers.reduce((s, r) => s + r.seqGaps, 0);

    const cpu = cpuBetween(cpu0, cpu1);
    const srvA = serverFigures(mA0, mA1);
    const srvB = serverFigures(mB0, mB1);

    const result = {
      scenario: label,
      startedAt: started.toISOString(),
      options: { ...opts, lineBytes: LINE_BYTES },
      machine: { cores, clockTicks },
      measuredSeconds: elapsed,
      sent: sentTotal,
      acked: ackedTotal,
      rejected,
      rejections,
      ackedPerSecond: ackedMeasured / elapsed,
      deliveriesPerSecond: deliveredMeasured / elapsed,
      ackMs: { p50: ms(ackHist, 50), p99: ms(ackHist, 99), p999: ms(ackHist, 99.9), max: ackHist.maxValue / 1000 },
      deliverMs: { p50: ms(deliverHist, 50), p99: ms(deliverHist, 99), p999: ms(deliverHist, 99.9), max: deliverHist.maxValue / 1000 },
      deliverMsSameInstance: { p50: ms(deliverHistA, 50), p99: ms(deliverHistA, 99), count: deliverHistA.totalCount },
      deliverMsOtherInstance: { p50: ms(deliverHistB, 50), p99: ms(deliverHistB, 99), count: deliverHistB.totalCount },
      correctness: { lost, duplicates: dup, outOfOrder, ackDuplicates: ackDup, ackOutOfOrder, deliveredNotAcked: unacked, msgidMismatch: seqMismatch, seqGaps, drained, drainMs },
      cpuPercentOfOneCore: cpu,
      servers: { A: srvA, B: srvB },
    };

    // ---- report
    const f = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : v === Infinity ? 'inf' : '-');
    const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');
    const cols: Array<[string, string, boolean?]> = [
      ['scenario', label, true],
      ['transport', opts.transport, true],
      ['acked msg/s', int(result.ackedPerSecond)],
      ['deliveries/s', int(result.deliveriesPerSecond)],
      ['ack p50 ms', f(result.ackMs.p50)],
      ['ack p99 ms', f(result.ackMs.p99)],
      ['deliver p50 ms', f(result.deliverMs.p50)],
      ['deliver p99 ms', f(result.deliverMs.p99)],
      ['lost', String(lost)],
      ['dup', String(dup)],
      ['server CPU %', `${f(cpu.servers, 0)} (${f(cpu.serverA, 0)}+${f(cpu.serverB, 0)})`],
    ];
    const widths = cols.map(([h, v]) => Math.max(h.length, v.length));
    const row = (vals: string[]): string => vals.map((v, i) => (cols[i]![2] ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
    const out: string[] = [];
    out.push('');
    out.push(`fanout: window ${opts.window}, ${opts.members} members (A: ${receivers.filter((r) => r.instance === 'A').length + 1} incl. sender, B: ${receivers.filter((r) => r.instance === 'B').length}), ${LINE_BYTES}-byte lines, PostgreSQL fsync ${opts.fsync ? 'on' : 'off'}, ${f(elapsed, 1)} s measured after ${opts.warmup} s warm-up`);
    out.push(row(cols.map(([h]) => h)));
    out.push(row(cols.map(([, v]) => v)));
    out.push('');
    out.push(`correctness: lost ${lost}, duplicates ${dup}, out of order ${outOfOrder}, msgid seq gaps ${seqGaps}, msgid mismatches ${seqMismatch}, delivered-but-unacked ${unacked}, ack dup/out-of-order ${ackDup}/${ackOutOfOrder}, rejected ${rejected}${rejections.length ? ` (${rejections.join(' | ')})` : ''}, drain ${drained ? 'complete' : 'INCOMPLETE'} in ${int(drainMs)} ms`);
    out.push(`latency: ack p99.9 ${f(result.ackMs.p999)} max ${f(result.ackMs.max)} ms; deliver p99.9 ${f(result.deliverMs.p999)} max ${f(result.deliverMs.max)} ms; deliver same instance (A) p50/p99 ${f(result.deliverMsSameInstance.p50)}/${f(result.deliverMsSameInstance.p99)} ms, other instance (B, via Redis) ${f(result.deliverMsOtherInstance.p50)}/${f(result.deliverMsOtherInstance.p99)} ms`);
    out.push(`CPU (% of one core, machine has ${cores * 100}%): server A ${f(cpu.serverA, 0)}, server B ${f(cpu.serverB, 0)}, PostgreSQL ${f(cpu.postgres, 0)}, Redis ${f(cpu.redis, 0)}, bench client ${f(cpu.bench, 0)}, whole machine ${f(cpu.machine, 0)} (other processes ${f(cpu.machine - cpu.servers - cpu.postgres - cpu.redis - cpu.bench, 0)})`);
    for (const [name, s] of [['A', srvA], ['B', srvB]] as const) {
      out.push(
        `server ${name}: stored ${int(s.stored / elapsed)}/s in ${int(s.commits / elapsed)} commits/s, batch mean ${f(s.meanBatch, 1)} (p50 <=${f(s.batchP50, 0)}, p99 <=${f(s.batchP99, 0)}), commit mean ${f(s.meanCommitMs)} ms (p50 <=${f(s.commitP50Ms, 1)}, p99 <=${f(s.commitP99Ms, 1)}); ` +
          `deliveries ${int(s.deliveries / elapsed)}/s, broker out/in ${int(s.brokerOut / elapsed)}/${int(s.brokerIn / elapsed)} per s, commit->deliver p50/p99 <=${f(s.fanoutP50Ms, 1)}/${f(s.fanoutP99Ms, 1)} ms, event-loop lag p99 ${f(s.eventLoopLagP99Ms, 1)} ms`,
      );
    }
    console.log(out.join('\n'));

    const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `fanout-${started.toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    console.log(`\nresults: ${path.relative(process.cwd(), file)}`);

    if (lost || dup || outOfOrder || seqMismatch || unacked || ackDup || ackOutOfOrder || !drained) {
      console.error('[fanout] CORRECTNESS PROBLEM: see the correctness line above');
      process.exitCode = 2;
    }
  } finally {
    for (const c of clients) c.destroy();
    await Promise.allSettled([a?.stop(), b?.stop()]);
    await services?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((err: unknown) => {
  console.error(`fanout: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
