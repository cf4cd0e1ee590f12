/**
 * Several chat nodes in one process on in-memory backends (one MemoryHub bus, one shared
 * MemoryClusterData, one MemoryStore), with clients that speak IRC lines through a fake transport.
 * Everything is waited on by promises resolved from the nodes' own output: no polling, no sleeps.
 */
import { pino } from 'pino';
import { parseLine, type IrcMessage } from '@parley/protocol';
import { MemoryBroker, MemoryHub } from '../../../packages/server/src/cluster/broker-memory.js';
import { MemoryClusterData, MemoryClusterState } from '../../../packages/server/src/cluster/state-memory.js';
import { ClusterConfigSchema, type ClusterConfig } from '../../../packages/server/src/config.js';
import { COMMANDS } from '../../../packages/server/src/core/commands/table.js';
import { ChatNode, type NodeOptions } from '../../../packages/server/src/core/node.js';
import { BacklogAdmission } from '../../../packages/server/src/core/admission.js';
import { QosAdmission } from '../../../packages/server/src/qos/admission.js';
import { MemoryTokenBuckets } from '../../../packages/server/src/qos/buckets.js';
import { MemoryQosCounters } from '../../../packages/server/src/qos/counters.js';
import { QosDirectory } from '../../../packages/server/src/qos/directory.js';
import { QosOutcomes } from '../../../packages/server/src/qos/outcomes.js';
import type { Session, Transport } from '../../../packages/server/src/core/session.js';
import { Metrics } from '../../../packages/server/src/metrics.js';
import { MemoryStore } from '../../../packages/server/src/store/memory-store.js';
import { MemoryAccountStore } from '../../../packages/server/src/accounts/store-memory.js';

export const ALL_CAPS = ['message-tags', 'server-time', 'echo-message', 'batch', 'labeled-response', 'draft/chathistory'];

const silent = pino({ level: 'silent' });

export class TestCluster {
  readonly hub = new MemoryHub();
  readonly data = new MemoryClusterData();
  readonly store = new MemoryStore();
  /** the cluster's accounts, shared by every node */
  readonly accounts = new MemoryAccountStore();
  readonly nodes: ChatNode[] = [];
  private readonly clients: TestClient[] = [];

  static async start(instances = 2, config: Record<string, unknown> = {}): Promise<TestCluster> {
    const c = new TestCluster();
    for (let i = 0; i < instances; i++) await c.addNode(`n${i + 1}`, config);
    return c;
  }

  /**
   * QoS on memory backends, shared by every node added after it (so "cluster-wide"): one
   * directory (classes and rooms put in by the test; `shardOf` gives rooms a shard), one set of
   * buckets on a clock the test may drive, one counter store.
   */
  qos: TestQos | null = null;

  enableQos(nowUs?: () => number): TestQos {
    const shardOf = new Map<string, number>();
    const shardClass = new Map<number, string>();
    const directory = new QosDirectory({ pinnedShard: (r) => shardOf.get(r), shardClass: (id) => shardClass.get(id) });
    this.qos = { directory, shardOf, shardClass, buckets: new MemoryTokenBuckets(nowUs), counters: new MemoryQosCounters() };
    return this.qos;
  }

  async addNode(id: string, config: Record<string, unknown> = {}): Promise<ChatNode> {
    const metrics = new Metrics();
    const extra: Partial<NodeOptions> = {};
    const q = this.qos;
    if (q) {
      extra.admission = new QosAdmission({
        directory: q.directory, buckets: q.buckets, log: silent,
        backlog: new BacklogAdmission(this.store, () => node.config.limits.storeBacklog),
        metrics: { failOpen: (n) => metrics.qosFailOpen.inc(n), took: (s) => metrics.qosTake.observe(s) },
      });
      extra.outcomes = new QosOutcomes(q.directory, q.counters, (shard) => metrics.shardSeries(shard));
    }
    const node: ChatNode = new ChatNode({
      instanceId: id, serverName: `${id}.test`, config: ClusterConfigSchema.parse(config) as ClusterConfig,
      state: new MemoryClusterState(this.data), store: this.store, accounts: this.accounts,
      broker: (h) => new MemoryBroker(this.hub, h), commands: COMMANDS, metrics, log: silent,
      ...extra,
    });
    await node.start();
    this.nodes.push(node);
    return node;
  }

  node(i: number): ChatNode {
    const n = this.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  /** A connected, unregistered client of node `i`. */
  raw(i: number): TestClient {
    const c = new TestClient(this.node(i));
    this.clients.push(c);
    return c;
  }

  /** A registered client of node `i` with the given caps (all by default). */
  async client(i: number, nick: string, caps: string[] = ALL_CAPS): Promise<TestClient> {
    const c = this.raw(i);
    await c.register(nick, caps);
    return c;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.hangUp();
    for (const n of this.nodes) {
      await n.close();
      await n.bus.close();
    }
  }
}

export interface TestQos {
  directory: QosDirectory;
  /** room → shard, as the store's shard map would pin them */
  shardOf: Map<string, number>;
  /** shard → its class name */
  shardClass: Map<number, string>;
  buckets: MemoryTokenBuckets;
  counters: MemoryQosCounters;
}

type Waiter = { pred: (m: IrcMessage) => boolean; resolve: (m: IrcMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

let labels = 0;

/** A client on a fake transport: it records every line the node writes to it. */
export class TestClient {
  readonly session: Session;
  readonly lines: string[] = [];
  readonly messages: IrcMessage[] = [];
  closed = false;
  destroyed = false;
  /** what bufferedBytes() reports: a test sets it to play a client that does not read */
  buffered = 0;
  private waiters: Waiter[] = [];
  private closeWaiters: (() => void)[] = [];

  constructor(readonly node: ChatNode) {
    const transport: Transport = {
      kind: 'tcp',
      remoteAddress: '127.0.0.1',
      writeLines: (lines) => {
        for (const l of lines) this.receive(l);
      },
      bufferedBytes: () => this.buffered,
      close: () => this.markClosed(),
      destroy: () => {
        this.destroyed = true;
        this.markClosed();
      },
    };
    this.session = node.connect(transport);
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.closeWaiters.splice(0)) w();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection closed while waiting; last lines:\n${this.lines.slice(-5).join('\n')}`));
    }
  }

  private receive(line: string): void {
    this.lines.push(line);
    const m = parseLine(line);
    this.messages.push(m);
    for (const w of [...this.waiters]) {
      if (!w.pred(m)) continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      clearTimeout(w.timer);
      w.resolve(m);
    }
  }

  send(line: string): void {
    this.node.onLine(this.session, line);
  }

  /** The next message (from now on) matching `pred`; rejects after `ms` with what was seen. */
  next(pred: (m: IrcMessage) => boolean, ms = 2000): Promise<IrcMessage> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new Error('connection closed'));
        return;
      }
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no matching message within ${ms} ms; last lines:\n${this.lines.slice(-8).join('\n')}`));
      }, ms);
      const w: Waiter = { pred, resolve, reject, timer };
      this.waiters.push(w);
    });
  }

  /** A message seen already or arriving later. */
  seen(pred: (m: IrcMessage) => boolean, ms = 2000): Promise<IrcMessage> {
    const m = this.messages.find(pred);
    return m ? Promise.resolve(m) : this.next(pred, ms);
  }

  /** Resolves when the server closes the connection. */
  get closedP(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((r) => this.closeWaiters.push(r));
  }

  /**
   * Sends `line` with a label and resolves with the whole labeled response (IRCv3
   * labeled-response: an ACK, one labeled line, or a labeled batch): the lines, label and batch
   * framing removed.
   */
  async cmd(line: string): Promise<IrcMessage[]> {
    const label = `L${++labels}`;
    const first = this.next((m) => m.tags.label === label);
    this.send(line.startsWith('@') ? `@label=${label};${line.slice(1)}` : `@label=${label} ${line}`);
    const head = await first;
    if (head.command === 'ACK') return [];
    if (head.command !== 'BATCH') return [head];
    const id = (head.params[0] ?? '').slice(1);
    const start = this.messages.indexOf(head);
    await this.seen((m) => m.command === 'BATCH' && m.params[0] === `-${id}`);
    const body = this.messages.slice(start + 1).filter((m) => m.tags.batch === id);
    return head.params[1] === 'labeled-response' ? body : [head, ...body];
  }

  async register(nick: string, caps: string[]): Promise<void> {
    if (caps.length) this.send(`CAP REQ :${caps.join(' ')}`);
    this.send(`NICK ${nick}`);
    this.send('USER u 0 * :Test User');
    if (caps.length) this.send('CAP END');
    const first = await this.seen((m) => m.command === '001' || m.command === '433' || m.command === 'ERROR');
    if (first.command !== '001') throw new Error(`registration of ${nick} failed: ${this.lines.join(' | ')}`);
    await this.seen((m) => m.command === '376' || m.command === '422');
  }

  /** The transport closes (a client that goes away). */
  hangUp(): void {
    if (this.closed) return;
    this.markClosed();
    this.node.disconnected(this.session, 'Connection closed');
  }
}

/** Numerics and commands of a response, for compact assertions. */
export const kinds = (ms: IrcMessage[]): string[] => ms.map((m) => m.command);
