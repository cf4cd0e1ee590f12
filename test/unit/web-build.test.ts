import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Esbuild from 'esbuild';
import { WEB_ROOT, buildWeb } from '../../packages/web/src/index.js';

/*
 * The protocol package and the client core are pure (they run unchanged in a browser), and the
 * web client is built from them: no codec of its own.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const esbuild = createRequire(import.meta.url)('esbuild') as typeof Esbuild;

/** Source without comments, so that a comment mentioning `Buffer` does not count. */
function code(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

const PURE = [
  ...readdirSync(path.join(ROOT, 'packages/protocol/src')).map((f) => `packages/protocol/src/${f}`),
  ...['client.ts', 'emitter.ts', 'transport.ts', 'transport-browser.ts', 'browser.ts'].map((f) => `packages/client/src/${f}`),
];

function bundle(entry: string): Promise<Esbuild.BuildResult<{ write: false; metafile: true }>> {
  return esbuild.build({ entryPoints: [path.join(ROOT, entry)], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
}

describe('pure packages', () => {
  it('protocol and the client core use no Node built-ins', () => {
    assert.ok(PURE.length >= 10, PURE.join(' '));
    for (const f of PURE) {
      const src = code(path.join(ROOT, f));
      assert.doesNotMatch(src, /['"]node:|\brequire\(/, `${f} imports a Node module`);
      assert.doesNotMatch(src, /\bBuffer\b/, `${f} uses Buffer`);
      assert.doesNotMatch(src, /\bprocess\./, `${f} uses process`);
      assert.doesNotMatch(src, /\bNodeJS\./, `${f} uses Node types`);
      assert.doesNotMatch(src, /from ['"](ws|net|events|crypto)['"]/, `${f} imports a Node-only package`);
    }
  });

  it('bundle for the browser, and the Node entry of the client does not', async () => {
    for (const entry of ['packages/protocol/src/index.ts', 'packages/client/src/browser.ts']) {
      const r = await bundle(entry);
      const inputs = Object.keys(r.metafile.inputs);
      assert.ok(!inputs.some((i) => i.includes('node_modules')), `${entry} pulls in ${inputs.join(', ')}`);
    }
    // The check can fail: the Node entry needs node:net and ws.
    await assert.rejects(bundle('packages/client/src/index.ts'), /node:net|Could not resolve/);
  });

  it('the browser code typechecks against the DOM without Node types', async () => {
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const out = await new Promise<string>((resolve) => {
      execFile(process.execPath, [tsc, '-p', path.join(ROOT, 'packages/web/tsconfig.json'), '--noEmit'], (err, stdout) => resolve(err ? `${err.message}\n${stdout}` : ''));
    });
    assert.equal(out, '');
  });
});

describe('web build', () => {
  it('WEB_ROOT holds the pages, the style and the bundles', () => {
    const files = readdirSync(WEB_ROOT).filter((f) => !f.startsWith('.')).sort();
    assert.deepEqual(files, ['app.js', 'dashboard.html', 'dashboard.js', 'index.html', 'style.css']);
    assert.match(readFileSync(path.join(WEB_ROOT, 'index.html'), 'utf8'), /src="\/app\.js"/);
    assert.match(readFileSync(path.join(WEB_ROOT, 'dashboard.html'), 'utf8'), /src="\/dashboard\.js"/);
    const app = readFileSync(path.join(WEB_ROOT, 'app.js'), 'utf8');
    assert.doesNotMatch(app, /node:/);
    // The client's own codec is in the bundle (a LineError message, the CHATHISTORY caps).
    assert.match(app, /tags without a command/);
    assert.match(app, /draft\/chathistory/);
  });

  it('the web client has no codec or caps list of its own', () => {
    const app = code(path.join(ROOT, 'packages/web/app/app.ts'));
    assert.match(app, /from '@parley\/protocol'/);
    assert.match(app, /from '@parley\/client\/browser'/);
    assert.doesNotMatch(app, /message-tags|server-time|split\(';'\)|function parse/);
  });

  it('builds only when an input changed, and writes every output', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-web-test-'));
    try {
      const first = buildWeb(dir);
      assert.equal(first.built, true);
      assert.ok((first.files.get('app.js') ?? 0) > 1000);
      assert.equal(buildWeb(dir).built, false);
      assert.equal(buildWeb(dir, true).built, true);
      assert.deepEqual([...first.files.keys()].sort(), ['app.js', 'dashboard.html', 'dashboard.js', 'index.html', 'style.css']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
