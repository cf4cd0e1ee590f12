import type { Logger } from 'pino';
import { LineError, eventMsgid, formatMsgid, formatServerTime, parseLine, serializeTags } from '@parley/protocol';
import type { IrcMessage } from '@parley/protocol';
import type { ClusterConfig } from '../config.js';
import type { Broker } from '../cluster/broker.js';
import type { ClusterState } from '../cluster/state.js';
import type { MessageStore } from '../store/store.js';
import type { Metrics } from '../metrics.js';
import { batchPrefix, decodeBatch, encodeBatch, topics, type Envelope } from './envelope.js';
import { Outgoing } from './outgoing.js';
import { LocalRoom } from './room.js';
import { Session, type Transport } from './session.js';
import { Reply } from './reply.js';
import { COMMANDS, NON_BLOCKING, PRE_REGISTRATION } from './commands.js';
import { Cap } from './caps.js';
import { N } from '@parley/protocol';

export interface NodeOptions {
  instanceId: string;
  serverName: string;
  config: ClusterConfig;
  state: ClusterState;
  store: MessageStore;
  metrics: Metrics;
  log: Logger;
  /** bytes a client may have queued in its socket before it is dropped as too slow */
  maxSendQueueBytes?: number;
}

/** How long an unregistered connection may take to register. */
const REGISTRATION_TIMEOUT_MS = 60_000;
/** Lines a connection may have waiting behind a slow command before it counts as a flood. */
const MAX_QUEUED_LINES = 4096;

/**
 * The chat core of one instance. The network layer hands it connections and lines; it keeps the
 * local sessions and rooms, talks to the cluster state, store and broker, and delivers what
 * other instances publish. It never touches a socket directly: sessions write through their
 * transport.
 */
export class ChatNode {
  readonly id: string;
  readonly serverName: string;
  config: ClusterConfig;
  readonly state: ClusterState;
  readonly store: MessageStore;
  readonly metrics: Metrics;
  readonly log: Logger;
  broker!: Broker;
  readonly sessions = new Set<Session>();
  /** registered local users by lower-case nick */
  readonly nicks = new Map<string, Session>();
  readonly rooms = new Map<string, LocalRoom>();
  readonly startedAt = Date.now();
  readonly maxSendQueueBytes: number;
  draining = false;
  private readonly ownTag: string;

  private flushQueue: Session[] = [];
  private readonly outbox = new Map<string, string[]>();
  private outboxScheduled = false;
  /** QUIT clean-ups in flight; shutdown waits for them */
  private readonly releasing = new Set<Promise<void>>();
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  readonly stats = { messagesIn: 0, deliveries: 0, stored: 0 };

  constructor(opts: NodeOptions) {
    this.id = opts.instanceId;
    this.serverName = opts.serverName;
    this.config = opts.config;
    this.state = opts.state;
    this.store = opts.store;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.maxSendQueueBytes = opts.maxSendQueueBytes ?? 8 * 1024 * 1024;
    this.ownTag = batchPrefix(this.id);
  }

  setBroker(b: Broker): void {
    this.broker = b;
  }

  async start(): Promise<void> {
    await this.broker.subscribe(topics.all);
    this.sweepTimer = setInterval(() => this.sweep(), 5000);
    this.sweepTimer.unref();
  }

  applyConfig(cfg: ClusterConfig): void {
    this.config = cfg;
  }

  // ---- connections -------------------------------------------------------------------------

  connect(t: Transport): Session {
    const s = new Session(t, this, this.config.flood.burst);
    this.sessions.add(s);
    this.metrics.connections.inc({ transport: t.kind });
    return s;
  }

  scheduleFlush(s: Session): void {
    this.flushQueue.push(s);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const q = this.flushQueue;
    this.flushQueue = [];
    let lines = 0;
    for (const s of q) {
      lines += s.pending;
      const buffered = s.flush();
      if (buffered > this.maxSendQueueBytes) this.drop(s, 'SendQ exceeded', 'sendq');
    }
    this.metrics.linesOut.inc(lines);
  };

  /** A line arrived from a client. Never throws: every problem becomes a reply. */
  onLine(s: Session, line: string): void {
    if (s.closed) return;
    this.metrics.linesIn.inc();
    s.lastActivity = Date.now();
    s.pingSent = false;
    if (!this.takeToken(s)) {
      this.drop(s, 'Excess Flood', 'flood');
      return;
    }
    let msg: IrcMessage;
    try {
      msg = parseLine(line, { maxBodyBytes: this.config.limits.lineBytes, maxTagBytes: this.config.limits.tagBytes });
    } catch (err) {
      if (err instanceof LineError) this.lineError(s, err);
      else this.log.error({ err }, 'parser failure');
      return;
    }
    this.dispatch(s, msg);
  }

  /** A line the transport could not even decode (too long, bad UTF-8). */
  lineError(s: Session, err: LineError): void {
    if (s.closed) return;
    this.metrics.protocolErrors.inc({ code: err.code });
    if (!this.takeToken(s)) {
      this.drop(s, 'Excess Flood', 'flood');
      return;
    }
    switch (err.code) {
      case 'EMPTY':
        return;
      case 'TOO_LONG':
      case 'TAGS_TOO_LONG':
        this.numeric(s, N.ERR_INPUTTOOLONG, 'Input line was too long');
        return;
      case 'BAD_ENCODING':
        s.write(`:${this.serverName} FAIL * INVALID_UTF8 :Message rejected, your message contained invalid UTF-8`);
        return;
      default:
        s.write(`:${this.serverName} FAIL * INVALID_MESSAGE :Malformed line`);
    }
  }

  private takeToken(s: Session): boolean {
    const f = this.config.flood;
    if (f.linesPerSecond === 0) return true;
    const now = Date.now();
    s.tokens = Math.min(f.burst, s.tokens + ((now - s.tokensAt) * f.linesPerSecond) / 1000);
    s.tokensAt = now;
    if (s.tokens < 1) return false;
    s.tokens -= 1;
    return true;
  }

  private dispatch(s: Session, msg: IrcMessage): void {
    if (s.busy) {
      if (s.queue.length >= MAX_QUEUED_LINES) this.drop(s, 'Excess Flood', 'flood');
      else s.queue.push(msg);
      return;
    }
    this.run(s, msg);
  }

  private run(s: Session, msg: IrcMessage): void {
    const handler = COMMANDS.get(msg.command);
    if (!handler) {
      if (s.registered) this.numeric(s, N.ERR_UNKNOWNCOMMAND, msg.command, 'Unknown command');
      else this.numeric(s, N.ERR_NOTREGISTERED, 'You have not registered');
      return;
    }
    if (!s.registered && !PRE_REGISTRATION.has(msg.command)) {
      this.numeric(s, N.ERR_NOTREGISTERED, 'You have not registered');
      return;
    }
    const label = msg.tags.label;
    const reply = new Reply(s, label !== undefined && s.has(Cap.LabeledResponse) ? label : null, this.serverName);
    let r: void | Promise<void>;
    try {
      r = handler(this, s, msg, reply);
    } catch (err) {
      this.commandFailed(msg, reply, err);
      return;
    }
    if (!r) {
      reply.end();
      return;
    }
    const done = r.then(() => reply.end(), (err: unknown) => this.commandFailed(msg, reply, err));
    if (NON_BLOCKING.has(msg.command)) {
      s.inflight = done;
      return;
    }
    s.busy = true;
    void done.then(() => {
      s.busy = false;
      this.resume(s);
    });
  }

  private resume(s: Session): void {
    while (!s.busy && !s.closed) {
      const next = s.queue.shift();
      if (!next) return;
      this.run(s, next);
    }
  }

  private commandFailed(msg: IrcMessage, reply: Reply, err: unknown): void {
    this.log.error({ err, command: msg.command }, 'command failed');
    reply.send(`:${this.serverName} FAIL ${msg.command} INTERNAL_ERROR :Could not process the command, try again`);
    reply.end();
  }

  numeric(s: Session, code: string, ...params: string[]): void {
    s.write(this.numericLine(s, code, params));
  }

  numericLine(s: Session, code: string, params: string[]): string {
    let line = `:${this.serverName} ${code} ${s.nick}`;
    const last = params.length - 1;
    for (let i = 0; i < last; i++) line += ` ${params[i]}`;
    if (last >= 0) line += ` :${params[last]}`;
    return line;
  }

  /** Closes a connection from the server side with an ERROR line. */
  drop(s: Session, reason: string, metricReason: string): void {
    if (s.closed) return;
    this.metrics.disconnects.inc({ reason: metricReason });
    s.write(`ERROR :Closing Link: ${s.host} (${reason})`);
    s.hangUp();
    this.disconnected(s, reason);
  }

  /** The transport closed (or the server dropped it): leave the cluster cleanly. */
  disconnected(s: Session, reason: string): void {
    if (!this.sessions.delete(s)) return;
    s.closed = true;
    this.metrics.connections.dec({ transport: s.transport.kind });
    if (!s.registered) {
      if (s.nickKey && this.nicks.get(s.nickKey) === s) this.nicks.delete(s.nickKey);
      return;
    }
    this.metrics.users.dec();
    this.nicks.delete(s.nickKey);
    const rooms = [...s.rooms.values()];
    for (const r of rooms) this.leaveLocal(r, s);
    void this.broker.unsubscribe(topics.nick(s.nickKey));
    const line = `:${s.source} QUIT :${reason}`;
    const p = this.state
      .releaseUser(s.nickKey, this.id)
      .then((roomKeys) => this.announceUser(roomKeys, line))
      .catch((err: Error) => this.log.error({ err: err.message, nick: s.nick }, 'releasing a user failed'))
      .finally(() => this.releasing.delete(p));
    this.releasing.add(p);
  }

  // ---- rooms -------------------------------------------------------------------------------

  /** The local room, subscribed to its topic; created on the first local member. */
  async openRoom(key: string, name: string): Promise<LocalRoom> {
    const existing = this.rooms.get(key);
    if (existing) {
      await existing.ready;
      return existing;
    }
    const room = new LocalRoom(key, name, this.countDelivery);
    this.rooms.set(key, room);
    this.metrics.localRooms.inc();
    room.ready = (async () => {
      await this.broker.subscribe(topics.room(key));
      // Subscribed first, then read where the sequence stands, so no message falls in between.
      const [count] = await this.store.counts([key]);
      room.startAt(count?.messages ?? 0);
    })();
    try {
      await room.ready;
    } catch (err) {
      if (this.rooms.get(key) === room && room.members.size === 0) {
        this.rooms.delete(key);
        this.metrics.localRooms.dec();
        void this.broker.unsubscribe(topics.room(key)).catch(() => undefined);
      }
      throw err;
    }
    return room;
  }

  readonly countDelivery = (_out: Outgoing, n: number): void => {
    this.stats.deliveries += n;
    this.metrics.deliveries.inc(n);
  };

  leaveLocal(room: LocalRoom, s: Session): void {
    room.members.delete(s);
    s.rooms.delete(room.key);
    if (room.members.size === 0 && this.rooms.get(room.key) === room) {
      this.rooms.delete(room.key);
      this.metrics.localRooms.dec();
      room.dispose();
      void this.broker.unsubscribe(topics.room(room.key));
    }
  }

  /** Builds a tagged line with fresh time and msgid for a non-history event. */
  event(rest: string): Outgoing {
    return new Outgoing(rest, formatServerTime(Date.now()), eventMsgid(), '');
  }

  /** Publishes a channel event to the other instances and delivers it to local members. */
  channelEvent(roomKey: string, out: Outgoing, leave?: string): void {
    const room = this.rooms.get(roomKey);
    if (room) room.broadcast(out, null);
    const env: Envelope = { k: 'e', o: this.id, r: roomKey, t: out.time, i: out.msgid, l: out.rest, ...(leave ? { leave } : {}) };
    this.publish(topics.room(roomKey), env);
  }

  /** QUIT or NICK: to every local session that shares a room (and `self`), and to the cluster. */
  announceUser(roomKeys: string[], rest: string, self?: Session): void {
    const out = this.event(rest);
    this.deliverUserEvent(roomKeys, out, self);
    this.publish(topics.all, { k: 'u', o: this.id, rooms: roomKeys, t: out.time, i: out.msgid, l: out.rest });
  }

  private deliverUserEvent(roomKeys: string[], out: Outgoing, self?: Session): void {
    const seen = new Set<Session>();
    if (self && !self.closed) {
      seen.add(self);
      self.write(out.lineFor(self.caps));
    }
    for (const key of roomKeys) {
      const room = this.rooms.get(key);
      if (!room) continue;
      for (const m of room.members) {
        if (seen.has(m)) continue;
        seen.add(m);
        m.write(out.lineFor(m.caps));
      }
    }
  }

  /** Queues an envelope for the other instances; the envelopes of one tick leave as one payload per topic. */
  publish(topic: string, env: Envelope): void {
    this.metrics.brokerOut.inc();
    let q = this.outbox.get(topic);
    if (!q) this.outbox.set(topic, (q = []));
    q.push(JSON.stringify(env));
    if (!this.outboxScheduled) {
      this.outboxScheduled = true;
      setImmediate(this.flushOutbox);
    }
  }

  private readonly flushOutbox = (): void => {
    this.outboxScheduled = false;
    for (const [topic, items] of this.outbox) this.broker.publish(topic, encodeBatch(this.id, items));
    this.outbox.clear();
  };

  // ---- messages ----------------------------------------------------------------------------

  /** A stored channel message committed by this instance: deliver locally, publish to others. */
  roomMessageCommitted(roomKey: string, seq: number, out: Outgoing, sender: Session, echo: string | null): void {
    const room = this.rooms.get(roomKey);
    if (room) {
      room.accept(seq, out, sender, echo);
      this.observeFanout(out);
    } else if (echo !== null) {
      sender.write(echo);
    }
    this.publish(topics.room(roomKey), { k: 'm', o: this.id, r: roomKey, q: seq, t: out.time, i: out.msgid, g: out.clientTags, l: out.rest });
  }

  private observeFanout(out: Outgoing): void {
    const t = Date.parse(out.time);
    if (!Number.isNaN(t)) this.metrics.fanoutLatency.observe(Math.max(0, Date.now() - t) / 1000);
  }

  /** Builds the shared line of a stored message. */
  storedLine(room: string, seq: number, time: number, rest: string, clientTags: Record<string, string> | null): Outgoing {
    return new Outgoing(rest, formatServerTime(time), formatMsgid(room, seq), clientTags ? serializeTags(clientTags) : '');
  }

  // ---- from other instances ----------------------------------------------------------------

  onBrokerMessage(topic: string, payload: string): void {
    // Our own payloads (already delivered locally) are dropped before decoding.
    if (payload.startsWith(this.ownTag)) return;
    const batch = decodeBatch(payload);
    if (!batch) {
      this.log.warn({ topic }, 'undecodable message from the broker dropped');
      return;
    }
    for (const env of batch) this.onEnvelope(env);
  }

  private onEnvelope(env: Envelope): void {
    if (env.o === this.id) return;
    this.metrics.brokerIn.inc();
    switch (env.k) {
      case 'm': {
        const room = this.rooms.get(env.r);
        if (!room) return;
        const out = new Outgoing(env.l, env.t, env.i, env.g);
        room.accept(env.q, out, null, null);
        this.observeFanout(out);
        return;
      }
      case 'd': {
        const s = this.nicks.get(env.to);
        if (!s) return;
        const out = new Outgoing(env.l, env.t, env.i, env.g);
        s.write(out.lineFor(s.caps));
        this.countDelivery(out, 1);
        return;
      }
      case 'e': {
        const room = this.rooms.get(env.r);
        if (!room) return;
        room.broadcast(new Outgoing(env.l, env.t, env.i, ''), null);
        if (env.leave) {
          const s = this.nicks.get(env.leave);
          if (s && room.members.has(s)) this.leaveLocal(room, s);
        }
        return;
      }
      case 'u':
        this.deliverUserEvent(env.rooms, new Outgoing(env.l, env.t, env.i, ''));
        return;
    }
  }

  // ---- cluster membership ------------------------------------------------------------------

  /**
   * Another instance is gone (its lease expired or it stopped without cleaning up). One instance
   * wins the right to clean up: its users leave their channels with a QUIT everyone sees.
   */
  async reapInstance(inst: string): Promise<void> {
    if (inst === this.id) return;
    if (!(await this.state.claimReap(inst))) return;
    await this.releaseInstanceUsers(inst);
  }

  /**
   * At start, before serving: users that a previous process with this same instance id left in
   * the cluster state (it was killed) are not connected any more; release them.
   */
  async recoverOwnId(): Promise<void> {
    await this.releaseInstanceUsers(this.id);
  }

  private async releaseInstanceUsers(inst: string): Promise<void> {
    const nicks = await this.state.instanceUsers(inst);
    this.log.info({ instance: inst, users: nicks.length }, 'cleaning up after a lost instance');
    for (const nick of nicks) {
      const u = await this.state.getUser(nick);
      const rooms = await this.state.releaseUser(nick, inst);
      if (u) this.announceUser(rooms, `:${u.nick}!${u.user}@${u.host} QUIT :*.net *.split`);
    }
    await this.state.forgetInstance(inst);
  }

  /**
   * After this instance lost its lease (cut off from etcd), the others may have released its
   * users. Puts every local user back into the cluster state; one whose nick was taken meanwhile
   * is told to reconnect.
   */
  async reassert(): Promise<void> {
    // A clean-up of this instance still running would release what is put back now: let it finish.
    for (let i = 0; i < 100 && (await this.state.reapInProgress(this.id)); i++) await new Promise((r) => setTimeout(r, 100));
    await this.state.addInstance(this.id);
    for (const s of [...this.nicks.values()]) {
      if (s.closed) continue;
      if (!(await this.reclaimNick(s))) {
        this.drop(s, 'Nick taken during a network split, please reconnect', 'split');
        continue;
      }
      for (const room of s.rooms.values()) await this.state.join(room.key, room.name, s.nick, this.config.limits.channelsPerUser);
    }
  }

  /**
   * Claims a local user's nick again. A reaper may be releasing it at the same moment (the claim
   * finds it still held, then it is gone), so a vanished holder means: try again.
   */
  private async reclaimNick(s: Session): Promise<boolean> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const claimed = await this.state.claimNick({
        nick: s.nick, user: s.user, host: s.host, realname: s.realname, inst: this.id,
        server: this.serverName, away: s.away, signon: s.connectedAt,
      });
      if (claimed) return true;
      const holder = await this.state.getUser(s.nick);
      if (holder?.inst === this.id) return true;
      if (holder) return false;
    }
    return false;
  }

  // ---- housekeeping ------------------------------------------------------------------------

  private sweep(): void {
    const now = Date.now();
    const interval = this.config.pingIntervalSeconds * 1000;
    for (const s of this.sessions) {
      if (!s.registered) {
        if (now - s.connectedAt > REGISTRATION_TIMEOUT_MS) this.drop(s, 'Registration timeout', 'registration');
        continue;
      }
      const idle = now - s.lastActivity;
      if (idle > 2 * interval) this.drop(s, `Ping timeout: ${Math.round(idle / 1000)} seconds`, 'ping');
      else if (idle > interval && !s.pingSent) {
        s.pingSent = true;
        s.write(`PING :${this.serverName}`);
      }
    }
  }

  /** Stops accepting work: every client is told to reconnect and disconnected. */
  async close(): Promise<void> {
    this.draining = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const s of [...this.sessions]) this.drop(s, 'Server shutting down, please reconnect', 'shutdown');
    await Promise.allSettled([...this.releasing]);
  }
}
