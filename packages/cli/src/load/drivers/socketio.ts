import { io, type Socket } from 'socket.io-client';
import type { Connection, Driver, DriverSink, OpenSpec } from './driver.js';

/*
 * The Socket.IO baseline (bench/baselines/socketio-server.ts) through socket.io-client over
 * WebSocket only. Events: `join` (rooms, ack) and `m` (room, text, ack(msgid)); the server emits
 * `m` (room, text, msgid) to the other members of the room and then calls the ack: an
 * acknowledgement here means "broadcast", not "stored".
 */

class SocketIoConnection implements Connection {
  constructor(
    private readonly s: Socket,
    private readonly user: number,
    private readonly sink: DriverSink,
  ) {}

  join(rooms: readonly string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.s.timeout(60_000).emit('join', rooms, (err: Error | null, answer: string) => {
        if (err) reject(new Error(`join: no answer: ${err.message}`));
        else if (answer !== 'ok') reject(new Error(`join refused: ${answer}`));
        else resolve();
      });
    });
  }

  send(room: string, g: number, text: string): void {
    // One closure per message: that is how a Socket.IO application gets its acknowledgements.
    this.s.emit('m', room, text, (msgid: string) => this.sink.ack(this.user, g, msgid));
  }

  get bufferedAmount(): number {
    const engine = this.s.io.engine as unknown as { writeBuffer?: unknown[] } | undefined;
    return engine?.writeBuffer?.length ?? 0;
  }

  destroy(): void {
    this.s.disconnect();
  }
}

export const socketIoDriver: Driver = {
  kind: 'socketio',
  transport: 'ws',
  open(spec: OpenSpec, sink: DriverSink): Promise<Connection> {
    const { user } = spec;
    const h = spec.target.host.includes(':') ? `[${spec.target.host}]` : spec.target.host;
    const s = io(`http://${h}:${spec.target.port}`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: spec.timeoutMs,
      // passed on to `ws` by engine.io-client (not in its types)
      ...({ localAddress: spec.localAddress, perMessageDeflate: false } as Record<string, unknown>),
    });
    return new Promise<Connection>((resolve, reject) => {
      let opened = false;
      s.on('m', (room: string, text: string, msgid: string) => sink.deliver(user, room, text, msgid));
      s.once('connect', () => {
        opened = true;
        resolve(new SocketIoConnection(s, user, sink));
      });
      s.once('connect_error', (err: Error & { description?: { error?: Error & { code?: string } } }) => {
        if (opened) return;
        s.disconnect();
        const cause = err.description?.error;
        reject(cause?.code !== undefined ? cause : err);
      });
      s.on('disconnect', (why: string) => {
        if (opened) sink.closed(user, why === 'io client disconnect' ? '' : why);
      });
    });
  },
};
