import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClassesError, DEFAULT_CLASSES, apportion, blockClass, parseClasses } from '../../packages/cli/src/demo/classes.js';
import { checkDemoOptions, type DemoQosOptions } from '../../packages/cli/src/demo/qos.js';
import { DemoError } from '../../packages/cli/src/demo/api.js';

/* `parley demo qos`: its classes file, how rooms and shards are split over the classes, its options. */

describe('parley demo qos: classes', () => {
  it('the default mix adds up to 1 and its classes are valid', () => {
    const parsed = parseClasses('defaults', Object.fromEntries(DEFAULT_CLASSES.map((c) => [c.name, { ...c.cls, share: c.share }])));
    assert.deepEqual(parsed, [...DEFAULT_CLASSES]);
  });

  it('a file: every class checked by the QoS schema, shares adding up to 1', () => {
    const ok = parseClasses('f.json', { a: { rate: 2, burst: 3, share: 0.25, poolSize: 1 }, b: { rate: 0.5, burst: 1, share: 0.75 } });
    assert.deepEqual(ok.map((c) => [c.name, c.cls.rate, c.share]), [['a', 2, 0.25], ['b', 0.5, 0.75]]);
    const bad = (raw: unknown, pattern: RegExp): void =>
      assert.throws(() => parseClasses('f.json', raw), (e: unknown) => e instanceof ClassesError && pattern.test(e.message) && !e.message.includes('\n'));
    bad([], /expected a JSON object of classes/);
    bad({}, /no class given/);
    bad({ Gold: { rate: 1, burst: 1, share: 1 } }, /class name "Gold"/);
    bad({ a: { rate: 1, burst: 1, share: 0.4 } }, /the shares add up to 0\.4, not 1/);
    bad({ a: { rate: 1, burst: 1 } }, /a: share/);
    bad({ a: { rate: 1, burst: 1, share: 1, extra: true } }, /a: .*extra/);
    bad({ a: { rate: 0, burst: 1, share: 1 } }, /a: rate/);
  });

  it('apportion splits exactly, by the largest remainders', () => {
    assert.deepEqual(apportion(1000, [0.5, 0.3, 0.2]), [500, 300, 200]);
    assert.deepEqual(apportion(8, [0.5, 0.3, 0.2]), [4, 2, 2]);
    assert.deepEqual(apportion(1, [0.5, 0.5]), [1, 0]);
    assert.deepEqual(apportion(10, [1 / 3, 1 / 3, 1 / 3]), [4, 3, 3]);
    for (const n of [1, 7, 99, 1000, 4999]) assert.equal(apportion(n, [0.15, 0.6, 0.25]).reduce((a, b) => a + b, 0), n);
  });

  it('blocks: consecutive items per class', () => {
    const counts = [2, 0, 3];
    assert.deepEqual(Array.from({ length: 5 }, (_, i) => blockClass(counts, i)), [0, 0, 2, 2, 2]);
  });
});

describe('parley demo qos: options', () => {
  const base: DemoQosOptions = { shards: 1000, rooms: 1000, messagesPerRoom: 150, rateMultiple: 2, stateDir: '.parley-demo', keep: false, instances: 2, out: 'qos-demo', timeout: 900, tolerance: 5, warmup: true };
  it('the defaults pass; each bad value is one line naming the flag', () => {
    checkDemoOptions(base);
    const bad = (o: Partial<DemoQosOptions>, pattern: RegExp): void =>
      assert.throws(() => checkDemoOptions({ ...base, ...o }), (e: unknown) => e instanceof DemoError && pattern.test(e.message));
    bad({ shards: 0 }, /^--shards must be an integer from 1 to 5,000, got 0$/);
    bad({ rooms: 10_001 }, /^--rooms must be/);
    bad({ messagesPerRoom: 9 }, /^--messages-per-room must be/);
    bad({ rateMultiple: 1 }, /^--rate-multiple must be a number above 1/);
    bad({ rateMultiple: Number.NaN }, /^--rate-multiple/);
    bad({ tolerance: 0 }, /^--tolerance/);
    bad({ instances: 33 }, /^--instances/);
  });
});
