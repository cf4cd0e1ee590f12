/**
 * The Node-only transports: IRC over TCP (node:net + LineSplitter) and over WebSocket with the `ws`
 * library (which, unlike a browser, can bind a source address, skip compression and cork a batch
 * of frames into one write). Kept apart from the client core so a browser bundle never pulls in
 * node:net or ws.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { LineSplitter } from '@parley/protocol';
import { WS_SUBPROTOCOL, frameLine, wsUrl, type IrcTransport, type TransportHandler } from './transport.js';

export interface NodeTransportOptions {
  host: string;
  port: number;
  /** Source IP address (load tests spread connections over several). */
  localAddress?: string | undefined;
}

/** Lines from a server are read leniently: a test client should show what the server sent. */
const MAX_SERVER_LINE = 2 << 20;

export class TcpTransport implements IrcTransport {
  private socket: net.Socket | null = null;

  constructor(private readonly opts: NodeTransportOptions) {}

  open(h: TransportHandler): void {
    if (this.socket !== null) throw new Error('transport already opened');
    const splitter = new LineSplitter({
      maxLineBytes: MAX_SERVER_LINE,
      onLine: (line) => h.onLine(line),
      onError: (err) => h.onLineError(err),
    });
    const { host, port, localAddress } = this.opts;
    const socket = net.connect({ host, port, ...(localAddress !== undefined ? { localAddress } : {}) });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => h.onOpen());
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    socket.on('error', (err) => h.onError(err));
    socket.on('close', () => h.onClose());
  }

  write(lines: readonly string[]): void {
    this.socket?.write(lines.length === 1 ? lines[0] + '\r\n' : lines.join('\r\n') + '\r\n');
  }

  end(): void {
    this.socket?.end();
  }

  destroy(): void {
    this.socket?.destroy();
  }

  get bufferedAmount(): number {
    return this.socket?.writableLength ?? 0;
  }
}

export interface NodeWebSocketOptions extends NodeTransportOptions {
  /** Default '/'. */
  path?: string | undefined;
  /** Subprotocols offered; default [WS_SUBPROTOCOL]. */
  protocols?: string[] | undefined;
  /** Origin header of the handshake; none by default. */
  origin?: string | undefined;
}

export class NodeWebSocketTransport implements IrcTransport {
  private ws: WebSocket | null = null;

  constructor(private readonly opts: NodeWebSocketOptions) {}

  open(h: TransportHandler): void {
    if (this.ws !== null) throw new Error('transport already opened');
    const { host, port, path, localAddress, protocols, origin } = this.opts;
    const ws = new WebSocket(wsUrl(host, port, path), protocols ?? WS_SUBPROTOCOL, {
      perMessageDeflate: false,
      ...(localAddress !== undefined ? { localAddress } : {}),
      ...(origin !== undefined ? { origin } : {}),
    });
    this.ws = ws;
    ws.on('open', () => {
      rawSocketOf(ws)?.setNoDelay(true);
      h.onOpen();
    });
    ws.on('message', (data: WebSocket.RawData) => {
      const line = frameLine(textOf(data));
      if (line !== '') h.onLine(line);
    });
    ws.on('error', (err) => h.onError(err));
    ws.on('close', () => h.onClose());
  }

  write(lines: readonly string[]): void {
    const ws = this.ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) return;
    // ws corks per frame; an outer cork turns the whole batch of frames into one writev.
    const raw = lines.length > 1 ? rawSocketOf(ws) : undefined;
    raw?.cork();
    for (let i = 0; i < lines.length; i++) ws.send(lines[i] as string);
    raw?.uncork();
  }

  end(): void {
    this.ws?.close(1000);
  }

  destroy(): void {
    this.ws?.terminate();
  }

  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }
}

function textOf(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** ws keeps its net.Socket private; used only to cork and set TCP_NODELAY. */
function rawSocketOf(ws: WebSocket): net.Socket | undefined {
  const s = (ws as unknown as { _socket?: unknown })._socket;
  return s instanceof net.Socket ? s : undefined;
}
