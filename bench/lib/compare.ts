/**
 * Runs one load scenario against Parley and the baselines in turn, in the same process and with
 * the same measuring code (`runLoad` from `parley load`), and prints one table with the ratios.
 * Each system is started on free loopback ports just before its run and stopped right after, so
 * only one system's servers compete for the cores at a time (etcd, Redis and PostgreSQL stay up
 * for the whole script; Redis serves Parley and the Socket.IO adapter).
 */
import fs from 'node:fs';
import path from 'node:path';
import { driverFor } from '../../packages/cli/src/load/cli.js';
import { parseLoadOptions, type LoadOptions } from '../../packages/cli/src/load/options.js';
import type { LoadResult } from '../../packages/cli/src/load/result.js';
import { runLoad } from '../../packages/cli/src/load/run.js';
import { startServices, type Services } from '../../test/harness/index.js';
import { cores, cpuBetween, sampleCpu, type CpuFigures, type CpuSample } from './proc.js';
import { BENCH_QOS_CLASS, repoRoot, startInspircdSystem, startParley, startSocketIo, startWsBroadcast, type System, type SystemKind } from './systems.js';

export interface Contender {
  kind: SystemKind;
  /** Parley and InspIRCd: the IRC transport (the other baselines speak WebSocket only) */
  transport?: 'tcp' | 'ws';
  /** Parley only: with a `default` QoS class far above the offered rate (BENCH_QOS_CLASS) */
  qos?: boolean;
}

/** The transport a contender is measured over. */
export const transportOf = (c: Contender): 'tcp' | 'ws' => c.transport ?? 'ws';

/** The `parley load --driver` for a contender. */
const driverOf = (c: Contender): 'parley' | 'irc' | 'socketio' | 'ws' => (c.kind === 'inspircd' ? 'irc' : c.kind);

export interface Scenario {
  /** file name stem: bench/results/<id>-... */
  id: string;
  title: string;
  /** what the `parley load` command line for Parley would be, minus --target */
  describe: string;
  contenders: Contender[];
  instances: number;
  fsync: boolean;
  /** Parley without a QoS class, with one far above the offered rate (BENCH_QOS_CLASS: the cost of QoS, nothing refused), or both in turn */
  qos?: QosMode;
  /** `parley load` options without target/driver/transport/out */
  load: Record<string, unknown>;
  /** what an acknowledgement means per system, for the table's footnote */
  notes?: string[];
}

export interface Row {
  label: string;
  contender: Contender;
  result: LoadResult;
  cpu: CpuFigures;
  file: string;
  /** Parley: figures from the instances' /metrics over the run */
  server?: Record<string, number>;
}

type MetricMap = Map<string, number>;

/** Prometheus text of an instance as name{labels} -> value; empty when it does not answer. */
export async function scrapeMetrics(port: number): Promise<MetricMap> {
  const m: MetricMap = new Map();
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
    for (const line of (await res.text()).split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      const v = Number(line.slice(sp + 1));
      if (Number.isFinite(v)) m.set(line.slice(0, sp), v);
    }
  } catch {
    /* an instance that does not answer gives empty figures */
  }
  return m;
}

function parleyFigures(before: MetricMap[], after: MetricMap[]): Record<string, number> {
  const d = (k: string): number => after.reduce((s, m, i) => s + (m.get(k) ?? 0) - (before[i]?.get(k) ?? 0), 0);
  const lagP99 = Math.max(...after.map((m) => m.get('nodejs_eventloop_lag_p99_seconds') ?? 0));
  const commits = d('parley_persist_batch_size_count');
  return {
    commits,
    meanBatch: commits > 0 ? d('parley_persist_batch_size_sum') / commits : 0,
    meanCommitMs: commits > 0 ? (d('parley_persist_batch_seconds_sum') / commits) * 1000 : 0,
    eventLoopLagP99Ms: lagP99 * 1000,
    brokerOut: d('parley_broker_messages_out_total'),
    brokerIn: d('parley_broker_messages_in_total'),
    // QoS round trips to Redis (one per tick with rooms near their limit or debits to hand in):
    // shows whether a "QoS on" run went through the buckets at all
    qosTakes: d('parley_qos_take_seconds_count'),
    qosFailOpen: d('parley_qos_fail_open_total'),
  };
}

async function start(services: Services, c: Contender, instances: number): Promise<System> {
  switch (c.kind) {
    case 'parley':
      return startParley(services, instances, { qos: c.qos ? BENCH_QOS_CLASS : null });
    case 'socketio':
      return startSocketIo(services, instances);
    case 'inspircd':
      return startInspircdSystem();
    default:
      return startWsBroadcast();
  }
}

export const labelOf = (c: Contender): string =>
  c.kind === 'parley' ? `Parley ${transportOf(c)}${c.qos ? ' QoS on' : ''}` : c.kind === 'inspircd' ? `InspIRCd ${transportOf(c)}` : c.kind === 'socketio' ? 'Socket.IO ws' : 'bare ws';

const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');
const f = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : '-');

/** Rates of answers and deliveries are over the first send → the last answer or delivery, so a backlog that drains late does not count as throughput. */
export function seconds(r: LoadResult): number {
  return Math.max(r.generator.completionSeconds, r.durationSeconds);
}

export async function runScenario(s: Scenario): Promise<Row[]> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = path.join(repoRoot, 'bench/results');
  fs.mkdirSync(resultsDir, { recursive: true });
  let services: Services | undefined;
  let system: System | undefined;
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    if (signals > 1) process.exit(130);
    console.error(`[${s.id}] interrupted: stopping (Ctrl-C again to quit at once)`);
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const rows: Row[] = [];
  try {
    services = await startServices({ pgFsync: s.fsync });
    for (const c of withQos(s.contenders, s.qos ?? 'off')) {
      if (ac.signal.aborted) break;
      const label = labelOf(c);
      system = await start(services, c, s.instances);
      const opts: LoadOptions = parseLoadOptions({
        ...s.load,
        target: system.targets(transportOf(c)),
        driver: driverOf(c),
        transport: transportOf(c),
        name: `${s.id} ${label}`,
      });
      console.error(`[${s.id}] ${system.label}: ${opts.users} users → ${opts.target.map((t) => `${t.host}:${t.port}`).join(',')}`);
      let cpu0: CpuSample | undefined;
      let cpu1: CpuSample | undefined;
      let m0: Promise<MetricMap[]> = Promise.resolve([]);
      let lastLine = 0;
      const sys = system;
      const result = await runLoad(opts, driverFor(opts), {
        signal: ac.signal,
        onPhase: (phase) => {
          if (phase === 'send') {
            cpu0 = sampleCpu(sys.groups);
            m0 = Promise.all(sys.httpPorts.map(scrapeMetrics));
          } else if (phase === 'done') cpu1 = sampleCpu(sys.groups);
        },
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastLine < 5000) return;
          lastLine = now;
          const sec = p.second;
          console.error(
            `[${s.id}] ${label} ${p.phase} ${f(p.elapsed, 0)}s: conns ${int(p.connected)}/${int(p.users)} sent ${int(p.sent)} acked ${int(p.acked)} deliveries ${int(p.deliveries)}` +
              (sec ? ` (last s: acked ${int(sec.acked)}, ack p99 ${f(sec.ack.p99)} ms)` : ''),
          );
        },
        onWarning: (line) => console.error(`[${s.id}] ${label}: warning: ${line}`),
      });
      const cpu = cpuBetween(sys.groups, cpu0 ?? sampleCpu(sys.groups), cpu1 ?? sampleCpu(sys.groups));
      const server = sys.kind === 'parley' ? parleyFigures(await m0, await Promise.all(sys.httpPorts.map(scrapeMetrics))) : undefined;
      const file = path.join(resultsDir, `${s.id}-${c.kind}${c.kind === 'parley' || c.kind === 'inspircd' ? `-${transportOf(c)}` : ''}${c.qos ? '-qos' : ''}-${stamp}.json`);
      fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
      rows.push({ label, contender: c, result, cpu, file: path.relative(process.cwd(), file), ...(server ? { server } : {}) });
      await system.stop();
      system = undefined;
    }
  } finally {
    await system?.stop();
    await services?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  printTable(s, rows);
  const summary = path.join(resultsDir, `${s.id}-${stamp}.json`);
  fs.writeFileSync(
    summary,
    JSON.stringify({ scenario: s.id, title: s.title, load: s.load, instances: s.instances, fsync: s.fsync, qos: s.qos ?? 'off', qosClass: BENCH_QOS_CLASS, cores, rows: rows.map((r) => ({ label: r.label, file: r.file, cpu: r.cpu, server: r.server, totals: r.result.totals, latency: r.result.latency, generator: r.result.generator, seconds: seconds(r.result) })) }, null, 2) + '\n',
  );
  console.log(`\nresults: ${rows.map((r) => r.file).join(' ')} ${path.relative(process.cwd(), summary)}`);
  return rows;
}

export function printTable(s: Scenario, rows: Row[]): void {
  const out: string[] = [''];
  out.push(`${s.title}`);
  out.push(`  load: ${s.describe}; ${s.instances} instances per clustered system; PostgreSQL fsync ${s.fsync ? 'on' : 'off'}; Parley QoS ${s.qos === 'on' || s.qos === 'both' ? `${s.qos === 'both' ? 'off and on' : 'on'} ("on": a default class of ${BENCH_QOS_CLASS.rate.toLocaleString('en-US')}/s, so every message takes the QoS path and none is refused)` : 'off (no class)'}; ${cores} cores shared by everything`);
  const header = ['system', 'acked/s', 'deliv/s', 'of offered', 'ack p50', 'ack p99', 'dlv p50', 'dlv p99', 'lost', 'dup', 'CPU srv', 'CPU db', 'CPU redis', 'CPU load', 'CPU all', 'other'];
  const left = [true];
  const body = rows.map((r) => {
    const t = r.result.totals;
    const secs = seconds(r.result);
    const offered = r.result.generator.offeredRate;
    return [
      r.label,
      int(t.acked / secs),
      int(t.deliveries / secs),
      offered ? `${f((100 * t.acked) / secs / offered, 1)} %` : '-',
      f(r.result.latency.ack.p50),
      f(r.result.latency.ack.p99),
      r.result.latency.deliver.count ? f(r.result.latency.deliver.p50) : '-',
      r.result.latency.deliver.count ? f(r.result.latency.deliver.p99) : '-',
      int(t.lost),
      int(t.duplicated),
      f(r.cpu.groups.servers ?? NaN, 0),
      r.contender.kind === 'parley' ? f(r.cpu.groups.postgres ?? NaN, 0) : '-',
      r.contender.kind === 'ws' || r.contender.kind === 'inspircd' ? '-' : f(r.cpu.groups.redis ?? NaN, 0),
      f(r.cpu.self, 0),
      f(r.cpu.machine, 0),
      f(r.cpu.other, 0),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (left[i] ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  out.push('');
  out.push(line(header));
  for (const b of body) out.push(line(b));
  out.push('');
  out.push('  acked/s, deliv/s: over the time from the first send to the last acknowledgement or delivery (a backlog that drains after the send phase lowers them); "of offered" = acked/s ÷ the offered rate (open loop only).');
  out.push('  Latencies in ms (send → acknowledgement, send → receipt by another member). CPU in % of one core over send + drain; the machine has ' + cores * 100 + ' %.');
  out.push('  "CPU load" is the load generator (this process), which shares the cores with the servers; "other" is what the rest of the machine used meanwhile (noise).');
  for (const n of s.notes ?? []) out.push(`  ${n}`);
  const ratios = rows.flatMap((base) =>
    base.contender.kind !== 'parley'
      ? []
      : rows
          .filter((r) => transportOf(r.contender) === transportOf(base.contender) && (r.contender.kind !== 'parley' || (base.contender.qos === true && r.contender.qos !== true)))
          .map((r) => [base, r] as const),
  );
  if (ratios.length > 0) {
    out.push('');
    for (const [base, r] of ratios) {
      const a = base.result;
      const b = r.result;
      const rate = (x: LoadResult, k: 'acked' | 'deliveries'): number => x.totals[k] / seconds(x);
      out.push(
        `  ${base.label} / ${r.label}: acked/s ${f(rate(a, 'acked') / rate(b, 'acked'))}×, deliveries/s ${b.totals.deliveries ? f(rate(a, 'deliveries') / rate(b, 'deliveries')) + '×' : '-'}, ` +
          `ack p50 ${f(a.latency.ack.p50 / b.latency.ack.p50)}×, ack p99 ${f(a.latency.ack.p99 / b.latency.ack.p99)}×` +
          (b.latency.deliver.count ? `, deliver p99 ${f(a.latency.deliver.p99 / b.latency.deliver.p99)}×` : '') +
          `, server CPU ${f((base.cpu.groups.servers ?? NaN) / (r.cpu.groups.servers ?? NaN))}×`,
      );
    }
  }
  for (const r of rows) {
    const g = r.result.generator;
    const bits: string[] = [];
    if (r.server) {
      const sv = r.server;
      bits.push(`group commits ${int(sv.commits ?? 0)} (mean batch ${f(sv.meanBatch ?? 0, 1)}, mean commit ${f(sv.meanCommitMs ?? 0)} ms), Redis envelopes out/in ${int(sv.brokerOut ?? 0)}/${int(sv.brokerIn ?? 0)}, QoS round trips ${int(sv.qosTakes ?? 0)}${sv.qosFailOpen ? ` (fail-open ${int(sv.qosFailOpen)})` : ''}, server event-loop lag p99 ${f(sv.eventLoopLagP99Ms ?? 0, 1)} ms`);
    }
    bits.push(`generator event-loop delay p99 ${f(g.eventLoopDelayMs.p99, 1)} ms, schedule lag p99 ${f(g.scheduleLagMs.p99, 1)} ms, skipped ${int(g.skipped)}, errors ${int(r.result.totals.errors)}, refused ${int(r.result.totals.refused)}, out of order ${int(g.outOfOrder)}, msgid mismatches ${int(g.msgidMismatches)}, delivered-not-acked ${int(g.deliveredNotAcked)}, conns ${int(r.result.totals.connectionsOpened)} opened/${int(r.result.totals.connectionsFailed)} failed/${int(r.result.totals.connectionsDropped)} dropped, connect ${f(g.connectSeconds, 1)} s, drain ${f(g.drainSeconds, 1)} s${g.drained ? '' : ' INCOMPLETE'}`);
    out.push(`  ${r.label}: ${bits.join('; ')}`);
  }
  console.log(out.join('\n'));
}

export type QosMode = 'off' | 'on' | 'both';

/** `--qos on|off|both` of a bench script. */
export function qosFlag(v: string | undefined): QosMode {
  if (v === undefined) return 'off';
  if (v === 'on' || v === 'off' || v === 'both') return v;
  console.error(`--qos: on, off or both, not '${v}'`);
  process.exit(1);
}

/** Every Parley contender without QoS, with it, or both (without first), in the order given. */
export function withQos(contenders: readonly Contender[], mode: QosMode): Contender[] {
  return contenders.flatMap((c) => (c.kind !== 'parley' ? [c] : mode === 'both' ? [{ ...c, qos: false }, { ...c, qos: true }] : [{ ...c, qos: mode === 'on' }]));
}

/** Parses `--name value` flags of a bench script; unknown flags are an error. */
export function benchArgs(argv: string[], spec: Record<string, string>, usage: string): Record<string, string> {
  const values = { ...spec };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      console.log(usage);
      process.exit(0);
    }
    const key = a.replace(/^--/, '');
    if (!a.startsWith('--') || !(key in spec) || argv[i + 1] === undefined) {
      console.error(`${usage}\nunknown or incomplete option: ${a}`);
      process.exit(1);
    }
    values[key] = argv[++i]!;
  }
  return values;
}

export function parseContenders(systems: string, transports: string): Contender[] {
  const out: Contender[] = [];
  for (const s of systems.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (s === 'parley' || s === 'inspircd') {
      for (const t of transports.split(',').map((x) => x.trim()).filter(Boolean)) {
        if (t !== 'tcp' && t !== 'ws') throw new Error(`--transports: tcp or ws, not '${t}'`);
        out.push({ kind: s, transport: t });
      }
    } else if (s === 'socketio' || s === 'ws') out.push({ kind: s });
    else throw new Error(`--systems: parley, inspircd, socketio or ws, not '${s}'`);
  }
  if (out.length === 0) throw new Error('--systems: nothing to run');
  return out;
}
