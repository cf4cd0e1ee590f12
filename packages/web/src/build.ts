/**
 * Builds the browser client and the dashboard: `app/*.ts` bundled with esbuild (together with the
 * parts of @parley/protocol and @parley/client they import) next to the static files of `public/`,
 * into one directory that every instance serves.
 *
 * The build runs at first use, in the process that imports `@parley/web` (the server), and only
 * when an input changed since the last build: no manual step on a fresh clone, never a stale
 * bundle after an edit. Outputs are written to temporary names and renamed, so two instances
 * starting together never read a half-written file.
 */
import { createHash } from 'node:crypto';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PKG = fileURLToPath(new URL('..', import.meta.url));
const APP = path.join(PKG, 'app');
const PUBLIC = path.join(PKG, 'public');
/** The build output (ignored by git). */
export const DIST = path.join(PKG, 'dist');
/** Bundled entry points: app/<name>.ts → <name>.js. */
const ENTRIES = ['app', 'dashboard', 'config'];
/** Everything a bundle can contain: a change in any of these makes the next use rebuild. */
const INPUT_DIRS = [APP, PUBLIC, path.join(PKG, 'src'), path.join(PKG, '..', 'protocol', 'src'), path.join(PKG, '..', 'client', 'src')];
const STAMP = '.build-stamp';

export interface WebBuild {
  dir: string;
  /** False when the directory was already up to date. */
  built: boolean;
  /** Output file name → size in bytes. */
  files: Map<string, number>;
}

function listFiles(dir: string, out: string[]): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) listFiles(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Names, sizes and mtimes of every input: cheap to compute, changes with any edit. */
function fingerprint(): string {
  const h = createHash('sha256');
  for (const dir of INPUT_DIRS) {
    for (const f of listFiles(dir, []).sort()) {
      const s = statSync(f);
      h.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
    }
  }
  return h.digest('hex');
}

function readStamp(dir: string): string | null {
  try {
    return readFileSync(path.join(dir, STAMP), 'utf8');
  } catch {
    return null;
  }
}

function sizes(dir: string): Map<string, number> {
  const files = new Map<string, number>();
  for (const name of readdirSync(dir)) if (name !== STAMP) files.set(name, statSync(path.join(dir, name)).size);
  return files;
}

/** Writes `data` to `dir/name` by renaming a temporary file: readers see the old or the new file. */
function writeAtomic(dir: string, name: string, data: Uint8Array | string): void {
  const tmp = path.join(dir, `.${name}.${process.pid}.tmp`);
  writeFileSync(tmp, data);
  renameSync(tmp, path.join(dir, name));
}

/** The bundles and static files, in memory. Throws with esbuild's message when app/ does not compile. */
export function bundleWeb(): Map<string, Uint8Array> {
  // esbuild is loaded only when a build is needed (tsx, which runs Parley, depends on it too).
  const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  const result = esbuild.buildSync({
    entryPoints: ENTRIES.map((e) => path.join(APP, `${e}.ts`)),
    outdir: '/',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    write: false,
    logLevel: 'silent',
  });
  const out = new Map<string, Uint8Array>();
  for (const f of result.outputFiles) out.set(path.basename(f.path), f.contents);
  for (const name of readdirSync(PUBLIC)) out.set(name, readFileSync(path.join(PUBLIC, name)));
  inlineFavicon(out);
  return out;
}

/**
 * The pages link `/favicon.svg`; the build puts the icon into them as a data: URL (it is a few
 * hundred bytes), so the page needs no extra request and the server no SVG content type.
 */
function inlineFavicon(files: Map<string, Uint8Array>): void {
  const svg = files.get('favicon.svg');
  if (svg === undefined) return;
  const uri = `data:image/svg+xml,${encodeURIComponent(new TextDecoder().decode(svg).trim())}`;
  for (const [name, data] of files) {
    if (!name.endsWith('.html')) continue;
    files.set(name, new TextEncoder().encode(new TextDecoder().decode(data).replaceAll('href="/favicon.svg"', `href="${uri}"`)));
  }
}

/**
 * The gzip and brotli forms of a file as the server sends them (computed once, at its start):
 * the strongest levels, since the cost is paid once per process, not per request.
 */
export function compressed(data: Uint8Array): { gzip: Buffer; br: Buffer } {
  return {
    gzip: gzipSync(data, { level: 9 }),
    br: brotliCompressSync(data, {
      params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: data.length, [zlibConstants.BROTLI_PARAM_MODE]: zlibConstants.BROTLI_MODE_TEXT },
    }),
  };
}

/** Size of each output, raw, gzipped and brotli-compressed (what a browser downloads). */
export function sizeReport(dir: string): Array<{ name: string; bytes: number; gzip: number; br: number }> {
  return readdirSync(dir)
    .filter((n) => !n.startsWith('.'))
    .sort()
    .map((name) => {
      const data = readFileSync(path.join(dir, name));
      const c = compressed(data);
      return { name, bytes: data.length, gzip: c.gzip.length, br: c.br.length };
    });
}

/** Builds into `dir` unless its stamp says the inputs are unchanged (or `force`). */
export function buildWeb(dir = DIST, force = false): WebBuild {
  const print = fingerprint();
  if (!force && readStamp(dir) === print) return { dir, built: false, files: sizes(dir) };
  const files = bundleWeb();
  mkdirSync(dir, { recursive: true });
  for (const [name, data] of files) writeAtomic(dir, name, data);
  // Files that are no longer produced (a renamed entry) must not be served any more.
  for (const name of readdirSync(dir)) if (name !== STAMP && !name.startsWith('.') && !files.has(name)) rmSync(path.join(dir, name), { force: true });
  writeAtomic(dir, STAMP, print);
  return { dir, built: true, files: sizes(dir) };
}

/**
 * The directory to serve, built if needed. Where the package directory is read-only (an installed
 * copy), the build goes to a fresh temporary directory instead.
 */
export function ensureWebBuilt(): WebBuild {
  try {
    return buildWeb(DIST);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw err;
    return buildWeb(mkdtempSync(path.join(os.tmpdir(), 'parley-web-')), true);
  }
}

// `npx tsx packages/web/src/build.ts`: builds dist/ and prints the size of every file.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const b = buildWeb(DIST, true);
  for (const f of sizeReport(b.dir)) console.log(`${f.name.padEnd(16)} ${String(f.bytes).padStart(8)} B  ${String(f.gzip).padStart(7)} B gzip  ${String(f.br).padStart(7)} B br`);
}
