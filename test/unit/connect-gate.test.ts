import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectGate, GATE_TIMED_OUT } from '../../packages/server/src/store/connect-gate.js';
import { GroupCommitter } from '../../packages/server/src/store/committer.js';
import { StoreTimeoutError } from '../../packages/server/src/store/errors.js';

/** An open that settles when told to, recording that it started. */
function deferredOpen(started: string[], name: string): { open: () => Promise<string>; finish: () => void; fail: (e: Error) => void } {
  let finish!: () => void;
  let fail!: (e: Error) => void;
  const p = new Promise<string>((resolve, reject) => {
    finish = () => resolve(name);
    fail = reject;
  });
  return {
    open: () => {
      started.push(name);
      return p;
    },
    finish,
    fail,
  };
}

describe('ConnectGate', () => {
  it('runs at most `limit` opens at once, the others in order as turns free up', async () => {
    const gate = new ConnectGate(2, 60_000);
    const started: string[] = [];
    const ops = ['a', 'b', 'c', 'd'].map((n) => deferredOpen(started, n));
    const far = Date.now() + 60_000;
    const results = ops.map((o) => gate.run(far, o.open));
    assert.deepEqual(started, ['a', 'b']);
    assert.equal(gate.waiting, 2);
    ops[1]!.finish();
    assert.equal(await results[1], 'b');
    assert.deepEqual(started, ['a', 'b', 'c']);
    ops[0]!.fail(new Error('refused'));
    await assert.rejects(results[0]!, /refused/);
    assert.deepEqual(started, ['a', 'b', 'c', 'd'], 'a failed open frees its turn too');
    ops[2]!.finish();
    ops[3]!.finish();
    assert.deepEqual(await Promise.all(results.slice(2)), ['c', 'd']);
    assert.equal(gate.waiting, 0);
  });

  it('rejects a waiter whose deadline passes with GATE_TIMED_OUT, without ever running it', async () => {
    const gate = new ConnectGate(1, 60_000);
    const started: string[] = [];
    const held = deferredOpen(started, 'held');
    const first = gate.run(Date.now() + 60_000, held.open);
    const late = deferredOpen(started, 'late');
    await assert.rejects(gate.run(Date.now() + 30, late.open), (err: unknown) => err === GATE_TIMED_OUT);
    assert.equal(gate.waiting, 0, 'the timed-out waiter left the queue');
    held.finish();
    await first;
    assert.deepEqual(started, ['held'], 'the timed-out open never ran');
    const next = deferredOpen(started, 'next');
    const r = gate.run(Date.now() + 60_000, next.open);
    assert.deepEqual(started, ['held', 'next'], 'a free turn runs at once');
    next.finish();
    await r;
  });

  it('a hanging open holds its turn for holdMs only: the next one starts while it still hangs', async () => {
    const gate = new ConnectGate(1, 20);
    const started: string[] = [];
    const hanging = deferredOpen(started, 'hanging');
    const h = gate.run(Date.now() + 60_000, hanging.open);
    let nextStarted!: () => void;
    const startedNext = new Promise<void>((resolve) => (nextStarted = resolve));
    const r = gate.run(Date.now() + 60_000, () => {
      nextStarted();
      return Promise.resolve('next');
    });
    await startedNext;
    assert.equal(await r, 'next');
    assert.deepEqual(started, ['hanging']);
    hanging.finish();
    assert.equal(await h, 'hanging');
    // The late settlement of the hanging open does not hand out a second turn.
    const a = deferredOpen(started, 'a');
    const b = deferredOpen(started, 'b');
    const ra = gate.run(Date.now() + 60_000, a.open);
    const rb = gate.run(Date.now() + 60_000, b.open);
    assert.deepEqual(started, ['hanging', 'a'], 'one turn, as the limit says');
    a.finish();
    await ra;
    b.finish();
    await rb;
  });
});

describe('GroupCommitter with a connect gate', () => {
  it('a batch that gets no turn to connect in time is refused with STORE_TIMEOUT, and the shard is not marked down', async () => {
    const gate = new ConnectGate(1, 60_000);
    // Another shard's open holds the only turn (it never settles within this test).
    let release!: () => void;
    const holder = gate.run(Date.now() + 60_000, () => new Promise<void>((resolve) => (release = resolve)));
    const c = new GroupCommitter({
      shard: 7,
      // Never contacted: the batch gives up waiting for its turn first.
      url: 'postgres://parley@127.0.0.1:1/parley',
      commitTimeoutMs: 150,
      ensureSchema: () => Promise.resolve(),
      gate,
    });
    const err = await c
      .append({ room: '#r', source: 'a!u@h', command: 'PRIVMSG', target: '#r', text: 'hi', tags: null })
      .then(() => null, (e: unknown) => e);
    assert.ok(err instanceof StoreTimeoutError, `refused with ${String(err)}`);
    assert.equal(c.down, null, 'waiting for a turn says nothing about the shard');
    assert.equal(c.connected, false);
    release();
    await holder;
    await c.close();
  });
});
