import type { Logger } from 'pino';
import type { Broker, BrokerHandler } from '../cluster/broker.js';
import type { Metrics } from '../metrics.js';
import {
  Kind, MAC_CHARS, Presence, batchPrefix, decodeBatch, encodeBatch, encodeEnvelope, openPayload, roomOfTopic, sealPayload, topics,
  type Envelope, type PresenceEnvelope,
} from './envelope.js';

export type BrokerFactory = (handler: BrokerHandler) => Broker;
export type PeerEnvelope = Exclude<Envelope, PresenceEnvelope>;

/** What the bus hands to the chat core. */
export interface BusListener {
  /** an envelope from another instance */
  envelope(env: PeerEnvelope): void;
  /** another instance has seen up to `seq` in `room`: anything below it this instance missed is in the store */
  peerSeq(room: string, seq: number): void;
  /** the highest sequence number this instance has seen in `room` (told to other instances) */
  roomSeq(room: string): number;
  /** the bus is back after an outage, subscriptions restored: fill what was missed */
  resynced(): void;
}

export interface BusOptions {
  instanceId: string;
  broker: BrokerFactory;
  listener: BusListener;
  metrics: Metrics;
  log: Logger;
  /** payload bytes kept for a retry while the broker is unreachable; the oldest go beyond it */
  maxRetryBytes?: number;
}

/**
 * After an instance opens a room (or the bus comes back), every message is published for this
 * long even if no other instance is known to have members, so nobody who opened the room at the
 * same moment misses one before the presence answers arrive.
 */
const PRESENCE_GRACE_MS = 2000;
const RETRY_EVERY_MS = 500;

interface TopicEntry {
  refs: number;
  /** resolves once subscribed */
  ready: Promise<void>;
}

/**
 * Every cross-instance concern in one place: topic reference counts (subscribe on the first local
 * user of a topic, unsubscribe after the last), the per-tick outbox (the envelopes of one tick to
 * one topic leave as one payload), which other instances have members of a room (so a stored
 * message nobody else needs is not published), decoding in try/catch, and broker faults: a payload
 * the broker refused is kept (bounded) and sent again when it is back; then every room is told to
 * fill from the store what it missed. Nothing here throws into the caller.
 */
export class ClusterBus {
  private readonly broker: Broker;
  private readonly id: string;
  private readonly ownTag: string;
  private readonly listener: BusListener;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly maxRetryBytes: number;
  private readonly topics = new Map<string, TopicEntry>();
  /** room topic → ids of other instances with members there */
  private readonly peers = new Map<string, Set<string>>();
  /** room topic → when this instance opened it */
  private readonly openedAt = new Map<string, number>();
  private resyncedAt = 0;
  private outbox = new Map<string, string[]>();
  private scheduled = false;
  private retry: { topic: string; payload: string }[] = [];
  private retryBytes = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private droppedSinceUp = 0;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(o: BusOptions) {
    this.id = o.instanceId;
    this.ownTag = batchPrefix(o.instanceId);
    this.listener = o.listener;
    this.metrics = o.metrics;
    this.log = o.log;
    this.maxRetryBytes = o.maxRetryBytes ?? 32 * 1024 * 1024;
    this.broker = o.broker({ message: (t, p) => this.onPayload(t, p), status: (up) => this.onStatus(up) });
  }

  get up(): boolean {
    return this.broker.up;
  }

  async start(): Promise<void> {
    await this.broker.start();
    this.metrics.busUp.set(this.broker.up ? 1 : 0);
    await this.acquire(topics.all);
  }

  // ---- subscriptions -----------------------------------------------------------------------

  /** One more local user of `topic`; the first one subscribes. Rejects (and counts nothing) if that fails. */
  async acquire(topic: string): Promise<void> {
    let e = this.topics.get(topic);
    if (e) {
      e.refs++;
    } else {
      e = { refs: 1, ready: this.subscribe(topic) };
      this.topics.set(topic, e);
    }
    try {
      await e.ready;
    } catch (err) {
      this.drop(topic, e);
      throw err;
    }
  }

  private async subscribe(topic: string): Promise<void> {
    await this.broker.subscribe(topic);
    if (roomOfTopic(topic) !== null) {
      this.openedAt.set(topic, Date.now());
      this.presence(topic, Presence.Hello);
    }
  }

  /** One local user of `topic` fewer; after the last one it is unsubscribed. */
  release(topic: string): void {
    const e = this.topics.get(topic);
    if (e) this.drop(topic, e);
  }

  private drop(topic: string, e: TopicEntry): void {
    if (--e.refs > 0 || this.topics.get(topic) !== e) return;
    this.topics.delete(topic);
    if (roomOfTopic(topic) !== null) {
      this.presence(topic, Presence.Bye);
      this.peers.delete(topic);
      this.openedAt.delete(topic);
    }
    this.broker.unsubscribe(topic).catch((err: Error) => {
      this.metrics.busErrors.inc();
      this.log.warn({ err: err.message, topic }, 'unsubscribe failed');
    });
  }

  /** local users of `topic` (0 when not subscribed) */
  refs(topic: string): number {
    return this.topics.get(topic)?.refs ?? 0;
  }

  /** An instance is gone: it has no members anywhere any more. */
  forgetInstance(id: string): void {
    for (const set of this.peers.values()) set.delete(id);
  }

  // ---- publishing --------------------------------------------------------------------------

  /**
   * Queues an envelope for the other instances (its origin is set here); those of one tick leave
   * as one payload per topic.
   */
  publish(topic: string, env: Envelope): void {
    if (this.closed) return;
    env.o = this.id;
    this.metrics.brokerOut.inc();
    let q = this.outbox.get(topic);
    if (!q) this.outbox.set(topic, (q = []));
    q.push(encodeEnvelope(env));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushTick);
    }
  }

  /**
   * A stored room message: published only when another instance may have members of the room
   * (the receivers fill from the store any gap a lost message leaves).
   */
  publishToPeers(topic: string, env: Envelope): void {
    if (!this.hasPeers(topic)) {
      this.metrics.busSkipped.inc();
      return;
    }
    this.publish(topic, env);
  }

  private hasPeers(topic: string): boolean {
    // Without local members this instance does not follow the room's presence: others may have members.
    if (!this.topics.has(topic)) return true;
    const p = this.peers.get(topic);
    if (p !== undefined && p.size > 0) return true;
    const now = Date.now();
    return now - (this.openedAt.get(topic) ?? 0) < PRESENCE_GRACE_MS || now - this.resyncedAt < PRESENCE_GRACE_MS;
  }

  private presence(topic: string, h: PresenceEnvelope['h']): void {
    const room = roomOfTopic(topic);
    if (room === null) return;
    const env: PresenceEnvelope = { k: 'p', o: this.id, r: room, h, q: this.listener.roomSeq(room) };
    this.publish(topic, env);
  }

  private readonly flushTick = (): void => {
    this.scheduled = false;
    const outbox = this.outbox;
    this.outbox = new Map();
    for (const [topic, items] of outbox) this.send(topic, encodeBatch(this.id, items));
  };

  private send(topic: string, payload: string): void {
    if (!this.broker.up || this.retry.length > 0) {
      this.keep(topic, payload);
      return;
    }
    this.inflight++;
    this.broker.publish(topic, payload).then(
      () => this.settled(),
      (err: Error) => {
        this.settled();
        this.metrics.busErrors.inc();
        this.log.warn({ err: err.message, topic }, 'publish failed; kept for a retry');
        this.keep(topic, payload);
      },
    );
  }

  private settled(): void {
    if (--this.inflight === 0 && this.retry.length === 0) this.wakeIdle();
  }

  /** Keeps a payload for a retry, within the byte bound (the oldest go first). */
  private keep(topic: string, payload: string): void {
    if (this.closed) return;
    this.retry.push({ topic, payload });
    this.retryBytes += payload.length;
    while (this.retryBytes > this.maxRetryBytes && this.retry.length > 1) {
      const old = this.retry.shift();
      if (!old) break;
      this.retryBytes -= old.payload.length;
      this.metrics.busDropped.inc();
      if (this.droppedSinceUp++ === 0) this.log.error({ maxRetryBytes: this.maxRetryBytes }, 'broker unreachable too long: oldest envelopes dropped (receivers fill from the store)');
    }
    this.metrics.busRetryBytes.set(this.retryBytes);
    if (!this.retryTimer) {
      this.retryTimer = setTimeout(this.retryNow, RETRY_EVERY_MS);
      this.retryTimer.unref();
    }
  }

  private readonly retryNow = (): void => {
    this.retryTimer = null;
    if (this.retry.length === 0) return;
    if (!this.broker.up) {
      this.retryTimer = setTimeout(this.retryNow, RETRY_EVERY_MS);
      this.retryTimer.unref();
      return;
    }
    const items = this.retry;
    this.retry = [];
    this.retryBytes = 0;
    this.metrics.busRetryBytes.set(0);
    for (const { topic, payload } of items) this.send(topic, payload);
    if (this.inflight === 0 && this.retry.length === 0) this.wakeIdle();
  };

  /** Resolves once everything published so far has reached the broker, or after `ms`. */
  async flush(ms = 2000): Promise<void> {
    if (this.scheduled) this.flushTick();
    if (this.retry.length > 0 && this.broker.up) this.retryNow();
    if (this.inflight === 0 && this.retry.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      timer = setTimeout(resolve, ms);
      timer.unref();
    });
    clearTimeout(timer);
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  // ---- receiving ---------------------------------------------------------------------------

  private onPayload(topic: string, payload: string): void {
    // Our own payloads (already delivered locally) are dropped before decoding.
    if (payload.startsWith(this.ownTag)) return;
    const batch = decodeBatch(payload);
    if (!batch) {
      this.metrics.busErrors.inc();
      this.log.warn({ topic, bytes: payload.length }, 'undecodable payload from the broker dropped');
      return;
    }
    for (const env of batch) {
      if (env.o === this.id) continue;
      this.metrics.brokerIn.inc();
      try {
        if (env.k === Kind.Presence) this.onPresence(topic, env);
        else {
          if (env.k === Kind.RoomMessage) this.peerSeen(topic, env.o);
          this.listener.envelope(env);
        }
      } catch (err) {
        this.metrics.busErrors.inc();
        this.log.error({ err, topic, kind: env.k }, 'handling an envelope failed');
      }
    }
  }

  private peerSeen(topic: string, id: string): void {
    if (!this.topics.has(topic)) return;
    let p = this.peers.get(topic);
    if (!p) this.peers.set(topic, (p = new Set()));
    p.add(id);
  }

  private onPresence(topic: string, env: PresenceEnvelope): void {
    if (env.h === Presence.Bye) {
      this.peers.get(topic)?.delete(env.o);
      return;
    }
    this.peerSeen(topic, env.o);
    if (env.h === Presence.Hello && this.topics.has(topic)) this.presence(topic, Presence.Here);
    this.listener.peerSeq(env.r, env.q);
  }

  private onStatus(up: boolean): void {
    this.metrics.busUp.set(up ? 1 : 0);
    if (!up) {
      this.log.warn('broker connection lost: local rooms carry on, envelopes are kept for a retry');
      return;
    }
    this.log.info({ kept: this.retry.length, dropped: this.droppedSinceUp }, 'broker connection back');
    this.droppedSinceUp = 0;
    this.resyncedAt = Date.now();
    // The broker restores its subscriptions; one that failed while it was down is made again.
    for (const topic of this.topics.keys()) {
      this.broker.subscribe(topic).catch((err: Error) => {
        this.metrics.busErrors.inc();
        this.log.warn({ err: err.message, topic }, 'resubscribe failed');
      });
      this.presence(topic, Presence.Hello);
    }
    this.retryNow();
    this.listener.resynced();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.broker.close();
  }
}

export interface SealOptions {
  /** the cluster key (`--cluster-key-file`) */
  key: Buffer;
  /** this instance's id: its own payloads come back unchecked (the bus drops them unread) */
  instanceId: string;
  /** a payload without a valid MAC was dropped */
  rejected(topic: string, bytes: number): void;
}

/**
 * The broker between instances that share a cluster key: every payload leaves sealed with an
 * HMAC (envelope.ts `sealPayload`), and one that arrives without a valid MAC is dropped before
 * anything decodes it, so a client of Redis that may PUBLISH but lacks the key cannot reach a
 * socket. One MAC per payload, i.e. per topic per tick; an instance's own payloads (every
 * subscriber of a topic gets them back) cost no MAC check.
 */
export function sealedBroker(inner: BrokerFactory, o: SealOptions): BrokerFactory {
  const own = batchPrefix(o.instanceId);
  return (handler) => {
    const broker = inner({
      message: (topic, sealed) => {
        if (sealed.startsWith(own, MAC_CHARS + 1)) {
          handler.message(topic, sealed.slice(MAC_CHARS + 1));
          return;
        }
        const body = openPayload(o.key, sealed);
        if (body === null) o.rejected(topic, sealed.length);
        else handler.message(topic, body);
      },
      status: (up) => handler.status(up),
    });
    return {
      start: () => broker.start(),
      close: () => broker.close(),
      subscribe: (topic) => broker.subscribe(topic),
      unsubscribe: (topic) => broker.unsubscribe(topic),
      publish: (topic, payload) => broker.publish(topic, sealPayload(o.key, payload)),
      get up() {
        return broker.up;
      },
    };
  };
}
