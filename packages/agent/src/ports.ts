import net from 'node:net';
import type { ManagedProcess } from './proc.js';

/**
 * Returns a TCP port that was free on `host` a moment ago: listens on port 0, reads the port the
 * kernel picked and closes the socket. Another process may take the port before the caller binds
 * it, so callers that start servers on it should retry with a new port on EADDRINUSE.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error(`freePort: unexpected address ${String(addr)}`));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** Several distinct free ports (distinct from each other; see freePort for the race caveat). */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort(host));
  return [...ports];
}

/** True if an error or a log text looks like "address already in use". */
export function looksLikeAddrInUse(text: string): boolean {
  return /EADDRINUSE|address already in use|could not bind|Address in use|in use by another program/i.test(text);
}

export interface StartOnFreePortsOptions {
  /** the ports asked for; an undefined one is picked free (distinct from the others) */
  ports: ReadonlyArray<number | undefined>;
  /** starts the process on `ports` (in the order asked) */
  spawn: (ports: number[]) => ManagedProcess;
  /** true once the process serves (and it is this process that serves, not another one) */
  ready: (proc: ManagedProcess, ports: number[]) => Promise<boolean>;
  timeoutMs: number;
  /** stops a process that did not get ready (it is killed however it ends) */
  stop: (proc: ManagedProcess) => Promise<unknown>;
  /** runs before starting again on new ports, e.g. to clear what the failed start left behind */
  beforeRetry?: () => Promise<void>;
  /** starts in all when a picked port was taken meanwhile (default 4; 1 when every port is given) */
  attempts?: number;
}

/**
 * Starts a server process on ports picked free, and starts it again on new ones when another
 * program bound a picked port between the pick and the process's bind (freePort's race): that
 * is, when the process exited before it was ready and its output says "address in use". Any
 * other failure, or a clash on a port that was asked for, is thrown as is.
 */
export async function startOnFreePorts(o: StartOnFreePortsOptions): Promise<{ proc: ManagedProcess; ports: number[] }> {
  const picked = o.ports.some((p) => p === undefined);
  const attempts = picked ? (o.attempts ?? 4) : 1;
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    for (const asked of o.ports) {
      let port = asked ?? (await freePort());
      while (asked === undefined && ports.includes(port)) port = await freePort();
      ports.push(port);
    }
    const proc = o.spawn(ports);
    try {
      await proc.waitReady(() => o.ready(proc, ports), o.timeoutMs);
      return { proc, ports };
    } catch (err) {
      await o.stop(proc);
      if (attempt < attempts && !proc.running && looksLikeAddrInUse(proc.logTail())) {
        await o.beforeRetry?.();
        continue;
      }
      throw err;
    }
  }
}
