/**
 * What a run costs on this machine: the machine's used memory sampled once a second (its peak),
 * the PSS of process trees (from /proc/<pid>/smaps_rollup, which counts a shared page once over
 * the processes that share it), and `du` of directories.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** MemTotal − MemAvailable, bytes; null where /proc/meminfo is missing. */
export function usedMemory(): number | null {
  try {
    const text = fs.readFileSync('/proc/meminfo', 'utf8');
    const kb = (k: string): number | null => {
      const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? Number(m[1]) * 1024 : null;
    };
    const total = kb('MemTotal');
    const avail = kb('MemAvailable');
    return total === null || avail === null ? null : total - avail;
  } catch {
    return null;
  }
}

/** Samples the machine's used memory every second until stopped; keeps the peak. */
export class MemorySampler {
  readonly baseline: number | null = usedMemory();
  peak = this.baseline ?? 0;
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  sample(): void {
    const u = usedMemory();
    if (u !== null && u > this.peak) this.peak = u;
  }

  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

function children(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function pssOf(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** PSS of the processes and (with `tree`) all their descendants; how many were read. */
export function pssOfTrees(pids: readonly number[], tree = true): { bytes: number; processes: number } {
  let bytes = 0;
  let processes = 0;
  const seen = new Set<number>();
  const stack = [...pids];
  while (stack.length) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const p = pssOf(pid);
    if (p !== null) {
      bytes += p;
      processes++;
    }
    if (tree) stack.push(...children(pid));
  }
  return { bytes, processes };
}

/** `du -sk` of the directories (the ones that exist), bytes. */
export async function diskUsage(dirs: readonly string[]): Promise<number> {
  const present = dirs.filter((d) => fs.existsSync(d));
  let total = 0;
  for (let i = 0; i < present.length; i += 200) {
    const { stdout } = await execFileP('du', ['-sck', ...present.slice(i, i + 200)], { maxBuffer: 16 * 1024 * 1024 });
    total += Number(/(\d+)\s+total\s*$/.exec(stdout)?.[1] ?? 0) * 1024;
  }
  return total;
}
