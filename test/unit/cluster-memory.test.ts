/**
 * The in-memory cluster backends against the same contract suites as the Redis ones
 * (test/integration/cluster-redis.test.ts), plus what only the memory versions offer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBroker, MemoryHub } from '../../packages/server/src/cluster/broker-memory.js';
import { MemoryClusterData, MemoryClusterState } from '../../packages/server/src/cluster/state-memory.js';
import { brokerContract, Recorder } from '../contract/broker.contract.js';
import { stateContract } from '../contract/state.contract.js';

brokerContract('MemoryBroker', async () => {
  const hub = new MemoryHub();
  return {
    make: (handler) => new MemoryBroker(hub, handler),
    outage: {
      stop: async () => hub.setDown(true),
      restart: async () => hub.setDown(false),
    },
    close: async () => undefined,
  };
});

stateContract('MemoryClusterState', async () => {
  const shared = new MemoryClusterData();
  return {
    make: async () => {
      const s = new MemoryClusterState(shared);
      await s.start();
      return s;
    },
    outage: {
      stop: async () => shared.setDown(true),
      restart: async () => shared.setDown(false),
    },
    close: async () => undefined,
  };
});

describe('MemoryHub and MemoryClusterData', () => {
  it('the hub counts subscribers per topic and payloads taken', async () => {
    const hub = new MemoryHub();
    const a = new MemoryBroker(hub, new Recorder());
    const b = new MemoryBroker(hub, new Recorder());
    await a.start();
    await b.start();
    await a.subscribe('t');
    await b.subscribe('t');
    await b.subscribe('u');
    assert.equal(hub.subscribers('t'), 2);
    assert.deepEqual(b.subscriptions().sort(), ['t', 'u']);
    await a.unsubscribe('t');
    assert.equal(hub.subscribers('t'), 1);
    await b.close();
    assert.equal(hub.subscribers('t'), 0);
    await a.publish('t', 'x');
    assert.equal(hub.published, 1);
    await a.close();
  });

  it('payloads queued when an outage starts are lost, even if it ends before they were due', async () => {
    const hub = new MemoryHub();
    const r = new Recorder();
    const a = new MemoryBroker(hub, r);
    await a.start();
    await a.subscribe('t');
    await a.publish('t', 'lost');
    hub.setDown(true);
    hub.setDown(false);
    await r.until(() => r.statuses.length === 2);
    await a.publish('t', 'kept');
    await r.received('t', 1);
    assert.deepEqual(r.payloads('t'), ['kept']);
    assert.deepEqual(r.statuses, [false, true]);
    await a.close();
  });

  it('a reap claim expires after 300 s, as the Redis key does', async () => {
    let now = 1_000_000;
    const shared = new MemoryClusterData(() => now);
    const s = new MemoryClusterState(shared);
    await s.start();
    assert.equal(await s.claimReap('dead'), true);
    now += 299_999;
    assert.equal(await s.reapInProgress('dead'), true);
    assert.equal(await s.claimReap('dead'), false);
    now += 1;
    assert.equal(await s.reapInProgress('dead'), false);
    assert.equal(await s.claimReap('dead'), true);
    await s.close();
    await assert.rejects(s.getUser('x'), /closed/);
  });
});
