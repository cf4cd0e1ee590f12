// The cluster's time series: throughput, refusals and latency, one point per feed tick, the last
// POINTS ticks, drawn with uPlot (a small canvas chart library, bundled).

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { compact, type Tick } from './dashboard-model.js';

const POINTS = 300;

interface SeriesSpec {
  label: string;
  stroke: string;
  fill?: string;
  pick: (t: Tick) => number | null;
}

interface ChartSpec {
  title: string;
  unit: string;
  series: SeriesSpec[];
}

const CHARTS: ChartSpec[] = [
  {
    title: 'Throughput (msg/s, cluster)',
    unit: 'msg/s',
    series: [{ label: 'stored', stroke: '#2c7bb6', fill: '#2c7bb622', pick: (t) => t.rates.accepted }],
  },
  {
    title: 'Refusals (msg/s)',
    unit: 'msg/s',
    series: [
      { label: 'QoS limit', stroke: '#d7191c', fill: '#d7191c18', pick: (t) => t.rates.refusedQos },
      { label: 'backlog', stroke: '#f28e2b', pick: (t) => t.rates.refusedBacklog },
      { label: 'failed', stroke: '#7b3294', pick: (t) => t.rates.failed },
    ],
  },
  {
    title: 'Latency p99 (ms, worst instance)',
    unit: 'ms',
    series: [
      { label: 'commit', stroke: '#1a9641', pick: (t) => t.latency.commitP99Ms },
      { label: 'fan-out', stroke: '#8c6bb1', pick: (t) => t.latency.fanoutP99Ms },
    ],
  },
];

class Chart {
  readonly data: (number | null)[][];
  readonly plot: uPlot;

  constructor(readonly spec: ChartSpec, host: HTMLElement, width: number) {
    this.data = [[], ...spec.series.map(() => [])];
    const box = document.createElement('div');
    box.className = 'chart';
    host.append(box);
    this.plot = new uPlot(
      {
        title: spec.title,
        width,
        height: 150,
        cursor: { drag: { x: false, y: false } },
        // Values show on the axes; a legend that follows the pointer would only add "--" cells.
        legend: { live: false },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{ stroke: '#6b7280', grid: { stroke: '#e5e7eb' } }, { stroke: '#6b7280', grid: { stroke: '#e5e7eb' }, size: 48, values: (_u, splits) => splits.map((v) => compact(v)) }],
        series: [{}, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, ...(s.fill ? { fill: s.fill } : {}), spanGaps: false }))],
      },
      this.data as uPlot.AlignedData,
      box,
    );
  }

  push(t: Tick): void {
    (this.data[0] as (number | null)[]).push(t.t / 1000);
    this.spec.series.forEach((s, i) => (this.data[i + 1] as (number | null)[]).push(s.pick(t)));
    if ((this.data[0] as unknown[]).length > POINTS) for (const d of this.data) d.shift();
    this.plot.setData(this.data as uPlot.AlignedData);
  }
}

export class Charts {
  private readonly charts: Chart[];

  constructor(private readonly host: HTMLElement) {
    const w = this.width();
    this.charts = CHARTS.map((c) => new Chart(c, host, w));
    new ResizeObserver(() => {
      const width = this.width();
      for (const c of this.charts) c.plot.setSize({ width, height: 150 });
    }).observe(host);
  }

  private width(): number {
    const cols = this.host.clientWidth > 900 ? 3 : 1;
    return Math.max(240, Math.floor((this.host.clientWidth - (cols - 1) * 12) / cols) - 2);
  }

  /** Adds one tick; the first one of a feed (no interval, no rates) is skipped. */
  push(t: Tick): void {
    if (t.dt <= 0) return;
    for (const c of this.charts) c.push(t);
  }
}
