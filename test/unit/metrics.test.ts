import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../packages/server/src/metrics.js';

async function value(m: Metrics, name: string): Promise<number> {
  const text = await m.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

describe('HotCounter', () => {
  it('hands what the hot path added to prom-client at every read, cumulatively', async () => {
    const m = new Metrics();
    assert.equal(await value(m, 'parley_deliveries_total'), 0);
    m.deliveries.inc(3);
    m.deliveries.inc();
    assert.equal(await value(m, 'parley_deliveries_total'), 4);
    assert.equal(await value(m, 'parley_deliveries_total'), 4, 'a second read adds nothing');
    m.deliveries.inc(2);
    assert.equal(await value(m, 'parley_deliveries_total'), 6);
    m.messagesStored.inc();
    const text = await m.registry.metrics();
    assert.match(text, /^parley_messages_stored_total 1$/m, 'a full scrape collects it too');
  });
});
