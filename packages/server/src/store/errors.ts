/**
 * Errors a MessageStore rejects with when the reason matters to the caller. Each has a stable
 * `code` so the chat core can answer a precise standard reply. Every other rejection (a SQL
 * error, a NUL in the text, a closed store) is a plain Error.
 *
 * All of them are definitive for `append`: the message was not stored and will not be (see
 * docs/architecture.md, "Durability guarantees"), so a client may send it again.
 */
export abstract class StoreError extends Error {
  abstract readonly code: string;
  /** the shard concerned */
  readonly shard: number;

  protected constructor(message: string, shard: number, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.shard = shard;
  }
}

/**
 * The shard is known to be unreachable (connection refused or broken, or it did not answer a
 * recent write in time); the store answers at once instead of waiting, and probes the shard in
 * the background until it answers again.
 */
export class StoreUnavailableError extends StoreError {
  readonly code = 'SHARD_UNAVAILABLE';

  constructor(shard: number, cause?: unknown) {
    super(`shard ${shard} is unavailable${cause instanceof Error ? `: ${cause.message}` : ''}`, shard, cause);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The message could not be committed within the store's commit timeout (counted from the
 * `append` call): the shard is hung, overloaded, or waited on a lock. The batch's commit
 * deadline is enforced by the shard itself, so it cannot commit later.
 */
export class StoreTimeoutError extends StoreError {
  readonly code = 'STORE_TIMEOUT';
  readonly timeoutMs: number;

  constructor(shard: number, timeoutMs: number, cause?: unknown) {
    super(`shard ${shard} did not commit within ${timeoutMs} ms`, shard, cause);
    this.name = 'StoreTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}
