/**
 * The process-level error policy, in child processes (the test runner has handlers of its own):
 * an unhandled rejection and an operational uncaught exception are logged and counted and the
 * process lives on; any other uncaught exception (a bug) ends it with exit code 70.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function run(body: string): Promise<{ code: number | null; out: string }> {
  const script = `
    import { pino } from 'pino';
    import { Metrics } from './packages/server/src/metrics.ts';
    import { guardProcess } from './packages/server/src/process-guard.ts';
    const metrics = new Metrics();
    guardProcess(metrics, pino({ level: 'silent' }));
    const count = async () => (await metrics.registry.getSingleMetricAsString('parley_uncaught_errors_total')).split('\\n').filter((l) => !l.startsWith('#')).join(' ');
    ${body}
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('process guard', () => {
  it('survives an unhandled rejection and an operational exception, counting both', async () => {
    const r = await run(`
      void Promise.reject(new Error('nobody caught me'));
      await new Promise((r) => setTimeout(r, 10));
      setImmediate(() => { const e = new Error('read ECONNRESET'); e.code = 'ECONNRESET'; throw e; });
      await new Promise((r) => setTimeout(r, 10));
      console.log('ALIVE', await count());
    `);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /ALIVE .*kind="rejection"} 1 .*kind="exception"} 1/);
  });

  it('exits with 70 after an uncaught exception that is a bug', async () => {
    const r = await run(`
      setImmediate(() => { null.boom(); });
      await new Promise((r) => setTimeout(r, 200));
      console.log('STILL ALIVE');
    `);
    assert.equal(r.code, 70, r.out);
    assert.doesNotMatch(r.out, /STILL ALIVE/);
    assert.match(r.out, /exiting after an uncaught exception/);
  });
});
