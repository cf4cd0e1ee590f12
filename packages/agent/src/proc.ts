/**
 * A small managed child process: output to a log file (or a ring buffer of recent lines),
 * readiness polling, graceful stop with escalation to SIGKILL, and a process-wide registry whose
 * exit hook kills every child still running when this Node process exits (and, through
 * setpriv --pdeathsig, the kernel kills them if it dies by SIGKILL), so a crashing test never
 * leaves etcd, Redis or PostgreSQL behind.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { withTimeout } from '@parley/contracts';

export interface ManagedSpawnOptions {
  /** Short name used in errors and logs, e.g. "etcd". */
  name: string;
  command: string;
  args: readonly string[];
  /** Append stdout and stderr to this file. Without it they are kept in a ring buffer. */
  logFile?: string;
  /** Lines kept in the ring buffer when there is no log file (default 200). */
  ringLines?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /**
   * Keep the Node event loop alive while the child runs (default false). By default the child is
   * referenced only while waitReady() or stop() is in progress: a program (or test) that forgets
   * to stop it still exits, and the exit hook then kills the child.
   */
  keepAlive?: boolean;
  /**
   * Have the kernel SIGKILL the child if this Node process dies, even by SIGKILL (default true).
   * Uses util-linux `setpriv --pdeathsig KILL`, which execs the command (same pid); skipped
   * where setpriv is not available.
   */
  dieWithParent?: boolean;
  /**
   * Signal for emergencies: sent by the exit hook and on parent death (default SIGKILL). E.g.
   * SIGQUIT for postgres, whose immediate shutdown still removes its shared memory segments.
   */
  emergencySignal?: NodeJS.Signals;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string | undefined;
  readonly emergencySignal: NodeJS.Signals;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private readonly child: ChildProcess;
  private readonly ring: string[] = [];
  private readonly ringMax: number;
  private partial = '';
  private stopping: Promise<ExitInfo> | undefined;
  private spawnError: Error | undefined;
  private keepAlive: boolean;
  private holds = 0;

  constructor(opts: ManagedSpawnOptions) {
    this.name = opts.name;
    this.logFile = opts.logFile;
    this.ringMax = opts.ringLines ?? 200;
    this.emergencySignal = opts.emergencySignal ?? 'SIGKILL';

    let command = opts.command;
    let args = [...opts.args];
    const setpriv = opts.dieWithParent === false ? undefined : setprivPath();
    if (setpriv) {
      args = ['--pdeathsig', this.emergencySignal.replace(/^SIG/, ''), '--', command, ...args];
      command = setpriv;
    }

    let fd: number | undefined;
    if (opts.logFile !== undefined) {
      // Logs name users, addresses and errors: for the owner only (also a log made by an older release).
      fd = fs.openSync(opts.logFile, 'a', 0o600);
      try {
        fs.fchmodSync(fd, 0o600);
      } catch {
        // not ours to change
      }
    }
    try {
      this.child = spawn(command, args, {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        uid: opts.uid,
        gid: opts.gid,
        stdio: fd !== undefined ? ['ignore', fd, fd] : ['ignore', 'pipe', 'pipe'],
        // Same process group on purpose: killing a job's whole group (a CI timeout, a terminal)
        // also takes the services down.
      });
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }

    const child = this.child;
    if (fd === undefined) {
      child.stdout?.setEncoding('utf8').on('data', (s: string) => this.collect(s));
      child.stderr?.setEncoding('utf8').on('data', (s: string) => this.collect(s));
    }

    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        registry().delete(this);
        resolve(this.exitInfo);
      });
      child.once('error', (err) => {
        // spawn failure (ENOENT, EACCES...): no 'exit' event follows.
        this.spawnError = err;
        if (child.pid === undefined) {
          this.exitInfo = { code: null, signal: null };
          registry().delete(this);
          resolve(this.exitInfo);
        }
      });
    });

    this.pid = child.pid ?? -1;
    if (child.pid !== undefined) registry().add(this);
    this.keepAlive = opts.keepAlive ?? false;
    this.applyRef();
  }

  /** Keep the event loop alive while the child runs. */
  ref(): void {
    this.keepAlive = true;
    this.applyRef();
  }

  /** Let the Node process exit while the child runs (the exit hook then kills it). */
  unref(): void {
    this.keepAlive = false;
    this.applyRef();
  }

  private applyRef(): void {
    const on = this.keepAlive || this.holds > 0;
    const handles: Array<{ ref?: () => unknown; unref?: () => unknown } | null> = [
      this.child,
      this.child.stdout as unknown as { ref?: () => unknown; unref?: () => unknown } | null,
      this.child.stderr as unknown as { ref?: () => unknown; unref?: () => unknown } | null,
    ];
    for (const h of handles) {
      if (on) h?.ref?.();
      else h?.unref?.();
    }
  }

  /** Runs `fn` with the child referenced (so awaiting it keeps the process alive). */
  private async held<T>(fn: () => Promise<T>): Promise<T> {
    this.holds++;
    this.applyRef();
    try {
      return await fn();
    } finally {
      this.holds--;
      this.applyRef();
    }
  }

  /** Still running (spawned and not yet exited). */
  get running(): boolean {
    return this.pid > 0 && this.exitInfo === undefined;
  }

  get exitStatus(): ExitInfo | undefined {
    return this.exitInfo;
  }

  private collect(s: string): void {
    const parts = (this.partial + s).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      this.ring.push(line);
      if (this.ring.length > this.ringMax) this.ring.shift();
    }
  }

  /** The last `n` lines of output (from the log file, or the ring buffer). */
  logTail(n = 40): string {
    let lines: string[];
    if (this.logFile !== undefined) {
      lines = readTail(this.logFile, 64 * 1024).split('\n');
      if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    } else {
      lines = this.partial ? [...this.ring, this.partial] : [...this.ring];
    }
    return lines.slice(-n).join('\n');
  }

  /** A description of why the process is gone, or undefined while it runs. */
  private describeExit(): string | undefined {
    if (this.spawnError) return `could not be started: ${this.spawnError.message}`;
    const e = this.exitInfo;
    if (!e) return undefined;
    return e.signal ? `exited on signal ${e.signal}` : `exited with code ${e.code}`;
  }

  /** Builds an Error whose message names the process and includes its last log lines. */
  failure(what: string): Error {
    const tail = this.logTail();
    const where = this.logFile ? ` (log: ${this.logFile})` : '';
    return new Error(
      `${this.name} ${what}${where}\n--- last log lines ---\n${tail || '(no output)'}\n--- end of log ---`,
    );
  }

  /**
   * Polls `check` until it returns true. Fails early, with the last log lines, if the process
   * exits, and fails after `timeoutMs`. A check that throws counts as "not yet".
   */
  waitReady(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    return this.held(() => this.pollReady(check, timeoutMs));
  }

  private async pollReady(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let delay = 20;
    let lastError: unknown;
    for (;;) {
      const gone = this.describeExit();
      if (gone) throw this.failure(`${gone} before it was ready`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      try {
        const ms = Math.min(remaining, 5_000);
        const ok = await withTimeout(check(), ms, `check timed out after ${ms} ms`);
        if (ok) return;
      } catch (err) {
        lastError = err;
      }
      const goneAfter = this.describeExit();
      if (goneAfter) throw this.failure(`${goneAfter} before it was ready`);
      if (Date.now() >= deadline) break;
      await Promise.race([sleep(Math.min(delay, Math.max(0, deadline - Date.now()))), this.exited]);
      delay = Math.min(delay * 1.5, 250);
    }
    const why = lastError instanceof Error ? ` (last check error: ${lastError.message})` : '';
    throw this.failure(`was not ready after ${timeoutMs} ms${why}`);
  }

  /** Sends a signal if the process is still running. Returns false if it was not. */
  signal(sig: NodeJS.Signals): boolean {
    if (!this.running) return false;
    try {
      return this.child.kill(sig);
    } catch {
      return false;
    }
  }

  /**
   * Stops the process: sends each signal in turn (default SIGTERM), waiting up to `timeoutMs`
   * after each for the process to exit, then SIGKILL. Idempotent: later calls return the same
   * promise. Never rejects.
   */
  stop(signals: NodeJS.Signals | readonly NodeJS.Signals[] = 'SIGTERM', timeoutMs = 10_000): Promise<ExitInfo> {
    if (this.stopping) return this.stopping;
    const list = typeof signals === 'string' ? [signals] : [...signals];
    this.stopping = this.held(async () => {
      for (const sig of list) {
        if (!this.running) break;
        this.signal(sig);
        if (await exitsWithin(this.exited, timeoutMs)) break;
      }
      if (this.running) {
        this.signal('SIGKILL');
        await this.exited;
      }
      return await this.exited;
    });
    return this.stopping;
  }
}

/** Spawns a managed process (see ManagedProcess). */
export function spawnManaged(opts: ManagedSpawnOptions): ManagedProcess {
  return new ManagedProcess(opts);
}

/** Every managed process of this Node process that is still running. */
export function runningProcesses(): ManagedProcess[] {
  return [...registry()];
}

/** Sends every still-running managed process its emergency signal (default SIGKILL), synchronously. */
export function killAllSync(): void {
  for (const p of registry()) {
    try {
      process.kill(p.pid, p.emergencySignal);
    } catch {
      // already gone
    }
  }
}

/**
 * Registers a directory to remove synchronously when this Node process exits (after the children
 * are killed), for temp dirs of services that a crashing program never stopped. Returns a
 * function that unregisters it.
 */
export function removeOnExit(dir: string): () => void {
  const { dirs } = state();
  dirs.add(dir);
  return () => {
    dirs.delete(dir);
  };
}

let cachedSetpriv: string | null | undefined;

/** util-linux setpriv if it exists and supports --pdeathsig (Linux), else undefined. */
function setprivPath(): string | undefined {
  if (cachedSetpriv !== undefined) return cachedSetpriv ?? undefined;
  cachedSetpriv = null;
  if (process.platform !== 'linux') return undefined;
  for (const dir of ['/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':')]) {
    if (!dir) continue;
    const p = `${dir}/setpriv`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      const help = execFileSync(p, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      if (help.includes('--pdeathsig')) cachedSetpriv = p;
      break;
    } catch {
      // not here
    }
  }
  return cachedSetpriv ?? undefined;
}

function onExit(): void {
  killAllSync();
  const { dirs } = state();
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      // best effort
    }
  }
  dirs.clear();
}

// ---------------------------------------------------------------------------------------------

const STATE_KEY = Symbol.for('parley.agent.proc.state');

interface SharedState {
  procs: Set<ManagedProcess>;
  dirs: Set<string>;
}

/** Shared through globalThis so that two copies of this module still share one registry. */
function state(): SharedState {
  const g = globalThis as unknown as Record<symbol, SharedState | undefined>;
  let st = g[STATE_KEY];
  if (!st) {
    st = { procs: new Set(), dirs: new Set() };
    g[STATE_KEY] = st;
    installExitHooks();
  }
  return st;
}

function registry(): Set<ManagedProcess> {
  return state().procs;
}

function installExitHooks(): void {
  process.on('exit', onExit);
  // A fatal signal skips 'exit'. If nobody else handles the signal, kill the children and
  // re-raise it so the default behaviour (terminate) still applies. If the application has its
  // own handler, it owns shutdown and we stay out of its way ('exit' still covers us).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      if (process.listenerCount(sig) > 1) return;
      onExit();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

function readTail(file: string, maxBytes: number): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    let text = buf.toString('utf8');
    if (len < size) text = text.slice(text.indexOf('\n') + 1); // drop the cut first line
    return text;
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Resolves after `ms` without keeping the event loop alive. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function exitsWithin(exited: Promise<ExitInfo>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([exited.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
