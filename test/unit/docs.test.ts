/**
 * Keeps docs/ in step with the code: every IRC command, capability, FAIL code, ISUPPORT token and
 * numeric the server uses is documented in docs/irc.md; every cluster configuration key (with its
 * default and range) in docs/operations.md; every HTTP route and metric in docs/http-api.md.
 * Names are read from the code itself (exports, or a scan of the source), so a new command, key or
 * route without documentation fails here.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { COMMANDS } from '../../packages/server/src/core/commands/table.js';
import { FAIL_CODES, NUMERICS } from '../../packages/server/src/core/replies.js';
import { CAP_BITS } from '../../packages/server/src/core/caps.js';
import { ClusterConfigSchema, defaultClusterConfig } from '../../packages/server/src/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const serverSrc = path.join(root, 'packages/server/src');

const read = (rel: string): string => fs.readFileSync(path.join(root, rel), 'utf8');
const ircDoc = read('docs/irc.md');
const opsDoc = read('docs/operations.md');
const httpDoc = read('docs/http-api.md');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `word` as a whole word (letters, digits, _ and - do not continue it). */
const wordRe = (word: string): RegExp => new RegExp(`(?<![\\w-])${escapeRe(word)}(?![\\w-])`);

const lines = (doc: string): string[] => doc.split('\n');
const headings = (doc: string): string[] => lines(doc).filter((l) => /^#{1,6}\s/.test(l));
const tableRows = (doc: string): string[] => lines(doc).filter((l) => l.trimStart().startsWith('|'));
/** First cell of a table row, without backticks. */
const firstCell = (row: string): string => (row.split('|')[1] ?? '').replace(/`/g, '').trim();

/** Unwraps default/prefault/optional/nullable wrappers down to the schema that holds the shape. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const inner = (s as unknown as { _zod: { def: { innerType?: z.ZodType } } })._zod.def.innerType;
    if (!inner) return s;
    s = inner;
  }
}

interface ConfigKey {
  path: string;
  schema: z.ZodType;
  leaf: boolean;
}

function configKeys(schema: z.ZodObject, prefix = ''): ConfigKey[] {
  return Object.entries(schema.shape).flatMap(([k, v]) => {
    const p = prefix + k;
    const inner = unwrap(v as z.ZodType);
    if (inner instanceof z.ZodObject) return [{ path: p, schema: inner, leaf: false }, ...configKeys(inner, `${p}.`)];
    return [{ path: p, schema: inner, leaf: true }];
  });
}

function valueAt(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

describe('docs/irc.md', () => {
  it('has a heading or a table entry for every command in COMMANDS', () => {
    assert.ok(COMMANDS.size >= 20, `COMMANDS looks wrong: ${COMMANDS.size} entries`);
    const hs = headings(ircDoc);
    const cells = tableRows(ircDoc).map(firstCell);
    const missing = [...COMMANDS.keys()].filter(
      (cmd) => !hs.some((h) => wordRe(cmd).test(h)) && !cells.some((c) => wordRe(cmd).test(c)),
    );
    assert.deepEqual(missing, [], `commands without a heading or table entry in docs/irc.md: ${missing.join(', ')}`);
  });

  it('names every capability of CAP_BITS', () => {
    assert.ok(CAP_BITS.size > 0);
    const missing = [...CAP_BITS.keys()].filter((cap) => !ircDoc.includes(`\`${cap}\``));
    assert.deepEqual(missing, [], `capabilities not in docs/irc.md (as \`name\`): ${missing.join(', ')}`);
  });

  it('documents every catalogued standard reply, and catalogues every one it documents', () => {
    assert.ok(FAIL_CODES.length >= 8, `FAIL catalogue looks wrong: ${FAIL_CODES.length}`);
    const missing = FAIL_CODES.filter((f) => !wordRe(f.code).test(ircDoc)).map((f) => f.code);
    assert.deepEqual(missing, [], `FAIL codes of the catalogue not in docs/irc.md: ${missing.join(', ')}`);
    const documented = new Set([...ircDoc.matchAll(/FAIL (?:\*|<command>|[A-Z]+) ([A-Z][A-Z0-9_]{3,})\b/g)].map((m) => m[1] as string));
    for (const m of ircDoc.matchAll(/`FAIL ([A-Z][A-Z0-9_]{3,})`/g)) documented.add(m[1] as string);
    assert.ok(documented.size >= 5, `FAIL scan of docs/irc.md found only ${[...documented].join(', ')}`);
    const known = new Set(FAIL_CODES.map((f) => f.code));
    const unknown = [...documented].filter((c) => !known.has(c));
    assert.deepEqual(unknown, [], `FAIL codes in docs/irc.md that the server never sends: ${unknown.join(', ')}`);
  });

  it('documents every catalogued numeric, and catalogues every numeric it documents', () => {
    assert.ok(NUMERICS.length >= 40, `numeric catalogue looks wrong: ${NUMERICS.length}`);
    const missing = NUMERICS.filter((n) => !ircDoc.includes(`\`${n.code}\``)).map((n) => `${n.code} ${n.name}`);
    assert.deepEqual(missing, [], `numerics of the catalogue not in docs/irc.md: ${missing.join(', ')}`);
    const known = new Set(NUMERICS.map((n) => n.code));
    const documented = new Set([...ircDoc.matchAll(/`(\d{3})`/g)].map((m) => m[1] as string));
    const unknown = [...documented].filter((c) => !known.has(c));
    assert.deepEqual(unknown, [], `numerics in docs/irc.md that the server never sends: ${unknown.join(', ')}`);
  });

  it('keeps every reply text in the catalogue: no numeric or FAIL line is spelled outside it', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(serverSrc)) {
      if (file.endsWith(path.join('core', 'replies.ts'))) continue;
      const text = fs.readFileSync(file, 'utf8');
      if (/\bN\.(?:RPL|ERR)_/.test(text)) offenders.push(`${path.relative(root, file)}: N.<numeric>`);
      if (/[`'"]:?\$\{[^}]+\} FAIL |[`'"][^`'"]*\bFAIL [A-Z*]+ [A-Z_]{4,}/.test(text)) offenders.push(`${path.relative(root, file)}: FAIL literal`);
    }
    assert.deepEqual(offenders, [], 'replies must come from core/replies.ts');
  });

  it('lists every ISUPPORT token in a table', () => {
    const src = fs.readFileSync(path.join(serverSrc, 'core/commands/registration.ts'), 'utf8');
    const body = /function isupport\([\s\S]*?\n\}/.exec(src)?.[0];
    assert.ok(body, 'isupport() not found in commands/registration.ts');
    const tokens = [...body.matchAll(/['`]([A-Z][A-Z0-9]+)(?:=|['`])/g)].map((m) => m[1] as string);
    assert.ok(tokens.length >= 10, `ISUPPORT scan found only ${tokens.join(', ')}`);
    const cells = tableRows(ircDoc).map(firstCell);
    const missing = tokens.filter((t) => !cells.includes(t));
    assert.deepEqual(missing, [], `ISUPPORT tokens without a table row in docs/irc.md: ${missing.join(', ')}`);
  });
});

describe('docs/operations.md', () => {
  const keys = configKeys(ClusterConfigSchema);
  const defaults = defaultClusterConfig();
  const rows = tableRows(opsDoc);

  it('names every key of the cluster configuration schema', () => {
    assert.ok(keys.some((k) => k.path === 'limits.lineBytes'), 'schema walk did not reach nested keys');
    const missing = keys.filter((k) => !opsDoc.includes(`\`${k.path}\``)).map((k) => k.path);
    assert.deepEqual(missing, [], `configuration keys not in docs/operations.md: ${missing.join(', ')}`);
  });

  it('gives each leaf key a table row with its default and numeric range', () => {
    const problems: string[] = [];
    for (const k of keys.filter((x) => x.leaf)) {
      const row = rows.find((r) => firstCell(r) === k.path);
      if (!row) {
        problems.push(`${k.path}: no table row`);
        continue;
      }
      const def = `\`${JSON.stringify(valueAt(defaults, k.path))}\``;
      if (!row.includes(def)) problems.push(`${k.path}: default ${def} not in its row`);
      if (k.schema instanceof z.ZodNumber) {
        for (const bound of [k.schema.minValue, k.schema.maxValue]) {
          if (bound !== null && Number.isFinite(bound) && !wordRe(String(bound)).test(row)) {
            problems.push(`${k.path}: bound ${bound} not in its row`);
          }
        }
      }
    }
    assert.deepEqual(problems, []);
  });
});

describe('docs/http-api.md', () => {
  it('documents every route declared in net/ (route() calls; path parameters written {name})', () => {
    const src = sourceFiles(path.join(serverSrc, 'net')).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    const routes = [...src.matchAll(/\bmethod: '(GET|POST|PUT|PATCH|DELETE)',\s*url: '([^']+)'/g)].map(
      (m) => `${m[1] as string} ${(m[2] as string).replace(/:(\w+)/g, '{$1}')}`,
    );
    assert.ok(routes.length >= 15, `route scan found only ${routes.join(', ')}`);
    const missing = routes.filter((r) => !headings(httpDoc).some((h) => h.includes(r)) && !httpDoc.includes(`\`${r}\``));
    assert.deepEqual(missing, [], `routes not in docs/http-api.md: ${missing.join(', ')}`);
  });

  it('lists every metric of metrics.ts', () => {
    const src = fs.readFileSync(path.join(serverSrc, 'metrics.ts'), 'utf8');
    const names = [...src.matchAll(/name:\s*'([a-z_:]+)'/g)].map((m) => m[1] as string);
    assert.ok(names.length >= 5, `metric scan found only ${names.join(', ')}`);
    const missing = names.filter((n) => !httpDoc.includes(`\`${n}\``));
    assert.deepEqual(missing, [], `metrics not in docs/http-api.md: ${missing.join(', ')}`);
  });
});
