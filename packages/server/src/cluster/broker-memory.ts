import type { Broker, BrokerHandler } from './broker.js';

/** An in-process bus shared by several MemoryBrokers: for unit tests of cross-instance logic. */
export class MemoryBus {
  readonly subscribers = new Map<string, Set<MemoryBroker>>();

  publish(topic: string, payload: string): void {
    const subs = this.subscribers.get(topic);
    if (!subs) return;
    // Delivered on a later tick, as a network broker would.
    for (const b of subs) queueMicrotask(() => b.deliver(topic, payload));
  }
}

export class MemoryBroker implements Broker {
  constructor(private readonly bus: MemoryBus, private readonly handler: BrokerHandler) {}

  async start(): Promise<void> {}

  async close(): Promise<void> {
    for (const subs of this.bus.subscribers.values()) subs.delete(this);
  }

  async subscribe(topic: string): Promise<void> {
    let subs = this.bus.subscribers.get(topic);
    if (!subs) this.bus.subscribers.set(topic, (subs = new Set()));
    subs.add(this);
  }

  async unsubscribe(topic: string): Promise<void> {
    this.bus.subscribers.get(topic)?.delete(this);
  }

  publish(topic: string, payload: string): void {
    this.bus.publish(topic, payload);
  }

  deliver(topic: string, payload: string): void {
    this.handler(topic, payload);
  }
}
