import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TIMED_OUT, beforeDeadline } from '../../packages/server/src/store/commit-connection.js';

/** Blocks the event loop (a stalled process on a busy machine) for `ms`. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* busy */
  }
}

/** Two connected loopback sockets. */
async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const a = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => a.once('connect', resolve));
  const b = await accepted;
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('beforeDeadline', () => {
  it('settles with the operation when it comes first', async () => {
    assert.equal(await beforeDeadline(Promise.resolve('ok'), Date.now() + 60_000, () => assert.fail('no timeout')), 'ok');
  });

  it('times out an operation that does not settle, calling onTimeout once', async () => {
    let calls = 0;
    const r = await beforeDeadline(new Promise<never>(() => {}), Date.now() + 10, () => calls++);
    assert.equal(r, TIMED_OUT);
    assert.equal(calls, 1);
  });

  it('an answer already waiting in a socket when a stalled process wakes up past the deadline wins over the timer', async () => {
    const { a, b, close } = await socketPair();
    try {
      const answer = new Promise<string>((resolve) => b.once('data', (d: Buffer) => resolve(d.toString())));
      let timedOut = false;
      const result = beforeDeadline(answer, Date.now() + 20, () => (timedOut = true));
      // The answer reaches the kernel, then the process stalls past the deadline in the check
      // phase: the next loop turn runs the expired timer before it polls the socket.
      setImmediate(() => {
        a.write('committed');
        stall(150);
      });
      assert.equal(await result, 'committed');
      assert.equal(timedOut, false, 'the connection was not destroyed');
    } finally {
      await close();
    }
  });
});
