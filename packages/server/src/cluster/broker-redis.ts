import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Broker, BrokerHandler } from './broker.js';

/**
 * Redis pub/sub broker. Publishes go through a connection with auto-pipelining, so the publishes
 * of one event-loop tick leave in one write; a second connection subscribes. ioredis
 * resubscribes after a reconnect.
 */
export class RedisBroker implements Broker {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly channelPrefix: string;
  private started = false;

  constructor(url: string, prefix: string, private readonly handler: BrokerHandler, private readonly log: Logger) {
    // Bounded retries: a JOIN while Redis is away fails with a reply instead of hanging.
    const opts = { enableAutoPipelining: true, lazyConnect: true, maxRetriesPerRequest: 3 } as const;
    this.pub = new Redis(url, { ...opts, connectionName: 'parley-pub' });
    this.sub = new Redis(url, { ...opts, connectionName: 'parley-sub' });
    this.channelPrefix = `${prefix}:t:`;
    for (const [name, c] of [['pub', this.pub], ['sub', this.sub]] as const) {
      c.on('error', (err: Error) => this.log.warn({ err: err.message, conn: name }, 'redis broker connection error'));
    }
    const cut = this.channelPrefix.length;
    this.sub.on('message', (channel: string, payload: string) => {
      this.handler(channel.slice(cut), payload);
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await Promise.all([this.pub.connect(), this.sub.connect()]);
  }

  async close(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await Promise.allSettled([closeRedis(this.pub), closeRedis(this.sub)]);
  }

  async subscribe(topic: string): Promise<void> {
    await this.sub.subscribe(this.channelPrefix + topic);
  }

  async unsubscribe(topic: string): Promise<void> {
    await this.sub.unsubscribe(this.channelPrefix + topic);
  }

  publish(topic: string, payload: string): void {
    this.pub.publish(this.channelPrefix + topic, payload).catch((err: Error) => {
      this.log.warn({ err: err.message, topic }, 'publish failed');
    });
  }
}

/** QUIT when connected; otherwise stop reconnecting at once (a QUIT would wait for a connection). */
export async function closeRedis(c: Redis): Promise<void> {
  if (c.status === 'ready') {
    await c.quit().catch(() => c.disconnect());
  } else {
    c.disconnect();
  }
}
