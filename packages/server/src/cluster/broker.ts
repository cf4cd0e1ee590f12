/**
 * Fan-out between instances. Contract:
 * - `publish` delivers `payload` to every instance subscribed to `topic` (this one included, if
 *   subscribed); payloads from one publisher on one topic arrive in publish order. Delivery is
 *   at-most-once: a subscriber that is disconnected misses what was published meanwhile.
 * - `subscribe` resolves once messages published afterwards will be received.
 * - Subscriptions are not reference-counted: the caller subscribes a topic once and unsubscribes
 *   it once.
 * - Incoming payloads go to the handler given at construction; the broker never touches sockets.
 */
export interface Broker {
  start(): Promise<void>;
  close(): Promise<void>;
  subscribe(topic: string): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  publish(topic: string, payload: string): void;
}

export type BrokerHandler = (topic: string, payload: string) => void;
