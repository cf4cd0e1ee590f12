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
}

export interface ChannelInfo {
  name: string;
  topic: string;
  topicBy: string;
  topicAt: number;
  /** channel mode letters without '+', e.g. `nt` */
  modes: string;
  created: number;
}

export interface Member {
  nick: string;
  op: boolean;
}

export type JoinResult =
  | { kind: 'joined'; created: boolean; op: boolean; channel: ChannelInfo }
  | { kind: 'already' }
  | { kind: 'too-many' };

export type PartResult = 'ok' | 'no-channel' | 'not-on-channel';
export type KickResult = 'ok' | 'no-channel' | 'not-on-channel' | 'not-op' | 'target-not-on-channel';
export type TopicResult = 'ok' | 'no-channel' | 'not-on-channel' | 'not-op';

/** One requested channel mode change: `+t`, `-n`, `+o` with a nick. */
export interface ModeChange {
  add: boolean;
  mode: 'o' | 't' | 'n';
  nick?: string;
}

export type ModeResult =
  | { kind: 'ok'; applied: ModeChange[]; missing: string[] }
  | { kind: 'no-channel' }
  | { kind: 'not-op' };

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
  /** channel keys a user is in */
  userChannels(nick: string): Promise<string[]>;

  join(chanKey: string, chanName: string, nick: string, maxChannels: number): Promise<JoinResult>;
  part(chanKey: string, nick: string): Promise<PartResult>;
  kick(chanKey: string, by: string, target: string): Promise<KickResult>;
  setTopic(chanKey: string, nick: string, topic: string, setter: string, at: number): Promise<TopicResult>;
  setModes(chanKey: string, nick: string, changes: ModeChange[]): Promise<ModeResult>;
  channel(chanKey: string): Promise<ChannelInfo | null>;
  channels(chanKeys: string[]): Promise<(ChannelInfo | null)[]>;
  members(chanKey: string): Promise<Member[]>;
  memberCounts(chanKeys: string[]): Promise<number[]>;
  isMember(chanKey: string, nick: string): Promise<boolean>;
  listChannels(): Promise<string[]>;

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
