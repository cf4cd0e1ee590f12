/**
 * Receives what the bus delivers. The broker calls it from its own I/O callbacks, so a handler
 * must not throw: RedisBroker logs and drops what one throws; MemoryBroker rethrows it, after
 * delivering to the others, as an uncaught exception, so that a unit test sees the bug.
 */
export interface BrokerHandler {
  /** a payload arrived on a subscribed topic (from any publisher, this one included if subscribed) */
  message(topic: string, payload: string): void;
  /** the connection to the bus was lost (false), or is back with every subscription restored (true) */
  status(up: boolean): void;
}

/**
 * Fan-out between instances. Contract (checked for every implementation by
 * test/contract/broker.contract.ts):
 * - `publish` delivers `payload` to every broker subscribed to `topic` at the time the bus takes
 *   it (the publisher included, if subscribed). Payloads from one publisher on one topic arrive in
 *   publish order. Delivery is at-most-once: a subscriber that is disconnected misses what was
 *   published meanwhile, and the bus keeps nothing for it.
 * - `subscribe` resolves once payloads published afterwards will be received; it rejects while
 *   the bus is down. Subscriptions are not reference-counted: subscribing a topic twice is one
 *   subscription, and one `unsubscribe` ends it.
 * - `unsubscribe` never rejects: from the moment it is called nothing more is delivered for that
 *   topic, and the subscription is not restored after an outage.
 * - `publish` resolves once the bus took the payload and rejects (never throws synchronously)
 *   when it could not, promptly while the bus is down: the caller decides whether to keep it for
 *   a retry after `status(true)`.
 * - After `status(false)` the broker reconnects by itself; `status(true)` comes once it is
 *   connected again and every subscription that was not given up is in place again.
 * - `start` and `close` are idempotent; `start` rejects when the bus cannot be reached (and then
 *   leaves nothing running); after `close` the handler is not called any more.
 * - Incoming payloads go to the handler given at construction; the broker never touches sockets.
 */
export interface Broker {
  /** resolves once connected; rejects if the bus cannot be reached */
  start(): Promise<void>;
  close(): Promise<void>;
  /** resolves once payloads published afterwards will be received; rejects while the bus is down */
  subscribe(topic: string): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  /** resolves once the bus took the payload; rejects (never throws synchronously) when it could not — the caller decides whether to keep it for a retry */
  publish(topic: string, payload: string): Promise<void>;
  /** connected now */
  readonly up: boolean;
}

/** The error a broker rejects with while the bus is down or the broker is not started. */
export class BrokerDownError extends Error {
  constructor(message = 'the bus is down') {
    super(message);
    this.name = 'BrokerDownError';
  }
}
