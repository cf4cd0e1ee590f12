// The number of messages in the whole system, shown live in the header. Sources, first that
// answers: `GET /api/shards` (cluster-wide counters per shard: the sum of `counts.accepted`, every
// stored channel and direct message), else `GET /api/channels` or `GET /api/rooms` (the sum of
// each channel's stored `messages`: channel messages only). Fetched every TOTAL_MS while the
// page is visible.

import { changed, state } from './state.js';

export const TOTAL_MS = 2000;

type Source = (r: unknown) => number | null;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function sumOf(list: unknown, pick: (x: Record<string, unknown>) => unknown): number | null {
  if (!Array.isArray(list)) return null;
  let total = 0;
  for (const x of list) {
    if (typeof x !== 'object' || x === null) return null;
    const n = num(pick(x as Record<string, unknown>));
    if (n === null) return null;
    total += n;
  }
  return total;
}

const SOURCES: Array<[string, Source]> = [
  ['/api/shards', (r) => sumOf((r as { shards?: unknown }).shards, (s) => (s['counts'] as Record<string, unknown> | undefined)?.['accepted'])],
  ['/api/channels?limit=10000', (r) => sumOf((r as { rooms?: unknown }).rooms, (c) => c['messages'])],
  ['/api/rooms?limit=10000', (r) => sumOf((r as { rooms?: unknown }).rooms, (c) => c['messages'])],
];

/** The source that answered last (tried first next time). */
let working: [string, Source] | null = null;

async function fetchTotal(): Promise<number | null> {
  const order = working ? [working, ...SOURCES.filter((s) => s !== working)] : SOURCES;
  for (const src of order) {
    try {
      const res = await fetch(src[0], { headers: { accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) continue;
      const n = src[1]((await res.json()) as unknown);
      if (n === null) continue;
      working = src;
      return n;
    } catch {
      // a source that is not there (an older server) or a network blip: try the next one
    }
  }
  return null;
}

let timer: ReturnType<typeof setTimeout> | undefined;

/** Starts the live total; safe to call again. */
export function startTotal(): void {
  clearTimeout(timer);
  const tick = async (): Promise<void> => {
    if (document.visibilityState === 'visible') {
      const n = await fetchTotal();
      if (n !== null && n !== state.total) {
        state.total = n;
        changed();
      }
    }
    timer = setTimeout(() => void tick(), TOTAL_MS);
  };
  void tick();
}
