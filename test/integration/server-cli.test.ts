import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@parley/agent';

/* `parley server` with bad input: one line on stderr and a non-zero exit, never a stack trace. */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const loader = `file://${path.join(root, 'node_modules/tsx/dist/loader.mjs')}`;

function parley(...args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', loader, path.join(root, 'packages/cli/src/main.ts'), ...args], {
    encoding: 'utf8', timeout: 30_000, env: { ...process.env, PARLEY_ETCD: '', PARLEY_PG: '' },
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0] as string;
}

describe('parley server: bad input', () => {
  it('a malformed port', () => {
    const r = parley('server', '--tcp-port', 'abc');
    assert.notEqual(r.code, 0);
    assert.match(oneLine(r.stderr), /--tcp-port must be a non-negative integer/);
  });

  it('an invalid option value', () => {
    const r = parley('server', '--redis', 'not a url', '--etcd', 'http://127.0.0.1:1');
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^parley: invalid option: redis: /);
  });

  it('etcd that does not answer', async () => {
    const port = await freePort();
    const r = parley('server', '--etcd', `http://127.0.0.1:${port}`, '--etcd-timeout-seconds', '1', '--log-level', 'silent');
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^parley: cannot reach etcd at http:\/\/127\.0\.0\.1:\d+ /);
  });

  it('an unknown command', () => {
    const r = parley('frobnicate');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});
