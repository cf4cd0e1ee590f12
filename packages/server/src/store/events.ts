import type { BaseLogger } from 'pino';
import type { NewMessage } from './store.js';

export type StoreLogger = Pick<BaseLogger, 'debug' | 'info' | 'warn' | 'error'>;

/** Called after every committed batch: rows written and wall time of the round trip (ms). */
export type BatchListener = (rows: number, ms: number) => void;

/** What a store reports about its shards' health; listeners must not throw (it is logged if they do). */
export interface StoreEvents {
  /** The shard stopped answering; its appends and reads fail at once until it answers a probe. */
  shardDown?(shard: number, cause: Error): void;
  /** The shard answered a probe again after `downMs`. */
  shardUp?(shard: number, downMs: number): void;
  /**
   * A commit or connection of the shard ran out of time and the shard was checked: `answered`
   * says whether it connected and fenced the lost batches in time (else it is down now, and
   * shardDown came first).
   */
  shardChecked?(shard: number, answered: boolean): void;
  /**
   * Messages whose appends were rejected because the batch's answer was lost, and which the
   * shard turned out to have committed (found when it answered again). Their senders got an
   * error; the messages are in history. Expected never to happen: the shard would have to stop
   * between the commit-deadline check and the commit record, or the answer be lost for longer
   * than the margin after a commit in time (see docs/architecture.md, "Durability guarantees").
   */
  lateCommit?(shard: number, messages: NewMessage[]): void;
  /**
   * Every connection to the shard has been closed for being idle (the server side has seen them
   * go); the next use of one of its rooms opens them again.
   */
  shardIdle?(shard: number): void;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
