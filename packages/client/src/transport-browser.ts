/**
 * IRC over a WHATWG WebSocket (the browser's; in Node 20, the `ws` library implements the same
 * API, which is how the unit tests drive this class). Pure: no Node built-ins.
 */
import { decodeUtf8 } from '@parley/protocol';
import { WS_SUBPROTOCOL, frameLine, type IrcTransport, type TransportHandler } from './transport.js';

/** The part of the WHATWG WebSocket this transport uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

const OPEN = 1;

const ignore = (): void => {};

export interface BrowserWebSocketOptions {
  /** Default: `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
}

export class BrowserWebSocketTransport implements IrcTransport {
  private ws: WebSocketLike | null = null;
  private handler: TransportHandler | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly opts: BrowserWebSocketOptions = {},
  ) {}

  open(handler: TransportHandler): void {
    if (this.handler !== null) throw new Error('transport already opened');
    this.handler = handler;
    const Ctor = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    let ws: WebSocketLike;
    try {
      if (Ctor === undefined) throw new Error('no WebSocket in this runtime');
      ws = new Ctor(this.url, WS_SUBPROTOCOL);
    } catch (err) {
      // A bad URL throws synchronously; the contract says every outcome goes to the handler.
      handler.onError(err instanceof Error ? err : new Error(String(err)));
      this.finish();
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => handler.onOpen();
    ws.onmessage = ((ev: { data: unknown }) => this.onFrame(ev.data)) as (ev: never) => void;
    // The browser says nothing about the cause (on purpose: no port scanning from pages).
    ws.onerror = () => handler.onError(new Error(`WebSocket error (${this.url})`));
    ws.onclose = () => this.finish();
  }

  write(lines: readonly string[]): void {
    const ws = this.ws;
    if (ws === null || ws.readyState !== OPEN) return;
    for (let i = 0; i < lines.length; i++) ws.send(lines[i] as string);
  }

  end(): void {
    this.ws?.close(1000);
  }

  destroy(): void {
    // The WHATWG API has no abort: close() is the fastest way out; onClose is reported at once
    // so that the client does not wait for the closing handshake.
    this.ws?.close();
    this.finish();
  }

  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  private onFrame(data: unknown): void {
    const h = this.handler as TransportHandler;
    let text: string | null;
    if (typeof data === 'string') text = data;
    else if (data instanceof ArrayBuffer) text = decodeUtf8(new Uint8Array(data));
    else if (ArrayBuffer.isView(data)) text = decodeUtf8(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else text = null;
    if (text === null) {
      h.onLineError(new Error('WebSocket frame is not valid UTF-8 text'));
      return;
    }
    const line = frameLine(text);
    if (line !== '') h.onLine(line);
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    const ws = this.ws;
    if (ws !== null) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      // Not null: an implementation that is an EventEmitter underneath (`ws`) throws an error
      // event that has no listener, and closing while connecting reports one.
      ws.onerror = ignore;
    }
    this.handler?.onClose();
  }
}
