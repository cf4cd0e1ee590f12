/**
 * `parley down` and `parley clean`. Down asks the agent to stop (SIGTERM: instances drain first,
 * then the front door, shards, Redis, etcd), waits for it, and then checks every process the agent
 * recorded is gone, killing any that is not. Data stays. Clean is down plus removing the state
 * directory, which it only does for a directory that is recognisably a Parley state directory.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  liveAgent,
  pidAlive,
  readStatus,
  sameProcess,
  stateDirKind,
  statePaths,
  type ProcessStatus,
  type StatePaths,
} from '@parley/agent';
import { LabError, checkStateDir, fmtDuration, sleep } from './common.js';

const execFileP = promisify(execFile);
const say = (s: string): void => void process.stdout.write(`${s}\n`);

export interface StopReport {
  wasRunning: boolean;
  stopped: string[];
  killed: string[];
}

/**
 * Stops the agent of `p` and everything it runs; then makes sure no recorded process is left.
 * Never throws for processes that are already gone.
 */
export async function stopLab(p: StatePaths, o: { quiet?: boolean; timeoutMs?: number; discard?: boolean } = {}): Promise<StopReport> {
  const log = o.quiet ? () => {} : say;
  const live = await liveAgent(p);
  const before = await readStatus(p);
  const recorded: Array<Pick<ProcessStatus, 'name' | 'kind' | 'pid' | 'startTicks'>> = (before?.processes ?? []).filter((x) => x.pid !== null);
  const report: StopReport = { wasRunning: live !== undefined, stopped: [], killed: [] };
  if (live) {
    try {
      // SIGUSR2: stop, but the data is going to be removed (shards stop immediately).
      process.kill(live.pid, o.discard ? 'SIGUSR2' : 'SIGTERM');
    } catch {
      // exited meanwhile
    }
    const deadline = Date.now() + (o.timeoutMs ?? 60_000);
    let said = '';
    while (pidAlive(live.pid) && Date.now() < deadline) {
      const st = await readStatus(p);
      const left = (st?.processes ?? []).filter((x) => x.pid !== null).map((x) => x.name);
      const line = left.length ? `stopping: ${left.length > 8 ? summarize(left) : left.join(', ')}` : 'stopping the agent';
      if (line !== said) log(line);
      said = line;
      await sleep(100);
    }
    if (pidAlive(live.pid)) {
      // The kernel takes its children down with it (they run with a parent-death signal).
      log(`the agent (pid ${live.pid}) did not stop in time; killing it`);
      try {
        process.kill(live.pid, 'SIGKILL');
      } catch {
        // gone
      }
      for (let i = 0; i < 50 && pidAlive(live.pid); i++) await sleep(100);
    }
    report.stopped.push(...recorded.map((r) => r.name), 'agent');
  }
  // Anything still alive that the agent started is a leftover: kill it, and say so.
  const after = await readStatus(p);
  const all = [...recorded, ...(after?.processes ?? []).filter((x) => x.pid !== null)];
  for (const proc of all) {
    if (!sameProcess(proc.pid, proc.startTicks)) continue;
    report.killed.push(`${proc.name} (pid ${proc.pid})`);
    try {
      process.kill(proc.pid!, proc.kind === 'shard' ? 'SIGQUIT' : 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const proc of all) for (let i = 0; i < 50 && sameProcess(proc.pid, proc.startTicks); i++) await sleep(100);
  const still = all.filter((x) => sameProcess(x.pid, x.startTicks));
  if (still.length) throw new LabError(`could not stop: ${still.map((x) => `${x.name} (pid ${x.pid})`).join(', ')}`);
  if (live && pidAlive(live.pid)) throw new LabError(`could not stop the agent (pid ${live.pid})`);
  await fs.rm(p.pidFile, { force: true });
  return report;
}

export async function runDown(o: { stateDir: string }): Promise<void> {
  const t0 = Date.now();
  const p = checkStateDir(o.stateDir);
  const r = await stopLab(p);
  if (r.killed.length) say(`killed leftovers: ${r.killed.join(', ')}`);
  if (!r.wasRunning) {
    say(`Parley was not running in ${p.root}${r.killed.length ? '' : '; nothing to stop'}.`);
    return;
  }
  say(`stopped ${summarize(r.stopped)} in ${fmtDuration(Date.now() - t0)}; no process left. Data kept in ${p.root} (parley up to start again, parley clean to remove it).`);
}

export async function runClean(o: { stateDir: string }): Promise<void> {
  const p = statePaths(o.stateDir);
  const kind = stateDirKind(p.root);
  if (kind === 'missing') {
    say(`nothing to clean: ${p.root} does not exist`);
    return;
  }
  if (kind === 'foreign') throw new LabError(`refusing to remove ${p.root}: it does not look like a Parley state directory (no parley-state.json)`);
  if (kind === 'parley') {
    const r = await stopLab(p, { discard: true });
    if (r.wasRunning) say(`stopped ${summarize(r.stopped)}`);
    if (r.killed.length) say(`killed leftovers: ${r.killed.length > 8 ? `${r.killed.length} processes` : r.killed.join(', ')}`);
  }
  await removeTree(p.root);
  if (p.run !== `${p.root}/run`) await fs.rm(p.run, { recursive: true, force: true });
  say(`removed ${p.root}`);
}

/**
 * `rm -rf` of a state directory, its shards' data directories (a thousand clusters are over a
 * million files) removed by a few `rm` processes in parallel.
 */
async function removeTree(root: string): Promise<void> {
  const pgDir = path.join(root, 'pg');
  const shardDirs = (await fs.readdir(pgDir).catch(() => [] as string[])).map((d) => path.join(pgDir, d));
  const lanes = Math.min(8, Math.max(1, Math.ceil(shardDirs.length / 16)));
  const chunks: string[][] = Array.from({ length: lanes }, () => []);
  shardDirs.forEach((d, i) => chunks[i % lanes]!.push(d));
  await Promise.all(chunks.filter((c) => c.length > 0).map((c) => execFileP('rm', ['-rf', '--', ...c])));
  await fs.rm(root, { recursive: true, force: true, maxRetries: 3 });
}

function summarize(names: string[]): string {
  const servers = names.filter((n) => /^i\d+$/.test(n) || !/^(agent|etcd|redis|haproxy|pg\d+)$/.test(n));
  const shards = names.filter((n) => /^pg\d+$/.test(n));
  const parts = [
    servers.length ? `${servers.length} instance(s)` : '',
    names.includes('haproxy') ? 'the front door' : '',
    shards.length ? `${shards.length} shard(s)` : '',
    names.includes('redis') ? 'Redis' : '',
    names.includes('etcd') ? 'etcd' : '',
    names.includes('agent') ? 'the agent' : '',
  ].filter(Boolean);
  return parts.join(', ') || 'nothing';
}
