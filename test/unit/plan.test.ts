/* The lab's pure parts: the host plan schema, how `up`/`scale` shape a plan, the HAProxy
 * configuration, the supervisor's restart logic (with fake processes), and log formatting. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HostPlanSchema, Limiter, SHARD_PROFILE, emptyPlan, parsePlan, planUnitNames, renderHaproxyConfig, renderShardConf, spawnManaged, startOnFreePorts, Supervisor, type Running, type UnitSpec } from '@parley/agent';
import { classOf, QosFromSchema } from '../../packages/cli/src/provision/qos-from.js';
import { range } from '../../packages/cli/src/provision/shards.js';
import type { ExitInfo } from '@parley/agent';
import { resizeInstances, shapePlan } from '../../packages/cli/src/lab/up.js';
import { parseScaleSpec } from '../../packages/cli/src/lab/scale.js';
import { pretty } from '../../packages/cli/src/lab/logs.js';

describe('host plan schema', () => {
  it('fills defaults and refuses unknown keys', () => {
    const p = HostPlanSchema.parse({ redis: {}, shards: [{ id: 0 }], instances: [{ id: 'i1', serverName: 'i1.parley.local' }], frontDoor: {} });
    assert.deepEqual(p.redis, { port: 0, persist: true, generation: 0 });
    assert.equal(p.shards[0]?.database, 'parley');
    assert.equal(p.instances[0]?.tcpPort, 0);
    assert.deepEqual([p.frontDoor?.ircPort, p.frontDoor?.httpPort, p.frontDoor?.slots], [6667, 8080, 32]);
    const bad = parsePlan('{"redis":{"prot":1}}');
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.error, /Unrecognized key/);
  });

  it('refuses duplicates, reserved names and instances without Redis', () => {
    const i = (id: string, serverName = `${id}.x`) => ({ id, serverName });
    const errorOf = (plan: unknown): string => {
      const r = parsePlan(JSON.stringify(plan));
      return r.ok ? '' : r.error;
    };
    assert.match(errorOf({ redis: {}, instances: [i('a'), i('a', 'b.x')] }), /instance id a appears twice/);
    assert.match(errorOf({ redis: {}, instances: [i('a'), i('b', 'a.x')] }), /server name a\.x appears twice/);
    assert.match(errorOf({ redis: {}, instances: [i('pg3')] }), /reserved/);
    assert.match(errorOf({ instances: [i('a')] }), /need Redis/);
    assert.match(errorOf({ shards: [{ id: 1 }, { id: 1 }] }), /shard 1 appears twice/);
    assert.match(errorOf('nope'), /expected object/);
  });

  it('a thousand provisioned shards stay far below etcd\'s 1.5 MiB value limit', () => {
    const p = shapePlan(emptyPlan(), { instances: 2, shards: 4 });
    for (let id = 4; id < 1000; id++) p.shards.push({ id, port: 20000 + id, database: 'parley', generation: 0, register: false, ...(id % 3 === 0 ? { qos: 'silver-class' } : {}) });
    const bytes = Buffer.byteLength(JSON.stringify(HostPlanSchema.parse(p)));
    assert.ok(bytes < 100 * 1024, `plan of 1000 shards is ${bytes} bytes`);
    assert.ok(bytes * 15 < 1.5 * 1024 * 1024, 'room for 15,000 shards');
  });

  it('refuses two shards on one port; a shard class must be a class name', () => {
    const errorOf = (plan: unknown): string => {
      const r = parsePlan(JSON.stringify(plan));
      return r.ok ? '' : r.error;
    };
    assert.match(errorOf({ shards: [{ id: 1, port: 20001 }, { id: 2, port: 20001 }] }), /port 20001 is planned for two shards/);
    assert.equal(errorOf({ shards: [{ id: 1 }, { id: 2 }] }), '', 'port 0 (auto) twice is fine');
    assert.match(errorOf({ shards: [{ id: 1, qos: 'Gold!' }] }), /class name/);
  });

  it('lists units in start order', () => {
    const p = shapePlan(emptyPlan(), { instances: 2, shards: 2 });
    assert.deepEqual(planUnitNames(p), ['redis', 'pg0', 'pg1', 'haproxy', 'i1', 'i2']);
  });
});

describe('shaping the lab plan', () => {
  it('a new plan gets the defaults: Redis, 4 shards, 2 instances, the front door on 6667/8080', () => {
    const p = shapePlan(emptyPlan(), {});
    assert.equal(p.shards.length, 4);
    assert.deepEqual(p.instances.map((i) => [i.id, i.serverName]), [['i1', 'i1.parley.local'], ['i2', 'i2.parley.local']]);
    assert.deepEqual([p.frontDoor?.ircPort, p.frontDoor?.httpPort, p.frontDoor?.bind], [6667, 8080, '127.0.0.1']);
    assert.ok(HostPlanSchema.safeParse(p).success);
  });

  it('an existing plan keeps what is not asked for', () => {
    const p = shapePlan(emptyPlan(), { instances: 3, shards: 2, ircPort: 7000 });
    p.instances[1]!.generation = 5;
    const q = shapePlan(structuredClone(p), {});
    assert.deepEqual(q, p);
    const r = shapePlan(structuredClone(p), { httpPort: 9000 });
    assert.deepEqual([r.frontDoor?.ircPort, r.frontDoor?.httpPort], [7000, 9000]);
  });

  it('scaling keeps instances by id, removes the highest, reuses the lowest free number', () => {
    const p = shapePlan(emptyPlan(), { instances: 3 });
    p.instances[0]!.generation = 2;
    const down = resizeInstances(p, 2);
    assert.deepEqual(down.map((i) => i.id), ['i1', 'i2']);
    assert.equal(down[0]!.generation, 2, 'i1 kept as it was');
    p.instances = p.instances.filter((i) => i.id !== 'i2');
    assert.deepEqual(resizeInstances(p, 4).map((i) => i.id), ['i1', 'i2', 'i3', 'i4']);
  });

  it('scale specs: server=K within 1..32, one clear message otherwise', () => {
    assert.deepEqual(parseScaleSpec('server=3'), { what: 'server', count: 3 });
    assert.deepEqual(parseScaleSpec('instances=32'), { what: 'server', count: 32 });
    assert.deepEqual(parseScaleSpec('shards=8'), { what: 'shard', count: 8 });
    for (const bad of ['server=0', 'server=33', 'server=-1', 'server=1.5', 'server=abc', 'server=']) {
      assert.throws(() => parseScaleSpec(bad), /integer from 1 to 32/, bad);
    }
    assert.throws(() => parseScaleSpec('redis=2'), /only server=K/);
    assert.throws(() => parseScaleSpec('server'), /write it as server=K/);
  });
});

describe('provisioning', () => {
  it('--qos-from: ranges (both ends included), a default, overlaps refused with the shards named', () => {
    const m = QosFromSchema.parse({ default: 'bronze', ranges: [{ from: 0, to: 9, class: 'gold' }, { from: 10, to: 10, class: 'silver' }] });
    assert.deepEqual([0, 9, 10, 11].map((id) => classOf(m, id)), ['gold', 'gold', 'silver', 'bronze']);
    assert.equal(classOf(QosFromSchema.parse({ ranges: [{ from: 0, to: 1, class: 'gold' }] }), 5), undefined);
    const bad = QosFromSchema.safeParse({ ranges: [{ from: 0, to: 9, class: 'gold' }, { from: 5, to: 20, class: 'silver' }] });
    assert.equal(bad.success, false);
    assert.match(JSON.stringify(bad.error?.issues), /shards 5-9 are also in range 0-9/);
    assert.equal(QosFromSchema.safeParse({ ranges: [{ from: 3, to: 1, class: 'gold' }] }).success, false);
    assert.equal(QosFromSchema.safeParse({ rangs: [] }).success, false);
  });

  it('a shard\'s postgresql.conf: the profile, then its class, then its place (last wins in PostgreSQL)', () => {
    const conf = renderShardConf({ port: 20007, socketDir: '/s', className: 'gold', classSettings: { max_connections: 40, work_mem: "2MB" } });
    const order = ['max_connections = 16', '# QoS class "gold"', 'max_connections = 40', "work_mem = '2MB'", 'port = 20007', "listen_addresses = '127.0.0.1'", "unix_socket_directories = '/s'"];
    let at = -1;
    for (const line of order) {
      const i = conf.indexOf(`${line}\n`);
      assert.ok(i > at, `${line} after the previous`);
      at = i;
    }
    assert.equal(SHARD_PROFILE.shared_buffers, '128kB');
    assert.doesNotMatch(renderShardConf({ port: 1, socketDir: '/s' }), /# QoS class "/);
  });

  it('a limiter runs at most n jobs, in the order asked, and no job jumps the queue', async () => {
    const lim = new Limiter(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    const gates = Array.from({ length: 6 }, () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    const jobs = gates.map((g, i) => lim.run(async () => {
      active++;
      peak = Math.max(peak, active);
      order.push(i);
      await g.promise;
      active--;
    }));
    for (const g of gates) {
      await Promise.resolve();
      g.resolve();
      await new Promise<void>((r) => setImmediate(r));
    }
    await Promise.all(jobs);
    assert.equal(peak, 2);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  });

  it('ranges of shard numbers read short', () => {
    assert.equal(range([3, 4, 5, 7, 9, 10]), '3-5, 7, 9-10');
    assert.equal(range([1, 3, 5, 7, 9, 11, 13, 15]), '1, 3, 5, … 13, 15');
  });
});

describe('HAProxy configuration', () => {
  it('two frontends, leastconn, readiness checks on the WebSocket port, empty slots in maintenance', () => {
    const cfg = renderHaproxyConfig({
      bind: '127.0.0.1', ircPort: 6667, httpPort: 8080, socket: '/run/x.sock',
      slots: [
        { name: 's1', server: { host: '127.0.0.1', tcpPort: 4001, wsPort: 4002, ready: true } },
        { name: 's2', server: null },
      ],
    });
    assert.match(cfg, /stats socket \/run\/x\.sock mode 600 level admin/);
    assert.match(cfg, /bind 127\.0\.0\.1:6667/);
    assert.match(cfg, /bind 127\.0\.0\.1:8080/);
    assert.equal(cfg.match(/balance leastconn/g)?.length, 2);
    assert.equal(cfg.match(/option httpchk GET \/readyz/g)?.length, 2);
    // IRC with a PROXY header (the client's address); the check goes to /readyz without one.
    assert.match(cfg, /server s1 127\.0\.0\.1:4001 send-proxy check port 4002\n/);
    assert.match(cfg, /server s1 127\.0\.0\.1:4002 check port 4002\n/);
    assert.match(cfg, /option forwardfor/);
    assert.match(cfg, /server s2 .* disabled/);
    assert.match(cfg, /timeout tunnel 1h/);
  });
});

/** A fake process: `crash()` makes it exit on its own; `stop()` exits it on purpose. */
function fakeProcess(pid: number) {
  let resolve!: (e: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((r) => (resolve = r));
  const running: Running = {
    pid,
    exited,
    ports: {},
    stop: async () => resolve({ code: 0, signal: null }),
  };
  return { running, crash: () => resolve({ code: null, signal: 'SIGKILL' }) };
}

/**
 * Waits for the supervisor's 'change' events to make `pred` true; fails after `ms`. The limit's
 * timer is referenced: the supervisor's own backoff timers are not, and something must keep the
 * test's event loop alive while it waits.
 */
async function until(sup: Supervisor, what: string, pred: () => boolean, ms = 3000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    await Promise.race([sup.when(pred), limit]);
  } finally {
    clearTimeout(timer);
  }
}

describe('supervisor', () => {
  it('starts after dependencies, restarts what dies (with backoff), applies changes, stops in order', async () => {
    const events: string[] = [];
    const procs = new Map<string, ReturnType<typeof fakeProcess>>();
    let pid = 100;
    const spec = (name: string, deps: string[] = [], hash = 'h1', kind: UnitSpec['kind'] = 'server'): UnitSpec => ({
      name, kind, hash, deps, log: `/dev/null`,
      start: async () => {
        events.push(`start ${name}`);
        const p = fakeProcess(++pid);
        procs.set(name, p);
        void p.running.exited.then(() => events.push(`exit ${name}`));
        return p.running;
      },
    });
    const sup = new Supervisor({ backoffBaseMs: 20, backoffMaxMs: 100 });
    const state = (n: string) => sup.snapshot().find((u) => u.name === n);
    sup.apply([spec('i1', ['redis']), spec('redis', [], 'h1', 'redis')]);
    await until(sup, 'both running', () => sup.isRunning('redis') && sup.isRunning('i1'));
    assert.deepEqual(events.slice(0, 2), ['start redis', 'start i1'], 'the instance waits for Redis');

    procs.get('i1')!.crash();
    await until(sup, 'i1 restarted', () => state('i1')?.restarts === 1 && sup.isRunning('i1'));
    assert.equal(state('i1')?.lastExit?.signal, 'SIGKILL');

    sup.apply([spec('i1', ['redis'], 'h2'), spec('redis', [], 'h1', 'redis')]);
    await until(sup, 'i1 restarted for the new spec', () => events.filter((e) => e === 'start i1').length === 3 && sup.isRunning('i1'));
    assert.equal(state('i1')?.restarts, 1, 'a planned restart is not a crash');

    sup.apply([spec('redis', [], 'h1', 'redis')]);
    await until(sup, 'i1 gone', () => state('i1') === undefined);

    sup.apply([spec('i2', ['redis']), spec('redis', [], 'h1', 'redis')]);
    await until(sup, 'i2 running', () => sup.isRunning('i2'));
    events.length = 0;
    await sup.shutdown([['server'], ['redis']]);
    assert.deepEqual(events, ['exit i2', 'exit redis']);
  });

  it('a start that fails is retried with growing delays', async () => {
    let attempts = 0;
    const sup = new Supervisor({ backoffBaseMs: 10, backoffMaxMs: 40 });
    sup.apply([{
      name: 'redis', kind: 'redis', hash: 'x', deps: [], log: '/dev/null',
      start: async () => {
        attempts++;
        if (attempts < 4) throw new Error(`port in use\nmore detail`);
        return fakeProcess(1).running;
      },
    }]);
    await until(sup, 'running after 3 failures', () => sup.isRunning('redis'));
    const u = sup.snapshot()[0]!;
    assert.equal(attempts, 4);
    assert.equal(u.lastError, null);
    await sup.shutdown([]);
  });
});

describe('starting on free ports', () => {
  // Real (tiny) processes: the first attempts die saying their port is taken, as etcd, Redis and
  // PostgreSQL do when another program bound the picked port first.
  const clash = (port: number) => spawnManaged({ name: 'clash', command: 'sh', args: ['-c', `echo "listen tcp 127.0.0.1:${port}: bind: address already in use" >&2; exit 1`] });

  it('a picked port taken meanwhile: started again on new free ports, distinct from each other', async () => {
    const tried: number[][] = [];
    const cleared: number[] = [];
    const { proc, ports } = await startOnFreePorts({
      ports: [undefined, undefined],
      spawn: (p) => {
        tried.push(p);
        return tried.length < 3 ? clash(p[0]!) : spawnManaged({ name: 'ok', command: 'sleep', args: ['30'] });
      },
      ready: async (x) => x.name === 'ok',
      timeoutMs: 5_000,
      stop: (x) => x.stop('SIGKILL'),
      beforeRetry: async () => void cleared.push(tried.length),
    });
    try {
      assert.equal(tried.length, 3);
      assert.deepEqual(ports, tried[2]);
      assert.deepEqual(cleared, [1, 2]);
      for (const p of tried) assert.notEqual(p[0], p[1]);
    } finally {
      await proc.stop('SIGKILL');
    }
  });

  it('a port that was asked for, or another failure, is not retried', async () => {
    let spawned = 0;
    await assert.rejects(
      startOnFreePorts({ ports: [1], spawn: (p) => (spawned++, clash(p[0]!)), ready: async () => false, timeoutMs: 5_000, stop: (x) => x.stop('SIGKILL') }),
      /exited|before it was ready/,
    );
    assert.equal(spawned, 1);
    spawned = 0;
    const other = () => spawnManaged({ name: 'other', command: 'sh', args: ['-c', 'echo "permission denied" >&2; exit 1'] });
    await assert.rejects(startOnFreePorts({ ports: [undefined], spawn: () => (spawned++, other()), ready: async () => false, timeoutMs: 5_000, stop: (x) => x.stop('SIGKILL') }));
    assert.equal(spawned, 1);
  });
});

describe('log lines', () => {
  it('JSON lines read as time, level, message, fields', () => {
    const line = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 1, hostname: 'h', instance: 'i1', msg: 'listening', tcpPort: 1 });
    assert.equal(pretty(line), '03:04:05.678 INFO  listening instance=i1 tcpPort=1');
    assert.equal(pretty('plain text'), 'plain text');
    assert.equal(pretty('{not json'), '{not json');
  });
});
