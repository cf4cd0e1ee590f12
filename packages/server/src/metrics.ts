import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * A counter bumped once or more per line, message or delivery: the hot path adds to a plain
 * number, handed to prom-client when the registry is read (a scrape, `get()`), so a message costs
 * no prom-client call (which hashes the empty label set and looks the series up each time).
 */
export class HotCounter {
  private pending = 0;

  constructor(cfg: { name: string; help: string; registers: Registry[] }) {
    const self = this;
    new Counter({
      ...cfg,
      collect(this: Counter) {
        if (self.pending > 0) {
          this.inc(self.pending);
          self.pending = 0;
        }
      },
    });
  }

  inc(n = 1): void {
    this.pending += n;
  }
}

/** The instance's Prometheus metrics, in a registry of its own (several instances may share a process in tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({ name: 'parley_connections', help: 'Open client connections', labelNames: ['transport'] as const, registers: [this.registry] });
  readonly users = new Gauge({ name: 'parley_registered_users', help: 'Registered (welcomed) local users', registers: [this.registry] });
  readonly localRooms = new Gauge({ name: 'parley_local_rooms', help: 'Channels with at least one local member', registers: [this.registry] });
  readonly linesIn = new HotCounter({ name: 'parley_lines_in_total', help: 'IRC lines received from clients', registers: [this.registry] });
  readonly messagesIn = new Counter({ name: 'parley_messages_in_total', help: 'PRIVMSG/NOTICE accepted from local clients', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly messagesStored = new HotCounter({ name: 'parley_messages_stored_total', help: 'Messages made durable by this instance', registers: [this.registry] });
  readonly messagesRefused = new Counter({ name: 'parley_messages_refused_total', help: 'Messages refused before storing (admission: a QoS limit or the store backlog)', labelNames: ['code'] as const, registers: [this.registry] });
  readonly messagesFailed = new Counter({ name: 'parley_messages_failed_total', help: 'Messages refused because they could not be stored', registers: [this.registry] });
  readonly linesOut = new HotCounter({ name: 'parley_lines_out_total', help: 'IRC lines written to clients', registers: [this.registry] });
  readonly deliveries = new HotCounter({ name: 'parley_deliveries_total', help: 'Messages delivered to local recipients (one per recipient)', registers: [this.registry] });
  readonly persistBatchSize = new Histogram({
    name: 'parley_persist_batch_size', help: 'Messages per group commit', registers: [this.registry],
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
  });
  readonly persistLatency = new Histogram({
    name: 'parley_persist_batch_seconds', help: 'Duration of one group commit', registers: [this.registry],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  });
  readonly fanoutLatency = new Histogram({
    name: 'parley_fanout_latency_seconds', help: 'From commit to delivery on this instance', registers: [this.registry],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
  });
  readonly protocolErrors = new Counter({ name: 'parley_protocol_errors_total', help: 'Lines refused (malformed, too long, bad UTF-8)', labelNames: ['code'] as const, registers: [this.registry] });
  readonly disconnects = new Counter({ name: 'parley_disconnects_total', help: 'Connections closed by the server', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly brokerIn = new HotCounter({ name: 'parley_broker_messages_in_total', help: 'Envelopes received from other instances', registers: [this.registry] });
  readonly brokerOut = new HotCounter({ name: 'parley_broker_messages_out_total', help: 'Envelopes published to other instances', registers: [this.registry] });
  readonly busUp = new Gauge({ name: 'parley_bus_up', help: '1 while the broker (Redis pub/sub) is connected', registers: [this.registry] });
  readonly busErrors = new Counter({ name: 'parley_bus_errors_total', help: 'Broker calls that failed and payloads that could not be decoded or handled', registers: [this.registry] });
  readonly busSkipped = new Counter({ name: 'parley_bus_skipped_total', help: 'Stored room messages not published because no other instance has members of the room', registers: [this.registry] });
  readonly busDropped = new Counter({ name: 'parley_bus_dropped_total', help: 'Payloads dropped from the retry outbox (broker unreachable too long); receivers fill from the store', registers: [this.registry] });
  readonly busRetryBytes = new Gauge({ name: 'parley_bus_retry_bytes', help: 'Payload bytes kept for a retry while the broker is unreachable', registers: [this.registry] });
  readonly gapFills = new Counter({ name: 'parley_gap_fills_total', help: 'Messages delivered from the store because they did not arrive from the broker', registers: [this.registry] });
  readonly shardsDown = new Gauge({ name: 'parley_shards_down', help: 'Shards this instance currently treats as down (appends and reads to their rooms fail at once)', registers: [this.registry] });
  readonly lateCommits = new Counter({ name: 'parley_store_late_commits_total', help: 'Messages answered with an error that their shard committed after all (expected 0)', registers: [this.registry] });
  readonly commandErrors = new Counter({ name: 'parley_command_errors_total', help: 'Commands that failed unexpectedly (answered FAIL ... INTERNAL_ERROR or TEMPORARILY_UNAVAILABLE)', labelNames: ['command'] as const, registers: [this.registry] });
  readonly shardMessages = new Counter({
    name: 'parley_shard_messages_total', help: 'Messages sent through this instance, by the shard of their room (unknown: not resolved yet) and outcome: accepted (stored), refused_qos, refused_backlog, failed (store failure)',
    labelNames: ['shard', 'outcome'] as const, registers: [this.registry],
  });
  readonly qosFailOpen = new Counter({ name: 'parley_qos_fail_open_total', help: 'Messages admitted without a QoS check because the QoS buckets (Redis) did not answer', registers: [this.registry] });
  readonly qosTake = new Histogram({
    name: 'parley_qos_take_seconds', help: 'One QoS round trip to Redis (tokens of every limited room of one tick)', registers: [this.registry],
    buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
  });
  readonly uncaughtErrors = new Counter({ name: 'parley_uncaught_errors_total', help: 'Errors that reached the process-level handlers (unhandled rejections, uncaught exceptions)', labelNames: ['kind'] as const, registers: [this.registry] });

  // Label children of the hot path, looked up once.
  readonly privmsgIn = this.messagesIn.labels('PRIVMSG');
  readonly noticeIn = this.messagesIn.labels('NOTICE');
  readonly tcpConnections = this.connections.labels('tcp');
  readonly wsConnections = this.connections.labels('ws');

  private readonly shardSeriesCache = new Map<number | null, { shard: number | null; counters: Counter.Internal[] }>();

  /** The label children of `parley_shard_messages_total` for one shard, in QOS_COUNTERS order; created once per shard. */
  shardSeries(shard: number | null): { shard: number | null; counters: Counter.Internal[] } {
    let s = this.shardSeriesCache.get(shard);
    if (!s) {
      const label = shard === null ? 'unknown' : String(shard);
      s = { shard, counters: ['accepted', 'refused_qos', 'refused_backlog', 'failed'].map((o) => this.shardMessages.labels(label, o)) };
      this.shardSeriesCache.set(shard, s);
    }
    return s;
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.uncaughtErrors.labels('rejection').inc(0);
    this.uncaughtErrors.labels('exception').inc(0);
  }
}
