import type { ClusterConfig } from '../config.js';

const NICK_RE = /^[A-Za-z[\]\\`_^{|}][A-Za-z0-9[\]\\`_^{|}-]*$/;
// eslint-disable-next-line no-control-regex
const BAD_CHANNEL_CHARS = /[\s,\x00-\x1f\x7f]/;

/** ISUPPORT's CASEMAPPING=ascii */
export const lower = (s: string): string => s.toLowerCase();

export function isChannel(name: string): boolean {
  return name.startsWith('#');
}

export function validChannel(limits: ClusterConfig['limits'], name: string): boolean {
  return name.length > 1 && name.length <= limits.channelLen && name.startsWith('#') && !BAD_CHANNEL_CHARS.test(name);
}

export function validNick(limits: ClusterConfig['limits'], nick: string): boolean {
  return nick.length <= limits.nickLen && NICK_RE.test(nick);
}

/** The room key of a direct conversation: both nicks, lower-cased and sorted. */
export function dmRoom(a: string, b: string): string {
  const x = lower(a);
  const y = lower(b);
  return x < y ? `dm:${x},${y}` : `dm:${y},${x}`;
}

/** The other party of a direct conversation's room key. */
export function otherNick(room: string, me: string): string {
  const [a, b] = room.slice(3).split(',');
  return (a === me ? b : a) ?? '';
}
