import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The instance's Prometheus metrics, in a registry of its own (several instances may share a process in tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({ name: 'parley_connections', help: 'Open client connections', labelNames: ['transport'] as const, registers: [this.registry] });
  readonly users = new Gauge({ name: 'parley_registered_users', help: 'Registered (welcomed) local users', registers: [this.registry] });
  readonly localRooms = new Gauge({ name: 'parley_local_rooms', help: 'Channels with at least one local member', registers: [this.registry] });
  readonly linesIn = new Counter({ name: 'parley_lines_in_total', help: 'IRC lines received from clients', registers: [this.registry] });
  readonly messagesIn = new Counter({ name: 'parley_messages_in_total', help: 'PRIVMSG/NOTICE accepted from local clients', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly messagesStored = new Counter({ name: 'parley_messages_stored_total', help: 'Messages made durable by this instance', registers: [this.registry] });
  readonly messagesRefused = new Counter({ name: 'parley_messages_refused_total', help: 'Messages refused before storing (store backlog over its limit)', labelNames: ['code'] as const, registers: [this.registry] });
  readonly messagesFailed = new Counter({ name: 'parley_messages_failed_total', help: 'Messages refused because they could not be stored', registers: [this.registry] });
  readonly linesOut = new Counter({ name: 'parley_lines_out_total', help: 'IRC lines written to clients', registers: [this.registry] });
  readonly deliveries = new Counter({ name: 'parley_deliveries_total', help: 'Messages delivered to local recipients (one per recipient)', registers: [this.registry] });
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
  readonly brokerIn = new Counter({ name: 'parley_broker_messages_in_total', help: 'Envelopes received from other instances', registers: [this.registry] });
  readonly brokerOut = new Counter({ name: 'parley_broker_messages_out_total', help: 'Envelopes published to other instances', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
