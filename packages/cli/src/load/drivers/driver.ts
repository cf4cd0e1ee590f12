import type { Target } from '../options.js';

/*
 * One Driver per kind of server the load tool can drive: Parley (IRC over TCP or WebSocket), and
 * the two benchmark baselines (Socket.IO with the Redis adapter, a bare `ws` broadcast server).
 * The measuring code in run.ts only sees this interface, so every system is measured the same way.
 *
 * Contract for a driver:
 * - every message the load tool sends carries its message number `g` (non-negative integer) at the
 *   start of its text, followed by a space; the driver reports the sender's acknowledgement, refusal
 *   or error for `g` exactly once when the server says so, and every copy a member receives
 *   (`deliver`, with the text as received, so run.ts reads `g` back from it);
 * - the sender's own copy is its acknowledgement, never a delivery;
 * - `closed` is called once when the connection ends after `open` resolved, whoever ended it.
 * The sink's methods run on the hot path: no allocation beyond what parsing the line needs.
 */

export interface DriverSink {
  /** The server acknowledged message `g` of `user` (durable, for Parley) with this msgid. */
  ack(user: number, g: number, msgid: string): void;
  /** The server refused message `g` with a standard reply (FAIL <cmd> <code>). */
  refused(user: number, g: number, code: string): void;
  /** The server answered message `g` with an error that is not a refusal (a numeric, ...). */
  failed(user: number, g: number, code: string): void;
  /** Member `user` received a room message. */
  deliver(user: number, room: string, text: string, msgid: string): void;
  /** The connection ended; `reason` is the server's ERROR text or the socket error, '' if none. */
  closed(user: number, reason: string): void;
}

export interface OpenSpec {
  user: number;
  nick: string;
  target: Target;
  localAddress: string | undefined;
  /** connect + registration must be done by then */
  timeoutMs: number;
}

export interface Connection {
  /** Joins the rooms; rejects with a one-line reason if the server refused any of them. */
  join(rooms: readonly string[]): Promise<void>;
  /** Queues message `g` for `room`; `text` starts with `g` and a space. */
  send(room: string, g: number, text: string): void;
  /** Bytes written and not yet on the wire (the load tool's own back-pressure). */
  readonly bufferedAmount: number;
  /** Drops the connection at once (no `closed` callback is suppressed). */
  destroy(): void;
}

export interface Driver {
  readonly kind: 'parley' | 'irc' | 'socketio' | 'ws';
  readonly transport: 'tcp' | 'ws';
  /** Connects and registers; rejects with an Error whose `code` is the errno (ECONNREFUSED ...) when there is one. */
  open(spec: OpenSpec, sink: DriverSink): Promise<Connection>;
}

/** The message number at the start of a text, or -1. */
export function leadingInt(text: string): number {
  let n = 0;
  const len = text.length;
  let i = 0;
  for (; i < len; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  return i === 0 || i > 15 ? -1 : n;
}
