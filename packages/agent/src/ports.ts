import net from 'node:net';

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
  return /EADDRINUSE|address already in use|could not bind|Address in use/i.test(text);
}
