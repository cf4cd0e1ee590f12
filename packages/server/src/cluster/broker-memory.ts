import { BrokerDownError, type Broker, type BrokerHandler } from './broker.js';

type Item =
  | { kind: 'message'; to: MemoryBroker[]; topic: string; payload: string; epoch: number }
  | { kind: 'status'; to: MemoryBroker; up: boolean };

/**
 * One in-process bus shared by several MemoryBrokers: several instances of the server in one
 * process, for unit tests. Delivery is asynchronous (a later event-loop turn, one FIFO for the
 * whole hub, so every publisher's order holds), and who receives a payload is decided when it is
 * published, as Redis does. `setDown` simulates an outage.
 */
export class MemoryHub {
  private readonly brokers = new Set<MemoryBroker>();
  private queue: Item[] = [];
  private scheduled = false;
  private isDown = false;
  /** bumped by every outage: payloads taken before it are lost, as on Redis */
  private epoch = 0;
  /** payloads taken by the bus so far (every publish that resolved) */
  published = 0;

  get down(): boolean {
    return this.isDown;
  }

  /**
   * Outage (true): from now on publish, subscribe and start reject, payloads not yet delivered
   * are lost, and every started broker gets `status(false)`. Back (false): subscriptions are as
   * they were, and every started broker gets `status(true)`. Both callbacks come asynchronously,
   * in order.
   */
  setDown(down: boolean): void {
    if (down === this.isDown) return;
    this.isDown = down;
    if (down) this.epoch++;
    for (const b of this.brokers) this.push({ kind: 'status', to: b, up: !down });
  }

  /** How many brokers are subscribed to `topic` now. */
  subscribers(topic: string): number {
    let n = 0;
    for (const b of this.brokers) if (b.isSubscribed(topic)) n++;
    return n;
  }

  /** @internal */
  attach(b: MemoryBroker): void {
    this.brokers.add(b);
  }

  /** @internal */
  detach(b: MemoryBroker): void {
    this.brokers.delete(b);
  }

  /** @internal */
  take(topic: string, payload: string): void {
    const to: MemoryBroker[] = [];
    for (const b of this.brokers) if (b.isSubscribed(topic)) to.push(b);
    this.published++;
    if (to.length > 0) this.push({ kind: 'message', to, topic, payload, epoch: this.epoch });
  }

  private push(item: Item): void {
    this.queue.push(item);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  /**
   * Delivers what was queued before this turn; what handlers publish meanwhile waits for the next
   * turn, as it would on a real bus. A handler that throws does not stop the others: the first
   * error is rethrown afterwards, as an uncaught exception, so that a unit test sees the bug.
   */
  private drain(): void {
    this.scheduled = false;
    const items = this.queue;
    this.queue = [];
    let failure: { err: unknown } | null = null;
    for (const item of items) {
      try {
        if (item.kind === 'status') {
          item.to.deliverStatus(item.up);
          continue;
        }
        if (item.epoch !== this.epoch || this.isDown) continue;
        for (const b of item.to) {
          try {
            b.deliverMessage(item.topic, item.payload);
          } catch (err) {
            failure ??= { err };
          }
        }
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  }
}

/**
 * Broker on a MemoryHub. Same contract as RedisBroker (see broker.ts); connected whenever it is
 * started and the hub is not down.
 */
export class MemoryBroker implements Broker {
  private readonly topics = new Set<string>();
  private started = false;
  private closed = false;

  constructor(private readonly hub: MemoryHub, private readonly handler: BrokerHandler) {}

  get up(): boolean {
    return this.started && !this.closed && !this.hub.down;
  }

  async start(): Promise<void> {
    if (this.closed) throw new BrokerDownError('broker closed');
    if (this.started) return;
    await Promise.resolve();
    if (this.closed) throw new BrokerDownError('broker closed');
    if (this.hub.down) throw new BrokerDownError('cannot reach the bus: it is down');
    this.started = true;
    this.hub.attach(this);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.topics.clear();
    this.hub.detach(this);
  }

  subscribe(topic: string): Promise<void> {
    if (!this.up) return Promise.reject(this.downError());
    this.topics.add(topic);
    return Promise.resolve();
  }

  unsubscribe(topic: string): Promise<void> {
    this.topics.delete(topic);
    return Promise.resolve();
  }

  publish(topic: string, payload: string): Promise<void> {
    if (!this.up) return Promise.reject(this.downError());
    this.hub.take(topic, payload);
    return Promise.resolve();
  }

  /** Topics this broker is subscribed to now. */
  subscriptions(): string[] {
    return [...this.topics];
  }

  /** @internal */
  isSubscribed(topic: string): boolean {
    return this.topics.has(topic);
  }

  /** @internal */
  deliverMessage(topic: string, payload: string): void {
    if (this.closed || !this.topics.has(topic)) return;
    this.handler.message(topic, payload);
  }

  /** @internal */
  deliverStatus(up: boolean): void {
    if (this.closed || !this.started) return;
    this.handler.status(up);
  }

  private downError(): BrokerDownError {
    if (this.closed) return new BrokerDownError('broker closed');
    if (!this.started) return new BrokerDownError('broker not started');
    return new BrokerDownError();
  }
}
