/**
 * Messages between instances (over the broker), discriminated by `k` (see `Kind`). Every envelope
 * carries the origin instance `o` and the serialised parts of the line, so receivers never
 * re-serialise. Decoding never throws: a payload that is not a valid batch is dropped.
 */

export const Kind = {
  /** a stored channel message, topic `r:<room>` */
  RoomMessage: 'm',
  /** a stored direct message, topic `n:<nick>` */
  Direct: 'd',
  /** JOIN, PART, KICK, TOPIC, MODE in a channel, topic `r:<room>` */
  ChannelEvent: 'e',
  /** QUIT or NICK of a user, topic `all` */
  UserEvent: 'u',
  /** an instance opens (hello), has (here) or closes (bye) a room, topic `r:<room>` */
  Presence: 'p',
} as const;

/**
 * The most frequent envelope, kept small: the receiver derives the msgid (`<room tag>-<q>`) and
 * the server-time text (from `ms`) itself.
 */
export interface RoomMessageEnvelope {
  k: 'm';
  o: string;
  r: string;
  /** room sequence number */
  q: number;
  /** commit time in ms since the epoch */
  ms: number;
  /** serialised client-only tags, '' when none */
  g: string;
  l: string;
}

/** `to` = lower-case recipient nick. */
export interface DirectEnvelope {
  k: 'd';
  o: string;
  to: string;
  t: string;
  ms: number;
  i: string;
  g: string;
  l: string;
}

export interface ChannelEventEnvelope {
  k: 'e';
  o: string;
  r: string;
  t: string;
  ms: number;
  i: string;
  l: string;
  /** lower-case nick that leaves the channel by this event (PART, KICK) */
  leave?: string;
}

/** `rooms`: the channel keys the user was in. */
export interface UserEventEnvelope {
  k: 'u';
  o: string;
  rooms: string[];
  t: string;
  ms: number;
  i: string;
  l: string;
}

export const Presence = { Hello: 1, Here: 0, Bye: -1 } as const;

/**
 * Which instances have local members of a room. `hello` asks the others to answer `here`; both
 * carry the highest sequence number the sender has seen in the room (`q`), so the receiver can
 * fill from the store what it may have missed before it knew of the sender.
 */
export interface PresenceEnvelope {
  k: 'p';
  o: string;
  r: string;
  h: (typeof Presence)[keyof typeof Presence];
  q: number;
}

export type Envelope = RoomMessageEnvelope | DirectEnvelope | ChannelEventEnvelope | UserEventEnvelope | PresenceEnvelope;

const KINDS = new Set<string>(Object.values(Kind));

function isEnvelope(v: unknown): v is Envelope {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as { k?: unknown; o?: unknown; l?: unknown; r?: unknown };
  if (typeof e.k !== 'string' || !KINDS.has(e.k) || typeof e.o !== 'string') return false;
  return e.k === Kind.Presence ? typeof e.r === 'string' : typeof e.l === 'string';
}

/**
 * The JSON of an envelope. The stored room message, sent for nearly every message, is written by
 * hand (only its strings go through JSON.stringify); the rest through JSON.stringify.
 */
export function encodeEnvelope(env: Envelope): string {
  if (env.k !== 'm') return JSON.stringify(env);
  return `{"k":"m","o":${JSON.stringify(env.o)},"r":${JSON.stringify(env.r)},"q":${env.q},"ms":${env.ms},"g":${JSON.stringify(env.g)},"l":${JSON.stringify(env.l)}}`;
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

/** The room key of a room topic, or null for other topics. */
export function roomOfTopic(topic: string): string | null {
  return topic.startsWith('r:') ? topic.slice(2) : null;
}
