import type { QosRoom, QosSection } from './report-schema.js';
import { color, esc, lineChart } from './report-svg.js';
import type { Series } from './report-svg.js';

/*
 * The report's QoS section (results written by `parley demo qos`): every room's limit against the
 * rate it was offered and the rate it got, as a chart over the rooms (sorted by limit), a table per
 * class and one per room, and what the run cost. Also the figures the demo prints in the terminal.
 */

export interface ClassStats {
  name: string;
  rate: number;
  burst: number;
  rooms: number;
  shards: number;
  /** rooms with a measured rate */
  measured: number;
  within: number;
  meanRate: number | null;
  minRate: number | null;
  maxRate: number | null;
  meanErrorPct: number | null;
  /** the room with the largest |error| */
  worst: QosRoom | null;
  refusedShare: number | null;
}

export interface QosStats {
  rooms: number;
  measured: number;
  within: number;
  worst: QosRoom | null;
  classes: ClassStats[];
  /** |error| percentiles over the measured rooms: p50, p90, p99, max */
  absError: { p50: number; p90: number; p99: number; max: number } | null;
  /** shards holding at least one of the rooms */
  shardsUsed: number;
  /** rooms some of whose messages the store failed (shard unavailable, commit error), and how many of the others are within */
  withFailures: number;
  cleanMeasured: number;
  cleanWithin: number;
}

const absErr = (r: QosRoom): number => (r.errorPct === null ? -1 : Math.abs(r.errorPct));

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function qosStats(q: QosSection): QosStats {
  const measured = q.rooms.filter((r) => r.errorPct !== null);
  const isWithin = (r: QosRoom): boolean => r.errorPct !== null && Math.abs(r.errorPct) <= q.tolerancePct;
  const worstOf = (rs: QosRoom[]): QosRoom | null => rs.reduce<QosRoom | null>((w, r) => (r.errorPct !== null && (w === null || absErr(r) > absErr(w)) ? r : w), null);
  const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const classes = q.classes.map((c): ClassStats => {
    const rs = q.rooms.filter((r) => r.class === c.name);
    const m = rs.filter((r) => r.acceptedRate !== null && r.errorPct !== null);
    const rates = m.map((r) => r.acceptedRate as number);
    const sent = rs.reduce((s, r) => s + r.sent, 0);
    const refused = rs.reduce((s, r) => s + r.refusedQos + r.refusedBacklog, 0);
    return {
      name: c.name,
      rate: c.rate,
      burst: c.burst,
      rooms: rs.length,
      shards: c.shards,
      measured: m.length,
      within: m.filter(isWithin).length,
      meanRate: mean(rates),
      minRate: rates.length ? Math.min(...rates) : null,
      maxRate: rates.length ? Math.max(...rates) : null,
      meanErrorPct: mean(m.map((r) => r.errorPct as number)),
      worst: worstOf(m),
      refusedShare: sent > 0 ? refused / sent : null,
    };
  });
  const errs = measured.map((r) => Math.abs(r.errorPct as number)).sort((a, b) => a - b);
  return {
    rooms: q.rooms.length,
    measured: measured.length,
    within: measured.filter(isWithin).length,
    worst: worstOf(measured),
    classes,
    absError: errs.length ? { p50: quantile(errs, 0.5), p90: quantile(errs, 0.9), p99: quantile(errs, 0.99), max: errs[errs.length - 1]! } : null,
    shardsUsed: new Set(q.rooms.filter((r) => r.shard !== null).map((r) => r.shard)).size,
    withFailures: q.rooms.filter((r) => r.failed > 0).length,
    cleanMeasured: measured.filter((r) => r.failed === 0).length,
    cleanWithin: measured.filter((r) => r.failed === 0 && isWithin(r)).length,
  };
}

/** Rooms in the chart's order: by limit, then by accepted rate. */
function chartOrder(q: QosSection): QosRoom[] {
  return [...q.rooms].sort((a, b) => a.rate - b.rate || (a.acceptedRate ?? 0) - (b.acceptedRate ?? 0) || a.room.localeCompare(b.room));
}

/** Limit, offered and accepted rate per room; the error against the limit; the refused share. */
export function qosChart(q: QosSection, label: string): string {
  const rooms = chartOrder(q);
  const x = (i: number): number => i + 1;
  // Limits are steps (one flat segment per room), not slopes between rooms.
  const steps = (f: (r: QosRoom) => number): Array<[number, number]> => rooms.flatMap((r, i): Array<[number, number]> => [[x(i) - 0.5, f(r)], [x(i) + 0.5, f(r)]]);
  const rateSeries: Series[] = [
    { label: 'offered rate', color: color(7), dash: 'dotted', points: steps((r) => r.offeredRate) },
    { label: 'limit (class rate)', color: color(6), points: steps((r) => r.rate) },
    { label: 'accepted rate (steady window)', color: color(0), dots: true, points: rooms.map((r, i) => [x(i), r.acceptedRate]) },
  ];
  const tol = q.tolerancePct;
  const n = Math.max(1, rooms.length);
  const errSeries: Series[] = [
    { label: `±${tol}%`, color: color(3), dash: 'dashed', points: [[0.5, tol], [n + 0.5, tol], [n + 0.5, null], [0.5, -tol], [n + 0.5, -tol]] },
    { label: 'error of the accepted rate', color: color(0), dots: true, points: rooms.map((r, i) => [x(i), r.errorPct]) },
  ];
  const anyFailed = rooms.some((r) => r.failed > 0);
  const refusedSeries: Series[] = [
    { label: 'refused share of sent (%)', color: color(3), dots: true, points: rooms.map((r, i) => [x(i), r.sent > 0 ? ((r.refusedQos + r.refusedBacklog) / r.sent) * 100 : null]) },
    ...(anyFailed ? [{ label: 'failed by the store (%)', color: color(6), dots: true, points: rooms.map((r, i): [number, number | null] => [x(i), r.sent > 0 && r.failed > 0 ? (r.failed / r.sent) * 100 : null]) }] : []),
    { label: `1 − 1/${q.rateMultiple} (no burst)`, color: color(6), dash: 'dashed', points: [[0.5, (1 - 1 / q.rateMultiple) * 100], [n + 0.5, (1 - 1 / q.rateMultiple) * 100]] },
  ];
  return lineChart({
    title: `QoS per room: limit vs accepted rate (${label})`,
    xLabel: `rooms, sorted by limit then accepted rate (${rooms.length})`,
    panels: [
      { title: 'Messages per second: the limit, what was offered, what was accepted', yLabel: 'messages/s', series: rateSeries, scale: 'linear' },
      { title: `Accepted rate against the limit (within ±${tol}%: between the dashed lines)`, yLabel: 'error %', series: errSeries, scale: 'linear' },
      { title: anyFailed ? 'Share of each room’s messages refused (and failed by the store, where any did)' : 'Share of each room’s messages refused', yLabel: 'refused %', series: refusedSeries, scale: 'linear' },
    ],
  });
}

const fix = (v: number | null, d = 2): string => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(d));
const signed = (v: number | null): string => (v === null || !Number.isFinite(v) ? '–' : `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(2)}%`);
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

/** One sentence: how many rooms are within the tolerance, and the worst. */
export function qosHeadline(q: QosSection, st: QosStats = qosStats(q)): string {
  const w = st.worst;
  return (
    `${st.within} of ${st.measured} rooms within ±${q.tolerancePct}% of their limit` +
    (st.measured < st.rooms ? ` (${st.rooms - st.measured} not measured)` : '') +
    (w ? `; worst ${w.room} (${w.class}, limit ${w.rate}/s): ${fix(w.acceptedRate)}/s, ${signed(w.errorPct)}` : '') +
    (st.absError ? `; |error| p50 ${fix(st.absError.p50)}%, p90 ${fix(st.absError.p90)}%, p99 ${fix(st.absError.p99)}%` : '') +
    (st.withFailures ? `; ${st.withFailures} room(s) had messages the store failed (${int(q.rooms.reduce((s, r) => s + r.failed, 0))} in all): of the ${st.cleanMeasured} without, ${st.cleanWithin} within` : '')
  );
}

function classTable(q: QosSection, st: QosStats): string {
  const rows = st.classes
    .map(
      (c) =>
        `<tr><td class="name"><code>${esc(c.name)}</code></td><td class="n">${fix(c.rate)}</td><td class="n">${int(c.burst)}</td><td class="n">${int(c.rooms)}</td><td class="n">${int(c.shards)}</td>` +
        `<td class="n">${c.within} / ${c.measured}</td><td class="n">${fix(c.meanRate, 3)}</td><td class="n">${fix(c.minRate, 3)} – ${fix(c.maxRate, 3)}</td><td class="n">${signed(c.meanErrorPct)}</td>` +
        `<td class="name">${c.worst ? `${esc(c.worst.room)} ${signed(c.worst.errorPct)}` : '–'}</td><td class="n">${c.refusedShare === null ? '–' : `${(c.refusedShare * 100).toFixed(1)}%`}</td></tr>`,
    )
    .join('');
  return (
    '<table><thead><tr><th>class</th><th class="n">rate/s</th><th class="n">burst</th><th class="n">rooms</th><th class="n">shards</th>' +
    `<th class="n">within ±${q.tolerancePct}%</th><th class="n">mean accepted/s</th><th class="n">min – max</th><th class="n">mean error</th><th>worst room</th><th class="n">refused</th></tr></thead>` +
    `<tbody>${rows}</tbody></table>`
  );
}

function roomTable(q: QosSection): string {
  const rooms = [...q.rooms].sort((a, b) => absErr(b) - absErr(a) || a.room.localeCompare(b.room));
  const rows = rooms
    .map((r) => {
      const bad = r.errorPct === null || Math.abs(r.errorPct) > q.tolerancePct;
      const refused = r.refusedQos + r.refusedBacklog;
      return (
        `<tr><td class="name">${esc(r.room)}</td><td><code>${esc(r.class)}</code></td><td class="n">${r.shard ?? '–'}</td><td class="n">${fix(r.rate)} / ${int(r.burst)}</td>` +
        `<td class="n">${int(r.sent)} @ ${fix(r.offeredRate)}/s</td><td class="n">${fix(r.windowSeconds, 1)}${r.steadySeconds != null ? ` (${fix(r.steadySeconds, 1)})` : ''}</td><td class="n">${int(r.accepted)}${r.acked !== r.accepted ? ` <span class="note">(acked ${int(r.acked)})</span>` : ''}</td>` +
        `<td class="n">${fix(r.acceptedRate, 3)}</td><td class="n"><span class="${bad ? 'bad' : 'ok'}">${signed(r.errorPct)}</span></td><td class="n">${r.acceptedRateWhole != null ? fix(r.acceptedRateWhole, 3) : '–'}</td>` +
        `<td class="n">${int(refused)} (${r.sent > 0 ? ((refused / r.sent) * 100).toFixed(1) : '–'}%)${r.refusedBacklog ? ` <span class="note">backlog ${int(r.refusedBacklog)}</span>` : ''}${r.failed ? ` <span class="bad">failed ${int(r.failed)}</span>` : ''}</td></tr>`
      );
    })
    .join('');
  return (
    `<details><summary>all ${int(q.rooms.length)} rooms, largest error first</summary>` +
    '<table><thead><tr><th class="name">room</th><th>class</th><th class="n">shard</th><th class="n">limit /s / burst</th><th class="n">offered</th><th class="n">window s (steady)</th>' +
    '<th class="n">accepted</th><th class="n">accepted/s</th><th class="n">error</th><th class="n">whole window acc/s</th><th class="n">refused</th></tr></thead>' +
    `<tbody>${rows}</tbody></table></details>`
  );
}

function runTables(q: QosSection): string {
  const run = q.run;
  if (!run) return '';
  const phases = run.phases.map((p) => `<tr><th>${esc(p.name)}</th><td class="n">${fix(p.seconds, 1)} s</td></tr>`).join('');
  const total = run.phases.reduce((s, p) => s + p.seconds, 0);
  const mem = run.memory.map((m) => `<tr><th>${esc(m.label)}</th><td class="n">${fmtBytes(m.bytes)}</td></tr>`).join('');
  const disk = run.disk.map((m) => `<tr><th>${esc(m.label)}</th><td class="n">${fmtBytes(m.bytes)}</td></tr>`).join('');
  return (
    `<h3>The run: ${int(run.shards)} shards, ${int(q.rooms.length)} rooms, ${int(run.instances)} instance${run.instances === 1 ? '' : 's'}</h3><div class="tables">` +
    `<table><thead><tr><th>time</th><th class="n"></th></tr></thead><tbody>${phases}<tr><th>in all</th><td class="n">${fix(total, 1)} s</td></tr></tbody></table>` +
    (mem ? `<table><thead><tr><th>memory</th><th class="n"></th></tr></thead><tbody>${mem}</tbody></table>` : '') +
    (disk ? `<table><thead><tr><th>disk</th><th class="n"></th></tr></thead><tbody>${disk}</tbody></table>` : '') +
    '</div>' +
    (run.notes.length ? `<ul class="note">${run.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '')
  );
}

/** The section's HTML around its chart (given as a ready `<figure>`). */
export function qosSectionHtml(q: QosSection, figure: string): string {
  const st = qosStats(q);
  const cls = st.within === st.measured && st.measured === st.rooms ? 'ok' : 'bad';
  return (
    `<p><span class="${cls}">${esc(qosHeadline(q, st))}</span>.</p>` +
    `<p class="note">Each room was offered ${q.rateMultiple}× its limit. ${esc(q.method)} The rooms sit on ${int(st.shardsUsed)} shards.</p>` +
    figure +
    classTable(q, st) +
    roomTable(q) +
    runTables(q)
  );
}
