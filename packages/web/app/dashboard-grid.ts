// The heat map: every room of the view as one cell of a canvas, in groups. One canvas redrawn
// whole on each update (a few thousand rectangles take a few milliseconds), so the page keeps
// no DOM node per room.
//
// A cell's colour is the room's message rate (log scale). Its bottom bar is the rate against the
// room's QoS limit (full: at the limit); a red outline means it is refusing now, a red corner
// that it has refused since the counters began.

import { heat, refused, type Group, type Room } from './dashboard-model.js';

const GAP = 2;
const HEADER = 20;

interface Placed {
  y: number;
  rooms: Room[];
  cols: number;
}

export class HeatGrid {
  private readonly ctx: CanvasRenderingContext2D;
  private placed: Placed[] = [];
  private cell = 16;
  selected: string | null = null;

  constructor(private readonly canvas: HTMLCanvasElement) {
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('no 2D canvas');
    this.ctx = ctx;
  }

  /** Draws `groups` across the canvas's CSS width; the canvas grows to the height they need. */
  draw(groups: Group[], width: number): void {
    const total = groups.reduce((n, g) => n + g.rooms.length, 0);
    this.cell = total > 6000 ? 8 : total > 2500 ? 11 : 16;
    const step = this.cell + GAP;
    const cols = Math.max(1, Math.floor((width - GAP) / step));
    const showHeaders = groups.length > 1 || groups[0]?.key !== 'all';
    let y = 0;
    this.placed = [];
    for (const g of groups) {
      if (showHeaders) y += HEADER;
      this.placed.push({ y, rooms: g.rooms, cols });
      y += Math.ceil(g.rooms.length / cols) * step + (showHeaders ? 6 : 0);
    }
    const height = Math.max(step, y + GAP);
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(width * dpr);
    const h = Math.round(height * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.canvas.style.height = `${height}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#171a21';
    ctx.fillRect(0, 0, width, height);
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    const c = this.cell;
    groups.forEach((g, gi) => {
      const p = this.placed[gi];
      if (!p) return;
      if (showHeaders) {
        ctx.fillStyle = '#c9d1e0';
        const rates = `${fmt(g.rate)} msg/s` + (g.refusedRate > 0 ? ` · ${fmt(g.refusedRate)} refused/s` : '');
        ctx.fillText(`${g.label} · ${rates}`, GAP, p.y - HEADER / 2);
      }
      for (let i = 0; i < g.rooms.length; i++) {
        const r = g.rooms[i] as Room;
        const x = GAP + (i % cols) * step;
        const top = p.y + GAP + Math.floor(i / cols) * step;
        ctx.fillStyle = heat(r.rate);
        ctx.fillRect(x, top, c, c);
        if (r.limit !== null && r.rate > 0) {
          ctx.fillStyle = '#ffffffcc';
          ctx.fillRect(x, top + c - 3, Math.max(1, Math.min(1, r.rate / r.limit) * c), 3);
        }
        if (refused(r) > 0) {
          ctx.fillStyle = '#ff3b3b';
          ctx.beginPath();
          ctx.moveTo(x + c - 6, top);
          ctx.lineTo(x + c, top);
          ctx.lineTo(x + c, top + 6);
          ctx.fill();
        }
        if (r.refusedRate > 0) {
          ctx.strokeStyle = '#ff3b3b';
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 1, top + 1, c - 2, c - 2);
        }
        if (r.name === this.selected) {
          ctx.strokeStyle = '#ffffff';
          ctx.lineWidth = 2;
          ctx.strokeRect(x - 1, top - 1, c + 2, c + 2);
        }
      }
    });
  }

  /** The room under a point of the canvas (CSS pixels from its top left corner). */
  roomAt(x: number, y: number): Room | null {
    const step = this.cell + GAP;
    for (const p of this.placed) {
      const col = Math.floor((x - GAP) / step);
      const row = Math.floor((y - p.y - GAP) / step);
      if (row < 0 || col < 0 || col >= p.cols) continue;
      const r = p.rooms[row * p.cols + col];
      if (r && (x - GAP) % step < this.cell && (y - p.y - GAP) % step < this.cell) return r;
    }
    return null;
  }
}

function fmt(n: number): string {
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1).replace(/\.0$/, '');
}
