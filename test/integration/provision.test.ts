/**
 * `parley provision shards` through the real CLI on a real lab (agent, etcd, Redis, PostgreSQL,
 * one instance, HAProxy) in a temp state directory on free ports: 8 shards with a QoS class on
 * 4..7 (--qos-from; their postgresql.conf carries the class's setting), a room pinned to shard 3
 * with messages, then a port in use refused in one line, then 12 shards: shard 3 was not restarted,
 * the room keeps its pin and its history, every shard is registered through the REST API, and
 * `status` summarises the shards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IrcClient } from '@parley/client';
import { etcdKeys } from '@parley/contracts';
import { freePort, readStatus, sameProcess, statePaths } from '@parley/agent';
import { etcdClient, openLab } from '../../packages/cli/src/lab/common.js';
import { runCli, ok, type CliResult } from '../harness/cli.js';

const parley = (args: string[], timeoutMs = 180_000): Promise<CliResult> => runCli([...args, '--state-dir', stateDir], { timeoutMs });

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let stateDir = '';
let ircPort = 0;
let httpPort = 0;
const clients: IrcClient[] = [];



async function api(method: string, route: string, body?: unknown): Promise<Response> {
  const token = (await fs.readFile(statePaths(stateDir).adminToken, 'utf8')).trim();
  return fetch(`http://127.0.0.1:${httpPort}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

async function shardPids(): Promise<Map<string, number | null>> {
  const st = await readStatus(statePaths(stateDir));
  return new Map((st?.processes ?? []).filter((p) => p.kind === 'shard').map((p) => [p.name, p.pid]));
}

const isChat = (room: string) => (m: { command: string; params: string[]; tags: Record<string, string | undefined> }): boolean =>
  m.command === 'PRIVMSG' && m.params[0] === room && m.tags.msgid !== undefined;

before(async () => {
  stateDir = await fs.mkdtemp(path.join(process.env.PARLEY_TEST_TMPDIR || os.tmpdir(), 'parley-prov-'));
  ircPort = await freePort();
  httpPort = await freePort();
});

after(async () => {
  for (const c of clients) c.destroy();
  await parley(['clean'], 90_000).catch(() => undefined);
  const st = await readStatus(statePaths(stateDir)).catch(() => undefined);
  for (const p of [...(st?.processes ?? []).map((x) => ({ pid: x.pid, ticks: x.startTicks })), { pid: st?.agent.pid ?? null, ticks: st?.agent.startTicks ?? null }]) {
    if (sameProcess(p.pid, p.ticks)) process.kill(p.pid!, 'SIGKILL');
  }
  await fs.rm(stateDir, { recursive: true, force: true });
});

describe('parley provision shards', { timeout: 600_000 }, () => {
  const sent: string[] = [];
  let shard3Pid: number | null = null;

  it('up makes an admin token (0600, printed once) and passes it to the instances', async () => {
    const out = ok(await parley(['up', '--instances', '1', '--shards', '2', '--irc-port', String(ircPort), '--http-port', String(httpPort)]), 'up');
    const token = (await fs.readFile(statePaths(stateDir).adminToken, 'utf8')).trim();
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.ok(out.includes(token), 'the new token is printed');
    assert.equal((await fs.stat(statePaths(stateDir).adminToken)).mode & 0o777, 0o600);
    const res = await api('PUT', '/api/qos/classes/gold', { rate: 50, burst: 100, postgres: { work_mem: '2MB', max_connections: 20 } });
    assert.ok(res.status === 200 || res.status === 201, `PUT class: ${res.status} ${await res.text()}`);
    const again = ok(await parley(['up']), 'up again');
    assert.ok(!again.includes(token), 'the token is printed only when made');
  });

  it('8 shards, class gold on 4..7 from --qos-from: their postgresql.conf carries it; all registered through the API', async () => {
    const map = path.join(stateDir, 'qos-map.json');
    await fs.writeFile(map, JSON.stringify({ ranges: [{ from: 4, to: 7, class: 'gold' }] }));
    const out = ok(await parley(['provision', 'shards', '--count', '8', '--qos-from', map]), 'provision 8');
    assert.match(out, /8 shard\(s\) ready and registered \(6 new\)/);
    assert.match(out, /memory: .* PSS/);
    assert.match(out, /disk: /);
    for (let id = 0; id < 8; id++) {
      const conf = await fs.readFile(path.join(statePaths(stateDir).pgData(id), 'postgresql.conf'), 'utf8');
      if (id >= 4) assert.match(conf, /# QoS class "gold"\nmax_connections = 20\nwork_mem = '2MB'/, `pg${id}`);
      else assert.doesNotMatch(conf, /# QoS class "/, `pg${id}`);
      assert.match(conf, /shared_buffers = '128kB'/);
    }
    const list = (await (await fetch(`http://127.0.0.1:${httpPort}/api/shards`)).json()) as { shards: Array<{ id: number; qos: string | null; port?: number }> };
    assert.deepEqual(list.shards.map((s) => s.id).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(list.shards.filter((s) => s.qos === 'gold').map((s) => s.id).sort(), [4, 5, 6, 7]);
    const again = ok(await parley(['provision', 'shards', '--count', '8', '--qos-from', map]), 'provision 8 again');
    assert.match(again, /no shard to add; plan unchanged/);
  });

  it('a room pinned to shard 3 gets messages', async () => {
    const lab = await openLab(stateDir);
    const etcd = etcdClient(lab.host);
    try {
      await etcd.put(etcdKeys(lab.host.prefix).room('#three')).value(JSON.stringify({ shard: 3 }));
    } finally {
      etcd.close();
    }
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: ircPort, nick: 'tess', connectTimeoutMs: 10_000 });
    c.on('error', () => undefined);
    clients.push(c);
    await c.connect();
    await c.request('JOIN #three');
    for (let i = 0; i < 5; i++) {
      const echo = (await c.request(`PRIVMSG #three :before ${i}`)).find(isChat('#three'));
      assert.ok(echo?.tags.msgid, 'acknowledged');
      sent.push(echo.tags.msgid);
    }
    c.destroy();
    shard3Pid = (await shardPids()).get('pg3') ?? null;
    assert.ok(shard3Pid);
  });

  it('a --base-port whose range holds a port in use is refused in one line, and nothing changes', async () => {
    const blocker = net.createServer();
    const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)));
    try {
      const r = await parley(['provision', 'shards', '--count', '12', '--base-port', String(port - 9)]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^parley: port ${port} \\(shard 9\\) is in use by another program; choose another --base-port`));
      assert.equal((await shardPids()).size, 8);
    } finally {
      blocker.close();
    }
  });

  it('12 shards: the first 8 are untouched, the room on shard 3 keeps its pin and its history', async () => {
    const out = ok(await parley(['provision', 'shards', '--count', '12']), 'provision 12');
    assert.match(out, /adding shards 8-11/);
    assert.match(out, /12 shard\(s\) ready and registered \(4 new\)/);
    const pids = await shardPids();
    assert.equal(pids.size, 12);
    assert.equal(pids.get('pg3'), shard3Pid, 'shard 3 was not restarted');
    const lab = await openLab(stateDir);
    const etcd = etcdClient(lab.host);
    try {
      const pin = JSON.parse((await etcd.get(etcdKeys(lab.host.prefix).room('#three')).string())!) as { shard: number };
      assert.equal(pin.shard, 3);
    } finally {
      etcd.close();
    }
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: ircPort, nick: 'tess2', connectTimeoutMs: 10_000 });
    c.on('error', () => undefined);
    clients.push(c);
    await c.connect();
    await c.request('JOIN #three');
    const page = (await c.request('CHATHISTORY LATEST #three * 100')).filter(isChat('#three')).map((m) => m.tags.msgid);
    assert.deepEqual(page, sent);
    c.destroy();
  });

  it('status summarises the shards', async () => {
    const r = await parley(['status']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^shards: 12 \(12 running, ok\)/m);
    assert.doesNotMatch(r.stdout, /^shard\s+pg/m);
    const all = await parley(['status', '--all']);
    assert.equal(all.stdout.match(/^shard\s+pg\d+/gm)?.length, 12);
  });
});
