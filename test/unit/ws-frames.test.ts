import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from 'ws';
import { encodeFrames } from '../../packages/server/src/net/http.js';

it('encodeFrames writes frames that a WebSocket client decodes, at every length class', async () => {
  const lines = ['short', 'é'.repeat(100), 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(70_000), ''];
  const got: string[] = [];
  const r = new Receiver({ isServer: false });
  r.on('message', (data: Buffer, isBinary: boolean) => {
    assert.equal(isBinary, false);
    got.push(data.toString('utf8'));
  });
  await new Promise<void>((resolve, reject) => {
    r.on('error', reject);
    r.write(encodeFrames(lines, 0x81), (err) => (err ? reject(err) : resolve()));
  });
  assert.deepEqual(got, lines);
});
