/**
 * Bare `ws` broadcast server: the machine's ceiling for one Node process that does nothing but
 * relay WebSocket frames to the members of in-memory rooms, batching each connection's frames of
 * one tick into one write. No Redis, no database, no IRC parsing, one process (one core).
 *
 *   node --import tsx bench/baselines/ws-broadcast.ts --port 0
 *
 * Prints {"listening":<port>}; SIGTERM stops it. Text frames, one message each:
 *   client → server   J <room>,<room>...        join; answered by `J`
 *                     M <room> <text>           send
 *   server → client   D <room> <msgid> <text>   to every other member of the room, then
 *                     A <room> <msgid> <text>   to the sender (its acknowledgement)
 */
import { parseArgs } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const rooms = new Map<string, Set<WebSocket>>();
const joined = new Map<WebSocket, string[]>();
let seq = 0;

// Everything written to one connection in one tick goes out in one write (as Parley does):
// without it each frame is its own syscall and this "ceiling" would be lower than Parley.
const outbox = new Map<WebSocket, string[]>();
let scheduled = false;
function queue(ws: WebSocket, frame: string): void {
  const q = outbox.get(ws);
  if (q) q.push(frame);
  else outbox.set(ws, [frame]);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}
function flush(): void {
  scheduled = false;
  for (const [ws, frames] of outbox) {
    if (ws.readyState !== ws.OPEN) continue;
    const raw = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    raw?.cork();
    for (const f of frames) ws.send(f);
    raw?.uncork();
  }
  outbox.clear();
}

const wss = new WebSocketServer({ port: Number(values.port), host: values.host, perMessageDeflate: false, maxPayload: 64 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer) => {
    const s = data.toString('utf8');
    if (s.startsWith('M ')) {
      const sp = s.indexOf(' ', 2);
      if (sp < 0) return;
      const room = s.slice(2, sp);
      const rest = `${room} ${++seq} ${s.slice(sp + 1)}`;
      const members = rooms.get(room);
      if (members) {
        const out = `D ${rest}`;
        for (const m of members) if (m !== ws) queue(m, out);
      }
      queue(ws, `A ${rest}`);
    } else if (s.startsWith('J ')) {
      const names = s.slice(2).split(',').filter(Boolean);
      for (const name of names) {
        let set = rooms.get(name);
        if (!set) rooms.set(name, (set = new Set()));
        set.add(ws);
      }
      joined.set(ws, [...(joined.get(ws) ?? []), ...names]);
      queue(ws, 'J');
    }
  });
  ws.on('close', () => {
    for (const name of joined.get(ws) ?? []) {
      const set = rooms.get(name);
      set?.delete(ws);
      if (set?.size === 0) rooms.delete(name);
    }
    joined.delete(ws);
  });
  ws.on('error', () => undefined);
});
wss.on('listening', () => {
  const addr = wss.address();
  console.log(JSON.stringify({ listening: typeof addr === 'object' && addr ? addr.port : 0 }));
});

const stop = (): void => {
  for (const c of wss.clients) c.terminate();
  wss.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
