import { type IrcMessage } from '@parley/protocol';
import { IrcClient, type IrcClientOptions } from '@parley/client';
import type { Connection, Driver, DriverSink, OpenSpec } from './driver.js';

/*
 * Parley, or another IRC server (kind 'irc': the benchmark's InspIRCd peer), through the project's
 * own IRC client. Every PRIVMSG carries `label=<g in base 36>` (labeled-response), so the echo
 * (echo-message: the acknowledgement; Parley sends it once the message is durable, a server
 * without persistence once it is relayed), a FAIL or an error numeric names the exact message it
 * answers. The server must offer echo-message, labeled-response, batch and message-tags.
 */

/**
 * InspIRCd 3 (Debian's) predates the IRCv3 WebSocket subprotocol names: it answers only its own
 * `text.inspircd.org` / `binary.inspircd.org`, and refuses a handshake without an Origin header.
 */
const PEER_WS = { wsProtocols: ['text.ircv3.net', 'text.inspircd.org'], origin: 'http://127.0.0.1' };

/** JOIN lines stay well under the 512-byte limit. */
const JOIN_LINE_CHARS = 400;

class IrcConnection implements Connection {
  constructor(private readonly c: IrcClient) {}

  async join(rooms: readonly string[]): Promise<void> {
    const chunks: string[][] = [[]];
    let len = 0;
    for (const r of rooms) {
      const last = chunks[chunks.length - 1] as string[];
      if (len + r.length + 1 > JOIN_LINE_CHARS && last.length > 0) {
        chunks.push([r]);
        len = r.length;
      } else {
        last.push(r);
        len += r.length + 1;
      }
    }
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      const res = await this.c.request(`JOIN ${chunk.join(',')}`);
      const joined = new Set(res.filter((m) => m.command === 'JOIN').map((m) => (m.params[0] ?? '').toLowerCase()));
      const missing = chunk.filter((r) => !joined.has(r.toLowerCase()));
      if (missing.length > 0) {
        const why = res.find((m) => m.command !== 'JOIN' && /^[45]\d\d$|^FAIL$/.test(m.command));
        throw new Error(`JOIN ${missing[0]} refused${why ? `: ${why.command} ${why.params.slice(1).join(' ')}` : ''}`);
      }
    }
  }

  send(room: string, g: number, text: string): void {
    this.c.send(`@label=${g.toString(36)} PRIVMSG ${room} :${text}`);
  }

  get bufferedAmount(): number {
    return this.c.bufferedAmount;
  }

  destroy(): void {
    this.c.destroy();
  }
}

export function ircDriver(transport: 'tcp' | 'ws', kind: 'parley' | 'irc' = 'parley'): Driver {
  // Another server's WebSocket may want its own subprotocol and an Origin header (InspIRCd 3).
  const peerWs: Partial<IrcClientOptions> = kind === 'irc' && transport === 'ws' ? PEER_WS : {};
  return {
    kind,
    transport,
    async open(spec: OpenSpec, sink: DriverSink): Promise<Connection> {
      const { user } = spec;
      const c = new IrcClient({
        transport,
        host: spec.target.host,
        port: spec.target.port,
        nick: spec.nick,
        keepHistory: false,
        connectTimeoutMs: spec.timeoutMs,
        requestTimeoutMs: Math.max(spec.timeoutMs, 60_000),
        ...(spec.localAddress !== undefined ? { localAddress: spec.localAddress } : {}),
        ...peerWs,
      });
      let reason = '';
      let opened = false;
      let firstError: (Error & { code?: string }) | undefined;
      c.on('error', (err: Error & { code?: string }) => {
        firstError ??= err;
      });
      c.on('message', (msg: IrcMessage) => {
        const cmd = msg.command;
        if (cmd === 'PRIVMSG') {
          const label = msg.tags.label;
          if (label !== undefined) sink.ack(user, parseInt(label, 36), msg.tags.msgid ?? '');
          else if ((msg.params[0] ?? '').charCodeAt(0) === 35 /* # */) sink.deliver(user, msg.params[0] as string, msg.params[1] ?? '', msg.tags.msgid ?? '');
          return;
        }
        const label = msg.tags.label;
        if (cmd === 'FAIL') {
          if (label !== undefined && msg.params[0] === 'PRIVMSG') sink.refused(user, parseInt(label, 36), msg.params[1] ?? 'FAIL');
        } else if (cmd === 'ACK') {
          if (label !== undefined) sink.ack(user, parseInt(label, 36), '');
        } else if (cmd === 'ERROR') {
          reason = msg.params[0] ?? 'ERROR';
        } else if (label !== undefined && cmd.length === 3 && (cmd[0] === '4' || cmd[0] === '5')) {
          sink.failed(user, parseInt(label, 36), cmd);
        }
      });
      c.on('close', (err) => {
        if (opened) sink.closed(user, reason || err?.message || '');
      });
      try {
        await c.connect();
      } catch (err) {
        c.destroy();
        const e = err as Error & { code?: string };
        // The socket error (ECONNREFUSED ...) says more than "closed before registration".
        if (firstError?.code !== undefined) throw firstError;
        if (kind === 'irc' && transport === 'ws' && /subprotocol|Unexpected server response: 400/.test(firstError?.message ?? e.message)) {
          throw new Error(`${firstError?.message ?? e.message}: this IRC server's WebSocket wants a subprotocol or Origin header the client did not offer (IrcClient options wsProtocols, origin)`);
        }
        throw e;
      }
      opened = true;
      if (c.closed) sink.closed(user, reason || 'closed');
      return new IrcConnection(c);
    },
  };
}
