import { Redis, type RedisOptions } from 'ioredis';
import { redactUrl } from '../secrets.js';
import type { Logger } from 'pino';
import { BrokerDownError, type Broker, type BrokerHandler } from './broker.js';

export interface RedisBrokerOptions {
  /**
   * A command without an answer after this long fails (default 2000 ms). It matters only when
   * Redis hangs without dropping the connection (frozen process, black-holed network): a Redis
   * that is gone closes the connection and every pending command fails at once.
   */
  commandTimeoutMs?: number;
  /** Longest pause between reconnection attempts (default 1000 ms). */
  maxReconnectDelayMs?: number;
}

/**
 * Redis pub/sub broker (contract in broker.ts). Topic `t` is the Redis channel `<prefix>:t:<t>`.
 *
 * Two connections: publishes go through one with auto-pipelining, so the publishes of one
 * event-loop tick leave in one write; the other subscribes. Failure handling, deliberately:
 * - Both connections have no offline queue and `maxRetriesPerRequest: 0`: a publish or subscribe
 *   while Redis is away rejects at once, and one in flight when the connection drops rejects when
 *   it drops, instead of waiting in ioredis's queues for a reconnect that may take minutes. The
 *   caller (the cluster bus) keeps what it must retry in its own bounded outbox and retries on
 *   `status(true)`; a second, unbounded queue in ioredis would only hide the outage and grow.
 * - ioredis's own resubscription is off: it sends the SUBSCRIBE after announcing 'ready' and
 *   nobody learns whether it worked. This broker keeps the wanted topics itself, resubscribes all
 *   of them on 'ready', and reports `status(true)` only once Redis confirmed; if that fails it
 *   drops the connection to start a fresh attempt.
 * - Incoming messages are filtered by the wanted topics, so `unsubscribe` takes effect at once
 *   even when the UNSUBSCRIBE itself could not be sent.
 * - Every ioredis error is caught and logged: 'error' listeners on both connections, a catch on
 *   every command whose promise is not returned to the caller.
 */
export class RedisBroker implements Broker {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly channelPrefix: string;
  /** wanted topics → the generation of the subscribe call that added them */
  private readonly topics = new Map<string, number>();
  private generation = 0;
  private phase: 'idle' | 'starting' | 'started' | 'closed' = 'idle';
  private pubReady = false;
  /** the subscriber connection is ready and every wanted topic is subscribed on it */
  private subReady = false;
  /** bumped whenever the subscriber connection closes, so a resubscription that outlived it is ignored */
  private subEpoch = 0;
  private isUp = false;
  private starting: Promise<void> | null = null;
  private readonly lastError = { pub: '', sub: '' };

  constructor(
    private readonly url: string,
    prefix: string,
    private readonly handler: BrokerHandler,
    private readonly log: Logger,
    opts: RedisBrokerOptions = {},
  ) {
    const maxDelay = opts.maxReconnectDelayMs ?? 1000;
    const common: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      retryStrategy: (times) => Math.min(times * 50, maxDelay),
    };
    this.pub = new Redis(url, { ...common, enableAutoPipelining: true, connectionName: 'parley-pub' });
    this.sub = new Redis(url, { ...common, connectionName: 'parley-sub' });
    this.channelPrefix = `${prefix}:t:`;

    for (const [name, c] of [['pub', this.pub], ['sub', this.sub]] as const) {
      c.on('error', (err: Error) => {
        // ioredis repeats the same error on every reconnection attempt: say it once per outage.
        const level = this.lastError[name] === err.message ? 'debug' : 'warn';
        this.lastError[name] = err.message;
        this.log[level]({ err: err.message, conn: name }, 'redis broker connection error');
      });
    }
    this.pub.on('ready', () => {
      this.pubReady = true;
      this.lastError.pub = '';
      this.update();
    });
    this.pub.on('close', () => {
      this.pubReady = false;
      this.update();
    });
    this.sub.on('ready', () => {
      this.lastError.sub = '';
      this.resubscribe();
    });
    this.sub.on('close', () => {
      this.subEpoch++;
      this.subReady = false;
      this.update();
    });

    const cut = this.channelPrefix.length;
    this.sub.on('message', (channel: string, payload: string) => {
      const topic = channel.slice(cut);
      if (this.phase !== 'started' || !this.topics.has(topic)) return;
      try {
        this.handler.message(topic, payload);
      } catch (err) {
        this.log.error({ err, topic }, 'broker handler threw; payload dropped');
      }
    });
  }

  get up(): boolean {
    return this.isUp;
  }

  start(): Promise<void> {
    if (this.phase === 'started') return Promise.resolve();
    if (this.phase === 'closed') return Promise.reject(new BrokerDownError('broker closed'));
    this.starting ??= this.connect().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async connect(): Promise<void> {
    this.phase = 'starting';
    try {
      await Promise.all([this.pub.connect(), this.sub.connect()]);
    } catch (err) {
      if (this.phase === 'starting') this.phase = 'idle';
      // connect() rejects on the first failure but ioredis would go on reconnecting: stop it.
      this.pub.disconnect();
      this.sub.disconnect();
      throw new BrokerDownError(`cannot reach Redis at ${redactUrl(this.url)}: ${(err as Error).message}`);
    }
    if (this.phase !== 'starting') return; // closed meanwhile
    this.phase = 'started';
    // No status(true) for the first connection: start() resolving says it.
    this.isUp = this.pubReady && this.subReady;
  }

  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.isUp = false;
    this.topics.clear();
    await Promise.allSettled([closeRedis(this.pub), closeRedis(this.sub)]);
  }

  async subscribe(topic: string): Promise<void> {
    if (!this.isUp) throw this.downError();
    const gen = ++this.generation;
    this.topics.set(topic, gen);
    try {
      await this.sub.subscribe(this.channelPrefix + topic);
    } catch (err) {
      // A rejected subscribe leaves nothing behind, unless a later call wanted the topic again.
      if (this.topics.get(topic) === gen) this.topics.delete(topic);
      throw err;
    }
  }

  async unsubscribe(topic: string): Promise<void> {
    if (!this.topics.delete(topic)) return;
    // While the connection is down Redis has forgotten the subscription already.
    if (this.sub.status !== 'ready') return;
    await this.sub.unsubscribe(this.channelPrefix + topic).then(
      () => undefined,
      (err: Error) => this.log.warn({ err: err.message, topic }, 'redis unsubscribe failed (incoming payloads are filtered)'),
    );
  }

  publish(topic: string, payload: string): Promise<void> {
    if (this.phase !== 'started') return Promise.reject(this.downError());
    try {
      return this.pub.publish(this.channelPrefix + topic, payload).then(() => undefined);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** On every 'ready' of the subscriber connection (the first one included). */
  private resubscribe(): void {
    const epoch = this.subEpoch;
    const channels = [...this.topics.keys()].map((t) => this.channelPrefix + t);
    if (channels.length === 0) {
      this.subReady = true;
      this.update();
      return;
    }
    this.sub.subscribe(...channels).then(
      () => {
        if (epoch !== this.subEpoch) return;
        this.log.info({ topics: channels.length }, 'redis broker resubscribed');
        this.subReady = true;
        this.update();
      },
      (err: Error) => {
        if (epoch !== this.subEpoch || this.phase === 'closed') return;
        this.log.warn({ err: err.message, topics: channels.length }, 'redis broker resubscription failed; reconnecting');
        this.sub.disconnect(true);
      },
    );
  }

  private update(): void {
    if (this.phase !== 'started') return;
    const up = this.pubReady && this.subReady;
    if (up === this.isUp) return;
    this.isUp = up;
    if (up) this.log.info('redis broker connected again');
    else this.log.warn('redis broker lost its connection');
    try {
      this.handler.status(up);
    } catch (err) {
      this.log.error({ err }, 'broker status handler threw');
    }
  }

  private downError(): BrokerDownError {
    if (this.phase === 'closed') return new BrokerDownError('broker closed');
    if (this.phase !== 'started') return new BrokerDownError('broker not started');
    return new BrokerDownError('Redis is unreachable');
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
