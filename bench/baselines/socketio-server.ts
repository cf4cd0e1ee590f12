/**
 * Socket.IO baseline: what a team would write instead of Parley. One instance of a Socket.IO
 * server with @socket.io/redis-adapter; run two of them on the same Redis for the two-instance
 * comparison. No database: a message is acknowledged (Socket.IO ack callback) right after it was
 * broadcast to the room (local members written, the envelope published to Redis), not when stored.
 *
 *   node --import tsx bench/baselines/socketio-server.ts --port 0 --redis redis://127.0.0.1:6379 [--id a]
 *
 * Prints one JSON line {"listening":<port>} once it accepts connections; SIGTERM stops it.
 * Events (the same as the load tool's socketio driver):
 *   join (rooms: string[], ack('ok'))
 *   m    (room, text, ack(msgid))   → every other member of the room gets  m (room, text, msgid)
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    id: { type: 'string', default: 'a' },
    key: { type: 'string', default: 'socket.io' },
  },
});

const pub = new Redis(values.redis);
const sub = pub.duplicate();
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 64 * 1024,
  adapter: createAdapter(pub, sub, { key: values.key }),
});

const id = values.id;
let seq = 0;
io.on('connection', (socket) => {
  socket.on('join', (rooms: unknown, ack: unknown) => {
    if (!Array.isArray(rooms) || typeof ack !== 'function') return;
    void socket.join(rooms.map(String));
    ack('ok');
  });
  socket.on('m', (room: unknown, text: unknown, ack: unknown) => {
    if (typeof room !== 'string' || typeof text !== 'string') return;
    const msgid = `${id}-${++seq}`;
    socket.to(room).emit('m', room, text, msgid);
    if (typeof ack === 'function') ack(msgid);
  });
});

httpServer.listen(Number(values.port), values.host, () => {
  const addr = httpServer.address();
  console.log(JSON.stringify({ listening: typeof addr === 'object' && addr ? addr.port : 0 }));
});

const stop = (): void => {
  io.close();
  pub.disconnect();
  sub.disconnect();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
