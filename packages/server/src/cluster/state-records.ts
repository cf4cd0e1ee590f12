import { secretModes, type ChannelInfo, type Member, type UserInfo } from './state.js';

/*
 * The flat records both ClusterState backends keep (the fields of the Redis hashes; `''` and `0`
 * for what is unset) and how they read back as the interface's types: one place for which
 * optional fields appear, so that a user or channel reads back the same from either backend.
 */

/** P:nick:<nick> */
export interface StoredUser {
  nick: string;
  user: string;
  host: string;
  realname: string;
  inst: string;
  server: string;
  /** '' = not away */
  away: string;
  signon: number;
  /** '' = not logged in */
  account: string;
  conn: string;
  /** '' = no user modes */
  modes: string;
}

/** P:chan:<chan>: key '' and limit 0 when unset */
export interface StoredChannel {
  name: string;
  topic: string;
  topicBy: string;
  topicAt: number;
  modes: string;
  created: number;
  key: string;
  limit: number;
}

/** A user record as UserInfo: account, conn and modes present only when set, so a user reads back exactly as claimed. */
export function userInfo(u: StoredUser): UserInfo {
  return {
    nick: u.nick,
    user: u.user,
    host: u.host,
    realname: u.realname,
    inst: u.inst,
    server: u.server,
    away: u.away === '' ? null : u.away,
    signon: u.signon,
    ...(u.account ? { account: u.account } : {}),
    ...(u.conn ? { conn: u.conn } : {}),
    ...(u.modes ? { modes: u.modes } : {}),
  };
}

/** A channel record as ChannelInfo: key, limit and secret only when set. */
export function channelInfo(c: StoredChannel): ChannelInfo {
  const ch: ChannelInfo = {
    name: c.name,
    topic: c.topic,
    topicBy: c.topicBy,
    topicAt: c.topicAt,
    modes: c.modes,
    created: c.created,
  };
  if (c.key) ch.key = c.key;
  if (c.limit > 0) ch.limit = c.limit;
  if (secretModes(c.modes)) ch.secret = true;
  return ch;
}

/** A member with its statuses; `voice` present only when set. */
export function member(nick: string, op: boolean, voice: boolean): Member {
  return voice ? { nick, op, voice: true } : { nick, op };
}
