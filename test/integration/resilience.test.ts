import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { type IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer, StartupError } from '@parley/server';
import { freePort } from '@parley/agent';
import { startServices, uniqueName, type Services } from '../harness/index.js';

/* What an instance does when a backend is missing at start, or goes away while it serves. */

let services: Services;
let db: string;
const silent = pino({ level: 'silent' });

function options(extra: Record<string, unknown>) {
  return InstanceOptionsSchema.parse({
    prefix: uniqueName('rs'), tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db],
    logLevel: 'silent', etcdTimeoutSeconds: 1, ...extra,
  });
}

before(async () => {
  services = await startServices();
  db = await services.postgres!.createDatabase(uniqueName('rs'));
});

after(async () => {
  await services?.stop();
});

describe('startup errors are one clear message', () => {
  it('etcd unreachable', async () => {
    const port = await freePort();
    const s = new ParleyServer(options({ etcd: [`http://127.0.0.1:${port}`] }), silent);
    await assert.rejects(s.start(), (err: Error) => err instanceof StartupError && /^cannot reach etcd at http:\/\/127\.0\.0\.1:\d+ /.test(err.message));
    await s.close();
  });

  it('no PostgreSQL shard configured', async () => {
    const s = new ParleyServer(options({ pg: [] }), silent);
    await assert.rejects(s.start(), (err: Error) => err instanceof StartupError && /no PostgreSQL shard is configured/.test(err.message));
    await s.close();
  });

  it('Redis unreachable', async () => {
    const port = await freePort();
    const s = new ParleyServer(options({ redis: `redis://127.0.0.1:${port}` }), silent);
    await assert.rejects(s.start(), (err: Error) => err instanceof StartupError && /^cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+ /.test(err.message));
    await s.close();
  });
});

describe('etcd lost while serving', () => {
  it('keeps serving on the last configuration', async () => {
    const s = new ParleyServer(options({}), silent);
    await s.start();
    const mk = (nick: string) => new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: s.tcpPort, nick });
    const a = mk('keep1');
    const b = mk('keep2');
    try {
      await Promise.all([a.connect(), b.connect()]);
      await a.request('JOIN #keep');
      await b.request('JOIN #keep');
      await services.etcd!.stop();
      const ack = await a.request('PRIVMSG #keep :still here');
      assert.equal(ack[0]?.command, 'PRIVMSG');
      const got = b.messages.find((m: IrcMessage) => m.params[1] === 'still here') ?? (await b.waitFor((m) => m.params[1] === 'still here'));
      assert.equal(got.tags.msgid, ack[0]?.tags.msgid);
      // A new client can still register.
      const c = mk('keep3');
      await c.connect();
      c.destroy();
    } finally {
      a.destroy();
      b.destroy();
      await s.close();
    }
  });
});
