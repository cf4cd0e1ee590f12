/**
 * Process figures from /proc for the benchmarks: CPU time of processes (and of a process with its
 * children, as for PostgreSQL's postmaster and backends), resident memory, and the whole machine.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

export const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export const cores = (() => {
  try {
    return fs.readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l)).length || 1;
  } catch {
    return 1;
  }
})();

/** utime + stime of a process in clock ticks, and its parent pid; null when it is gone. */
export function procStat(pid: number): { ticks: number; ppid: number } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields after the name start at field 3 (state): ppid = 4, utime = 14, stime = 15
    return { ticks: Number(f[11]) + Number(f[12]), ppid: Number(f[1]) };
  } catch {
    return null;
  }
}

/** Ticks of a process and all of its direct children (PostgreSQL: postmaster + backends). */
export function treeTicks(pid: number): number {
  let total = procStat(pid)?.ticks ?? 0;
  for (const name of fs.readdirSync('/proc')) {
    const child = Number(name);
    if (!Number.isInteger(child) || child === pid) continue;
    const st = procStat(child);
    if (st !== null && st.ppid === pid) total += st.ticks;
  }
  return total;
}

/** busy and total jiffies of the whole machine (all cores). */
export function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Resident set size of a process in bytes (VmRSS), or 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** A named group of processes to account CPU to; `tree` adds each pid's direct children. */
export interface ProcGroup {
  name: string;
  pids: number[];
  tree?: boolean;
}

export interface CpuSample {
  at: number;
  groups: number[];
  self: NodeJS.CpuUsage;
  machine: { busy: number; total: number };
}

export function sampleCpu(groups: ProcGroup[]): CpuSample {
  return {
    at: performance.now(),
    groups: groups.map((g) => g.pids.reduce((s, pid) => s + (g.tree ? treeTicks(pid) : (procStat(pid)?.ticks ?? 0)), 0)),
    self: process.cpuUsage(),
    machine: machineTicks(),
  };
}

/** CPU between two samples, in percent of one core (the machine has cores × 100 %). */
export interface CpuFigures {
  groups: Record<string, number>;
  /** this process (the load generator when it runs in-process) */
  self: number;
  machine: number;
  /** what the machine used beyond the named groups and this process */
  other: number;
}

export function cpuBetween(groups: ProcGroup[], s0: CpuSample, s1: CpuSample): CpuFigures {
  const secs = Math.max(1e-3, (s1.at - s0.at) / 1000);
  const pct = (ticks: number): number => (ticks / clockTicks / secs) * 100;
  const named: Record<string, number> = {};
  groups.forEach((g, i) => (named[g.name] = pct((s1.groups[i] ?? 0) - (s0.groups[i] ?? 0))));
  const self = ((s1.self.user - s0.self.user + s1.self.system - s0.self.system) / 1e6 / secs) * 100;
  const mt = s1.machine.total - s0.machine.total;
  const machine = mt > 0 ? ((s1.machine.busy - s0.machine.busy) / mt) * 100 * cores : NaN;
  const sum = Object.values(named).reduce((a, b) => a + b, 0);
  return { groups: named, self, machine, other: machine - sum - self };
}
