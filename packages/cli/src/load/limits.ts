import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/*
 * The operating-system limits a load run meets first: file descriptors (one per connection, in
 * this process and in the server), ephemeral ports (one per connection and source address) and
 * the system-wide file table. Node cannot call setrlimit(2) on itself; util-linux `prlimit` can
 * raise this process's soft limit up to its hard limit (raising the hard limit needs root with
 * CAP_SYS_RESOURCE, or `ulimit -Hn` in the shell that starts the load).
 */

export interface FdLimit {
  soft: number;
  hard: number;
}

export function readFdLimit(pid: number | 'self' = 'self'): FdLimit | null {
  try {
    const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const m = line ? /Max open files\s+(\S+)\s+(\S+)/.exec(line) : null;
    if (!m) return null;
    const n = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
    return { soft: n(m[1] as string), hard: n(m[2] as string) };
  } catch {
    return null;
  }
}

/**
 * Makes sure this process may open `needed` descriptors: raises the soft limit towards the hard
 * one with prlimit when that helps. Returns null when it is fine, or one line saying what to change.
 */
export function ensureFdLimit(needed: number): string | null {
  const before = readFdLimit();
  if (before === null || before.soft >= needed) return null;
  if (before.hard > before.soft) {
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.hard}:${before.hard}`], { stdio: 'ignore' });
    } catch {
      /* no prlimit: say what to do below */
    }
  }
  const after = readFdLimit() ?? before;
  if (after.soft >= needed) return null;
  return (
    `this needs about ${needed.toLocaleString('en-US')} open files but the limit is ${after.soft.toLocaleString('en-US')} (hard limit ${after.hard === Infinity ? 'unlimited' : after.hard.toLocaleString('en-US')}): ` +
    `run 'ulimit -n ${needed}' in the shell first${after.hard < needed ? ' (as root, or raise the hard limit in /etc/security/limits.conf or with prlimit)' : ''}, or split the users over several parley load processes`
  );
}

export function ephemeralPortCount(): number {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined && hi >= lo) return hi - lo + 1;
  } catch {
    /* not Linux */
  }
  return 28_232;
}

/**
 * A connection bound to a source address (`--source-ips`) takes its own port at bind time, so each
 * source address gives one port range's worth of connections; without binding, the kernel may
 * reuse a port for different destinations, so each target does.
 */
export function checkPorts(users: number, sourceIps: number, targets: number): string | null {
  const ports = ephemeralPortCount();
  const per = sourceIps > 0 ? Math.ceil(users / sourceIps) : Math.ceil(users / targets);
  if (per <= ports - 500) return null;
  return sourceIps > 0
    ? `${users.toLocaleString('en-US')} connections over ${sourceIps} source addresses is ${per.toLocaleString('en-US')} per address, but there are only ${ports.toLocaleString('en-US')} ephemeral ports (net.ipv4.ip_local_port_range): give more --source-ips or widen the range`
    : `${users.toLocaleString('en-US')} connections to ${targets} target(s) need ${per.toLocaleString('en-US')} ephemeral ports per target, but there are only ${ports.toLocaleString('en-US')} (net.ipv4.ip_local_port_range): spread them with --source-ips 127.0.0.2-127.0.0.9 or widen the range`;
}

/** What to change when connections fail with this error code; null for codes without advice. */
export function adviceFor(code: string): string | null {
  switch (code) {
    case 'EMFILE':
      return `EMFILE: this process ran out of file descriptors (limit ${readFdLimit()?.soft ?? '?'}): raise 'ulimit -n' or use fewer --users per process`;
    case 'ENFILE':
      return 'ENFILE: the system file table is full: raise fs.file-max (sysctl -w fs.file-max=...)';
    case 'EADDRNOTAVAIL':
      return 'EADDRNOTAVAIL: out of ephemeral ports, or a --source-ips address is not local: add --source-ips 127.0.0.2-127.0.0.9 or widen net.ipv4.ip_local_port_range (sysctl -w net.ipv4.ip_local_port_range="1024 65535")';
    case 'EADDRINUSE':
      return 'EADDRINUSE: no free local port for a source address: add more --source-ips or widen net.ipv4.ip_local_port_range';
    case 'ECONNREFUSED':
      return 'ECONNREFUSED: nothing listens there, or the server is out of descriptors (check its ulimit -n) or its accept backlog (net.core.somaxconn) overflowed: lower --connect-concurrency or use --ramp';
    case 'ECONNRESET':
      return 'ECONNRESET: the server dropped connections while they opened: check its log, its ulimit -n and net.core.somaxconn; try --ramp';
    case 'ETIMEDOUT':
    case 'TIMEOUT':
      return 'TIMEOUT: connections did not register in time (--connect-timeout): the server is saturated; use --ramp or a lower --connect-concurrency';
    default:
      return null;
  }
}
