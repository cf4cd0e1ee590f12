import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { spawnParley, type ParleyProcess } from '../harness/parley.js';
import { LoadResultSchema } from '../../packages/cli/src/load/report-schema.js';
import type { LoadResult } from '../../packages/cli/src/load/result.js';

/*
 * `parley load` as a user runs it (the real CLI, a child process) against two real instances:
 * small runs whose books must balance, over TCP and WebSocket, and bad arguments that must get
 * one line and a non-zero exit.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tsxLoader = path.join(root, 'node_modules/tsx/dist/loader.mjs');
const cliMain = path.join(root, 'packages/cli/src/main.ts');

let services: Services;
let a: ParleyProcess;
let b: ParleyProcess;
let dir: string;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function parley(args: string[], timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', tsxLoader, cliMain, ...args], { cwd: root, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

before(async () => {
  services = await startServices();
  const prefix = uniqueName('load');
  const dbUrl = await services.postgres!.createDatabase(prefix);
  const etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  await etcd.put(`/${prefix}/config`).value(JSON.stringify({ flood: { linesPerSecond: 0 } }));
  etcd.close();
  [a, b] = await Promise.all([spawnParley(services, { id: 'a', prefix, pg: [dbUrl] }), spawnParley(services, { id: 'b', prefix, pg: [dbUrl] })]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-load-test-'));
});

after(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await services?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The books of a result: every message has one outcome, every member got every acked message once. */
function assertBalanced(r: LoadResult, membersPerRoom: number): void {
  const t = r.totals;
  assert.ok(t.sent > 0, 'something was sent');
  assert.equal(t.sent, t.acked + t.refused + t.errors, 'sent = acked + refused + errors');
  const expected = r.rooms.reduce((s, room) => s + room.acked * (membersPerRoom - 1), 0);
  assert.equal(t.expectedDeliveries, expected, 'expected = Σ acked × (members − 1)');
  assert.equal(t.deliveries, t.expectedDeliveries, 'deliveries = expected');
  assert.equal(t.lost, 0, 'lost');
  assert.equal(t.duplicated, 0, 'duplicated');
  assert.equal(r.generator.msgidMismatches, 0, 'msgid mismatches');
  assert.equal(r.generator.outOfOrder, 0, 'out of order');
  assert.equal(r.generator.deliveredNotAcked, 0, 'delivered but not acked');
  assert.equal(r.rooms.reduce((s, room) => s + room.sent, 0), t.sent, 'rooms add up to sent');
  assert.equal(r.rooms.reduce((s, room) => s + room.deliveries, 0), t.deliveries, 'rooms add up to deliveries');
  assert.equal(r.timeline.reduce((s, e) => s + e.sent, 0), t.sent, 'the timeline adds up to sent');
  assert.equal(r.timeline.reduce((s, e) => s + e.acked, 0), t.acked, 'the timeline adds up to acked');
  assert.equal(r.timeline.reduce((s, e) => s + e.deliveries, 0), t.deliveries, 'the timeline adds up to deliveries');
  assert.equal(r.latency.ack.count, t.acked);
  assert.equal(r.latency.deliver.count, t.deliveries);
  assert.equal(t.connectionsFailed + t.connectionsDropped, 0, 'no connection failed or dropped');
}

describe('parley load against two instances', () => {
  for (const transport of ['tcp', 'ws'] as const) {
    it(`balances the books over ${transport}`, async () => {
      const out = path.join(dir, `${transport}.json`);
      const events = path.join(dir, `${transport}.csv`);
      const targets = [a, b].map((p) => `127.0.0.1:${transport === 'tcp' ? p.tcpPort : p.wsPort}`).join(',');
      const res = await parley([
        'load', '--target', targets, '--transport', transport, '--users', '20', '--rooms', '4', '--members-per-room', '5',
        '--rate', '5', '--duration', '2', '--out', out, '--events', events, '--name', `ci-${transport}`,
      ]);
      assert.equal(res.code, 0, `exit status; stderr:\n${res.stderr}`);
      assert.match(res.stdout, /acknowledged/);
      const raw = JSON.parse(fs.readFileSync(out, 'utf8')) as unknown;
      const parsed = LoadResultSchema.safeParse(raw);
      assert.ok(parsed.success, `the result matches the report's schema: ${parsed.success ? '' : parsed.error.message}`);
      const r = raw as LoadResult;
      assert.equal(r.name, `ci-${transport}`);
      assert.equal(r.target.kind, 'parley');
      assert.equal(r.target.transport, transport);
      assert.equal(r.totals.connectionsOpened, 20);
      assert.ok(r.totals.sent >= 150, `about 200 messages in 2 s at 100/s, got ${r.totals.sent}`);
      assertBalanced(r, 5);
      assert.equal(r.totals.acked, r.totals.sent, 'nothing refused by a healthy server');
      // Every message event is in the CSV, one row each.
      const rows = fs.readFileSync(events, 'utf8').trim().split('\n');
      assert.equal(rows[0], 't_ms,type,user,room,msgid,latency_ms,msg,code');
      const count = (type: string): number => rows.filter((l) => l.split(',')[1] === type).length;
      assert.equal(count('sent'), r.totals.sent);
      assert.equal(count('ack'), r.totals.acked);
      assert.equal(count('deliver'), r.totals.deliveries);
    });
  }

  it('sends exactly --messages-per-room to each room, as fast as acknowledgements allow', async () => {
    const out = path.join(dir, 'mpr.json');
    const targets = [a, b].map((p) => `127.0.0.1:${p.tcpPort}`).join(',');
    // 12 members: more than 8, so each message's receipt bits span two bytes.
    const res = await parley(['load', '--target', targets, '--users', '30', '--rooms', '10', '--members-per-room', '12', '--messages-per-room', '40', '--rate', 'max', '--window', '4', '--out', out]);
    assert.equal(res.code, 0, `exit status; stderr:\n${res.stderr}`);
    const r = JSON.parse(fs.readFileSync(out, 'utf8')) as LoadResult;
    assertBalanced(r, 12);
    assert.equal(r.generator.drained, true);
    assert.equal(r.rooms.length, 10);
    for (const room of r.rooms) assert.equal(room.sent, 40, `${room.room} got its 40 messages`);
  });
});

describe('parley load with one sender per room, through the generic IRC driver', () => {
  it('only the first member of each room sends; everyone else receives every message once', async () => {
    const out = path.join(dir, 'senders.json');
    const events = path.join(dir, 'senders.csv');
    const targets = [a, b].map((p) => `127.0.0.1:${p.tcpPort}`).join(',');
    // --driver irc: Parley is an IRC server like any other here (echo + label = acknowledgement).
    const res = await parley([
      'load', '--driver', 'irc', '--target', targets, '--users', '10', '--rooms', '2', '--members-per-room', '5', '--senders-per-room', '1',
      '--messages-per-room', '30', '--rate', 'max', '--window', '5', '--nick-prefix', 'snd', '--out', out, '--events', events,
    ]);
    assert.equal(res.code, 0, `exit status; stderr:\n${res.stderr}`);
    const r = JSON.parse(fs.readFileSync(out, 'utf8')) as LoadResult;
    assert.equal(r.target.kind, 'irc');
    assertBalanced(r, 5);
    for (const room of r.rooms) assert.equal(room.sent, 30, `${room.room} got its 30 messages`);
    // Room r's members are users 5r … 5r+4; only 5r sends.
    const senders = new Set(fs.readFileSync(events, 'utf8').trim().split('\n').slice(1).filter((l) => l.split(',')[1] === 'sent').map((l) => l.split(',')[2]));
    assert.deepEqual([...senders].sort(), ['snd0', 'snd5']);
  });
});

describe('parley load refuses what cannot work', () => {
  const cases: Array<[string, (t: string) => string[], RegExp]> = [
    ['no server there', () => ['--target', '127.0.0.1:47', '--users', '2', '--rooms', '1', '--members-per-room', '2'], /cannot connect to 127\.0\.0\.1:47/],
    ['zero users', (t) => ['--target', t, '--users', '0'], /--users/],
    ['more members per room than users', (t) => ['--target', t, '--users', '5', '--members-per-room', '6'], /--members-per-room/],
    ['a rate that cannot be generated', (t) => ['--target', t, '--users', '1000', '--rooms', '100', '--members-per-room', '10', '--rate', '1000'], /more than one load process/],
    ['a zero duration', (t) => ['--target', t, '--duration', '0'], /--duration/],
    ['not a rate', (t) => ['--target', t, '--rate', 'fast'], /--rate/],
    ['more rooms per user than the server allows', (t) => ['--target', t, '--users', '10', '--rooms', '500', '--members-per-room', '10'], /rooms per user|allows 100/],
    ['a bad target', () => ['--target', 'localhost'], /host:port/],
    ['more senders than members', (t) => ['--target', t, '--users', '10', '--members-per-room', '5', '--senders-per-room', '6'], /--senders-per-room 6/],
  ];
  for (const [what, args, pattern] of cases) {
    it(what, async () => {
      const res = await parley(['load', ...args(`127.0.0.1:${a.tcpPort}`)]);
      assert.equal(res.code, 1, `exit status 1; stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
      const lines = res.stderr.split('\n').filter((l) => l !== '');
      assert.equal(lines.length, 1, `one line: ${JSON.stringify(res.stderr)}`);
      assert.match(lines[0]!, /^parley: /);
      assert.match(lines[0]!, pattern);
      assert.equal(res.stdout, '');
    });
  }
});
