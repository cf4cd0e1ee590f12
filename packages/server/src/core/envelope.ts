/**
 * Messages between instances (over the broker), discriminated by `k` (see `Kind`). Every envelope
 * carries the origin instance `o` and the serialised parts of the line, so receivers never
 * re-serialise. Decoding never throws: a payload that is not a valid batch is dropped.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

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
  /** disconnect the user holding a nick (NickServ GHOST), topic `n:<nick>` */
  Kill: 'k',
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
  /** the line for clients with `extended-join` (a JOIN with account and real name) */
  x?: string;
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
  /** only for sessions that negotiated every capability bit of `c` (ACCOUNT: account-notify) */
  c?: number;
}

/** `to` = lower-case nick whose session is closed with `l` as the reason. */
export interface KillEnvelope {
  k: 'k';
  o: string;
  to: string;
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

export type Envelope = RoomMessageEnvelope | DirectEnvelope | ChannelEventEnvelope | UserEventEnvelope | PresenceEnvelope | KillEnvelope;

/**
 * Text from the bus goes to clients' sockets as it is, so every field that ends up in a line is
 * checked here, once per envelope, whoever sent it: a line (`l`) has no CR, LF or NUL and a
 * bounded length, a line of a message or event starts with its source (`:`), tag values (`t`,
 * `i`) cannot leave their tag, client tags (`g`) are a well-formed tag list.
 */
const BREAKS = /[\r\n\0]/;
/** `l` of every kind: the longest line an instance builds is far below this (tags are apart) */
const MAX_LINE = 16384;
/** server-time text as formatServerTime makes it */
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/** a msgid: letters, digits and `-_.:` (room tag + seq, `e-<hex>`) */
const MSGID = /^[A-Za-z0-9_.:-]{1,128}$/;
/** serialised client tags: `+key[=escaped value]` separated by `;` (values escaped: no space or `;`) */
const TAGS = /^(?:\+?(?:[A-Za-z0-9.-]+\/)?[A-Za-z0-9-]+(?:=[^ ;\r\n\0]*)?)(?:;\+?(?:[A-Za-z0-9.-]+\/)?[A-Za-z0-9-]+(?:=[^ ;\r\n\0]*)?)*$/;

/** A line safe to write to a client (no line break, NUL or over-long text). */
export function isSafeLine(l: unknown): l is string {
  return typeof l === 'string' && l.length > 0 && l.length <= MAX_LINE && !BREAKS.test(l);
}

/** A line of a message or event: safe, and starting with its source. */
function isSourcedLine(l: unknown): l is string {
  return isSafeLine(l) && l.charCodeAt(0) === 58 /* : */;
}

const isTime = (v: unknown): boolean => typeof v === 'string' && TIME.test(v);
const isMsgid = (v: unknown): boolean => typeof v === 'string' && MSGID.test(v);
const isTags = (v: unknown): boolean => typeof v === 'string' && (v === '' || (v.length <= 8191 && TAGS.test(v)));
const isMs = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
const isKey = (v: unknown): boolean => typeof v === 'string' && v.length > 0 && v.length <= 512 && !BREAKS.test(v);

function isEnvelope(v: unknown): v is Envelope {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  if (typeof e.o !== 'string') return false;
  switch (e.k) {
    case Kind.RoomMessage:
      return isKey(e.r) && Number.isSafeInteger(e.q) && isMs(e.ms) && isTags(e.g) && isSourcedLine(e.l);
    case Kind.Direct:
      return isKey(e.to) && isTime(e.t) && isMs(e.ms) && isMsgid(e.i) && isTags(e.g) && isSourcedLine(e.l);
    case Kind.ChannelEvent:
      return isKey(e.r) && isTime(e.t) && isMs(e.ms) && isMsgid(e.i) && isSourcedLine(e.l) && (e.leave === undefined || isKey(e.leave))
        && (e.x === undefined || isSourcedLine(e.x));
    case Kind.UserEvent:
      return Array.isArray(e.rooms) && e.rooms.every(isKey) && isTime(e.t) && isMs(e.ms) && isMsgid(e.i) && isSourcedLine(e.l)
        && (e.c === undefined || Number.isSafeInteger(e.c));
    case Kind.Presence:
      return isKey(e.r) && (e.h === Presence.Hello || e.h === Presence.Here || e.h === Presence.Bye) && Number.isSafeInteger(e.q);
    case Kind.Kill:
      return isKey(e.to) && isSafeLine(e.l);
    default:
      return false;
  }
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

/**
 * Payloads between instances are authenticated when the cluster has a key (`--cluster-key-file`):
 * `<64 hex HMAC-SHA256 of the rest>.` + the batch. One MAC per payload (a tick's envelopes to one
 * topic), checked before anything is decoded, so a payload written by anyone without the key
 * (a Redis client that may PUBLISH) is dropped unread. Without a key, payloads go as they are.
 */
export const MAC_CHARS = 64;

export function sealPayload(key: Buffer | null, payload: string): string {
  if (key === null) return payload;
  return `${createHmac('sha256', key).update(payload).digest('hex')}.${payload}`;
}

/** The batch inside a sealed payload, or null when its MAC is missing or wrong. Never throws. */
export function openPayload(key: Buffer | null, sealed: string): string | null {
  if (key === null) return sealed;
  if (sealed.length <= MAC_CHARS + 1 || sealed.charCodeAt(MAC_CHARS) !== 46 /* . */) return null;
  const got = Buffer.from(sealed.slice(0, MAC_CHARS), 'hex');
  // Buffer.from stops at the first character that is not hex: a short result is a bad MAC.
  if (got.length !== MAC_CHARS / 2) return null;
  const body = sealed.slice(MAC_CHARS + 1);
  return timingSafeEqual(got, createHmac('sha256', key).update(body).digest()) ? body : null;
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
