/**
 * Messages between instances (over the broker), discriminated by `k`. Every envelope carries the
 * origin instance `o` (an instance ignores its own: it delivered locally already) and the
 * serialised parts of the line, so receivers never re-serialise.
 */

/** A stored message to a channel (topic `r:<room>`). */
export interface RoomMessageEnvelope {
  k: 'm';
  o: string;
  r: string;
  q: number;
  t: string;
  i: string;
  g: string;
  l: string;
}

/** A stored direct message (topic `n:<nick>`), `to` = lower-case recipient nick. */
export interface DirectEnvelope {
  k: 'd';
  o: string;
  to: string;
  t: string;
  i: string;
  g: string;
  l: string;
  /** sender's nick and away reply needs nothing more */
}

/** JOIN, PART, KICK, TOPIC, MODE in a channel (topic `r:<room>`). */
export interface ChannelEventEnvelope {
  k: 'e';
  o: string;
  r: string;
  t: string;
  i: string;
  l: string;
  /** lower-case nick that leaves the channel by this event (PART, KICK) */
  leave?: string;
}

/** QUIT or NICK of a user, to every instance (topic `all`); `rooms` the user was in. */
export interface UserEventEnvelope {
  k: 'u';
  o: string;
  rooms: string[];
  t: string;
  i: string;
  l: string;
}

export type Envelope = RoomMessageEnvelope | DirectEnvelope | ChannelEventEnvelope | UserEventEnvelope;

const KINDS = new Set(['m', 'd', 'e', 'u']);

function isEnvelope(v: unknown): v is Envelope {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as { k?: unknown; o?: unknown; l?: unknown };
  return typeof e.k === 'string' && KINDS.has(e.k) && typeof e.o === 'string' && typeof e.l === 'string';
}

/**
 * One broker payload carries the envelopes an instance published to one topic during one
 * event-loop tick, in order: `{"o":"<origin>","e":[envelope, ...]}`. Batching turns thousands
 * of PUBLISH commands (and as many messages for every subscriber) into a few.
 */
export function encodeBatch(origin: string, items: string[]): string {
  return `${batchPrefix(origin)}"e":[${items.join(',')}]}`;
}

/** What every payload of `origin` starts with: lets an instance skip its own without decoding. */
export function batchPrefix(origin: string): string {
  return `{"o":${JSON.stringify(origin)},`;
}

/** Decodes a payload from another instance; null (never a throw) when it is not a valid batch. */
export function decodeBatch(payload: string): Envelope[] | null {
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const list = (v as { e?: unknown }).e;
  if (!Array.isArray(list)) return null;
  return list.every(isEnvelope) ? (list as Envelope[]) : null;
}

export const topics = {
  room: (room: string) => `r:${room}`,
  nick: (nick: string) => `n:${nick}`,
  all: 'all',
} as const;
