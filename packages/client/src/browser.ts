// Browser entry of @parley/client: the core client, whose transport 'ws' is the browser's
// WebSocket, and nothing that needs Node. Bundled into the web client.
export * from './client.js';
export * from './transport.js';
export { BrowserWebSocketTransport } from './transport-browser.js';
export type { BrowserWebSocketOptions, WebSocketConstructor, WebSocketLike } from './transport-browser.js';
