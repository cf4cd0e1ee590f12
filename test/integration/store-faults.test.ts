/**
 * The message store under shard faults, against real PostgreSQL clusters: a shard frozen with
 * SIGSTOP (postmaster and every backend), a shard killed with SIGKILL and restarted, and history
 * reads on a 200k-message room next to live writes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startPostgres } from '@parley/agent';
import type { PgHandle } from '@parley/agent';
import { startServices, uniqueName } from '../harness/index.js';
import type { Services } from '../harness/index.js';
import {
  ShardedStore,
  StaticShardDirectory,
  StoreTimeoutError,
  StoreUnavailableError,
} from '../../packages/server/src/store/index.js';
import type { AppendResult, NewMessage, ShardInfo, StoreEvents } from '../../packages/server/src/store/index.js';

/** The documented commit timeout (docs/architecture.md): the store's default. */
const COMMIT_TIMEOUT_MS = 5000;
/** Timer and event-loop lateness allowed on top of a documented bound. */
const SLACK_MS = 250;

function msg(room: string, text: string): NewMessage {
  return { room, source: 'alice!a@host', command: 'PRIVMSG', target: room, text, tags: null };
}

/** One append and how it ended. */
interface Sent {
  room: string;
  text: string;
  at: number;
  ms?: number;
  result?: AppendResult;
  error?: Error;
  done: Promise<void>;
}

function send(store: ShardedStore, room: string, text: string): Sent {
  const at = performance.now();
  const s: Sent = { room, text, at, done: Promise.resolve() };
  s.done = store.append(msg(room, text)).then(
    (r) => {
      s.ms = performance.now() - at;
      s.result = r;
    },
    (err: unknown) => {
      s.ms = performance.now() - at;
      s.error = err instanceof Error ? err : new Error(String(err));
    },
  );
  return s;
}

async function settled(list: Sent[]): Promise<void> {
  await Promise.all(list.map((s) => s.done));
}

function p99(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

/** Each `next()` resolves with the next value fired after it was called. */
function signal<T>(): { fire: (v: T) => void; next: () => Promise<T> } {
  let waiters: Array<(v: T) => void> = [];
  return {
    fire: (v) => {
      const w = waiters;
      waiters = [];
      for (const f of w) f(v);
    },
    next: () => new Promise<T>((resolve) => waiters.push(resolve)),
  };
}

/** Shard health as events, so tests wait on them. */
function watchEvents(): { events: StoreEvents; up: ReturnType<typeof signal<number>>; down: ReturnType<typeof signal<Error>>; late: NewMessage[] } {
  const up = signal<number>();
  const down = signal<Error>();
  const late: NewMessage[] = [];
  return {
    up,
    down,
    late,
    events: {
      shardUp: (_shard, ms) => up.fire(ms),
      shardDown: (_shard, cause) => down.fire(cause),
      lateCommit: (_shard, msgs) => late.push(...msgs),
    },
  };
}

/** Children of `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(path.join('/proc', name, 'stat'), 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

function signalAll(pids: Iterable<number>, sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/**
 * Stops a PostgreSQL cluster: the processes listed beforehand (`known`, so that a busy backend
 * stops within microseconds of the call) and the postmaster, then every child (backends,
 * checkpointer, WAL writer ...) listed again until no new one shows up. Returns the thaw, which
 * is idempotent.
 */
function freeze(postmaster: number, known: number[] = []): () => void {
  const stopped = new Set<number>([postmaster, ...known]);
  signalAll(known, 'SIGSTOP');
  process.kill(postmaster, 'SIGSTOP');
  for (;;) {
    const fresh = childrenOf(postmaster).filter((p) => !stopped.has(p));
    if (fresh.length === 0) break;
    for (const p of fresh) stopped.add(p);
    signalAll(fresh, 'SIGSTOP');
  }
  let thawed = false;
  return () => {
    if (thawed) return;
    thawed = true;
    signalAll(stopped, 'SIGCONT');
  };
}

/** Rows of a room as stored, read directly. */
async function storedTexts(url: string, room: string): Promise<Array<{ seq: number; body: string }>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const res = await client.query<{ seq: number; body: string }>(
      'select seq::float8 as seq, body from messages where room = $1 order by messages.seq',
      [room],
    );
    return res.rows;
  } finally {
    await client.end();
  }
}

/** Asserts the room's history holds exactly the appends that resolved, at their seqs, gap-free. */
async function assertHistoryMatches(url: string, room: string, sent: Sent[]): Promise<void> {
  const rows = await storedTexts(url, room);
  const ok = sent.filter((s) => s.room === room && s.result);
  const failed = new Set(sent.filter((s) => s.room === room && s.error).map((s) => s.text));
  for (const r of rows) assert.ok(!failed.has(r.body), `${room}: "${r.body}" was rejected but is in history`);
  assert.deepEqual(
    rows.map((r) => r.seq),
    rows.map((_, i) => i + 1),
    `${room}: seqs gap-free`,
  );
  const bySeq = new Map(rows.map((r) => [r.seq, r.body]));
  for (const s of ok) assert.equal(bySeq.get(s.result!.seq), s.text, `${room}: resolved "${s.text}" stored at seq ${s.result!.seq}`);
  assert.equal(rows.length, ok.length, `${room}: every stored message was acknowledged`);
}

/** `n` room names the directory puts on shard `id`. */
async function roomsOn(dir: StaticShardDirectory, id: number, prefix: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const room = `${prefix}${i}`;
    if ((await dir.resolve(room)).id === id) out.push(room);
  }
  return out;
}

describe('message store under shard faults', { timeout: 240_000 }, () => {
  let svc: Services;
  let other: Services;
  const open: Array<{ close(): Promise<void> }> = [];
  const thaws: Array<() => void> = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };

  function track<T extends { close(): Promise<void> }>(x: T): T {
    open.push(x);
    return x;
  }

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    [svc, other] = await Promise.all([
      startServices({ etcd: false, redis: false, postgres: true }),
      startServices({ etcd: false, redis: false, postgres: true }),
    ]);
  });

  after(async () => {
    for (const thaw of thaws) thaw();
    await Promise.allSettled(open.map((x) => x.close()));
    await Promise.allSettled([svc?.stop(), other?.stop()]);
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
  });

  test('a frozen shard: FAIL within the commit timeout, nothing FAILed in history after the thaw, other shards unaffected', async () => {
    const url0 = await svc.postgres!.createDatabase(uniqueName('frozen'));
    const url1 = await other.postgres!.createDatabase(uniqueName('healthy'));
    const shards: ShardInfo[] = [
      { id: 0, url: url0, poolSize: 4 },
      { id: 1, url: url1, poolSize: 4 },
    ];
    const dir = new StaticShardDirectory(shards);
    const watch = watchEvents();
    const store = track(new ShardedStore({ directory: dir, events: watch.events }));
    await store.migrateAll();
    const rooms = await roomsOn(dir, 0, '#frozen', 6);
    const [locked, ...busy] = rooms as [string, ...string[]];
    const [elsewhere] = await roomsOn(dir, 1, '#healthy', 1);
    const sent: Sent[] = [];
    const wave = (tag: string, list: string[], per: number): Sent[] => {
      const w = list.flatMap((room) => Array.from({ length: per }, (_, i) => send(store, room, `${tag} ${room} ${i}`)));
      sent.push(...w);
      return w;
    };
    await settled(wave('warm', rooms, 2));
    assert.ok(sent.every((s) => s.result), 'warm-up appends stored');

    // Phase 1: the batch is executing (waiting for a row lock) when the shard freezes.
    const holder = new pg.Client({ connectionString: url0 });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from rooms where room = $1 for update', [locked]);
      const w1 = [...wave('w1', [locked], 5), ...wave('w1', busy, 10)];
      let upped: Promise<number>;
      await new Promise<void>((r) => setImmediate(r));
      const downed = watch.down.next();
      const thaw = freeze(svc.postgres!.pid);
      thaws.push(thaw);
      try {
        const w2 = wave('w2', busy, 10); // queued behind the hung batch
        await settled([...w1, ...w2]);
        await downed;
        for (const s of [...w1, ...w2]) {
          assert.ok(s.error, `${s.text} is rejected`);
          assert.ok(s.ms! <= COMMIT_TIMEOUT_MS + SLACK_MS, `${s.text} answered in ${s.ms!.toFixed(0)} ms`);
        }
        assert.ok(w1.every((s) => s.error instanceof StoreTimeoutError), 'the hung batch fails with StoreTimeoutError');
        // Queued behind it: out of time while the shard is checked (a hung shard and a slow one
        // look alike at first), or unavailable once the check found it down.
        assert.ok(w2.every((s) => s.error instanceof StoreTimeoutError || s.error instanceof StoreUnavailableError), 'the queue behind it fails');

        // Known down: appends and reads fail at once; the other shard is unaffected.
        const w3 = wave('w3', busy, 4);
        const good = send(store, elsewhere!, 'while shard 0 is frozen');
        sent.push(good);
        await settled([...w3, good]);
        for (const s of w3) {
          assert.ok(s.error instanceof StoreUnavailableError, `${s.text}: ${String(s.error)}`);
          assert.ok(s.ms! < 200, `${s.text} failed fast (${s.ms!.toFixed(0)} ms)`);
        }
        assert.ok(good.result, `the other shard still stores: ${String(good.error)}`);
        await assert.rejects(store.latest(busy[0]!, null, 10), StoreUnavailableError);
      } finally {
        upped = watch.up.next();
        thaw();
      }
      await upped;
      // The hung statement either died at the thaw or waits for the lock; once the lock is
      // released and taken again, it has finished one way or the other.
      await holder.query('rollback');
      await holder.query('begin');
      await holder.query('select 1 from rooms where room = $1 for update', [locked]);
      await holder.query('rollback');
    } finally {
      await holder.end();
    }
    for (const room of [...rooms, elsewhere!]) await assertHistoryMatches(room === elsewhere ? url1 : url0, room, sent);

    // Phase 2: frozen while idle, so the batch waits unread in the server's socket buffer and
    // runs after the thaw, past its deadline.
    {
      const downed = watch.down.next();
      const thaw = freeze(svc.postgres!.pid);
      thaws.push(thaw);
      let w4: Sent[];
      let upped: Promise<number>;
      try {
        w4 = wave('w4', busy, 10);
        await settled(w4);
        await downed;
      } finally {
        upped = watch.up.next();
        thaw();
      }
      for (const s of w4) {
        assert.ok(s.error instanceof StoreTimeoutError, `${s.text}: ${String(s.error)}`);
        assert.ok(s.ms! <= COMMIT_TIMEOUT_MS + SLACK_MS, `${s.text} answered in ${s.ms!.toFixed(0)} ms`);
      }
      await upped;
    }

    // Back up: the store works again without being recreated, and seqs continue without a gap.
    await settled(wave('after', rooms, 3));
    assert.ok(sent.filter((s) => s.text.startsWith('after')).every((s) => s.result), 'appends work after the thaw');
    for (const room of rooms) await assertHistoryMatches(url0, room, sent);
    assert.deepEqual(watch.late, [], 'no batch was found committed after being rejected');
    const fenced = await storedBatchCount(url0);
    assert.ok(fenced >= 2, `the lost batches were fenced (${fenced})`);
  });

  test('a commit out of time on a shard that only stalled: refused, checked, not taken for down', async () => {
    const url = await svc.postgres!.createDatabase(uniqueName('stall'));
    const dir = new StaticShardDirectory([{ id: 0, url, poolSize: 2 }]);
    let downs = 0;
    let checked!: (answered: boolean) => void;
    const check = new Promise<boolean>((resolve) => (checked = resolve));
    const store = track(new ShardedStore({
      directory: dir,
      commitTimeoutMs: 1500,
      events: {
        shardDown: () => {
          downs++;
          checked(false);
        },
        shardChecked: (_shard, answered) => checked(answered),
      },
    }));
    await store.migrateAll();
    const room = '#stall';
    await store.append(msg(room, 'first'));
    // The shard stalls (a busy machine) for as long as the commit timeout, then goes on.
    const thaw = freeze(svc.postgres!.pid);
    thaws.push(thaw);
    const stuck = send(store, room, 'during the stall');
    try {
      await settled([stuck]);
    } finally {
      thaw();
    }
    assert.ok(stuck.error instanceof StoreTimeoutError, `refused with ${String(stuck.error)}`);
    assert.equal(await check, true, 'the check found the shard answering');
    assert.equal(downs, 0, 'never marked down');
    const next = send(store, room, 'after the stall');
    await settled([next]);
    assert.ok(next.result, `stored: ${String(next.error)}`);
    const texts = (await store.latest(room, null, 10)).map((m) => m.text);
    assert.deepEqual(texts, ['first', 'after the stall'], 'the refused message is not in history');
  });

  test('freezes at random points of a busy shard: every FAILed message stays out of history', async (t) => {
    const url = await svc.postgres!.createDatabase(uniqueName('busy'));
    const dir = new StaticShardDirectory([{ id: 0, url, poolSize: 2 }]);
    const watch = watchEvents();
    const timeoutMs = 1000;
    const store = track(new ShardedStore({ directory: dir, events: watch.events, commitTimeoutMs: timeoutMs, probeIntervalMs: 100 }));
    await store.migrateAll();
    const rooms = Array.from({ length: 8 }, (_, i) => `#busy${i}`);
    const sent: Sent[] = [];
    let n = 0;
    // A closed loop of writers: each wave starts when the previous one settled.
    const waveOf = (): Sent[] => {
      const w = rooms.flatMap((room) => Array.from({ length: 40 }, () => send(store, room, `m${n++}`)));
      sent.push(...w);
      return w;
    };
    for (let cycle = 0; cycle < 6; cycle++) {
      await settled(waveOf());
      const known = childrenOf(svc.postgres!.pid);
      const w = waveOf();
      // Freeze a few ticks after the wave's batch left: somewhere between the socket buffer,
      // the statement's execution and its commit.
      for (let i = 0; i < 1 + (cycle % 3); i++) await new Promise<void>((r) => setImmediate(r));
      const downed = watch.down.next();
      const thaw = freeze(svc.postgres!.pid, known);
      thaws.push(thaw);
      let upped: Promise<number> | undefined;
      try {
        await settled(w);
        // markDown runs before the batch is rejected, so the event has fired by now
        if (w.some((s) => s.error)) await downed;
      } finally {
        if (w.some((s) => s.error)) upped = watch.up.next();
        thaw();
      }
      for (const s of w) assert.ok(s.ms! <= timeoutMs + SLACK_MS, `answered in ${s.ms!.toFixed(0)} ms`);
      await upped;
      t.diagnostic(`cycle ${cycle}: ${w.filter((s) => s.result).length} stored, ${w.filter((s) => s.error).length} failed`);
    }
    await settled(waveOf());
    assert.ok(sent.some((s) => s.error) && sent.some((s) => s.result), 'both outcomes occurred');
    for (const room of rooms) await assertHistoryMatches(url, room, sent);
    assert.deepEqual(watch.late, [], 'no batch was found committed after being rejected');
  });

  test('a killed shard: appends and reads fail fast, no unhandled rejection, the same store works after a restart', async () => {
    const db = uniqueName('killed');
    const url = await other.postgres!.createDatabase(db);
    const h = other.postgres!;
    const dir = new StaticShardDirectory([{ id: 0, url, poolSize: 3 }]);
    const watch = watchEvents();
    const store = track(new ShardedStore({ directory: dir, events: watch.events }));
    await store.migrateAll();
    const sent: Sent[] = [];
    const wave = (tag: string, per: number): Sent[] => {
      const w = ['#k0', '#k1'].flatMap((room) => Array.from({ length: per }, (_, i) => send(store, room, `${tag} ${i}`)));
      sent.push(...w);
      return w;
    };
    await settled(wave('before', 5));
    assert.ok(sent.every((s) => s.result));

    const downed = watch.down.next();
    const all = [h.pid, ...childrenOf(h.pid)];
    signalAll(all, 'SIGKILL');
    const during = wave('during', 5);
    await settled(during);
    await downed;
    for (const s of during) {
      assert.ok(s.error instanceof StoreUnavailableError, `${s.text}: ${String(s.error)}`);
      assert.ok(s.ms! < 2000, `failed fast (${s.ms!.toFixed(0)} ms)`);
    }
    const fast = wave('fast', 5);
    await settled(fast);
    assert.ok(fast.every((s) => s.error instanceof StoreUnavailableError && s.ms! < 200), 'known down: immediate');
    await assert.rejects(store.before('#k0', { kind: 'seq', seq: 3 }, 10), StoreUnavailableError);

    // Restart on the same data directory and port (crash recovery).
    let restarted: PgHandle | undefined;
    try {
      const up = watch.up.next();
      restarted = await startPostgres({ dataDir: h.dataDir, port: h.port, socketDir: h.socketDir, fsync: false });
      await up;
      await settled(wave('after', 5));
      assert.ok(sent.filter((s) => s.text.startsWith('after')).every((s) => s.result), 'the same store works again');
      for (const room of ['#k0', '#k1']) await assertHistoryMatches(url, room, sent);
      assert.equal((await store.latest('#k0', null, 100)).length, 10);
    } finally {
      await store.close();
      await restarted?.stop();
    }
  });
});

async function storedBatchCount(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const res = await client.query<{ n: number }>('select count(*)::int as n from batches where aborted');
    return res.rows[0]!.n;
  } finally {
    await client.end();
  }
}
