import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { register } from '../../packages/cli/src/load/index.js';

/** Every `parley load` option is documented in docs/load.md, so a new flag without documentation fails here. */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const doc = fs.readFileSync(path.join(root, 'docs/load.md'), 'utf8');

describe('docs/load.md', () => {
  it('documents every option of parley load', () => {
    const program = new Command('parley');
    register(program);
    const load = program.commands.find((c) => c.name() === 'load');
    assert.ok(load, 'the load command is registered');
    const flags = load.options.map((o) => o.long).filter((f): f is string => f !== undefined);
    assert.ok(flags.length > 15);
    const rows = doc.split('\n').filter((l) => l.trimStart().startsWith('|'));
    const missing = flags.filter((f) => !rows.some((r) => r.includes(`\`${f}`)));
    assert.deepEqual(missing, [], 'options without a row in the options table of docs/load.md');
  });
});
