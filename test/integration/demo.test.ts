/**
 * `parley demo qos` through the real CLI, small: a lab of its own (agent, etcd, Redis, PostgreSQL,
 * two instances, HAProxy) in a temp state directory, 4 shards, 8 rooms in two classes, 60 messages
 * per room at twice each room's limit. The command exits 0, writes the report with the QoS chart
 * and table, every room's accepted count is its burst plus its rate over the time it was sent to
 * (within the bucket's granularity and a margin), QoS refused the excess, and the lab is gone
 * afterwards. Bad arguments are one line and a non-zero exit, before anything starts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseResult } from '../../packages/cli/src/load/report-schema.js';
import { runCli, ok, type CliResult } from '../harness/cli.js';

const parley = (args: string[], timeoutMs = 150_000): Promise<CliResult> => runCli(args, { timeoutMs, killSignal: 'SIGINT' });

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let dir = '';


/** Processes whose command line names `needle` (the state directory): none may be left. */
function processesNaming(needle: string): string[] {
  const out: string[] = [];
  for (const pid of fsSync.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fsSync.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle)) out.push(`${pid}: ${cmd.slice(0, 120)}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

before(async () => {
  dir = await fs.mkdtemp(path.join(process.env.PARLEY_TEST_TMPDIR || os.tmpdir(), 'parley-demo-'));
  // The lab's state directory is inside: PostgreSQL (run as its own user when we are root) must
  // be able to pass through this one to reach its data.
  await fs.chmod(dir, 0o711);
});

after(async () => {
  const state = path.join(dir, 'state');
  if (fsSync.existsSync(state)) await parley(['clean', '--state-dir', state], 90_000);
  await fs.rm(dir, { recursive: true, force: true });
});

describe('parley demo qos', () => {
  it('refuses bad arguments in one line, before starting anything', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--rooms', '0'], /--rooms must be an integer from 1 to 10,000, got 0/],
      [['--rate-multiple', '1'], /--rate-multiple must be a number above 1/],
      [['--rate-multiple', 'x'], /--rate-multiple must be a number/],
      [['--messages-per-room', '3'], /--messages-per-room must be an integer from 10/],
      [['--classes', path.join(dir, 'none.json')], /none\.json: cannot read: no such file/],
    ];
    await fs.writeFile(path.join(dir, 'bad.json'), JSON.stringify({ gold: { rate: 5, burst: 2, share: 0.5 } }));
    cases.push([['--classes', path.join(dir, 'bad.json')], /bad\.json: the shares add up to 0\.5, not 1/]);
    await fs.writeFile(path.join(dir, 'bad2.json'), JSON.stringify({ gold: { rate: -1, burst: 2, share: 1 } }));
    cases.push([['--classes', path.join(dir, 'bad2.json')], /bad2\.json: gold: rate/]);
    for (const [args, pattern] of cases) {
      const state = path.join(dir, 'never');
      const r = await parley(['demo', 'qos', ...args, '--state-dir', state]);
      assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${args.join(' ')}: one line, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^parley: /);
      assert.match(lines[0]!, pattern);
      assert.equal(fsSync.existsSync(state), false, 'nothing was started');
    }
  });

  it('runs end to end: every room held to its limit, the report written, the lab removed', async () => {
    const classes = path.join(dir, 'classes.json');
    await fs.writeFile(classes, JSON.stringify({ slow: { rate: 10, burst: 5, share: 0.5 }, fast: { rate: 20, burst: 5, share: 0.5 } }));
    const state = path.join(dir, 'state');
    const out = path.join(dir, 'out');
    const t0 = Date.now();
    const r = await parley(['demo', 'qos', '--shards', '4', '--rooms', '8', '--messages-per-room', '60', '--classes', classes, '--state-dir', state, '--out', out]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    const seconds = (Date.now() - t0) / 1000;

    // The report: the page with the QoS section and its table, the chart as a PNG.
    const files = await fs.readdir(out);
    for (const f of ['index.html', 'qos.png', 'result.json', 'throughput.png']) assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    const png = await fs.readFile(path.join(out, 'qos.png'));
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    const html = await fs.readFile(path.join(out, 'index.html'), 'utf8');
    assert.match(html, /<h2>QoS: per-room limits<\/h2>/);
    assert.match(html, /within ±5%/);

    const result = parseResult('result.json', JSON.parse(await fs.readFile(path.join(out, 'result.json'), 'utf8')));
    const q = result.qos;
    assert.ok(q, 'the result has a QoS section');
    assert.equal(q.rooms.length, 8);
    assert.deepEqual(q.classes.map((c) => [c.name, c.rooms, c.shards]), [['slow', 4, 2], ['fast', 4, 2]]);
    for (const room of q.rooms) {
      assert.ok(html.includes(room.room), `${room.room} in the page's table`);
      assert.equal(room.sent, 60, `${room.room} got its 60 messages`);
      assert.equal(room.offeredRate, room.rate * 2);
      assert.equal(room.accepted + room.refusedQos + room.refusedBacklog + room.failed, 60, `${room.room}: every message counted by the cluster`);
      assert.equal(room.accepted, room.acked, `${room.room}: the cluster's accepted = the load tool's acknowledged`);
      assert.ok(room.refusedQos > 0, `${room.room}: QoS refused the excess`);
      assert.equal(room.failed, 0);
      assert.ok(room.shard !== null && room.shard < 4, `${room.room} is pinned to one of the 4 shards`);
      // The bucket lets the burst through at once and then one message every 1/rate s: over a
      // window of w seconds, burst + rate × w, ± 1 for the granularity and a margin for timing.
      const expected = room.burst + room.rate * room.windowSeconds;
      const margin = 2 + 0.1 * room.rate * room.windowSeconds;
      assert.ok(Math.abs(room.accepted - expected) <= margin, `${room.room} (${room.class}): accepted ${room.accepted}, expected ${expected.toFixed(1)} ± ${margin.toFixed(1)}`);
    }
    assert.ok(q.run && q.run.phases.some((p) => p.name.startsWith('clean')), 'the run records its phases, the clean-up too');

    // The terminal summary, and nothing left behind.
    assert.match(r.stdout, /rooms within ±5% of their limit/);
    assert.match(r.stdout, /report: .*index\.html/);
    assert.equal(fsSync.existsSync(state), false, 'the state directory is removed');
    assert.deepEqual(processesNaming(state), [], 'no process of the lab is left');
    assert.ok(seconds < 120, `took ${seconds.toFixed(0)} s`);
  });
});
