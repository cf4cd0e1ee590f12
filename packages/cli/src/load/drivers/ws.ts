import WebSocket from 'ws';
import type { Connection, Driver, DriverSink, OpenSpec } from './driver.js';

/*
 * The bare `ws` broadcast baseline (bench/baselines/ws-broadcast.ts): the machine's ceiling for a
 * Node process that does nothing but relay frames. Text frames, one message each:
 *   client → server   J <room>,<room>...        join; answered by `J`
 *                     M <room> <text>           send
 *   server → client   A <room> <msgid> <text>   to the sender, after the frames to the members
 *                     D <room> <msgid> <text>   to every other member of the room
 */

class WsConnection implements Connection {
  private joinWaiter: (() => void) | null = null;

  constructor(private readonly ws: WebSocket) {}

  joined(): void {
    const w = this.joinWaiter;
    this.joinWaiter = null;
    w?.();
  }

  join(rooms: readonly string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('join: no answer within 60 s')), 60_000);
      t.unref();
      this.joinWaiter = () => {
        clearTimeout(t);
        resolve();
      };
      this.ws.send(`J ${rooms.join(',')}`);
    });
  }

  send(room: string, _g: number, text: string): void {
    this.ws.send(`M ${room} ${text}`);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  destroy(): void {
    this.ws.terminate();
  }
}

export const wsDriver: Driver = {
  kind: 'ws',
  transport: 'ws',
  open(spec: OpenSpec, sink: DriverSink): Promise<Connection> {
    const { user } = spec;
    const h = spec.target.host.includes(':') ? `[${spec.target.host}]` : spec.target.host;
    const ws = new WebSocket(`ws://${h}:${spec.target.port}/`, {
      perMessageDeflate: false,
      handshakeTimeout: spec.timeoutMs,
      ...(spec.localAddress !== undefined ? { localAddress: spec.localAddress } : {}),
    });
    const conn = new WsConnection(ws);
    return new Promise<Connection>((resolve, reject) => {
      let opened = false;
      let reason = '';
      ws.on('message', (data: Buffer) => {
        const s = data.toString('utf8');
        const kind = s.charCodeAt(0);
        if (kind === 74 /* J */) {
          conn.joined();
          return;
        }
        // A|D <room> <msgid> <text>
        const a = s.indexOf(' ', 2);
        const b = s.indexOf(' ', a + 1);
        if (a < 0 || b < 0) return;
        const text = s.slice(b + 1);
        if (kind === 65 /* A */) sink.ack(user, leading(text), s.slice(a + 1, b));
        else if (kind === 68 /* D */) sink.deliver(user, s.slice(2, a), text, s.slice(a + 1, b));
      });
      ws.once('open', () => {
        opened = true;
        resolve(conn);
      });
      ws.on('error', (err) => {
        reason ||= err.message;
        if (!opened) reject(err);
      });
      ws.on('close', () => {
        if (opened) sink.closed(user, reason);
      });
    });
  },
};

function leading(text: string): number {
  const sp = text.indexOf(' ');
  const n = Number(sp < 0 ? text : text.slice(0, sp));
  return Number.isInteger(n) ? n : -1;
}
