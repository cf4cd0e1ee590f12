import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

/**
 * The process-level policy for errors nobody caught. Every promise in the server is awaited or
 * has a `catch`; what slips through anyway is logged with its stack and counted in
 * `parley_uncaught_errors_total{kind}` (a test asserts it stays 0 under faults), so it is found
 * and fixed rather than hidden.
 *
 * - An unhandled rejection leaves no half-done synchronous state behind: log, count, carry on.
 * - An uncaught exception from an operational fault (a socket or backend error surfacing as an
 *   'error' without a listener: ECONNRESET, EPIPE, ...) is logged, counted and survived: a fault
 *   in a shared service degrades an instance, never ends it.
 * - Any other uncaught exception is a bug that may have left state inconsistent: log, count and
 *   exit(70) so the supervisor restarts a clean process.
 *
 * Several servers may share a process (tests): the handlers are installed once and count into
 * every registered server's metrics.
 */
const guarded = new Map<Metrics, Logger>();
let installed = false;

const OPERATIONAL_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN', 'ECONNABORTED',
  'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_SOCKET_CLOSED',
]);

export function isOperational(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && OPERATIONAL_CODES.has(code);
}

function report(kind: 'rejection' | 'exception', err: unknown): void {
  for (const [metrics, log] of guarded) {
    metrics.uncaughtErrors.inc({ kind });
    log.error({ err, kind }, kind === 'rejection' ? 'unhandled promise rejection' : 'uncaught exception');
  }
  if (guarded.size === 0) process.stderr.write(`parley: ${kind}: ${err instanceof Error ? err.stack : String(err)}\n`);
}

const onRejection = (reason: unknown): void => report('rejection', reason);

const onException = (err: Error): void => {
  report('exception', err);
  if (!isOperational(err)) {
    process.stderr.write(`parley: exiting after an uncaught exception (a bug): ${err.stack ?? err.message}\n`);
    process.exit(70);
  }
};

/** Counts into `metrics` until `unguard`; installs the process handlers on first use. */
export function guardProcess(metrics: Metrics, log: Logger): void {
  guarded.set(metrics, log);
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
}

export function unguardProcess(metrics: Metrics): void {
  guarded.delete(metrics);
  if (guarded.size > 0 || !installed) return;
  installed = false;
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
}
