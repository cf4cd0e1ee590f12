import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sampleResult } from '../../packages/cli/src/load/report-sample.js';

/* `parley report` as users run it: the real CLI in a child process, on result files made here. */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const loader = `file://${path.join(root, 'node_modules/tsx/dist/loader.mjs')}`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-report-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function parley(...args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', loader, path.join(root, 'packages/cli/src/main.ts'), ...args], {
    cwd: tmp, encoding: 'utf8', timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0] as string;
}

function write(name: string, content: unknown): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return p;
}

describe('parley report', () => {
  it('one run, into the default directory report/', () => {
    write('solo.json', sampleResult({ name: 'solo', refuse: 0.03 }));
    const r = parley('report', 'solo.json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, `report: ${path.join('report', 'index.html')}\ncharts: ${['throughput.png', 'latency.png', 'rooms.png'].map((p) => path.join('report', p)).join(' ')}\n`);
    const html = fs.readFileSync(path.join(tmp, 'report', 'index.html'), 'utf8');
    assert.match(html, /<title>Parley load report: solo<\/title>/);
  });

  it('three runs compared, with --out and --title', () => {
    const files = [
      write('a.json', sampleResult({ name: 'parley tcp', seconds: 20 })),
      write('b.json', sampleResult({ name: 'socket.io', kind: 'socketio', transport: 'ws', seconds: 20, rate: 600, latencyMs: 5, rooms: 120, seed: 2 })),
      write('c.json', { ...sampleResult({ name: 'ws', kind: 'ws', transport: 'ws', rooms: 0, seed: 3 }), timeline: [] }),
    ];
    const out = path.join(tmp, 'nested', 'cmp');
    const r = parley('report', ...files, '--out', out, '--title', 'TCP & WS <compared>');
    assert.equal(r.code, 0, r.stderr);
    const pngs = ['compare.png', 'throughput.png', 'latency.png', 'rooms-1.png', 'rooms-2.png'];
    assert.deepEqual(fs.readdirSync(out).sort(), ['index.html', ...pngs].sort());
    const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
    assert.match(html, /<title>TCP &amp; WS &lt;compared&gt;<\/title>/);
    assert.match(html, /<h2>Comparison<\/h2>/);
    for (const p of pngs) assert.ok(fs.readFileSync(path.join(out, p)).subarray(1, 4).toString() === 'PNG', p);
  });

  it('a file that is not there', () => {
    const r = parley('report', 'missing.json');
    assert.equal(r.code, 1);
    assert.equal(oneLine(r.stderr), 'parley: missing.json: cannot read: no such file');
  });

  it('a file that is not JSON', () => {
    write('broken.json', '{"version": 1, "name": ');
    const r = parley('report', 'broken.json');
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^parley: broken\.json: not JSON: /);
  });

  it('an ill-formed result names the file and the field; nothing is written', () => {
    write('good.json', sampleResult());
    const bad = sampleResult() as unknown as { latency: { ack: Record<string, unknown> } };
    bad.latency.ack.p99 = 'fast';
    write('bad.json', bad);
    const r = parley('report', 'good.json', 'bad.json', '--out', 'never');
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^parley: bad\.json: latency\.ack\.p99: .*expected number/);
    assert.ok(!fs.existsSync(path.join(tmp, 'never')));
  });

  it('a result of another version', () => {
    write('v2.json', { ...sampleResult(), version: 2 });
    const r = parley('report', 'v2.json');
    assert.equal(r.code, 1);
    assert.equal(oneLine(r.stderr), 'parley: v2.json: unsupported result version 2 (this parley reads version 1)');
  });

  it('no files', () => {
    const r = parley('report');
    assert.notEqual(r.code, 0);
    assert.match(oneLine(r.stderr), /^parley: missing required argument 'results'/);
  });
});
