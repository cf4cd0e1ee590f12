/**
 * Keeps a set of processes ("units") in the state a plan asks for: starts what is missing once
 * its dependencies run, restarts what died (exponential backoff), restarts what the plan changed
 * and stops what the plan no longer lists. Every unit's operations run one at a time; different
 * units proceed in parallel.
 *
 * Contract of a unit's `start()`: it resolves once the process is ready to serve, or rejects
 * having cleaned up whatever it started. `Running.exited` resolves when the process is gone,
 * whoever stopped it; `Running.stop()` is idempotent and resolves after the exit.
 */
import { EventEmitter } from 'node:events';
import type { ExitInfo } from './proc.js';

export type UnitKind = 'etcd' | 'redis' | 'shard' | 'server' | 'haproxy';

/**
 * waiting: planned, dependencies not running yet; starting; running; backoff: died or failed to
 * start, tried again at `retryAt`; stopping; stopped: no longer planned (about to be forgotten).
 */
export type UnitState = 'waiting' | 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped';

export interface Running {
  pid: number;
  exited: Promise<ExitInfo>;
  stop(): Promise<void>;
  ports: Record<string, number>;
  info?: Record<string, unknown>;
}

export interface UnitSpec {
  name: string;
  kind: UnitKind;
  /** Differs from the running one's when the plan asks for a restart (new settings, new generation). */
  hash: string;
  /** Units that must be running before this one starts. */
  deps: string[];
  log: string;
  /**
   * Starts the process. `progress` names the step it has reached (e.g. `created`, `started`); it
   * shows in the snapshot's `phase` while the unit is starting.
   */
  start(progress: (phase: string) => void): Promise<Running>;
}

export interface UnitSnapshot {
  name: string;
  kind: UnitKind;
  state: UnitState;
  pid: number | null;
  ports: Record<string, number>;
  info: Record<string, unknown>;
  /** times the agent started it again after it died */
  restarts: number;
  /** consecutive failed starts */
  failures: number;
  startedAt: number | null;
  lastExit: { code: number | null; signal: string | null; at: number } | null;
  lastError: string | null;
  /** when a process in backoff is tried again */
  retryAt: number | null;
  /** the step a starting unit has reached (see UnitSpec.start), null otherwise */
  phase: string | null;
  log: string;
}

export interface SupervisorOptions {
  /** First retry delay; doubled per consecutive failure (default 500 ms). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A process that ran this long before dying is retried at the base delay again (default 30 s). */
  stableAfterMs?: number;
  log?: (msg: string) => void;
}

class Unit {
  desired: UnitSpec | undefined;
  current: { spec: UnitSpec; running: Running } | undefined;
  /** the spec of the last start attempt, for status while nothing runs */
  last: UnitSpec;
  state: UnitState = 'waiting';
  restarts = 0;
  failures = 0;
  startedAt: number | null = null;
  lastExit: UnitSnapshot['lastExit'] = null;
  lastError: string | null = null;
  retryAt: number | null = null;
  retryTimer: NodeJS.Timeout | undefined;
  phase: string | null = null;
  busy = false;
  dirty = false;
  /** resolved each time the unit's reconcile loop goes idle (for shutdown, instead of polling) */
  idleWaiters: Array<() => void> = [];
  /** processes being stopped on purpose: their exit is not a crash */
  readonly expected = new WeakSet<Running>();

  constructor(spec: UnitSpec) {
    this.desired = spec;
    this.last = spec;
  }
}

export interface SupervisorEvents {
  /** any unit changed state */
  change: [];
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  private readonly units = new Map<string, Unit>();
  private readonly base: number;
  private readonly max: number;
  private readonly stableAfter: number;
  private readonly log: (msg: string) => void;
  private closing = false;

  constructor(opts: SupervisorOptions = {}) {
    super();
    this.base = opts.backoffBaseMs ?? 500;
    this.max = opts.backoffMaxMs ?? 30_000;
    this.stableAfter = opts.stableAfterMs ?? 30_000;
    this.log = opts.log ?? (() => {});
  }

  /**
   * Makes `specs` the desired set: new units start, changed ones restart, units not listed stop.
   * Returns at once; progress shows in `snapshot()` and 'change' events.
   */
  apply(specs: UnitSpec[]): void {
    if (this.closing) return;
    const names = new Set(specs.map((s) => s.name));
    for (const spec of specs) {
      const u = this.units.get(spec.name);
      if (!u) {
        this.units.set(spec.name, new Unit(spec));
      } else {
        if (u.desired?.hash !== spec.hash && u.desired !== undefined && u.current?.spec.hash !== spec.hash) {
          // A new spec is a fresh start: do not make it wait for the old one's backoff.
          u.failures = 0;
          u.retryAt = null;
        }
        u.desired = spec;
        u.last = spec;
      }
    }
    for (const [name, u] of this.units) if (!names.has(name)) u.desired = undefined;
    for (const u of this.units.values()) this.kick(u);
  }

  /** units known (planned, or stopping) */
  get size(): number {
    return this.units.size;
  }

  isRunning(name: string): boolean {
    return this.units.get(name)?.state === 'running';
  }

  /**
   * Resolves once `pred()` holds: checked now and after every 'change'. It never rejects and has
   * no time limit of its own; callers that need one wrap it (`withTimeout`).
   */
  when(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!pred()) return;
        this.off('change', check);
        resolve();
      };
      this.on('change', check);
    });
  }

  snapshot(): UnitSnapshot[] {
    return [...this.units.values()].map((u) => ({
      name: u.last.name,
      kind: u.last.kind,
      state: u.state,
      pid: u.current?.running.pid ?? null,
      ports: u.current?.running.ports ?? {},
      info: u.current?.running.info ?? {},
      restarts: u.restarts,
      failures: u.failures,
      startedAt: u.current ? u.startedAt : null,
      lastExit: u.lastExit,
      lastError: u.lastError,
      retryAt: u.state === 'backoff' ? u.retryAt : null,
      phase: u.state === 'starting' ? u.phase : null,
      log: u.last.log,
    }));
  }

  /**
   * Stops everything, group after group (e.g. instances, then the front door, then the stores),
   * each group in parallel, and refuses further plans. Units in no group stop last.
   */
  async shutdown(order: UnitKind[][]): Promise<void> {
    this.closing = true;
    for (const u of this.units.values()) {
      clearTimeout(u.retryTimer);
      u.desired = undefined;
    }
    const groups = [...order, (['etcd', 'redis', 'shard', 'server', 'haproxy'] as UnitKind[]).filter((k) => !order.flat().includes(k))];
    for (const kinds of groups) {
      const us = [...this.units.values()].filter((u) => kinds.includes(u.last.kind));
      await Promise.all(us.map((u) => this.settle(u)));
    }
  }

  /**
   * Runs the unit's reconcile and waits until it has nothing left to do: woken each time its
   * reconcile loop goes idle (no timers, so a thousand units stopping cost nothing while they wait).
   */
  private async settle(u: Unit): Promise<void> {
    this.kick(u);
    while (u.busy || u.current) {
      if (u.busy) await new Promise<void>((resolve) => u.idleWaiters.push(resolve));
      else this.kick(u);
    }
  }

  private emitChange(): void {
    this.emit('change');
  }

  private kick(u: Unit): void {
    if (u.busy) {
      u.dirty = true;
      return;
    }
    void this.reconcile(u);
  }

  private depsReady(spec: UnitSpec): boolean {
    return spec.deps.every((d) => this.units.get(d)?.state === 'running');
  }

  private async reconcile(u: Unit): Promise<void> {
    u.busy = true;
    try {
      do {
        u.dirty = false;
        const want = u.desired;
        const cur = u.current;
        if (cur && (!want || want.hash !== cur.spec.hash)) {
          u.state = 'stopping';
          this.emitChange();
          u.expected.add(cur.running);
          this.log(`${cur.spec.name}: stopping (pid ${cur.running.pid})${want ? ' to apply a plan change' : ''}`);
          await cur.running.stop().catch(() => undefined);
          await cur.running.exited;
          u.current = undefined;
          u.startedAt = null;
          u.state = want ? 'waiting' : 'stopped';
          this.emitChange();
          u.dirty = true;
          continue;
        }
        if (cur || !want) {
          if (!cur && !want && u.state !== 'stopped') {
            u.state = 'stopped';
            this.emitChange();
          }
          break;
        }
        if (this.closing) break;
        if (u.retryAt !== null && u.retryAt > Date.now()) {
          if (u.state !== 'backoff') {
            u.state = 'backoff';
            this.emitChange();
          }
          this.scheduleRetry(u);
          break;
        }
        if (!this.depsReady(want)) {
          if (u.state !== 'waiting') {
            u.state = 'waiting';
            this.emitChange();
          }
          break;
        }
        u.state = 'starting';
        u.phase = null;
        u.last = want;
        this.emitChange();
        try {
          const running = await want.start((phase) => {
            if (u.state !== 'starting' || u.phase === phase) return;
            u.phase = phase;
            this.emitChange();
          });
          u.current = { spec: want, running };
          u.startedAt = Date.now();
          u.lastError = null;
          u.retryAt = null;
          u.state = 'running';
          this.log(`${want.name}: running (pid ${running.pid})`);
          void running.exited.then((info) => this.onExit(u, running, info));
          this.emitChange();
          // Dependents waiting for this one may start now.
          for (const other of this.units.values()) if (other !== u && other.desired?.deps.includes(want.name)) this.kick(other);
        } catch (err) {
          u.failures++;
          u.lastError = errorLine(err);
          u.retryAt = Date.now() + this.delay(u.failures);
          u.state = 'backoff';
          this.log(`${want.name}: start failed (attempt ${u.failures}, retry in ${u.retryAt - Date.now()} ms): ${String((err as Error)?.message ?? err)}`);
          this.emitChange();
        }
        u.dirty = true;
      } while (u.dirty);
    } finally {
      u.busy = false;
      for (const w of u.idleWaiters.splice(0)) w();
    }
    if (!u.current && !u.desired && u.state === 'stopped' && this.units.get(u.last.name) === u && !this.closing) {
      this.units.delete(u.last.name);
      this.emitChange();
    }
  }

  private onExit(u: Unit, running: Running, info: ExitInfo): void {
    if (u.expected.has(running) || u.current?.running !== running) return;
    const ranMs = Date.now() - (u.startedAt ?? Date.now());
    u.current = undefined;
    u.startedAt = null;
    u.lastExit = { code: info.code, signal: info.signal, at: Date.now() };
    if (this.closing) {
      u.state = 'stopped';
      this.emitChange();
      return;
    }
    u.restarts++;
    if (ranMs >= this.stableAfter) u.failures = 0;
    u.failures++;
    u.retryAt = Date.now() + this.delay(u.failures);
    u.state = 'backoff';
    const how = info.signal ? `signal ${info.signal}` : `exit code ${info.code}`;
    this.log(`${u.last.name}: died (${how}) after ${Math.round(ranMs / 1000)} s; restarting in ${u.retryAt - Date.now()} ms`);
    this.emitChange();
    this.kick(u);
  }

  private delay(failures: number): number {
    return Math.min(this.max, this.base * 2 ** Math.max(0, failures - 1));
  }

  private scheduleRetry(u: Unit): void {
    clearTimeout(u.retryTimer);
    const ms = Math.max(0, (u.retryAt ?? 0) - Date.now());
    u.retryTimer = setTimeout(() => {
      u.retryAt = null;
      this.kick(u);
    }, ms);
    u.retryTimer.unref();
  }
}

/** The first line of an error (the rest, such as log tails, stays in the agent log). */
export function errorLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return (m.split('\n')[0] ?? m).slice(0, 500);
}
