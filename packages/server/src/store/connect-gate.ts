/** Thrown by ConnectGate.run when the deadline passed before a turn came: nothing was tried. */
export const GATE_TIMED_OUT = Symbol('no turn to connect before the deadline');

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

/**
 * Bounds how many connections to shards an instance opens at once. Opening one costs a backend
 * process and a SCRAM exchange; a thousand first uses in the same second (every room's first
 * message at the start of a load) would otherwise open a thousand at once, and on a small machine
 * each then takes longer than the commit deadline, which reads as "the shard is down".
 *
 * A turn is held until the open settles or for `holdMs`, whichever comes first, so an open that
 * hangs (a frozen shard) delays the others by `holdMs` at most and never blocks the gate.
 * Waiters are served in order; one whose deadline passes first is rejected with GATE_TIMED_OUT.
 * Not on the message path: only connection opens and first-use migrations go through it.
 */
export class ConnectGate {
  private active = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly limit: number,
    private readonly holdMs = 1000,
  ) {}

  /** opens waiting for a turn */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Runs `open` when a turn is free, before `deadline` (Date.now() scale), else rejects with GATE_TIMED_OUT. */
  run<T>(deadline: number, open: () => Promise<T>): Promise<T> {
    if (this.active < this.limit && this.waiters.length === 0) return this.go(open);
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          this.go(open).then(resolve, reject);
        },
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(GATE_TIMED_OUT);
        }, Math.max(0, deadline - Date.now())),
      };
      this.waiters.push(waiter);
    });
  }

  private go<T>(open: () => Promise<T>): Promise<T> {
    this.active++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(hold);
      this.active--;
      const next = this.waiters.shift();
      if (next) next.start();
    };
    const hold = setTimeout(release, this.holdMs);
    let p: Promise<T>;
    try {
      p = open();
    } catch (err) {
      release();
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return p.finally(release);
  }
}
