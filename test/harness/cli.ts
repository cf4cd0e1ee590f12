/**
 * The real `parley` command, run as a child process the way a user runs it: without the test's
 * PARLEY_* environment (so nothing of the harness leaks into the CLI's defaults).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const loader = `file://${path.join(repoRoot, 'node_modules/tsx/dist/loader.mjs')}`;
const cliMain = path.join(repoRoot, 'packages/cli/src/main.ts');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs any program to its end; after `timeoutMs` it gets `killSignal` (SIGKILL by default). */
export function runProgram(command: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; killSignal?: NodeJS.Signals } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: o.cwd ?? repoRoot, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => child.kill(o.killSignal ?? 'SIGKILL'), o.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `parley <args>`, without the test's PARLEY_* environment. */
export function runCli(args: string[], o: { timeoutMs?: number; killSignal?: NodeJS.Signals } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PARLEY_')) env[k] = v;
  return runProgram(process.execPath, ['--import', loader, cliMain, ...args], { env, ...o });
}

/** The output of a run that must have succeeded. */
export function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
