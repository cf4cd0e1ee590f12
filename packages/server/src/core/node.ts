import { EventEmitter } from 'node:events';
import type { LineError, StsPolicy } from '@parley/protocol';
import type { Logger } from 'pino';
import { AccountService } from '../accounts/service.js';
import type { AccountStore } from '../accounts/store.js';
import type { ClusterConfig } from '../config.js';
import type { ClusterState } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { MessageStore } from '../store/store.js';
import { BacklogAdmission, type Admission, type MessageOutcomes } from './admission.js';
import { ClusterBus, type BrokerFactory, type BusListener, type PeerEnvelope } from './bus.js';
import type { CommandContext, CommandTable } from './context.js';
import { Dispatcher } from './dispatcher.js';
import { Messaging } from './messaging.js';
import { failLine, numericLine, type FailSpec, type NumericSpec } from './replies.js';
import type { Responder } from './reply.js';
import { Rooms, type NodeStats } from './rooms.js';
import { Session, type Transport } from './session.js';
import { Users } from './users.js';

/** The backends and settings a node is assembled from (real ones, or in-memory ones in tests). */
export interface NodeOptions {
  instanceId: string;
  serverName: string;
  config: ClusterConfig;
  state: ClusterState;
  store: MessageStore;
  /** the cluster's accounts (PostgreSQL; in memory in unit tests) */
  accounts: AccountStore;
  broker: BrokerFactory;
  commands: CommandTable;
  metrics: Metrics;
  log: Logger;
  /** the write-admission seam; default: refuse above `limits.storeBacklog` waiting messages */
  admission?: Admission;
  /** what became of each message (cluster-wide QoS counters); default: not counted */
  outcomes?: MessageOutcomes;
  /** bytes a client may have queued in its socket before it is dropped as too slow */
  maxSendQueueBytes?: number;
}

/** How long an unregistered connection may take to register. */
const REGISTRATION_TIMEOUT_MS = 60_000;
/** After a server-side close, how long the peer has to take the last lines before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000;

/**
 * One instance's chat core, assembled from its parts: the dispatcher (line → command), rooms,
 * users, the message path and the cluster bus. The network layer hands it connections and lines;
 * it never touches a socket (sessions write through their transport) and knows no command: the
 * command table is given to it.
 */
export class ChatNode implements CommandContext, BusListener {
  readonly id: string;
  readonly serverName: string;
  config: ClusterConfig;
  readonly state: ClusterState;
  readonly store: MessageStore;
  readonly history: MessageStore;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly bus: ClusterBus;
  readonly rooms: Rooms;
  readonly users: Users;
  readonly messages: Messaging;
  readonly accounts: AccountService;
  readonly sessions = new Set<Session>();
  readonly startedAt = Date.now();
  readonly stats: NodeStats = { messagesIn: 0, deliveries: 0, stored: 0 };
  draining = false;
  /** set by the server once it serves IRC over TLS: the `sts` capability advertised */
  sts: StsPolicy | null = null;
  /** 'resynced': after the bus came back, every room caught up and the local users are back */
  readonly events = new EventEmitter<{ resynced: [] }>();
  private readonly dispatcher: Dispatcher;
  private readonly maxSendQueueBytes: number;
  private flushQueue: Session[] = [];
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(o: NodeOptions) {
    this.id = o.instanceId;
    this.serverName = o.serverName;
    this.config = o.config;
    this.state = o.state;
    this.store = this.history = o.store;
    this.metrics = o.metrics;
    this.log = o.log;
    this.maxSendQueueBytes = o.maxSendQueueBytes ?? 8 * 1024 * 1024;
    this.bus = new ClusterBus({ instanceId: o.instanceId, broker: o.broker, listener: this, metrics: o.metrics, log: o.log });
    this.rooms = new Rooms({ bus: this.bus, store: o.store, metrics: o.metrics, log: o.log, stats: this.stats });
    this.accounts = new AccountService(o.accounts);
    this.users = new Users({
      instanceId: o.instanceId, serverName: o.serverName, state: o.state, bus: this.bus, rooms: this.rooms,
      metrics: o.metrics, log: o.log, config: () => this.config,
      accounts: this.accounts, drop: (s, reason) => this.drop(s, reason, 'killed'),
    });
    this.messages = new Messaging({
      serverName: o.serverName, state: o.state, store: o.store, rooms: this.rooms, users: this.users, bus: this.bus,
      metrics: o.metrics, log: o.log, stats: this.stats,
      admission: o.admission ?? new BacklogAdmission(o.store, () => this.config.limits.storeBacklog),
      outcomes: o.outcomes,
    });
    this.dispatcher = new Dispatcher(o.commands, this);
  }

  /** Connects the bus (subscribes `all`) and starts the ping sweep. */
  async start(): Promise<void> {
    await this.bus.start();
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
    (t.kind === 'tcp' ? this.metrics.tcpConnections : this.metrics.wsConnections).inc();
    return s;
  }

  /** A line arrived from a client. Never throws: every problem becomes a reply. */
  onLine(s: Session, line: string): void {
    this.dispatcher.line(s, line);
  }

  /** A line the transport could not even decode (too long, bad UTF-8). */
  lineError(s: Session, err: LineError): void {
    this.dispatcher.lineError(s, err);
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

  /**
   * Closes a connection from the server side with an ERROR line. A peer that does not take the
   * last lines within CLOSE_GRACE_MS has its socket destroyed, so it cannot pin memory.
   */
  drop(s: Session, reason: string, metricReason: string): void {
    if (s.closed) return;
    this.metrics.disconnects.inc({ reason: metricReason });
    s.write(`ERROR :Closing Link: ${s.host} (${reason})`);
    if (metricReason === 'sendq') {
      // Its queue is full already: nothing more will get through.
      s.hangUp(false);
    } else {
      s.hangUp(true);
      setTimeout(() => s.transport.destroy(), CLOSE_GRACE_MS).unref();
    }
    this.disconnected(s, reason);
  }

  quit(s: Session, reason: string): void {
    s.write(`ERROR :Closing Link: ${s.host} (${reason})`);
    s.hangUp(true);
    this.disconnected(s, reason);
  }

  /** The transport closed (or the server dropped it): leave the cluster cleanly. */
  disconnected(s: Session, reason: string): void {
    if (!this.sessions.delete(s)) return;
    s.closed = true;
    (s.transport.kind === 'tcp' ? this.metrics.tcpConnections : this.metrics.wsConnections).dec();
    this.users.disconnected(s, reason);
  }

  // ---- replies (CommandContext) ------------------------------------------------------------

  num(s: Session, r: Responder, spec: NumericSpec, ...params: string[]): void {
    r.send(numericLine(this.serverName, s.nick, spec, params));
  }

  fail(r: Responder, command: string, spec: FailSpec, context: string[], text?: string): void {
    r.send(failLine(this.serverName, command, spec, context, text));
  }

  // ---- from the bus (BusListener) ----------------------------------------------------------

  envelope(env: PeerEnvelope): void {
    switch (env.k) {
      case 'm':
        this.rooms.remoteMessage(env);
        return;
      case 'd':
        this.users.remoteDirect(env);
        return;
      case 'e': {
        const room = this.rooms.remoteEvent(env);
        if (room && env.leave) {
          const s = this.users.get(env.leave);
          if (s && room.members.has(s)) this.rooms.leave(room, s);
        }
        return;
      }
      case 'u':
        this.users.remoteUserEvent(env);
        return;
      case 'k':
        this.users.remoteKill(env);
        return;
    }
  }

  peerSeq(room: string, seq: number): void {
    this.rooms.catchUpTo(room, seq);
  }

  roomSeq(room: string): number {
    return this.rooms.highestSeq(room);
  }

  resynced(): void {
    // Redis may have restarted without its data: put this instance's users back.
    Promise.all([this.rooms.catchUpAll(), this.reassert()])
      .catch((err: Error) => this.log.error({ err: err.message }, 'recovering after the broker returned failed'))
      .finally(() => this.events.emit('resynced'));
  }

  // ---- cluster membership ------------------------------------------------------------------

  reapInstance(inst: string): Promise<void> {
    return this.users.reapInstance(inst);
  }

  recoverOwnId(): Promise<void> {
    return this.users.recoverOwnId();
  }

  /** Puts every local user back into the cluster state (after a lost lease or a Redis restart). */
  reassert(): Promise<void> {
    return this.users.reassert((s) => this.drop(s, 'Nick taken during a network split, please reconnect', 'split'));
  }

  /** Releases nicks the cluster lists for this instance that no session holds. */
  reconcileUsers(): Promise<number> {
    return this.users.reconcile();
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

  /**
   * Stops serving, in order: every client is told to reconnect and dropped, their nicks are
   * released with QUITs the other instances see, and everything published so far is flushed to
   * the broker. The caller closes the broker afterwards (`bus.close()`).
   */
  async close(): Promise<void> {
    this.draining = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const s of [...this.sessions]) this.drop(s, 'Server shutting down, please reconnect', 'shutdown');
    await this.users.settled();
    await this.bus.flush();
  }
}
