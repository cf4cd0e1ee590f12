/**
 * How IrcClient reaches a server: one connection, lines in and lines out. The client is the same
 * everywhere; the transport is what differs (TCP and `ws` in Node, the browser's WebSocket, or an
 * in-process fake in tests). Implementations: `TcpTransport` and `NodeWebSocketTransport`
 * (`node-transports.ts`, Node only), `BrowserWebSocketTransport` (`transport-browser.ts`, any
 * runtime with a WHATWG WebSocket).
 */

/** What a transport reports to its client, synchronously from its I/O callbacks. */
export interface TransportHandler {
  /** The connection is open: `write` delivers from now on. */
  onOpen(): void;
  /** One line from the server, decoded, without CR/LF. Never called with ''. */
  onLine(line: string): void;
  /** A line that could not be read (invalid UTF-8, too long); the connection goes on. */
  onLineError(err: Error): void;
  /** The connection failed or broke (refused, reset, ...); `onClose` follows. */
  onError(err: Error): void;
  /** The connection is gone, whatever the cause; called exactly once, after `open`. */
  onClose(): void;
}

/**
 * One connection. Single use: the client calls `open` once, `write` only between `onOpen` and
 * `onClose`, and `end` or `destroy` at most until `onClose`. Neither `write` nor the handler calls
 * may allocate per line beyond the line itself (the client's hot-path rule).
 */
export interface IrcTransport {
  /** Starts connecting; every outcome is reported to `handler`, never thrown later. */
  open(handler: TransportHandler): void;
  /** Sends lines (no CR/LF) in as few writes as the medium allows (TCP: one). */
  write(lines: readonly string[]): void;
  /** Closes gracefully: what was written goes out first, then `onClose`. */
  end(): void;
  /** Drops the connection at once (also while connecting); `onClose` follows. */
  destroy(): void;
  /** Bytes written and not yet sent (back-pressure for the load tool). */
  readonly bufferedAmount: number;
}

/** Names of the built-in transports, for `IrcClientOptions.transport`. */
export type TransportName = 'tcp' | 'ws';

/** IRCv3 WebSocket binding: the text subprotocol, one line per frame. */
export const WS_SUBPROTOCOL = 'text.ircv3.net';

/** `ws://host:port/path`, with brackets around an IPv6 host. */
export function wsUrl(host: string, port: number, path = '/'): string {
  return `ws://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
}

/**
 * A frame's text as one line: the binding forbids CR/LF in frames, but a trailing CRLF or LF from
 * a lax server is tolerated.
 */
export function frameLine(text: string): string {
  if (text.charCodeAt(text.length - 1) !== 10) return text;
  return text.slice(0, text.charCodeAt(text.length - 2) === 13 ? -2 : -1);
}
