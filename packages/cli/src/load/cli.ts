import fs from 'node:fs';
import path from 'node:path';
import { ircDriver } from './drivers/irc.js';
import { socketIoDriver } from './drivers/socketio.js';
import { wsDriver } from './drivers/ws.js';
import type { Driver } from './drivers/driver.js';
import { senderCount, type LoadOptions } from './options.js';
import type { LoadResult, Percentiles } from './result.js';
import { LoadError, runLoad, type Progress } from './run.js';

/** The driver for the options' --driver and --transport. */
export function driverFor(o: Pick<LoadOptions, 'driver' | 'transport'>): Driver {
  switch (o.driver) {
    case 'socketio':
      return socketIoDriver;
    case 'ws':
      return wsDriver;
    case 'irc':
      return ircDriver(o.transport, 'irc');
    default:
      return ircDriver(o.transport);
  }
}

const int = (v: number): string => Math.round(v).toLocaleString('en-US');
const fix = (v: number, d = 1): string => (Number.isFinite(v) ? v.toFixed(d) : '-');

/** One progress line (no newline). */
export function progressLine(p: Progress): string {
  switch (p.phase) {
    case 'connect':
      return `connecting ${int(p.connected + p.dropped)}/${int(p.users)} users${p.failed ? ` (${int(p.failed)} failed)` : ''}, ${fix(p.elapsed)} s`;
    case 'join':
      return `joining rooms: ${int(p.joined)} users in, ${fix(p.elapsed)} s`;
    case 'send':
    case 'drain': {
      const s = p.second;
      const head = p.phase === 'send' ? `t=${Math.floor(p.elapsed)}s` : `draining ${fix(p.elapsed)}s`;
      const sec = s
        ? ` | last second: sent ${int(s.sent)} acked ${int(s.acked)} deliveries ${int(s.deliveries)}, ack p50/p99 ${fix(s.ack.p50, 2)}/${fix(s.ack.p99, 2)} ms, deliver p50/p99 ${fix(s.deliver.p50, 2)}/${fix(s.deliver.p99, 2)} ms`
        : '';
      return `${head} sent ${int(p.sent)} acked ${int(p.acked)} refused ${int(p.refused)} errors ${int(p.errors)} deliveries ${int(p.deliveries)} in flight ${int(p.inflight)} conns ${int(p.connected)}${p.dropped ? ` (${int(p.dropped)} dropped)` : ''}${sec}`;
    }
    default:
      return '';
  }
}

function describeRate(o: LoadOptions): string {
  if (o.rate === 'max') return `as fast as acknowledgements allow (window ${o.window} per user)`;
  if (o.rate === 0) return 'idle (no messages)';
  if (o.roomRates !== null) return `per-room rates (${int(o.roomRates.reduce((a, b) => a + b, 0))}/s offered in all)`;
  if (o.rate === null) return `${o.rateTotal}/s in total`;
  return `${o.rate}/s per user (${int(o.rate * senderCount(o))}/s offered)`;
}

/** The summary printed at the end of a run. */
export function summaryTable(r: LoadResult, o: LoadOptions): string {
  const t = r.totals;
  const g = r.generator;
  // Sending is counted over the send phase; answers and deliveries until the last of them came,
  // so a backlog that drains after the send phase does not inflate the rate.
  const sendSecs = r.durationSeconds;
  const secs = Math.max(g.completionSeconds, sendSecs);
  const rate = (v: number, over: number): string => (over <= 0 ? '-' : v / over >= 100 ? int(v / over) : fix(v / over, 1));
  const per = (v: number): string => rate(v, secs);
  const out: string[] = [];
  out.push('');
  out.push(
    `parley load "${r.name}": ${r.target.kind} at ${r.target.addresses.join(',')} over ${r.target.transport}; ${int(o.users)} users, ${int(o.rooms)} rooms × ${o.membersPerRoom} members; ` +
      `${describeRate(o)}; ${o.messagesPerRoom !== null ? `${int(o.messagesPerRoom)} messages per room` : `${o.duration} s`}; ${o.payloadBytes}-byte texts`,
  );
  out.push(`send phase ${fix(secs, 2)} s, drain ${fix(g.drainSeconds, 2)} s${g.drained ? '' : ' (INCOMPLETE: gave up waiting)'}; connected in ${fix(g.connectSeconds, 2)} s, joined in ${fix(g.joinSeconds, 2)} s${g.interrupted ? '; INTERRUPTED' : ''}`);
  out.push('');
  const rows: Array<[string, number, string]> = [
    ['sent', t.sent, rate(t.sent, sendSecs)],
    ['acknowledged', t.acked, per(t.acked)],
    ['refused', t.refused, per(t.refused)],
    ['errors', t.errors, ''],
    ['deliveries', t.deliveries, per(t.deliveries)],
    ['expected deliveries', t.expectedDeliveries, ''],
    ['lost', t.lost, ''],
    ['duplicated', t.duplicated, ''],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(5, ...rows.map((x) => int(x[1]).length));
  const w2 = Math.max(5, ...rows.map((x) => x[2].length));
  out.push(`${''.padEnd(w0)}  ${'count'.padStart(w1)}  ${'per s'.padStart(w2)}   (sent: over the ${fix(sendSecs, 2)} s send phase; the others over the ${fix(secs, 2)} s from the first send to the last answer or delivery)`);
  for (const [name, v, p] of rows) out.push(`${name.padEnd(w0)}  ${int(v).padStart(w1)}  ${p.padStart(w2)}`);
  out.push('');
  const lat: Array<[string, Percentiles]> = [
    ['send → ack (ms)', r.latency.ack],
    ['send → deliver (ms)', r.latency.deliver],
  ];
  const cols = ['count', 'mean', 'p50', 'p90', 'p99', 'p99.9', 'max'];
  const lw = Math.max(...lat.map((x) => x[0].length));
  const cells = lat.map(([, p]) => [int(p.count), fix(p.mean, 2), fix(p.p50, 2), fix(p.p90, 2), fix(p.p99, 2), fix(p.p999, 2), fix(p.max, 2)]);
  const cw = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  out.push(`${''.padEnd(lw)}  ${cols.map((c, i) => c.padStart(cw[i]!)).join('  ')}`);
  lat.forEach(([name], k) => out.push(`${name.padEnd(lw)}  ${cells[k]!.map((c, i) => c.padStart(cw[i]!)).join('  ')}`));
  out.push('');
  const codes = (m: Record<string, number>): string =>
    Object.entries(m)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${int(v)}`)
      .join(', ');
  out.push(`connections: opened ${int(t.connectionsOpened)}, failed ${int(t.connectionsFailed)}${t.connectionsFailed ? ` (${codes(g.connectErrorsByCode)})` : ''}, dropped ${int(t.connectionsDropped)}${t.connectionsDropped ? ` (${codes(g.dropReasons)})` : ''}`);
  if (t.refused) out.push(`refused by code: ${codes(r.refusedByCode)}`);
  if (t.errors || Object.keys(g.errorsByCode).length) out.push(`errors by code: ${codes(g.errorsByCode)}`);
  out.push(
    `checks: msgid mismatches ${int(g.msgidMismatches)}, out of order ${int(g.outOfOrder)}, delivered but not acknowledged ${int(g.deliveredNotAcked)}, late acks ${int(g.lateAcks)}, unmatched ${int(g.unmatched)}, skipped sends ${int(g.skipped)}`,
  );
  out.push(
    `load generator: CPU ${fix(g.cpuPercent, 0)}% of one core (machine: ${r.machine.cores} cores), event-loop delay p99 ${fix(g.eventLoopDelayMs.p99, 1)} ms max ${fix(g.eventLoopDelayMs.max, 1)} ms, schedule lag p99 ${fix(g.scheduleLagMs.p99, 1)} ms` +
      (g.offeredRate !== null ? `, offered ${int(g.offeredRate)}/s` : ''),
  );
  if (g.stoppedBecause) out.push(`stopped early: ${g.stoppedBecause}`);
  return out.join('\n');
}

/** What makes the exit status 2: the books do not balance. */
export function correctnessProblems(r: LoadResult): string[] {
  const t = r.totals;
  const p: string[] = [];
  if (t.sent !== t.acked + t.refused + t.errors) p.push(`sent ${t.sent} ≠ acked + refused + errors ${t.acked + t.refused + t.errors}`);
  if (t.lost) p.push(`${t.lost} deliveries lost`);
  if (t.duplicated) p.push(`${t.duplicated} deliveries duplicated`);
  if (r.generator.msgidMismatches) p.push(`${r.generator.msgidMismatches} msgid mismatches`);
  if (r.generator.outOfOrder) p.push(`${r.generator.outOfOrder} out-of-order deliveries`);
  return p;
}

/** `parley load`: runs, prints progress and the summary, writes the files; resolves with the exit status. */
export async function loadCommand(o: LoadOptions): Promise<number> {
  const tty = process.stderr.isTTY === true;
  let lastLen = 0;
  const status = (line: string): void => {
    if (tty) {
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 200) - 1).padEnd(lastLen)}`);
      lastLen = Math.min(line.length, (process.stderr.columns || 200) - 1);
    } else {
      process.stderr.write(`${line}\n`);
    }
  };
  const endStatus = (): void => {
    if (tty && lastLen > 0) process.stderr.write('\n');
    lastLen = 0;
  };
  const ac = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    endStatus();
    process.stderr.write('parley load: interrupted, finishing up (Ctrl-C again to quit at once)\n');
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let result: LoadResult;
  try {
    result = await runLoad(o, driverFor(o), {
      signal: ac.signal,
      onProgress: (p) => {
        const line = progressLine(p);
        if (line) status(line);
      },
      onPhase: (phase, p) => {
        endStatus();
        if (phase === 'join') {
          process.stderr.write(`parley load: connected ${p.connected} of ${p.users} users (${p.failed} failed) in ${fix(p.elapsed, 1)} s\n`);
        } else if (phase === 'send') {
          process.stderr.write(`parley load: ${o.rate === 0 ? `holding ${p.connected} idle connections for ${o.duration} s` : 'sending'}\n`);
        }
      },
      onWarning: (line) => {
        endStatus();
        process.stderr.write(`parley load: warning: ${line}\n`);
      },
    });
  } catch (err) {
    endStatus();
    if (err instanceof LoadError) {
      process.stderr.write(`parley: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    endStatus();
  }
  process.stdout.write(summaryTable(result, o) + '\n');
  if (o.out !== null) {
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`result: ${o.out}\n`);
  }
  if (o.events !== null) process.stdout.write(`events: ${o.events}\n`);
  const problems = correctnessProblems(result);
  if (result.generator.stoppedBecause) {
    process.stderr.write(`parley: ${result.generator.stoppedBecause}\n`);
    return 2;
  }
  if (problems.length) {
    process.stderr.write(`parley: the books do not balance: ${problems.join('; ')}\n`);
    return 2;
  }
  return result.generator.interrupted ? 130 : 0;
}
