/**
 * RedisBroker and RedisClusterState against real Redis, held to the same contract suites as the
 * memory backends (test/unit/cluster-memory.test.ts). Each test has its own key prefix on one
 * shared Redis from the harness; a test that needs an outage gets a Redis of its own, which it
 * kills (SIGKILL, as in a crash) and starts again on the same port.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { startRedis, type RedisHandle } from '@parley/agent';
import { RedisBroker } from '../../packages/server/src/cluster/broker-redis.js';
import { RedisClusterState } from '../../packages/server/src/cluster/state-redis.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { brokerContract, Recorder } from '../contract/broker.contract.js';
import { stateContract } from '../contract/state.contract.js';

const silent = pino({ level: 'silent' });

let svc: Services | undefined;
before(async () => {
  svc = await startServices({ etcd: false, postgres: false });
});
after(async () => {
  await svc?.stop();
});

function sharedUrl(): string {
  const url = svc?.redis?.url;
  if (!url) throw new Error('the harness Redis is not running');
  return url;
}

/** A Redis of the test's own, that it may kill and start again on the same port. */
class OwnRedis {
  private constructor(private h: RedisHandle) {}

  static async start(): Promise<OwnRedis> {
    return new OwnRedis(await startRedis());
  }

  get url(): string {
    return this.h.url;
  }

  get pid(): number {
    return this.h.pid;
  }

  async kill(): Promise<void> {
    try {
      process.kill(this.h.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await this.h.stop(); // resolves once the process has exited
  }

  async restart(settings?: Record<string, string>): Promise<void> {
    await this.h.stop();
    this.h = await startRedis({ port: this.h.port, ...(settings ? { settings } : {}) });
  }

  stop(): Promise<void> {
    return this.h.stop();
  }
}

brokerContract('RedisBroker', async ({ outage }) => {
  const prefix = uniqueName('broker');
  if (!outage) {
    const url = sharedUrl();
    return { make: (h) => new RedisBroker(url, prefix, h, silent), close: async () => undefined };
  }
  const own = await OwnRedis.start();
  return {
    make: (h) => new RedisBroker(own.url, prefix, h, silent),
    outage: { stop: () => own.kill(), restart: () => own.restart() },
    close: () => own.stop(),
  };
});

stateContract('RedisClusterState', async ({ outage }) => {
  const prefix = uniqueName('state');
  const own = outage ? await OwnRedis.start() : undefined;
  const url = own?.url ?? sharedUrl();
  return {
    make: async () => {
      const s = new RedisClusterState(url, prefix, silent);
      try {
        await s.start();
      } catch (err) {
        await s.close();
        throw err;
      }
      return s;
    },
    ...(own ? { outage: { stop: () => own.kill(), restart: () => own.restart() } } : {}),
    close: async () => {
      await own?.stop();
    },
  };
});

/** A logger whose records a test can read and wait for. */
function capturingLogger(): {
  log: Logger;
  records: Array<{ level: number; msg: string }>;
  until(cond: () => boolean): Promise<void>;
} {
  const records: Array<{ level: number; msg: string }> = [];
  let waits: Array<{ cond: () => boolean; resolve: () => void }> = [];
  const log = pino({ level: 'debug' }, {
    write: (line: string) => {
      const r = JSON.parse(line) as { level: number; msg: string };
      records.push({ level: r.level, msg: r.msg });
      waits = waits.filter((w) => (w.cond() ? (w.resolve(), false) : true));
    },
  });
  const until = (cond: () => boolean): Promise<void> =>
    cond() ? Promise.resolve() : new Promise((resolve) => waits.push({ cond, resolve }));
  return { log, records, until };
}

describe('RedisBroker on real Redis, beyond the contract', () => {
  it('a frozen Redis (connection open, no answers): publish rejects after the command timeout', { timeout: 20_000 }, async () => {
    const own = await OwnRedis.start();
    const r = new Recorder();
    const b = new RedisBroker(own.url, uniqueName('frozen'), r, silent, { commandTimeoutMs: 300 });
    try {
      await b.start();
      await b.subscribe('t');
      process.kill(own.pid, 'SIGSTOP');
      try {
        const t0 = performance.now();
        await assert.rejects(b.publish('t', 'into the void'), /timed out/i);
        const ms = performance.now() - t0;
        assert.ok(ms >= 250 && ms < 1500, `rejected after ${ms.toFixed(0)} ms`);
      } finally {
        process.kill(own.pid, 'SIGCONT');
      }
      await b.publish('t', 'thawed');
      await r.until(() => r.payloads('t').includes('thawed'));
    } finally {
      await b.close();
      await own.stop();
    }
  });

  it('status(true) waits until Redis confirmed the resubscription; a refused one is retried', { timeout: 20_000 }, async () => {
    const own = await OwnRedis.start();
    const { log, records, until } = capturingLogger();
    const r = new Recorder();
    const b = new RedisBroker(own.url, uniqueName('resub'), r, log, { maxReconnectDelayMs: 100 });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-acl-'));
    const admin = new Redis(own.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    admin.on('error', () => undefined);
    try {
      await b.start();
      await b.subscribe('t');
      await own.kill();
      await r.until(() => r.statuses.length === 1);
      // Back, but refusing SUBSCRIBE: the broker is connected and must still not say it is up.
      const acl = path.join(dir, 'users.acl');
      await fs.writeFile(acl, 'user default on nopass ~* &* +@all -subscribe\n');
      await own.restart({ aclfile: acl });
      const failures = (): number => records.filter((x) => x.msg.startsWith('redis broker resubscription failed')).length;
      await until(() => failures() >= 2);
      assert.deepEqual(r.statuses, [false]);
      assert.equal(b.up, false);

      await admin.connect();
      await admin.call('ACL', 'SETUSER', 'default', '+subscribe');
      await r.until(() => r.statuses.length === 2);
      assert.deepEqual(r.statuses, [false, true]);
      await b.publish('t', 'resubscribed');
      await r.received('t', 1);
    } finally {
      admin.disconnect();
      await b.close();
      await own.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('connection errors during an outage are logged, once per outage at warn level', { timeout: 20_000 }, async () => {
    const own = await OwnRedis.start();
    const { log, records, until } = capturingLogger();
    const r = new Recorder();
    const b = new RedisBroker(own.url, uniqueName('logs'), r, log, { maxReconnectDelayMs: 100 });
    try {
      await b.start();
      await own.kill();
      await r.until(() => r.statuses.length === 1);
      // Several reconnection attempts fail meanwhile (one every 100 ms at most).
      const errors = (): number => records.filter((x) => x.msg === 'redis broker connection error').length;
      await until(() => errors() >= 6);
      await own.restart();
      await r.until(() => r.statuses.length === 2);
      const conn = records.filter((x) => x.msg === 'redis broker connection error');
      assert.ok(conn.length >= 6);
      const warns = conn.filter((x) => x.level === 40).length;
      assert.ok(warns >= 1 && warns <= 4, `${warns} of ${conn.length} at warn`);
      assert.ok(records.some((x) => x.msg === 'redis broker lost its connection' && x.level === 40));
      assert.ok(records.some((x) => x.msg === 'redis broker connected again'));
    } finally {
      await b.close();
      await own.stop();
    }
  });

  it('a frozen Redis: cluster state calls reject after the command timeout', { timeout: 20_000 }, async () => {
    const own = await OwnRedis.start();
    const s = new RedisClusterState(own.url, uniqueName('frozen'), silent, { commandTimeoutMs: 300 });
    try {
      await s.start();
      process.kill(own.pid, 'SIGSTOP');
      try {
        const t0 = performance.now();
        await assert.rejects(s.claimNick({ nick: 'Zoe', user: 'z', host: 'h', realname: 'Z', inst: 'i1', server: 's', away: null, signon: 1 }), /timed out/i);
        await assert.rejects(s.members('#x'), /timed out/i);
        const ms = performance.now() - t0;
        assert.ok(ms < 1500, `rejected after ${ms.toFixed(0)} ms`);
      } finally {
        process.kill(own.pid, 'SIGCONT');
      }
      assert.deepEqual(await s.members('#x'), []);
    } finally {
      await s.close();
      await own.stop();
    }
  });

  it('close while Redis is away returns at once and leaves nothing reconnecting', { timeout: 20_000 }, async () => {
    const own = await OwnRedis.start();
    const r = new Recorder();
    const b = new RedisBroker(own.url, uniqueName('closedown'), r, silent);
    const s = new RedisClusterState(own.url, uniqueName('closedown'), silent);
    try {
      await b.start();
      await s.start();
      await own.kill();
      await r.until(() => r.statuses.length === 1);
      const t0 = performance.now();
      await Promise.all([b.close(), s.close()]);
      assert.ok(performance.now() - t0 < 500);
      assert.deepEqual(r.statuses, [false], 'no status after close');
    } finally {
      await own.stop();
    }
    // A client still reconnecting would keep this test file's process alive: the run would hang.
  });
});
