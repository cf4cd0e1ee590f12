import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { encodeFrames } from '../../packages/server/src/net/websocket.js';

// ws's frame parser (untyped in @types/ws): the same code a Node WebSocket client decodes with.
interface FrameReceiver {
  on(ev: 'message', fn: (data: Buffer, isBinary: boolean) => void): void;
  on(ev: 'error', fn: (err: Error) => void): void;
  write(chunk: Buffer, cb: (err?: Error | null) => void): void;
}
const Receiver = (createRequire(import.meta.url)('ws') as { Receiver: new (o: { isServer: boolean }) => FrameReceiver }).Receiver;

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
    r.write(encodeFrames(lines, 0x81), (err?: Error | null) => (err ? reject(err) : resolve()));
  });
  assert.deepEqual(got, lines);
});
