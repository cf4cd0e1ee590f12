/**
 * Parley against an IRC peer: the two workloads of issue 7's performance target, each run against
 * Parley (2 instances, every message committed in PostgreSQL), InspIRCd (Debian's, one C++
 * process, no persistence) and the Socket.IO baseline, all driven by the `parley load` engine:
 *
 *   small: 20 clients, 5 rooms × 4 members, every client keeping 50 messages in flight, over TCP and
 *          WebSocket (Socket.IO: WebSocket only);
 *   large: 100 rooms × 10 members (1000 clients), each keeping --large-window in flight, over WebSocket.
 *
 *   node --import tsx bench/irc-peers.ts [--workloads small,large] [--seconds 10]
 *        [--systems parley,inspircd,socketio] [--transports tcp,ws] [--large-transports ws]
 *        [--small-window 50] [--large-window 1] [--fsync on|off] [--instances 2]
 *
 * The target: Parley at least InspIRCd's throughput over WebSocket in both workloads, and at least
 * half of it over TCP. Each workload prints its table; a summary of both with the ratios follows.
 */
import { benchArgs, labelOf, parseContenders, runScenario, seconds, transportOf, type Row } from './lib/compare.js';

const USAGE =
  'usage: node --import tsx bench/irc-peers.ts [--workloads small,large] [--seconds 10] [--systems parley,inspircd,socketio] [--transports tcp,ws] [--large-transports ws] [--small-window 50] [--large-window 1] [--fsync on|off] [--instances 2]';
const a = benchArgs(
  process.argv.slice(2),
  {
    workloads: 'small,large',
    seconds: '10',
    systems: 'parley,inspircd,socketio',
    transports: 'tcp,ws',
    'large-transports': 'ws',
    'small-window': '50',
    'large-window': '1',
    fsync: 'on',
    instances: '2',
  },
  USAGE,
);

interface Workload {
  id: string;
  title: string;
  users: number;
  rooms: number;
  members: number;
  window: string;
  transports: string;
}

const WORKLOADS: Record<string, Workload> = {
  small: { id: 'irc-small', title: '20 clients, 5 rooms × 4 members', users: 20, rooms: 5, members: 4, window: a['small-window']!, transports: a.transports! },
  large: { id: 'irc-large', title: '100 rooms × 10 members (1000 clients)', users: 1000, rooms: 100, members: 10, window: a['large-window']!, transports: a['large-transports']! },
};

const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');
const f = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : '-');
const acked = (r: Row): number => r.result.totals.acked / seconds(r.result);

/** Parley's acked/s over the baseline's of the same transport, or '-'. */
function ratio(rows: Row[], r: Row, kind: 'inspircd' | 'socketio'): string {
  if (r.contender.kind !== 'parley') return '';
  const b = rows.find((x) => x.contender.kind === kind && transportOf(x.contender) === transportOf(r.contender));
  return b ? `${f(acked(r) / acked(b))}×` : '-';
}

function summary(results: Array<{ w: Workload; rows: Row[] }>): string {
  const header = ['workload', 'system', 'acked/s', 'deliv/s', 'ack p50', 'ack p99', 'dlv p50', 'dlv p99', 'lost', 'dup', 'CPU srv', 'Parley/InspIRCd', 'Parley/Socket.IO'];
  const body: string[][] = [];
  for (const { w, rows } of results) {
    for (const r of rows) {
      const l = r.result.latency;
      body.push([
        `${w.rooms}×${w.members} w${w.window}`,
        labelOf(r.contender),
        int(acked(r)),
        int(r.result.totals.deliveries / seconds(r.result)),
        f(l.ack.p50),
        f(l.ack.p99),
        l.deliver.count ? f(l.deliver.p50) : '-',
        l.deliver.count ? f(l.deliver.p99) : '-',
        int(r.result.totals.lost),
        int(r.result.totals.duplicated),
        f(r.cpu.groups.servers ?? NaN, 0),
        ratio(rows, r, 'inspircd'),
        ratio(rows, r, 'socketio'),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    '',
    'Summary: Parley against InspIRCd and Socket.IO (acked/s ratios over the same transport; Socket.IO is WebSocket only)',
    '',
    line(header),
    ...body.map(line),
    '',
    '  Target (issue 7): Parley ≥ 1× InspIRCd over WebSocket in both workloads, ≥ 0.5× over TCP, every message persisted.',
  ].join('\n');
}

async function main(): Promise<void> {
  const chosen = a.workloads!.split(',').map((x) => x.trim()).filter(Boolean);
  for (const k of chosen) if (!(k in WORKLOADS)) throw new Error(`--workloads: small or large, not '${k}'`);
  const results: Array<{ w: Workload; rows: Row[] }> = [];
  for (const k of chosen) {
    const w = WORKLOADS[k]!;
    const describe = `parley load --users ${w.users} --rooms ${w.rooms} --members-per-room ${w.members} --rate max --window ${w.window} --duration ${a.seconds} --payload-bytes 100`;
    const rows = await runScenario({
      id: w.id,
      title: `${w.title}, ${w.window} message(s) in flight per client, ${a.seconds} s`,
      describe,
      contenders: parseContenders(a.systems!, w.transports).filter((c) => c.kind !== 'socketio' || w.transports.split(',').includes('ws')),
      instances: Number(a.instances),
      fsync: a.fsync === 'on',
      load: { users: w.users, rooms: w.rooms, membersPerRoom: w.members, rate: 'max', window: w.window, duration: a.seconds, payloadBytes: 100 },
      notes: [
        'Parley acknowledges a message with its echo once it is committed in PostgreSQL; InspIRCd echoes it once relayed (no persistence); Socket.IO acks after the broadcast through Redis (no database).',
        'Members alternate between Parley\'s (and Socket.IO\'s) instances; InspIRCd is one process.',
      ],
    });
    results.push({ w, rows });
    if (rows.length === 0) break; // interrupted
  }
  console.log(summary(results));
  if (results.some(({ rows }) => rows.some((r) => r.result.totals.lost || r.result.totals.duplicated))) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(`irc-peers: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
