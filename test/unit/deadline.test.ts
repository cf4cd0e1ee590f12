import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { TIMED_OUT, beforeDeadline } from '../../packages/server/src/store/commit-connection.js';
import { isConnectTimeout } from '../../packages/server/src/store/commit-sql.js';

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

describe('isConnectTimeout', () => {
  it("knows node-postgres's connect timeouts (client and pool) from a refused connection", async () => {
    // A server that accepts TCP connections and never answers the startup message: a hung shard.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'x', database: 'x', connectionTimeoutMillis: 50 });
      const clientErr = await client.connect().then(() => null, (e: unknown) => e);
      assert.ok(isConnectTimeout(clientErr), `client: ${String(clientErr)}`);
      const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'x', database: 'x', connectionTimeoutMillis: 50 });
      const poolErr = await pool.query('select 1').then(() => null, (e: unknown) => e);
      await pool.end();
      assert.ok(isConnectTimeout(poolErr), `pool: ${String(poolErr)}`);
      assert.ok(isConnectTimeout(new Error('shard 3: schema migration failed', { cause: poolErr })), 'wrapped');
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    const refused = new pg.Client({ host: '127.0.0.1', port, user: 'x', database: 'x', connectionTimeoutMillis: 1000 });
    const refusedErr = await refused.connect().then(() => null, (e: unknown) => e);
    assert.ok(refusedErr instanceof Error && !isConnectTimeout(refusedErr), `refused: ${String(refusedErr)}`);
  });
});
