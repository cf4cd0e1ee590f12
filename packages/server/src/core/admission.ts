import type { QosCounter } from '@parley/contracts';
import type { MessageStore } from '../store/store.js';

/** Why a message may not be written now. */
export interface Refusal {
  /** the standard-reply code (`RATE_LIMITED` ...) */
  code: 'RATE_LIMITED';
  /** which limit refused it: a QoS bucket (the room's rate or its shard's budget) or the store backlog */
  reason: 'qos' | 'backlog';
  /** when the sender may try again (sent in the FAIL line, in ms) */
  retryAfterMs: number;
  text: string;
}

/**
 * The seam of the message path where a write is admitted or refused before it reaches the store:
 * "may this message be written now?". The chat core asks once per message, with the room key; a
 * refusal is answered with a standard reply and counted, never dropped silently.
 *
 * Contract: `admit` must be cheap (it runs for every message); it may answer asynchronously
 * (a cluster-wide quota taken for all of a tick's messages at once), and must not reject. When
 * the answer was a promise that resolved to null, the caller then calls `confirm` (if defined)
 * right before the append, in the same tick: a last synchronous check that sees the appends of
 * the messages admitted just before (a backlog grows while the asynchronous answer is on its way).
 */
export interface Admission {
  admit(room: string): Refusal | null | Promise<Refusal | null>;
  confirm?(room: string): Refusal | null;
}

/**
 * What became of each message, by room: stored (`accepted`), refused by QoS (`refusedQos`) or by
 * the backlog (`refusedBacklog`), or not stored because the store failed (`failed`). Called once
 * per message on the hot path: must be cheap and must not throw.
 */
export interface MessageOutcomes {
  count(room: string, outcome: QosCounter): void;
}

export const NO_OUTCOMES: MessageOutcomes = { count: () => undefined };

/**
 * Overload protection: when the room's shard already has `limit()` messages of this instance
 * waiting for their commit, a new message is refused with a retry hint rather than queued behind
 * seconds of backlog.
 */
export class BacklogAdmission implements Admission {
  private readonly refusal: Refusal = { code: 'RATE_LIMITED', reason: 'backlog', retryAfterMs: 1000, text: 'Server busy: message not stored, retry in 1 second' };

  constructor(private readonly store: Pick<MessageStore, 'backlog'>, private readonly limit: () => number) {}

  admit(room: string): Refusal | null {
    return this.store.backlog(room) < this.limit() ? null : this.refusal;
  }
}
