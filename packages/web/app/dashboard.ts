// The dashboard: every room of the cluster as a heat map and a table of the first of them, the
// instances (each as it reports itself in the registry), the shards, and the cluster's
// throughput, refusals and latency, live from `GET /api/live` (server-sent events, a tick a
// second). All counters are cluster-wide, so it does not matter which instance serves the page.
//
// An update (a tick, or a change of the filters) is applied at the next animation frame; the
// time it takes is shown in the header and kept in `window.parleyDashboard` for the tests.

import { Charts } from './dashboard-charts.js';
import { HeatGrid } from './dashboard-grid.js';
import { compact, Model, type Filter, type GroupKey, type RoomMeta, type SortKey, type Tick } from './dashboard-model.js';
import { LiveTable, RoomTable, instanceRows, shardRows } from './dashboard-tables.js';

/** Rows of the room table (the heat map shows them all). */
const TABLE_ROWS = 25;

interface Probe {
  /** ms to apply and draw each update, the latest last (at most 600) */
  frames: number[];
  ticks: number;
  rooms: number;
}

declare global {
  interface Window {
    parleyDashboard: Probe;
  }
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

const model = new Model();
const probe: Probe = (window.parleyDashboard = { frames: [], ticks: 0, rooms: 0 });
const grid = new HeatGrid($<HTMLCanvasElement>('grid'));
const roomTable = new RoomTable($<HTMLTableElement>('rooms'));
const instances = new LiveTable($<HTMLTableElement>('instances'), ['', '', '', 'num', 'num', 'num', 'num', 'num', 'num', 'num']);
const shards = new LiveTable($<HTMLTableElement>('shards'), ['', '', '', 'num', 'num', 'num', 'num']);
const charts = new Charts($('charts'));
const wrap = $('grid-wrap');

const filter: Filter = { q: '', shard: '', cls: '', sort: 'busiest', group: 'none' };
const q = $<HTMLInputElement>('q');
const fShard = $<HTMLSelectElement>('f-shard');
const fClass = $<HTMLSelectElement>('f-class');
const fSort = $<HTMLSelectElement>('f-sort');
const fGroup = $<HTMLSelectElement>('f-group');

function readFilter(): void {
  filter.q = q.value;
  filter.shard = fShard.value;
  filter.cls = fClass.value;
  filter.sort = fSort.value as SortKey;
  filter.group = fGroup.value as GroupKey;
  schedule();
}
$('filters').addEventListener('submit', (e) => e.preventDefault());
q.addEventListener('input', readFilter);
for (const s of [fShard, fClass, fSort, fGroup]) s.addEventListener('change', readFilter);

/** Keeps a select's options equal to `values` (plus its first, "all"), and its choice. */
function options(sel: HTMLSelectElement, values: string[], label: (v: string) => string): void {
  const want = ['', ...values];
  const have = [...sel.options].map((o) => o.value);
  if (want.join('\0') === have.join('\0')) return;
  const chosen = sel.value;
  sel.replaceChildren(
    ...want.map((v) => {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = v === '' ? 'all' : label(v);
      return o;
    }),
  );
  sel.value = want.includes(chosen) ? chosen : '';
}

let pending = false;
function schedule(): void {
  if (pending) return;
  pending = true;
  requestAnimationFrame(render);
}

function text(id: string, value: string | number): void {
  const e = $(id);
  const t = String(value);
  if (e.textContent !== t) e.textContent = t;
}

function render(): void {
  pending = false;
  const start = performance.now();
  const groups = model.view(filter);
  grid.draw(groups, wrap.clientWidth);
  const shown = groups.flatMap((g) => g.rooms);
  roomTable.set(shown.slice(0, TABLE_ROWS));
  text('shown', `${shown.length} of ${model.rooms.size} rooms; the table lists the first ${Math.min(TABLE_ROWS, shown.length)}`);
  const t = model.last;
  if (t) {
    const now = Date.now();
    instances.set(instanceRows(t.instances, now));
    shards.set(shardRows(t.shards));
    text('c-instances', t.instances.length);
    text('c-connections', compact(t.instances.reduce((n, i) => n + i.connections, 0)));
    text('c-rate', compact(t.rates.accepted));
    text('c-refused', compact(t.rates.refusedQos + t.rates.refusedBacklog));
    text('c-total', compact(t.totals.accepted));
    text('c-refused-total', compact(t.totals.refusedQos + t.totals.refusedBacklog));
    text('c-rooms', compact(model.rooms.size));
    text('c-shards', t.shards.length);
    text('updated', `updated ${new Date(t.t).toLocaleTimeString()}`);
    options(fShard, [...model.shards().map(String), 'none'], (v) => (v === 'none' ? 'not pinned yet' : `shard ${v}`));
    options(fClass, model.classes(), (v) => v);
  }
  if (tipRoom) showTip(tipRoom.x, tipRoom.y);
  const ms = performance.now() - start;
  probe.frames.push(ms);
  if (probe.frames.length > 600) probe.frames.shift();
  probe.rooms = model.rooms.size;
  text('frame', `update ${ms.toFixed(1)} ms`);
}

// The tooltip follows the pointer over the heat map, and is rewritten with each update.
const tip = $('tip');
let tipRoom: { x: number; y: number } | null = null;
function showTip(x: number, y: number): void {
  const r = grid.roomAt(x, y);
  if (!r) {
    tip.hidden = true;
    return;
  }
  const lines = [
    r.name,
    `shard ${r.shard ?? '- (not pinned yet)'} · class ${r.cls || '-'}${r.override ? ' (its own)' : ''}`,
    `limit ${r.limit === null ? 'none' : `${r.limit} msg/s, burst ${r.burst ?? '-'}`}`,
    `now ${r.rate} msg/s stored, ${r.refusedRate} refused/s`,
    `so far ${r.accepted} stored, ${r.refusedQos} refused (QoS), ${r.refusedBacklog} (backlog), ${r.failed} failed`,
  ];
  tip.replaceChildren(...lines.map((l, i) => Object.assign(document.createElement(i === 0 ? 'strong' : 'div'), { textContent: l })));
  tip.hidden = false;
  const left = Math.min(x + 14, wrap.clientWidth - tip.offsetWidth - 4);
  tip.style.left = `${Math.max(0, left)}px`;
  tip.style.top = `${y + 14}px`;
}
const canvas = $<HTMLCanvasElement>('grid');
canvas.addEventListener('mousemove', (e) => {
  tipRoom = { x: e.offsetX, y: e.offsetY };
  showTip(e.offsetX, e.offsetY);
});
canvas.addEventListener('mouseleave', () => {
  tipRoom = null;
  tip.hidden = true;
});
// A click puts the room in the search box: the table then shows it first.
canvas.addEventListener('click', (e) => {
  const r = grid.roomAt(e.offsetX, e.offsetY);
  if (!r) return;
  grid.selected = r.name;
  q.value = r.name;
  readFilter();
});
new ResizeObserver(() => schedule()).observe(wrap);

const status = $('status');
function connect(): void {
  const es = new EventSource('/api/live');
  es.addEventListener('open', () => {
    status.textContent = 'live';
    status.className = 'status online';
  });
  es.addEventListener('rooms', (e) => {
    model.setMeta((JSON.parse((e as MessageEvent<string>).data) as { rooms: RoomMeta[] }).rooms);
    schedule();
  });
  es.addEventListener('tick', (e) => {
    const t = JSON.parse((e as MessageEvent<string>).data) as Tick;
    model.applyTick(t);
    charts.push(t);
    probe.ticks++;
    schedule();
  });
  es.addEventListener('failure', () => {
    status.textContent = 'cluster not answering';
    status.className = 'status';
  });
  // EventSource reconnects by itself (after the `retry` the server sets); a new stream starts
  // with the whole state again.
  es.addEventListener('error', () => {
    status.textContent = 'reconnecting';
    status.className = 'status';
  });
}

connect();
