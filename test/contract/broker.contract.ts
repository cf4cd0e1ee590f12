/**
 * The Broker contract (packages/server/src/cluster/broker.ts), as node:test suites that any
 * implementation must pass: `brokerContract('RedisBroker', factory)`. Every test gets a fresh
 * bus from the factory (a fresh key prefix, a fresh hub) and waits on the handler's events,
 * never on the clock; a test whose event never comes fails on its timeout.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Broker, BrokerHandler } from '../../packages/server/src/cluster/broker.js';

/** One bus (one cluster) on which brokers of several instances meet. */
export interface BrokerBus {
  /** a new, not yet started broker of one more instance on this bus */
  make(handler: BrokerHandler): Broker;
  /** present when the factory was asked for `{ outage: true }` */
  outage?: {
    /** the bus becomes unreachable (for Redis: the server is killed) */
    stop(): Promise<void>;
    /** the bus is reachable again (same address; payloads from before are gone) */
    restart(): Promise<void>;
  };
  /** releases the bus; the suite has closed every broker it made before */
  close(): Promise<void>;
}

export type BrokerBusFactory = (opts: { outage: boolean }) => Promise<BrokerBus>;

const TIMEOUT = { timeout: 20_000 };

/** A handler that records everything and lets a test wait for a condition on what it saw. */
export class Recorder implements BrokerHandler {
  readonly messages: Array<{ topic: string; payload: string }> = [];
  readonly statuses: boolean[] = [];
  private waits: Array<{ cond: () => boolean; resolve: () => void }> = [];

  message(topic: string, payload: string): void {
    this.messages.push({ topic, payload });
    this.check();
  }

  status(up: boolean): void {
    this.statuses.push(up);
    this.check();
  }

  payloads(topic: string): string[] {
    return this.messages.filter((m) => m.topic === topic).map((m) => m.payload);
  }

  /** Resolves once `cond` holds (checked now and after every event). */
  until(cond: () => boolean): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => this.waits.push({ cond, resolve }));
  }

  /** Resolves once `n` payloads arrived on `topic`. */
  received(topic: string, n: number): Promise<void> {
    return this.until(() => this.payloads(topic).length >= n);
  }

  private check(): void {
    this.waits = this.waits.filter((w) => {
      if (!w.cond()) return true;
      w.resolve();
      return false;
    });
  }
}

/** One test's bus and the brokers made on it, all closed afterwards whatever happens. */
async function withBus(
  factory: BrokerBusFactory,
  opts: { outage: boolean },
  fn: (node: () => Promise<{ b: Broker; r: Recorder }>, bus: BrokerBus) => Promise<void>,
): Promise<void> {
  const bus = await factory(opts);
  const made: Broker[] = [];
  const node = async (): Promise<{ b: Broker; r: Recorder }> => {
    const r = new Recorder();
    const b = bus.make(r);
    made.push(b);
    await b.start();
    return { b, r };
  };
  try {
    await fn(node, bus);
  } finally {
    await Promise.allSettled(made.map((b) => b.close()));
    await bus.close();
  }
}

/** Records unhandled rejections while `fn` runs: a broker fault must never produce one. */
async function noUnhandledRejections(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', listener);
  try {
    await fn();
    // Let rejections of this turn be reported before looking.
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('unhandledRejection', listener);
  }
  assert.deepEqual(seen, [], 'unhandled rejections');
}

function range(n: number, f: (i: number) => string): string[] {
  return Array.from({ length: n }, (_, i) => f(i));
}

export function brokerContract(name: string, factory: BrokerBusFactory): void {
  describe(`Broker contract: ${name}`, () => {
    it('start and close are idempotent; up follows them; publish and subscribe reject unless started', TIMEOUT, async () => {
      await withBus(factory, { outage: false }, async (_node, bus) => {
        const b = bus.make(new Recorder());
        assert.equal(b.up, false);
        await assert.rejects(b.publish('t', 'x'));
        await assert.rejects(b.subscribe('t'));
        await b.start();
        await b.start();
        assert.equal(b.up, true);
        await b.publish('t', 'nobody listens');
        await b.close();
        await b.close();
        assert.equal(b.up, false);
        await assert.rejects(b.publish('t', 'x'));
        await assert.rejects(b.subscribe('t'));
      });
    });

    it('delivers to every subscriber, the publisher included, each publisher in publish order', TIMEOUT, async () => {
      await withBus(factory, { outage: false }, async (node) => {
        const [a, b, c] = [await node(), await node(), await node()];
        await Promise.all([a.b.subscribe('r:#room'), b.b.subscribe('r:#room'), c.b.subscribe('r:#room')]);
        const n = 300;
        const fromA = range(n, (i) => `a${i}`);
        const fromB = range(n, (i) => `b${i}`);
        // Interleaved, without waiting: the bus must keep each publisher's order by itself.
        const sent: Promise<void>[] = [];
        for (let i = 0; i < n; i++) {
          sent.push(a.b.publish('r:#room', fromA[i]!), b.b.publish('r:#room', fromB[i]!));
        }
        await Promise.all(sent);
        for (const x of [a, b, c]) {
          await x.r.received('r:#room', 2 * n);
          const got = x.r.payloads('r:#room');
          assert.equal(got.length, 2 * n, 'nothing twice');
          assert.deepEqual(got.filter((p) => p.startsWith('a')), fromA);
          assert.deepEqual(got.filter((p) => p.startsWith('b')), fromB);
        }
      });
    });

    it('only subscribers get a payload, topics do not mix, payloads arrive byte for byte', TIMEOUT, async () => {
      await withBus(factory, { outage: false }, async (node) => {
        const [a, b] = [await node(), await node()];
        await a.b.subscribe('n:alice');
        await b.b.subscribe('r:#ünï:cödé');
        const odd = ['', 'line\r\nbreak', 'ünïcödé ✓ 🎉', '{"o":"i1","e":[]}', 'x'.repeat(256 * 1024)];
        for (const p of odd) await b.b.publish('n:alice', p);
        await a.b.publish('r:#ünï:cödé', 'to b');
        await a.r.received('n:alice', odd.length);
        await b.r.received('r:#ünï:cödé', 1);
        assert.deepEqual(a.r.payloads('n:alice'), odd);
        assert.deepEqual(a.r.messages.map((m) => m.topic), odd.map(() => 'n:alice'));
        assert.deepEqual(b.r.messages, [{ topic: 'r:#ünï:cödé', payload: 'to b' }]);
      });
    });

    it('unsubscribe stops delivery at once; subscriptions are not reference-counted', TIMEOUT, async () => {
      await withBus(factory, { outage: false }, async (node) => {
        const [a, pub] = [await node(), await node()];
        await a.b.subscribe('t');
        await a.b.subscribe('t');
        await a.b.subscribe('barrier');
        await pub.b.publish('t', 'one');
        await pub.b.publish('barrier', '1');
        await a.r.received('barrier', 1);
        assert.deepEqual(a.r.payloads('t'), ['one'], 'subscribed twice, delivered once');

        await a.b.unsubscribe('t'); // once: that ends it
        await a.b.unsubscribe('never subscribed');
        await pub.b.publish('t', 'two');
        // One publisher's payloads leave in order on every implementation (one connection, one
        // FIFO): once the barrier is in, 'two' would have been too.
        await pub.b.publish('barrier', '2');
        await a.r.received('barrier', 2);
        assert.deepEqual(a.r.payloads('t'), ['one']);

        await a.b.subscribe('t');
        await pub.b.publish('t', 'three');
        await a.r.received('t', 2);
        assert.deepEqual(a.r.payloads('t'), ['one', 'three']);
      });
    });

    it('a closed broker gets nothing more', TIMEOUT, async () => {
      await withBus(factory, { outage: false }, async (node) => {
        const [a, b, pub] = [await node(), await node(), await node()];
        await a.b.subscribe('t');
        await b.b.subscribe('t');
        await a.b.close();
        await pub.b.publish('t', 'after close');
        await b.r.received('t', 1);
        assert.deepEqual(a.r.messages, []);
        assert.deepEqual(a.r.statuses, []);
      });
    });

    it('outage: status(false), publish and subscribe reject promptly, status(true) with subscriptions restored', TIMEOUT, async () => {
      await withBus(factory, { outage: true }, async (node, bus) => {
        const outage = bus.outage;
        assert.ok(outage, 'the factory gives an outage control when asked');
        await noUnhandledRejections(async () => {
          const [a, b] = [await node(), await node()];
          await a.b.subscribe('t');
          await b.b.subscribe('t');
          await b.b.subscribe('dropped');
          await a.b.publish('t', 'before');
          await b.r.received('t', 1);

          await outage.stop();
          await Promise.all([a.r.until(() => a.r.statuses.length === 1), b.r.until(() => b.r.statuses.length === 1)]);
          assert.deepEqual(a.r.statuses, [false]);
          assert.deepEqual(b.r.statuses, [false]);
          assert.equal(a.b.up, false);

          const t0 = performance.now();
          await assert.rejects(a.b.publish('t', 'while down'));
          await assert.rejects(a.b.subscribe('new'));
          const ms = performance.now() - t0;
          assert.ok(ms < 1500, `rejected after ${ms.toFixed(0)} ms`);
          // Given up while down: not restored afterwards.
          await b.b.unsubscribe('dropped');

          await outage.restart();
          await Promise.all([a.r.until(() => a.r.statuses.length === 2), b.r.until(() => b.r.statuses.length === 2)]);
          assert.deepEqual(a.r.statuses, [false, true]);
          assert.deepEqual(b.r.statuses, [false, true]);
          assert.equal(a.b.up, true);
          assert.equal(b.b.up, true);

          // status(true) means the subscriptions are back: no wait beyond it.
          await a.b.publish('t', 'after');
          await b.b.publish('dropped', 'nobody');
          await b.b.publish('t', 'barrier');
          await Promise.all([a.r.received('t', 3), b.r.received('t', 3)]);
          assert.deepEqual(a.r.payloads('t'), ['before', 'after', 'barrier']);
          assert.deepEqual(b.r.payloads('t'), ['before', 'after', 'barrier']);
          assert.deepEqual(b.r.payloads('dropped'), []);

          await a.b.subscribe('new');
          await b.b.publish('new', 'fresh');
          await a.r.received('new', 1);
        });
      });
    });

    it('two outages in a row: each reported once, in order', TIMEOUT, async () => {
      await withBus(factory, { outage: true }, async (node, bus) => {
        const outage = bus.outage;
        assert.ok(outage);
        await noUnhandledRejections(async () => {
          const a = await node();
          await a.b.subscribe('t');
          for (let i = 1; i <= 2; i++) {
            await outage.stop();
            await a.r.until(() => a.r.statuses.length === 2 * i - 1);
            await outage.restart();
            await a.r.until(() => a.r.statuses.length === 2 * i);
          }
          assert.deepEqual(a.r.statuses, [false, true, false, true]);
          await a.b.publish('t', 'still here');
          await a.r.received('t', 1);
        });
      });
    });

    it('start rejects while the bus is unreachable, and works once it is back', TIMEOUT, async () => {
      await withBus(factory, { outage: true }, async (_node, bus) => {
        const outage = bus.outage;
        assert.ok(outage);
        await noUnhandledRejections(async () => {
          await outage.stop();
          const r = new Recorder();
          const b = bus.make(r);
          try {
            await assert.rejects(b.start());
            assert.equal(b.up, false);
            await outage.restart();
            await b.start();
            assert.equal(b.up, true);
            await b.subscribe('t');
            await b.publish('t', 'ok');
            await r.received('t', 1);
            assert.deepEqual(r.statuses, [], 'start reports by resolving, not by status()');
          } finally {
            await b.close();
          }
        });
      });
    });
  });
}
