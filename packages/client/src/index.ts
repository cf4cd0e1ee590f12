// Node entry of @parley/client. Browser code imports '@parley/client/browser' instead.
export * from './client.js';
export * from './transport.js';
export { IrcClient } from './node.js';
export { TcpTransport, NodeWebSocketTransport } from './node-transports.js';
export type { NodeTransportOptions, NodeWebSocketOptions } from './node-transports.js';
export { BrowserWebSocketTransport } from './transport-browser.js';
export type { BrowserWebSocketOptions, WebSocketConstructor, WebSocketLike } from './transport-browser.js';
