/** A registered user as the cluster knows it. Nicks are compared in ASCII lower case. */
export interface UserInfo {
  nick: string;
  user: string;
  host: string;
  realname: string;
  /** id of the instance that holds the connection */
  inst: string;
  /** server name of that instance */
  server: string;
  away: string | null;
  /** ms since epoch */
  signon: number;
  /** the account the user is logged in to (display form); absent or null: none */
  account?: string | null;
  /** the connection's cluster-unique id (Session.conn): a guest's DM identity; absent: not given */
  conn?: string;
  /** user mode letters without '+' (`B` bot, `o` server operator, `w` wallops); absent: none */
  modes?: string;
}

/** What `updateUser` may change of a user; absent fields stay. */
export interface UserUpdate {
  realname?: string;
  modes?: string;
}

export interface ChannelInfo {
  name: string;
  topic: string;
  topicBy: string;
  topicAt: number;
  /** channel mode letters without '+', e.g. `nt`; `k` and `l` appear with `key` and `limit` */
  modes: string;
  created: number;
  /** the channel key (`+k`); absent: none */
  key?: string;
  /** the member limit (`+l`); absent: none */
  limit?: number;
  /**
   * `+s` or `+p`: hidden from LIST, from NAMES and WHOIS of non-members, and from the HTTP API's
   * channel list; absent: public
   */
  secret?: true;
}

/** `+s` or `+p` in a mode string. */
export const secretModes = (modes: string): boolean => modes.includes('s') || modes.includes('p');

export interface Member {
  nick: string;
  op: boolean;
  /** `+v`; absent: not voiced */
  voice?: true;
}

/** The list modes: bans, ban exceptions, invite exceptions. */
export type ListMode = 'b' | 'e' | 'I';

export interface ListEntry {
  mode: ListMode;
  /** `nick!user@host` with `*`/`?` wildcards, or `$a:<account glob>` / `$a` (any logged-in user) */
  mask: string;
  setBy: string;
  setAt: number;
}

/** The most entries one list mode of one channel holds (ISUPPORT `MAXLIST=beI:<n>`). */
export const MAX_LIST_ENTRIES = 100;

/**
 * Who joins, for the channel's rules (`+b`/`+e`, `+i`/`+I`/INVITE, `+k`, `+l`) and for the access
 * of a registered channel. Without it (re-asserting members after a Redis restart) nothing is
 * checked and nobody is given a status.
 */
export interface JoinCheck {
  /** `nick!user@host` */
  source: string;
  /** logged-in account, null for a guest */
  account: string | null;
  /** the key given with JOIN, null when none */
  key: string | null;
}

export type JoinRefusal = 'banned' | 'invite-only' | 'bad-key' | 'full';

export type JoinResult =
  | { kind: 'joined'; created: boolean; op: boolean; voice: boolean; channel: ChannelInfo }
  | { kind: 'already' }
  | { kind: 'too-many' }
  | { kind: JoinRefusal };

export type PartResult = 'ok' | 'no-channel' | 'not-on-channel';
export type KickResult = 'ok' | 'no-channel' | 'not-on-channel' | 'not-op' | 'target-not-on-channel';
export type TopicResult = 'ok' | 'no-channel' | 'not-on-channel' | 'not-op';

/** Channel flags without a parameter. */
export const FLAG_MODES = 'imnpst';

/**
 * One requested channel mode change: a flag (`+t`, `-n`), a member status with its nick (`+o`,
 * `+v`), a list entry with its mask (`+b`, `-e`), the key (`+k key`, `-k`) or the limit (`+l 10`,
 * `-l`).
 */
export interface ModeChange {
  add: boolean;
  mode: 'o' | 'v' | 'i' | 'm' | 'n' | 'p' | 's' | 't' | 'k' | 'l' | ListMode;
  /** the member of `o`/`v` */
  nick?: string;
  /** the mask of `b`/`e`/`I`, the key of `+k`, the limit of `+l` */
  arg?: string;
}

export type ModeResult =
  | {
    kind: 'ok';
    applied: ModeChange[];
    /** lower-case nicks of `o`/`v` changes that are not members */
    missing: string[];
    /** masks not added because their list holds MAX_LIST_ENTRIES already */
    full: string[];
  }
  | { kind: 'no-channel' }
  | { kind: 'not-op' };

export type InviteResult = 'ok' | 'no-channel' | 'not-on-channel' | 'not-op' | 'already-on';

/** A registered (owned) channel: its founder account and access list (lower-case account names). */
export interface ChannelRegistration {
  founder: string;
  registeredAt: number;
  /** account → `op` or `voice`; the founder is implicitly `op` */
  access: Record<string, AccessLevel>;
}

export type AccessLevel = 'op' | 'voice';
export type RegisterChannelResult = 'ok' | 'no-channel' | 'not-op' | 'exists';

/** A cluster-wide connection ban (KLINE): a `nick!user@host` glob checked at registration. */
export interface ServerBan {
  mask: string;
  reason: string;
  setBy: string;
  setAt: number;
}

/**
 * Cluster-wide chat state: nick ownership, channel membership, topics and modes. Every operation
 * is atomic cluster-wide (two instances racing for one nick: exactly one wins). Channel keys are
 * lower-cased by the caller; nicks are compared lower-cased (the display form is kept). A channel
 * exists while it has members; its first member is its operator. Every operation rejects when
 * the backend cannot be reached (it does not hang). Implementations: RedisClusterState,
 * MemoryClusterState; both are held to test/contract/state.contract.ts.
 */
export interface ClusterState {
  start(): Promise<void>;
  close(): Promise<void>;

  claimNick(u: UserInfo): Promise<boolean>;
  /**
   * renames a user everywhere, keeping its operator status; `taken` when the new nick belongs to
   * someone else, and also when `inst` no longer holds the old nick (reaped meanwhile, or claimed
   * by another instance since): nothing is changed then
   */
  changeNick(oldNick: string, newNick: string, inst: string): Promise<{ kind: 'ok'; channels: string[] } | { kind: 'taken' }>;
  /** removes a user (QUIT) from every channel; only if `inst` still owns the nick. Returns the channel keys left. */
  releaseUser(nick: string, inst: string): Promise<string[]>;
  getUser(nick: string): Promise<UserInfo | null>;
  getUsers(nicks: string[]): Promise<(UserInfo | null)[]>;
  /** no effect on a nick nobody holds */
  setAway(nick: string, away: string | null): Promise<void>;
  /** log-in (account) or log-out (null); no effect on a nick nobody holds */
  setAccount(nick: string, account: string | null): Promise<void>;
  /** changes the real name or user modes; no effect on a nick nobody holds */
  updateUser(nick: string, update: UserUpdate): Promise<void>;
  /** channel keys a user is in */
  userChannels(nick: string): Promise<string[]>;

  /**
   * With `check`, in this order (Ergo's): refused when full (`+l`), with a wrong key (`+k`),
   * invite-only (`+i`) unless invited, banned (`+b` matching the source or `$a:` the account)
   * unless invited or an `+e` matches; "invited" is an INVITE of the nick (used up by the join) or
   * a matching `+I`. Op access to a registered channel passes all four. A registered channel that
   * is empty is created again with the modes and topic it had; its founder and `op` access join as
   * operators, `voice` access voiced, and nobody else gets operator status (the first joiner of an
   * unregistered channel does).
   */
  join(chanKey: string, chanName: string, nick: string, maxChannels: number, check?: JoinCheck): Promise<JoinResult>;
  part(chanKey: string, nick: string): Promise<PartResult>;
  kick(chanKey: string, by: string, target: string): Promise<KickResult>;
  setTopic(chanKey: string, nick: string, topic: string, setter: string, at: number): Promise<TopicResult>;
  /**
   * Applies `changes` in order if `nick` is an operator of the channel (`nick` null: the services,
   * always allowed). Only effective changes are reported (a `+k` always is: it may change the
   * key). List entries record `setter` and `at`.
   */
  setModes(chanKey: string, nick: string | null, changes: ModeChange[], setter?: string, at?: number): Promise<ModeResult>;
  /** the channel's `b`, `e` and `I` entries (of a registered channel also while it is empty) */
  listModes(chanKey: string): Promise<ListEntry[]>;
  /** records an INVITE of `target` by the member `by` (an operator if the channel is `+i`) */
  invite(chanKey: string, by: string, target: string): Promise<InviteResult>;
  /** registers a channel to `account` on behalf of `nick`, who must be one of its operators */
  registerChannel(chanKey: string, nick: string, account: string, at: number): Promise<RegisterChannelResult>;
  registration(chanKey: string): Promise<ChannelRegistration | null>;
  /** sets (or with null removes) an account's access; false when the channel is not registered */
  setAccess(chanKey: string, account: string, level: AccessLevel | null): Promise<boolean>;
  /** forgets a registration (its saved modes, topic and lists go with it once the channel is empty) */
  dropRegistration(chanKey: string): Promise<boolean>;
  channel(chanKey: string): Promise<ChannelInfo | null>;
  channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]>;
  members(chanKey: string): Promise<Member[]>;
  memberCounts(chanKeys: string[]): Promise<number[]>;
  isMember(chanKey: string, nick: string): Promise<boolean>;
  listChannels(): Promise<string[]>;

  /** adds a connection ban; false when one with that mask (in lower case) exists */
  addServerBan(ban: ServerBan): Promise<boolean>;
  removeServerBan(mask: string): Promise<boolean>;
  serverBans(): Promise<ServerBan[]>;

  /** records that an instance exists, so that its users can be cleaned up if it dies */
  addInstance(inst: string): Promise<void>;
  knownInstances(): Promise<string[]>;
  /**
   * Called when an instance is gone. Exactly one caller in the cluster wins the right to clean
   * it up (true); the others get false.
   */
  claimReap(inst: string): Promise<boolean>;
  instanceUsers(inst: string): Promise<string[]>;
  /** true while some instance holds the clean-up claim of `inst` (between claimReap and forgetInstance) */
  reapInProgress(inst: string): Promise<boolean>;
  forgetInstance(inst: string): Promise<void>;
}
