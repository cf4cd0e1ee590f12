/*
 * Small hand-written SVG charts for `parley report`: line charts over time and horizontal grouped
 * bar charts, each one or more panels stacked under one title and one legend. The output is plain
 * SVG 1.1 with no scripts, styles or external references, so the same string is inlined in the
 * HTML report and rasterised to PNG by resvg. Every piece of text passes through `esc`.
 */

export const FONT = "'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif";

/** Okabe–Ito: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000', '#999999'] as const;

export const color = (i: number): string => PALETTE[i % PALETTE.length] as string;

// Characters XML 1.0 does not allow, even as references (C0 controls but tab, CR and LF;
// U+FFFE/U+FFFF; lone surrogates). An HTML parser shrugs them off, resvg's XML parser does not.
const NOT_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Text for XML or HTML content and attribute values, whatever it contains. */
export function esc(s: string): string {
  return s
    .replace(NOT_XML_CHAR, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** At most `max` characters (code points), with an ellipsis when cut. */
export function truncate(s: string, max: number): string {
  const cps = Array.from(s);
  return cps.length <= max ? s : `${cps.slice(0, Math.max(1, max - 1)).join('')}…`;
}

/** 1.23k, 45.6M: three significant digits at most, for ticks and bar labels. */
export function fmtShort(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  const units: Array<[number, string]> = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, suffix] of units) if (a >= scale) return `${trim(v / scale)}${suffix}`;
  return trim(v);
}

function trim(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(a)));
  return String(Number(v.toFixed(digits)));
}

const round = (v: number): number => Math.round(v * 10) / 10;
const clean = (v: number): number => Number(v.toPrecision(12));

/** Round-number ticks covering [min, max] (the last tick is at or above max). */
export function niceTicks(min: number, max: number, target = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max <= min) max = min + (min === 0 ? 1 : Math.abs(min));
  const rough = (max - min) / target;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(clean(i * step));
  return ticks;
}

/** Decade ticks (with 2 and 5 between when the range is short) covering [min, max], min > 0. */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  let hi = Math.ceil(Math.log10(max));
  if (hi <= lo) hi = lo + 1;
  const ticks: number[] = [];
  for (let k = lo; k <= hi; k++) {
    for (const m of hi - lo <= 3 ? [1, 2, 5] : [1]) {
      const v = clean(m * 10 ** k);
      if (k === hi && m > 1) break;
      ticks.push(v);
    }
  }
  return ticks;
}

export type Dash = 'solid' | 'dashed' | 'dotted';
const DASH: Record<Dash, string> = { solid: '', dashed: '7 4', dotted: '2 3' };

export interface LegendEntry {
  label: string;
  color: string;
  dash?: Dash;
  kind: 'line' | 'box';
}

const W = 960;
const FS = 12;
const CHAR_W = FS * 0.62; // DejaVu Sans is wide; over-estimating keeps labels inside the frame
const TITLE_H = 40;
const LEGEND_ROW = 20;

function svgOpen(width: number, height: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${esc(FONT)}" font-size="${FS}" role="img" aria-label="${esc(title)}">` +
    `<title>${esc(title)}</title><rect width="${width}" height="${height}" fill="#ffffff"/>` +
    `<text x="16" y="26" font-size="16" font-weight="bold" fill="#222">${esc(truncate(title, Math.floor((width - 32) / (16 * 0.68))))}</text>`
  );
}

/** Legend entries flowed in rows across the width; returns the markup and its height. */
function legend(entries: LegendEntry[], top: number, left: number, width: number): { svg: string; height: number } {
  const seen = new Set<string>();
  const unique = entries.filter((e) => {
    const key = `${e.label}\u0000${e.color}\u0000${e.dash ?? ''}\u0000${e.kind}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if (!unique.length) return { svg: '', height: 0 };
  let x = left;
  let row = 0;
  let out = '';
  for (const e of unique) {
    const text = truncate(e.label, 48);
    const w = 30 + Array.from(text).length * CHAR_W + 18;
    if (x > left && x + w > left + width) {
      x = left;
      row++;
    }
    const y = top + row * LEGEND_ROW + 10;
    const mark =
      e.kind === 'box'
        ? `<rect x="${round(x)}" y="${y - 6}" width="22" height="12" fill="${e.color}"/>`
        : `<line x1="${round(x)}" y1="${y}" x2="${round(x + 22)}" y2="${y}" stroke="${e.color}" stroke-width="2.5"${e.dash && e.dash !== 'solid' ? ` stroke-dasharray="${DASH[e.dash]}"` : ''}/>`;
    out += `<g>${text !== e.label ? `<title>${esc(e.label)}</title>` : ''}${mark}<text x="${round(x + 28)}" y="${y}" dy="0.35em" fill="#222">${esc(text)}</text></g>`;
    x += w;
  }
  return { svg: out, height: (row + 1) * LEGEND_ROW + 8 };
}

// ---------------------------------------------------------------------------------------------
// Line charts

export interface Series {
  label: string;
  color: string;
  dash?: Dash;
  /** [x, y]; a null (or, on a log scale, a non-positive) y leaves a gap. */
  points: ReadonlyArray<readonly [number, number | null]>;
  /** each point a dot, no line between them (a scatter) */
  dots?: boolean;
}

export interface LinePanel {
  title?: string;
  yLabel: string;
  series: Series[];
  /** 'auto': logarithmic when the positive values span more than `LOG_RATIO`. */
  scale?: 'linear' | 'log' | 'auto';
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  panels: LinePanel[];
  panelHeight?: number;
  /** Instead of one entry per series: e.g. one per run (colour) and one per metric (dash). */
  legend?: LegendEntry[];
}

export const LOG_RATIO = 30;

const ML = 76;
const MR = 24;

/** A line chart of one or more panels stacked over a shared legend; x ranges are shared too. */
export function lineChart(o: LineChartOptions): string {
  const ph = o.panelHeight ?? 220;
  const xs = o.panels.flatMap((p) => p.series.flatMap((s) => s.points.filter(([, y]) => y !== null && Number.isFinite(y)).map(([x]) => x))).filter(Number.isFinite);
  let xMin = xs.length ? Math.min(...xs) : 0;
  let xMax = xs.length ? Math.max(...xs) : 1;
  if (xMax <= xMin) {
    xMin -= 1;
    xMax += 1;
  }
  const leg = legend(
    o.legend ?? o.panels.flatMap((p) => p.series.map((s): LegendEntry => ({ label: s.label, color: s.color, dash: s.dash ?? 'solid', kind: s.dots ? 'box' : 'line' }))),
    TITLE_H, ML, W - ML - MR,
  );
  let y = TITLE_H + leg.height;
  const body: string[] = [];
  for (const p of o.panels) {
    const r = linePanel(p, o.xLabel, y, ph, xMin, xMax);
    body.push(r.svg);
    y += r.height;
  }
  const height = Math.round(y + 8);
  return `${svgOpen(W, height, o.title)}${leg.svg}${body.join('')}</svg>`;
}

function linePanel(p: LinePanel, xLabel: string, top: number, ph: number, xMin: number, xMax: number): { svg: string; height: number } {
  const titleH = p.title ? 22 : 4;
  const y0 = top + titleH; // top of the plot area
  const x0 = ML;
  const pw = W - ML - MR;
  const ys = p.series.flatMap((s) => s.points.map(([, v]) => v)).filter((v): v is number => v !== null && Number.isFinite(v));
  const positive = ys.filter((v) => v > 0);
  const maxY = ys.length ? Math.max(...ys) : 0;
  const minPos = positive.length ? Math.min(...positive) : 0;
  const log = p.scale === 'log' ? positive.length > 0 : p.scale === 'auto' ? positive.length > 0 && maxY / minPos > LOG_RATIO : false;

  // Linear panels start at 0, or below it when a value is negative (an error in percent).
  const minY = ys.length ? Math.min(0, ...ys) : 0;
  const yTicks = log ? logTicks(minPos, maxY) : niceTicks(minY, maxY > 0 ? maxY : minY < 0 ? 0 : 1);
  const yLo = yTicks[0] ?? 0;
  const yHi = yTicks[yTicks.length - 1] ?? 1;
  const sy = (v: number): number => {
    const f = log ? (Math.log10(v) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo)) : (v - yLo) / (yHi - yLo || 1);
    return y0 + ph - f * ph;
  };
  const sx = (v: number): number => x0 + ((v - xMin) / (xMax - xMin)) * pw;

  let out = '<g>';
  if (p.title) out += `<text x="${x0}" y="${top + 15}" font-weight="bold" fill="#333">${esc(truncate(p.title, 100))}</text>`;
  for (const t of yTicks) {
    const yy = round(sy(t));
    out += `<line x1="${x0}" y1="${yy}" x2="${x0 + pw}" y2="${yy}" stroke="#e4e4e4"/>`;
    out += `<text x="${x0 - 6}" y="${yy}" dy="0.35em" text-anchor="end" fill="#444">${esc(fmtShort(t))}</text>`;
  }
  for (const t of niceTicks(xMin, xMax, 8).filter((t) => t >= xMin - 1e-9 && t <= xMax + 1e-9)) {
    const xx = round(sx(t));
    out += `<line x1="${xx}" y1="${y0 + ph}" x2="${xx}" y2="${y0 + ph + 5}" stroke="#666"/>`;
    out += `<text x="${xx}" y="${y0 + ph + 18}" text-anchor="middle" fill="#444">${esc(fmtShort(t))}</text>`;
  }
  out += `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + ph}" stroke="#666"/>`;
  out += `<line x1="${x0}" y1="${y0 + ph}" x2="${x0 + pw}" y2="${y0 + ph}" stroke="#666"/>`;
  out += `<text x="${x0 + pw / 2}" y="${y0 + ph + 36}" text-anchor="middle" fill="#333">${esc(xLabel)}</text>`;
  const yl = `${p.yLabel}${log ? ' (log scale)' : ''}`;
  out += `<text transform="translate(16 ${round(y0 + ph / 2)}) rotate(-90)" text-anchor="middle" fill="#333">${esc(truncate(yl, 40))}</text>`;

  if (!ys.length) {
    out += `<text x="${x0 + pw / 2}" y="${y0 + ph / 2}" text-anchor="middle" fill="#888">no data</text>`;
  }
  for (const s of p.series) {
    const usable = (v: number | null): v is number => v !== null && Number.isFinite(v) && (!log || v > 0);
    if (s.dots) {
      const r = s.points.length > 200 ? 2 : 3.5;
      const pts = s.points.filter(([x, v]) => Number.isFinite(x) && usable(v)).map(([x, v]) => `<circle cx="${round(sx(x))}" cy="${round(sy(v as number))}" r="${r}" fill="${s.color}"/>`);
      out += `<g><title>${esc(s.label)}</title>${pts.join('')}</g>`;
      continue;
    }
    const runs: Array<Array<[number, number]>> = [];
    let cur: Array<[number, number]> = [];
    for (const [x, v] of s.points) {
      if (Number.isFinite(x) && usable(v)) cur.push([round(sx(x)), round(sy(v))]);
      else if (cur.length) {
        runs.push(cur);
        cur = [];
      }
    }
    if (cur.length) runs.push(cur);
    if (!runs.length) continue;
    const d = runs.filter((r) => r.length > 1).map((r) => `M${r.map(([a, b]) => `${a} ${b}`).join('L')}`).join('');
    const dots = runs.filter((r) => r.length === 1).map((r) => `<circle cx="${r[0]?.[0]}" cy="${r[0]?.[1]}" r="2.5" fill="${s.color}"/>`).join('');
    const dash = s.dash && s.dash !== 'solid' ? ` stroke-dasharray="${DASH[s.dash]}"` : '';
    out += `<g><title>${esc(s.label)}</title>`;
    if (d) out += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${dash}/>`;
    out += `${dots}</g>`;
  }
  out += '</g>';
  return { svg: out, height: titleH + ph + 48 };
}

// ---------------------------------------------------------------------------------------------
// Bar charts

export interface BarGroup {
  label: string;
  color: string;
  /** One value per category. */
  values: number[];
}

export interface BarPanel {
  title?: string;
  categories: string[];
  groups: BarGroup[];
  valueLabel: string;
  format?: (v: number) => string;
  /**
   * Index of a category that adds many up (an "others" bar): it does not set the scale, and a
   * bar of it longer than the axis is cut, with a break mark and its value beside it.
   */
  aggregate?: number;
}

export interface BarChartOptions {
  title: string;
  panels: BarPanel[];
}

/** Horizontal grouped bars: one band per category (labels on the left), one bar per group. */
export function barChart(o: BarChartOptions): string {
  const leg = legend(
    o.panels.flatMap((p) => p.groups.map((g): LegendEntry => ({ label: g.label, color: g.color, kind: 'box' }))),
    TITLE_H, 16, W - 32,
  );
  let y = TITLE_H + leg.height;
  const body: string[] = [];
  for (const p of o.panels) {
    const r = barPanel(p, y);
    body.push(r.svg);
    y += r.height;
  }
  const height = Math.round(y + 8);
  return `${svgOpen(W, height, o.title)}${leg.svg}${body.join('')}</svg>`;
}

function barPanel(p: BarPanel, top: number): { svg: string; height: number } {
  const fmt = p.format ?? fmtShort;
  const titleH = p.title ? 24 : 6;
  const g = Math.max(1, p.groups.length);
  const barH = g <= 2 ? 11 : g <= 4 ? 8 : 6;
  const bandH = g * barH + 10;
  const n = p.categories.length;
  const longest = Math.max(4, ...p.categories.map((c) => Array.from(c).length));
  const maxChars = Math.min(longest, 30);
  const labelW = Math.round(Math.min(30 * CHAR_W, maxChars * CHAR_W) + 16);
  const x0 = 16 + labelW;
  const valueRoom = 64; // right of the longest bar, for its value label
  const pw = W - x0 - MR - valueRoom;
  const y0 = top + titleH;
  const ph = Math.max(n, 1) * bandH;

  const finite = (vs: number[]): number[] => vs.filter(Number.isFinite);
  const scaled = finite(p.groups.flatMap((gr) => gr.values.filter((_, i) => i !== p.aggregate)));
  const values = scaled.some((v) => v > 0) ? scaled : finite(p.groups.flatMap((gr) => gr.values));
  const maxV = values.length ? Math.max(...values) : 0;
  const ticks = niceTicks(0, maxV > 0 ? maxV : 1, 6);
  const hi = ticks[ticks.length - 1] ?? 1;
  const sx = (v: number): number => x0 + (Math.max(0, v) / hi) * pw;

  let out = '<g>';
  if (p.title) out += `<text x="16" y="${top + 16}" font-weight="bold" fill="#333">${esc(truncate(p.title, 100))}</text>`;
  for (const t of ticks) {
    const xx = round(sx(t));
    out += `<line x1="${xx}" y1="${y0}" x2="${xx}" y2="${y0 + ph}" stroke="#e4e4e4"/>`;
    out += `<text x="${xx}" y="${y0 + ph + 16}" text-anchor="middle" fill="#444">${esc(fmtShort(t))}</text>`;
  }
  out += `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + ph}" stroke="#666"/>`;
  out += `<line x1="${x0}" y1="${y0 + ph}" x2="${x0 + pw}" y2="${y0 + ph}" stroke="#666"/>`;
  out += `<text x="${x0 + pw / 2}" y="${y0 + ph + 34}" text-anchor="middle" fill="#333">${esc(p.valueLabel)}</text>`;
  if (!n) out += `<text x="${x0 + pw / 2}" y="${y0 + ph / 2}" dy="0.35em" text-anchor="middle" fill="#888">no data</text>`;

  p.categories.forEach((cat, i) => {
    const by = y0 + i * bandH + 5;
    const label = truncate(cat, maxChars);
    out += `<g><title>${esc(cat)}</title>`;
    out += `<text x="${x0 - 8}" y="${round(by + (g * barH) / 2)}" dy="0.35em" text-anchor="end" fill="#222">${esc(label)}</text>`;
    p.groups.forEach((gr, j) => {
      const v = gr.values[i] ?? 0;
      const yy = by + j * barH;
      const cut = v > hi;
      const w = cut ? pw : Math.max(0, sx(v) - x0);
      out += `<rect x="${x0}" y="${yy}" width="${round(w)}" height="${barH - 1}" fill="${gr.color}"><title>${esc(`${cat}: ${gr.label} ${fmt(v)}`)}</title></rect>`;
      if (cut) {
        const bx = round(x0 + pw - 18);
        out += `<path d="M${bx} ${yy + barH + 1}l5 ${-barH - 2}M${bx + 6} ${yy + barH + 1}l5 ${-barH - 2}" stroke="#ffffff" stroke-width="2.5"/>`;
      }
      out += `<text x="${round(x0 + w + 4)}" y="${round(yy + (barH - 1) / 2)}" dy="0.35em" font-size="${barH >= 10 ? 10 : 8}" fill="#444">${esc(fmt(v))}</text>`;
    });
    out += '</g>';
  });
  out += '</g>';
  return { svg: out, height: titleH + ph + 46 };
}
