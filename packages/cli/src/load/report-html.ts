import path from 'node:path';
import type { LoadResult, Percentiles, RoomResult, TimelineEntry } from './report-schema.js';
import { barChart, color, esc, fmtShort, lineChart } from './report-svg.js';
import { qosChart, qosSectionHtml } from './report-qos.js';
import type { BarPanel, Dash, LegendEntry, LinePanel, Series } from './report-svg.js';

/*
 * The report's content: from validated results to charts (SVG strings) and one self-contained
 * HTML page. Nothing here touches the file system, so the whole page is testable as a string.
 */

/** One result file as the report shows it. */
export interface Run {
  file: string;
  /** The run's name, made unique among the runs of one report. */
  label: string;
  result: LoadResult;
}

export interface Chart {
  /** File name of the PNG beside index.html. */
  png: string;
  title: string;
  svg: string;
}

export interface Report {
  title: string;
  html: string;
  charts: Chart[];
}

/** Rooms shown one by one in a per-room chart; the rest are added up into one bar. */
export const ROOM_LIMIT = 40;

/** Labels runs by name (the file's name when the name is empty), numbering repeats: `a`, `a (2)`. */
export function labelRuns(inputs: ReadonlyArray<{ file: string; result: LoadResult }>): Run[] {
  const used = new Map<string, number>();
  return inputs.map(({ file, result }) => {
    const base = result.name.trim() || path.basename(file);
    const n = (used.get(base) ?? 0) + 1;
    used.set(base, n);
    return { file, result, label: n === 1 ? base : `${base} (${n})` };
  });
}

const collator = new Intl.Collator('en', { numeric: true });

export interface RoomBar {
  room: string;
  sent: number;
  acked: number;
  refused: number;
  deliveries: number;
  /** How many rooms this bar adds up (more than 1 only for the "others" bar). */
  rooms: number;
}

/** The `limit` busiest rooms (most sent, then name), and the others added up when there are more. */
export function topRooms(rooms: readonly RoomResult[], limit = ROOM_LIMIT): RoomBar[] {
  const sorted = [...rooms].sort((a, b) => b.sent - a.sent || b.acked + b.refused - (a.acked + a.refused) || collator.compare(a.room, b.room));
  const top: RoomBar[] = sorted.slice(0, limit).map((r) => ({ ...r, rooms: 1 }));
  const rest = sorted.slice(limit);
  if (rest.length) {
    const sum = (k: 'sent' | 'acked' | 'refused' | 'deliveries'): number => rest.reduce((s, r) => s + r[k], 0);
    top.push({ room: `others (${rest.length} rooms)`, sent: sum('sent'), acked: sum('acked'), refused: sum('refused'), deliveries: sum('deliveries'), rooms: rest.length });
  }
  return top;
}

const perSecond = (n: number, seconds: number): number | null => (seconds > 0 ? n / seconds : null);
const sortedTimeline = (r: LoadResult): TimelineEntry[] => [...r.timeline].sort((a, b) => a.t - b.t);

// ---------------------------------------------------------------------------------------------
// Number formatting for tables

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function fmtInt(n: number | null): string {
  return n === null || !Number.isFinite(n) ? '–' : intFmt.format(n);
}

export function fmtRate(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '–';
  return n >= 100 ? intFmt.format(n) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const v = n >= 1000 ? intFmt.format(n) : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n >= 1 ? n.toFixed(2) : n.toFixed(3);
  return `${v} ms`;
}

/** A share in percent; never rounded to 100% or 0% when it is not. */
export function pct(part: number, whole: number): string {
  if (!(whole > 0)) return '–';
  if (part === whole) return '100%';
  const s = ((part / whole) * 100).toFixed(2);
  if (part < whole && s === '100.00') return '>99.99%';
  if (part > 0 && s === '0.00') return '<0.01%';
  return `${s}%`;
}

// ---------------------------------------------------------------------------------------------
// Charts

const GREY = '#555555';

/** With several runs, colour tells the run and the line style the metric: one legend entry each. */
function factoredLegend(runs: readonly Run[], styles: Array<[string, Dash]>): LegendEntry[] {
  return [
    ...runs.flatMap((r, i): LegendEntry[] => (r.result.timeline.length ? [{ label: r.label, color: color(i), kind: 'line' }] : [])),
    ...styles.map(([label, dash]): LegendEntry => ({ label, color: GREY, dash, kind: 'line' })),
  ];
}

/** Throughput over time: acknowledged (and refused, when any) per second; deliveries per second. */
export function throughputChart(runs: readonly Run[]): string {
  const multi = runs.length > 1;
  const anyRefused = runs.some((r) => r.result.timeline.some((e) => e.refused > 0));
  const name = (r: Run, what: string): string => (multi ? `${r.label}: ${what}` : what);
  const acked: Series[] = [];
  const deliveries: Series[] = [];
  runs.forEach((r, i) => {
    const tl = sortedTimeline(r.result);
    if (!tl.length) return;
    acked.push({ label: name(r, 'acked/s'), color: multi ? color(i) : color(0), points: tl.map((e) => [e.t, e.acked]) });
    if (anyRefused) {
      acked.push({ label: name(r, 'refused/s'), color: multi ? color(i) : color(3), dash: 'dotted', points: tl.map((e) => [e.t, e.refused]) });
    }
    deliveries.push({ label: name(r, 'deliveries/s'), color: multi ? color(i) : color(2), points: tl.map((e) => [e.t, e.deliveries]) });
  });
  return lineChart({
    title: 'Throughput over time',
    xLabel: 'seconds since start',
    ...(multi ? { legend: factoredLegend(runs, anyRefused ? [['acked/s, deliveries/s', 'solid'], ['refused/s', 'dotted']] : []) } : {}),
    panels: [
      { title: anyRefused ? 'Messages acknowledged and refused per second' : 'Messages acknowledged per second', yLabel: 'messages/s', series: acked, scale: 'linear' },
      { title: 'Deliveries per second (each member’s receipt)', yLabel: 'deliveries/s', series: deliveries, scale: 'linear' },
    ],
  });
}

/** Latency percentiles over time: send→ack and send→delivery, p50 and p99, per second. */
export function latencyChart(runs: readonly Run[]): string {
  const multi = runs.length > 1;
  const panel = (which: 'ack' | 'deliver', title: string): LinePanel => {
    const series: Series[] = [];
    runs.forEach((r, i) => {
      const tl = sortedTimeline(r.result);
      if (!tl.length) return;
      // A second without acks (deliveries) has no latency: a gap, not a zero.
      const has = (e: TimelineEntry): boolean => (which === 'ack' ? e.acked : e.deliveries) > 0;
      for (const [q, dash, c] of [['p50', 'dashed', 0], ['p99', 'solid', 1]] as Array<['p50' | 'p99', Dash, number]>) {
        series.push({
          label: multi ? `${r.label}: ${q}` : q,
          color: multi ? color(i) : color(c),
          dash: multi ? dash : 'solid',
          points: tl.map((e) => [e.t, has(e) ? e[which][q] : null]),
        });
      }
    });
    return { title, yLabel: 'milliseconds', series, scale: 'auto' };
  };
  return lineChart({
    title: 'Latency percentiles over time',
    xLabel: 'seconds since start',
    ...(multi ? { legend: factoredLegend(runs, [['p50', 'dashed'], ['p99', 'solid']]) } : {}),
    panels: [panel('ack', 'Send → acknowledgement'), panel('deliver', 'Send → delivery')],
  });
}

/** Accepted (acknowledged) and refused messages per room, for one run. */
export function roomsChart(run: Run): string {
  const bars = topRooms(run.result.rooms);
  const more = run.result.rooms.length > ROOM_LIMIT;
  return barChart({
    title: `Per-room accepted vs refused: ${run.label}`,
    panels: [{
      title: more ? `the ${ROOM_LIMIT} busiest of ${fmtInt(run.result.rooms.length)} rooms, and the others added up (not to scale when cut)` : `${run.result.rooms.length} room${run.result.rooms.length === 1 ? '' : 's'}`,
      categories: bars.map((b) => b.room),
      groups: [
        { label: 'accepted (acknowledged)', color: color(0), values: bars.map((b) => b.acked) },
        { label: 'refused', color: color(3), values: bars.map((b) => b.refused) },
      ],
      valueLabel: 'messages',
      ...(more ? { aggregate: bars.length - 1 } : {}),
    }],
  });
}

/** Whole-run throughput and p99 latency, one band per run. */
export function compareChart(runs: readonly Run[]): string {
  const labels = runs.map((r) => r.label);
  const rate = (f: (r: LoadResult) => number) => runs.map((r) => perSecond(f(r.result), r.result.durationSeconds) ?? 0);
  const throughput: BarPanel = {
    title: 'Throughput (average over the run)',
    categories: labels,
    groups: [
      { label: 'acked/s', color: color(0), values: rate((r) => r.totals.acked) },
      { label: 'deliveries/s', color: color(2), values: rate((r) => r.totals.deliveries) },
    ],
    valueLabel: 'per second',
  };
  const latency: BarPanel = {
    title: 'p99 latency',
    categories: labels,
    groups: [
      { label: 'ack p99', color: color(1), values: runs.map((r) => r.result.latency.ack.p99) },
      { label: 'deliver p99', color: color(4), values: runs.map((r) => r.result.latency.deliver.p99) },
    ],
    valueLabel: 'milliseconds',
    format: (v) => `${fmtShort(v)} ms`,
  };
  return barChart({ title: 'Runs compared: throughput and p99 latency', panels: [throughput, latency] });
}

// ---------------------------------------------------------------------------------------------
// HTML

const STYLE = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: #1d1d1f; background: #fafafa; }
main { max-width: 1040px; margin: 0 auto; }
h1 { font-size: 24px; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-top: 10px; border-top: 1px solid #ddd; overflow-wrap: anywhere; }
h3 { font-size: 15px; margin: 20px 0 8px; }
p.sub { margin: 0 0 8px; color: #555; }
.note { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 14px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f0f2; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name, th.name { max-width: 320px; overflow-wrap: anywhere; white-space: normal; }
.ratio { display: inline-block; min-width: 4.2em; margin-left: 6px; font-size: 12px; color: #777; text-align: right; }
th .ratio { display: block; margin: 0; }
.better { color: #0a7d32; }
.worse { color: #b3261e; }
.ok { color: #0a7d32; font-weight: 600; }
.bad { color: #b3261e; font-weight: 600; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 12px; }
dl.meta dt { color: #555; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12.5px ui-monospace, 'DejaVu Sans Mono', monospace; background: #f0f0f2; padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
figure { margin: 12px 0 18px; background: #fff; border: 1px solid #e2e2e2; padding: 6px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 12px; color: #666; padding: 4px 6px 0; }
.tables { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; color: #333; }
@media print { body { background: #fff; padding: 0; } h2 { break-before: auto; } figure { break-inside: avoid; } }
`;

const h = esc;
/** User text in running HTML: escaped and isolated from the surrounding text direction. */
const bdi = (s: string): string => `<bdi>${h(s)}</bdi>`;

function figure(chart: Chart, caption = ''): string {
  return `<figure>${chart.svg}<figcaption>${caption ? `${caption} · ` : ''}<a href="${h(encodeURI(chart.png))}">${h(chart.png)}</a></figcaption></figure>`;
}

function booksCheck(r: LoadResult): string {
  const t = r.totals;
  const diff = t.sent - (t.acked + t.refused + t.errors);
  return diff === 0
    ? '<span class="ok">balanced</span> (sent = acked + refused + errors)'
    : `<span class="bad">off by ${fmtInt(diff)}</span> (sent − acked − refused − errors)`;
}

function summaryTable(r: LoadResult): string {
  const t = r.totals;
  const s = r.durationSeconds;
  const row = (name: string, n: number, rate: boolean, extra = ''): string =>
    `<tr><th>${name}</th><td class="n">${fmtInt(n)}</td><td class="n">${rate ? fmtRate(perSecond(n, s)) : ''}</td><td>${extra}</td></tr>`;
  const deliveredOk = t.deliveries === t.expectedDeliveries && t.lost === 0 && t.duplicated === 0;
  return (
    '<table><thead><tr><th>messages</th><th class="n">count</th><th class="n">per second</th><th></th></tr></thead><tbody>' +
    row('sent', t.sent, true) +
    row('acknowledged', t.acked, true, pct(t.acked, t.sent)) +
    row('refused', t.refused, true, pct(t.refused, t.sent)) +
    row('errors', t.errors, true, pct(t.errors, t.sent)) +
    row('deliveries', t.deliveries, true, `of ${fmtInt(t.expectedDeliveries)} expected (${pct(t.deliveries, t.expectedDeliveries)})`) +
    row('lost', t.lost, false, t.lost ? '<span class="bad">lost deliveries</span>' : '') +
    row('duplicated', t.duplicated, false, t.duplicated ? '<span class="bad">duplicate deliveries</span>' : '') +
    `<tr><th>books</th><td colspan="3">${booksCheck(r)}; deliveries ${deliveredOk ? '<span class="ok">complete</span>' : '<span class="bad">incomplete</span>'}</td></tr>` +
    '</tbody></table>'
  );
}

function connectionsTable(r: LoadResult): string {
  const t = r.totals;
  return (
    '<table><thead><tr><th>connections</th><th class="n">count</th></tr></thead><tbody>' +
    `<tr><th>opened</th><td class="n">${fmtInt(t.connectionsOpened)}</td></tr>` +
    `<tr><th>failed</th><td class="n">${fmtInt(t.connectionsFailed)}</td></tr>` +
    `<tr><th>dropped</th><td class="n">${fmtInt(t.connectionsDropped)}</td></tr>` +
    '</tbody></table>'
  );
}

function latencyTable(r: LoadResult): string {
  const row = (name: string, p: Percentiles): string =>
    `<tr><th>${name}</th><td class="n">${fmtInt(p.count)}</td>${[p.mean, p.p50, p.p90, p.p99, p.p999, p.max].map((v) => `<td class="n">${fmtMs(v)}</td>`).join('')}</tr>`;
  return (
    '<table><thead><tr><th>latency</th><th class="n">samples</th><th class="n">mean</th><th class="n">p50</th><th class="n">p90</th><th class="n">p99</th><th class="n">p99.9</th><th class="n">max</th></tr></thead><tbody>' +
    row('send → ack', r.latency.ack) +
    row('send → delivery', r.latency.deliver) +
    '</tbody></table>'
  );
}

function refusedTable(r: LoadResult): string {
  const codes = Object.entries(r.refusedByCode).sort(([a, x], [b, y]) => y - x || collator.compare(a, b));
  if (!codes.length) return '';
  return (
    '<table><thead><tr><th>refused by code</th><th class="n">count</th></tr></thead><tbody>' +
    codes.map(([code, n]) => `<tr><td class="name"><code>${h(code)}</code></td><td class="n">${fmtInt(n)}</td></tr>`).join('') +
    '</tbody></table>'
  );
}

function optionValue(v: unknown): string {
  if (typeof v === 'string') return v;
  const json = JSON.stringify(v);
  return json === undefined ? String(v) : json;
}

function metaList(run: Run): string {
  const r = run.result;
  const opts = Object.entries(r.options);
  const item = (k: string, v: string): string => `<dt>${k}</dt><dd>${v}</dd>`;
  return (
    '<dl class="meta">' +
    item('name', bdi(run.label)) +
    item('file', `<code>${h(run.file)}</code>`) +
    item('started', h(r.startedAt)) +
    item('duration', `${h(fmtRate(r.durationSeconds))} s`) +
    item('target', `${h(r.target.kind)} over ${h(r.target.transport)}${r.target.addresses.length ? ` at ${r.target.addresses.map((a) => `<code>${h(a)}</code>`).join(' ')}` : ''}`) +
    item('machine', `${fmtInt(r.machine.cores)} cores, Node ${h(r.machine.node)}, ${bdi(r.machine.hostname)}`) +
    item('options', opts.length ? opts.map(([k, v]) => `<code>${h(k)}=${h(optionValue(v))}</code>`).join(' ') : '<span class="note">none</span>') +
    '</dl>'
  );
}

function roomsTable(r: LoadResult): string {
  if (!r.rooms.length) return '';
  const rows = topRooms(r.rooms, Number.POSITIVE_INFINITY)
    .map((x) => `<tr><td class="name">${bdi(x.room)}</td><td class="n">${fmtInt(x.sent)}</td><td class="n">${fmtInt(x.acked)}</td><td class="n">${fmtInt(x.refused)}</td><td class="n">${fmtInt(x.deliveries)}</td></tr>`)
    .join('');
  return (
    `<details><summary>all ${fmtInt(r.rooms.length)} rooms, busiest first</summary>` +
    `<table><thead><tr><th class="name">room</th><th class="n">sent</th><th class="n">acked</th><th class="n">refused</th><th class="n">deliveries</th></tr></thead><tbody>${rows}</tbody></table></details>`
  );
}

interface Metric {
  name: string;
  value: (r: LoadResult) => number | null;
  fmt: (n: number | null) => string;
  /** Which way is better, for colouring the ratio; 0 when neither. */
  better: 1 | -1 | 0;
}

const lat = (which: 'ack' | 'deliver', q: keyof Percentiles, name: string): Metric => ({
  name: `${which} ${name}`,
  value: (r) => r.latency[which][q],
  fmt: (n) => (n === null ? '–' : fmtMs(n)),
  better: -1,
});

const METRICS: Metric[] = [
  { name: 'acked/s', value: (r) => perSecond(r.totals.acked, r.durationSeconds), fmt: fmtRate, better: 1 },
  { name: 'deliveries/s', value: (r) => perSecond(r.totals.deliveries, r.durationSeconds), fmt: fmtRate, better: 1 },
  { name: 'duration (s)', value: (r) => r.durationSeconds, fmt: fmtRate, better: 0 },
  { name: 'sent', value: (r) => r.totals.sent, fmt: fmtInt, better: 0 },
  { name: 'acked', value: (r) => r.totals.acked, fmt: fmtInt, better: 0 },
  { name: 'refused', value: (r) => r.totals.refused, fmt: fmtInt, better: -1 },
  { name: 'errors', value: (r) => r.totals.errors, fmt: fmtInt, better: -1 },
  { name: 'deliveries', value: (r) => r.totals.deliveries, fmt: fmtInt, better: 0 },
  { name: 'expected deliveries', value: (r) => r.totals.expectedDeliveries, fmt: fmtInt, better: 0 },
  { name: 'lost', value: (r) => r.totals.lost, fmt: fmtInt, better: -1 },
  { name: 'duplicated', value: (r) => r.totals.duplicated, fmt: fmtInt, better: -1 },
  { name: 'connections opened', value: (r) => r.totals.connectionsOpened, fmt: fmtInt, better: 0 },
  { name: 'connections failed', value: (r) => r.totals.connectionsFailed, fmt: fmtInt, better: -1 },
  { name: 'connections dropped', value: (r) => r.totals.connectionsDropped, fmt: fmtInt, better: -1 },
  lat('ack', 'p50', 'p50'), lat('ack', 'p90', 'p90'), lat('ack', 'p99', 'p99'), lat('ack', 'p999', 'p99.9'), lat('ack', 'max', 'max'),
  lat('deliver', 'p50', 'p50'), lat('deliver', 'p90', 'p90'), lat('deliver', 'p99', 'p99'), lat('deliver', 'p999', 'p99.9'), lat('deliver', 'max', 'max'),
];

/** `×1.23` against the first run, or null when there is nothing to divide by. */
export function ratio(value: number | null, base: number | null): number | null {
  if (value === null || base === null || !Number.isFinite(value) || !Number.isFinite(base)) return null;
  if (base === 0) return value === 0 ? 1 : null;
  return value / base;
}

function ratioCell(m: Metric, value: number | null, base: number | null): string {
  const q = ratio(value, base);
  if (value !== null && value === base) return '<span class="ratio">=</span>';
  if (q === null) return '<span class="ratio">–</span>';
  const cls = m.better === 0 || Math.abs(q - 1) < 0.05 ? '' : (q > 1) === (m.better > 0) ? ' better' : ' worse';
  return `<span class="ratio${cls}">×${q >= 100 ? q.toFixed(0) : q.toFixed(2)}</span>`;
}

function comparisonTable(runs: readonly Run[]): string {
  const head = `<tr><th>metric</th>${runs.map((r, i) => `<th class="n name"><a href="#run-${i + 1}">${bdi(r.label)}</a>${i === 0 ? '<span class="ratio">baseline</span>' : ''}</th>`).join('')}</tr>`;
  const first = runs[0];
  const rows = METRICS.map((m) => {
    const base = first ? m.value(first.result) : null;
    const cells = runs.map((r, i) => {
      const v = m.value(r.result);
      return `<td class="n">${m.fmt(v)}${i > 0 ? ratioCell(m, v, base) : ''}</td>`;
    });
    return `<tr><th>${m.name}</th>${cells.join('')}</tr>`;
  });
  const target = `<tr><th>target</th>${runs.map((r) => `<td class="n">${h(r.result.target.kind)}/${h(r.result.target.transport)}</td>`).join('')}</tr>`;
  const books = `<tr><th>books</th>${runs.map((r) => {
    const t = r.result.totals;
    const ok = t.sent === t.acked + t.refused + t.errors && t.lost === 0 && t.duplicated === 0 && t.deliveries === t.expectedDeliveries;
    return `<td class="n">${ok ? '<span class="ok">balanced</span>' : '<span class="bad">check</span>'}</td>`;
  }).join('')}</tr>`;
  return `<table><thead>${head}</thead><tbody>${target}${rows.join('')}${books}</tbody></table>`;
}

/** The charts and the page for one or more runs; the first run is the baseline of comparisons. */
export function buildReport(runs: readonly Run[], opts: { title?: string } = {}): Report {
  if (!runs.length) throw new Error('buildReport: no runs');
  const multi = runs.length > 1;
  const title = opts.title ?? `Parley load report: ${runs.map((r) => r.label).join(' vs ')}`;
  const hasTimeline = runs.some((r) => r.result.timeline.length > 0);
  const charts: Chart[] = [];
  const chart = (png: string, chartTitle: string, svg: string): Chart => {
    const c = { png, title: chartTitle, svg };
    charts.push(c);
    return c;
  };

  const compare = multi ? chart('compare.png', 'Runs compared', compareChart(runs)) : null;
  const throughput = hasTimeline ? chart('throughput.png', 'Throughput over time', throughputChart(runs)) : null;
  const latency = hasTimeline ? chart('latency.png', 'Latency percentiles over time', latencyChart(runs)) : null;
  const rooms = runs.map((r, i) => (r.result.rooms.length ? chart(multi ? `rooms-${i + 1}.png` : 'rooms.png', `Per-room: ${r.label}`, roomsChart(r)) : null));
  const qos = runs.map((r, i) => (r.result.qos ? chart(multi ? `qos-${i + 1}.png` : 'qos.png', `QoS per room: ${r.label}`, qosChart(r.result.qos, r.label)) : null));
  const qosPart = (run: Run, i: number): string => {
    const q = run.result.qos;
    const c = qos[i];
    return q && c ? qosSectionHtml(q, figure(c, 'one dot per room')) : '';
  };

  const parts: string[] = [];
  parts.push(`<header><h1>${h(title)}</h1><p class="sub">${multi ? `${runs.length} runs; ratios are against the first, <bdi>${h(runs[0]?.label ?? '')}</bdi>.` : `one run, started ${h(runs[0]?.result.startedAt ?? '')}.`}</p></header>`);

  if (compare) {
    parts.push(`<section id="comparison"><h2>Comparison</h2>${comparisonTable(runs)}<p class="note">Rates are totals divided by each run’s duration. Green: better than the baseline by 5% or more; red: worse.</p>${figure(compare)}</section>`);
  }
  const empty = runs.filter((r) => !r.result.timeline.length);
  const overTime =
    '<section id="over-time"><h2>Over time</h2>' +
    (throughput && latency
      ? (empty.length ? `<p class="note">No timeline in ${empty.map((r) => bdi(r.label)).join(', ')}.</p>` : '') +
        figure(throughput, 'one point per second') +
        figure(latency, 'p50 and p99 of the messages sent in each second; a gap is a second without samples')
      : `<p class="note">No timeline in the result file${multi ? 's' : ''}: nothing to plot over time.</p>`) +
    '</section>';

  const summary = (run: Run, i: number): string =>
    `<h2>${multi ? `Run ${i + 1}: ${bdi(run.label)}` : 'Summary'}</h2>${metaList(run)}` +
    `<div class="tables">${summaryTable(run.result)}${connectionsTable(run.result)}${refusedTable(run.result)}</div>${latencyTable(run.result)}`;
  const roomsPart = (run: Run, i: number): string => {
    const c = rooms[i];
    return c ? figure(c, 'accepted = acknowledged') + roomsTable(run.result) : '<p class="note">No per-room figures in this result.</p>';
  };

  if (multi) {
    parts.push(overTime);
    runs.forEach((run, i) => parts.push(`<section id="run-${i + 1}">${summary(run, i)}${run.result.qos ? `<h3>QoS: per-room limits</h3>${qosPart(run, i)}` : ''}<h3>Rooms</h3>${roomsPart(run, i)}</section>`));
  } else {
    const run = runs[0] as Run;
    if (run.result.qos) parts.push(`<section id="qos"><h2>QoS: per-room limits</h2>${qosPart(run, 0)}</section>`);
    parts.push(`<section id="run-1">${summary(run, 0)}</section>`, overTime, `<section id="rooms"><h2>Rooms</h2>${roomsPart(run, 0)}</section>`);
  }

  const html =
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${h(title)}</title><style>${STYLE}</style></head>\n<body><main>\n${parts.join('\n')}\n` +
    '<footer class="note"><p>Written by <code>parley report</code>. Self-contained: no scripts, no external resources; PNG copies of each chart are beside this file.</p></footer>' +
    '\n</main></body></html>\n';
  return { title, html, charts };
}
