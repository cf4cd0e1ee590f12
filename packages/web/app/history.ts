// CHATHISTORY: the latest page when a buffer opens, older pages as the user scrolls up, a refill
// AFTER the last msgid seen after a reconnect or a gap, and TARGETS to bring back the DMs. Each
// request is labelled; its batch (or ACK when empty) completes it. Duplicates are impossible by
// construction: a msgid already in the buffer is dropped (state.ts `seen`).

import { isService } from './account.js';
import { send, type LabelCtx } from './connection.js';
import { buffer, changed, note, oldestMsgid, removeBuffer, state, type Buffer } from './state.js';

export const PAGE = 100;

function maxLimit(): number {
  return Number(state.isupport.get('CHATHISTORY') ?? '1000') || 1000;
}

function request(b: Buffer, sub: 'LATEST' | 'BEFORE' | 'AFTER', ref: string, limit: number): boolean {
  const ctx: LabelCtx = { kind: 'history', buffer: b, sub, limit, count: 0, ownTexts: [] };
  try {
    return send('CHATHISTORY', [sub, b.name, ref, String(limit)], ctx) !== false;
  } catch {
    return false;
  }
}

/** On join or reconnect: what was missed after the last message seen, else the latest page. */
export function fill(b: Buffer): void {
  if (isService(b.name)) return; // nothing said to a service is stored
  if (b.lastMsgid) request(b, 'AFTER', `msgid=${b.lastMsgid}`, maxLimit());
  else request(b, 'LATEST', '*', PAGE);
}

/** The page before the oldest message shown (scrolling up). */
export function older(b: Buffer): void {
  if (b.historyDone || b.loadingOlder) return;
  const ref = oldestMsgid(b);
  if (ref === undefined) return;
  if (request(b, 'BEFORE', `msgid=${ref}`, PAGE)) {
    b.loadingOlder = true;
    changed();
  }
}

/** Missing sequence numbers seen live: fetch them. */
export function gap(b: Buffer, afterMsgid: string, missing: number): void {
  request(b, 'AFTER', `msgid=${afterMsgid}`, Math.min(missing, maxLimit()));
}

/** The DMs of the last 30 days (CHATHISTORY TARGETS). */
export function targets(): void {
  const now = new Date(Date.now() + 86400_000).toISOString();
  const from = new Date(Date.now() - 30 * 86400_000).toISOString();
  try {
    send('CHATHISTORY', ['TARGETS', `timestamp=${now}`, `timestamp=${from}`, '100'], { kind: 'targets', found: [] });
  } catch {
    // a malformed line is impossible here; nothing to do if it were
  }
}

/** A labelled history request has all its messages (batch end, ACK, or FAIL). */
export function complete(ctx: LabelCtx, failed: string | null): void {
  if (ctx.kind === 'targets') {
    for (const t of ctx.found) {
      if (t.name.startsWith('#')) continue;
      const key = t.name.toLowerCase();
      const closedAt = state.closedDms.get(key);
      if (state.buffers.has(key) || (closedAt !== undefined && Date.parse(t.time) <= closedAt)) continue;
      fill(buffer(t.name, 'dm'));
    }
    return changed();
  }
  if (ctx.kind !== 'history') return;
  const b = ctx.buffer;
  if (failed !== null) {
    if (ctx.sub === 'BEFORE') b.loadingOlder = false;
    note(b, 'error', `history: ${failed}`);
    return;
  }
  switch (ctx.sub) {
    case 'LATEST':
      b.historyDone = ctx.count < ctx.limit;
      break;
    case 'BEFORE':
      b.loadingOlder = false;
      b.historyDone = ctx.count < ctx.limit;
      break;
    case 'AFTER':
      // A full page: there may be more.
      if (ctx.count >= ctx.limit && b.lastMsgid) request(b, 'AFTER', `msgid=${b.lastMsgid}`, ctx.limit);
      break;
  }
  settleLost(b, ctx.ownTexts);
  if (b.kind === 'dm' && b.items.length === 0 && ctx.sub === 'LATEST' && !b.joined && state.current !== b.key) {
    // An empty DM from TARGETS (all its messages expired): nothing to show.
    removeBuffer(b);
  }
  changed();
}

/**
 * Own messages whose connection was lost before the echo: those history shows stored are done
 * (removed, the stored copy is in the buffer); the others stay failed with a retry.
 */
function settleLost(b: Buffer, ownTexts: string[]): void {
  if (ownTexts.length === 0) return;
  const left = [...ownTexts];
  b.items = b.items.filter((it) => {
    if (!it.out?.lost) return true;
    const i = left.indexOf(it.out.action ? `\x01ACTION ${it.out.text}\x01` : it.out.text);
    if (i === -1) return true;
    left.splice(i, 1);
    return false;
  });
}
