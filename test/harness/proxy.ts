import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** A TCP proxy to one port that can drop its connections and hold new ones. */
export class Proxy {
  private readonly server = net.createServer((c) => this.accept(c));
  private readonly sockets = new Set<net.Socket>();
  private held: net.Socket[] | null = null;

  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const c of held) if (!c.destroyed) this.connect(c);
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    for (const c of this.held ?? []) c.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private accept(c: net.Socket): void {
    this.track(c);
    if (this.held !== null) this.held.push(c);
    else this.connect(c);
  }

  private connect(c: net.Socket): void {
    const up = net.connect(this.target, '127.0.0.1');
    this.track(up);
    c.pipe(up).pipe(c);
    const drop = (): void => {
      c.destroy();
      up.destroy();
    };
    c.on('close', drop);
    up.on('close', drop);
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {}); // a cut connection errors on the other side; that is the point
  }
}
