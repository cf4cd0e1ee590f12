/**
 * Message history. A "room" is the canonical key of a conversation: a lower-cased channel name
 * (`#rust`) or a direct-message pair key (`dm:alice,bob`, nicks lower-cased and sorted).
 */

/** A message as the chat core hands it to the store. */
export interface NewMessage {
  /** canonical room key, see above */
  room: string;
  /** full IRC source of the sender, `nick!user@host` */
  source: string;
  /** `PRIVMSG` or `NOTICE` (other kinds may follow; stored verbatim) */
  command: string;
  /** the target as the sender wrote it (`#Rust`, `Bob`) */
  target: string;
  /** the message text (last IRC parameter) */
  text: string;
  /** client-only tags (`+draft/reply` ...) to replay with history; null when none */
  tags: Record<string, string> | null;
}

export interface AppendResult {
  /** the room's sequence number: gap-free, starts at 1, increases by one per stored message */
  seq: number;
  /** server time of the message, milliseconds since the epoch */
  time: number;
}

export interface StoredMessage extends NewMessage, AppendResult {}

/** A CHATHISTORY selector: a sequence number (from a msgid) or a timestamp (ms since epoch). */
export type Selector = { kind: 'seq'; seq: number } | { kind: 'time'; time: number };

export interface TargetActivity {
  room: string;
  /** display target of the newest message in that room */
  target: string;
  /** time of the newest message in range, ms since epoch */
  latest: number;
}

export interface RoomCount {
  room: string;
  messages: number;
}

/**
 * Contract:
 * - `append` resolves only once the message is durable (committed); the returned `seq` is the
 *   room's next number with no gap, even when several instances write the same room at once.
 *   Messages appended from one process to one room receive increasing seqs in call order.
 *   Writes are batched per shard (group commit): many concurrent appends share one commit.
 *   When the write fails, `append` rejects and nothing of that message is visible.
 * - Queries return messages in ascending `seq` order, at most `limit` of them.
 *   `before`/`after` exclude the selector's own message; `between` excludes both bounds and
 *   returns the ones nearest to `from` (from < to) or nearest to `to` (from > to), always ascending.
 *   `latest` with no selector returns the newest `limit`; with one, the newest after it.
 *   `around` returns up to `limit` messages centred on the selector.
 * - `start` is idempotent and touches no shard: each shard is connected and its schema migrated
 *   at its first use. `close` waits for pending batches.
 */
export interface MessageStore {
  start(): Promise<void>;
  close(): Promise<void>;
  append(msg: NewMessage): Promise<AppendResult>;
  latest(room: string, after: Selector | null, limit: number): Promise<StoredMessage[]>;
  before(room: string, sel: Selector, limit: number): Promise<StoredMessage[]>;
  after(room: string, sel: Selector, limit: number): Promise<StoredMessage[]>;
  around(room: string, sel: Selector, limit: number): Promise<StoredMessage[]>;
  between(room: string, from: Selector, to: Selector, limit: number): Promise<StoredMessage[]>;
  /**
   * Conversations with messages in (from, to), newest activity first: the rooms among `rooms`,
   * plus, when `dmNick` is given, every direct-message room (`dm:a,b`) that nick takes part in
   * (which may live on any shard).
   */
  targets(rooms: string[], dmNick: string | null, from: number, to: number, limit: number): Promise<TargetActivity[]>;
  /**
   * Messages of this process waiting to be committed on the room's shard (0 when the room's shard
   * is not known yet): the chat core refuses new messages above a limit instead of queueing.
   */
  backlog(room: string): number;
  /** message counts of the given rooms (rooms with none are omitted) */
  counts(rooms: string[]): Promise<RoomCount[]>;
}
