import { EventEmitter } from 'node:events';
import { pino, type Logger } from 'pino';

/** One pino JSON log line of a Parley instance. */
export interface LogEntry {
  level: number;
  msg?: string;
  [field: string]: unknown;
}

export interface WaitLogOptions {
  /** Only entries at or after this mark count (`mark()` before the action that causes the line). */
  since?: number;
  timeoutMs?: number;
}

/**
 * The log lines of an instance, parsed, with a wait on the line that proves something happened
 * (e.g. "cluster configuration changed" after a put in etcd): tests wait on that event instead of
 * probing the instance until it behaves differently.
 */
export class LogWatch {
  readonly entries: LogEntry[] = [];
  private readonly events = new EventEmitter();
  private partial = '';

  /** Feeds raw output; complete lines that are JSON objects become entries. */
  write(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.startsWith('{')) continue;
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof entry !== 'object' || entry === null || typeof (entry as LogEntry).level !== 'number') continue;
      this.entries.push(entry as LogEntry);
      this.events.emit('entry', entry);
    }
  }

  /** The position of the next entry: pass it as `since` to ignore what was logged before. */
  mark(): number {
    return this.entries.length;
  }

  /** Resolves with the first entry (from `since` on) that matches; rejects after `timeoutMs`. */
  waitFor(pred: (e: LogEntry) => boolean, what: string, opts: WaitLogOptions = {}): Promise<LogEntry> {
    const old = this.entries.slice(opts.since ?? 0).find(pred);
    if (old) return Promise.resolve(old);
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const onEntry = (e: LogEntry) => {
        if (!pred(e)) return;
        clearTimeout(timer);
        this.events.off('entry', onEntry);
        resolve(e);
      };
      const timer = setTimeout(() => {
        this.events.off('entry', onEntry);
        const recent = this.entries.slice(-15).map((e) => JSON.stringify(e)).join('\n');
        reject(new Error(`no log line "${what}" within ${timeoutMs} ms; last lines:\n${recent}`));
      }, timeoutMs);
      this.events.on('entry', onEntry);
    });
  }

  /** Waits for a line with this exact `msg`. */
  waitForMsg(msg: string, opts: WaitLogOptions = {}): Promise<LogEntry> {
    return this.waitFor((e) => e.msg === msg, msg, opts);
  }
}

/** A pino logger for an in-process instance whose lines go, synchronously, into a LogWatch. */
export function logTap(level: pino.Level = 'info'): { logger: Logger; watch: LogWatch } {
  const watch = new LogWatch();
  const logger = pino({ level }, { write: (line: string) => watch.write(line) });
  return { logger, watch };
}

/**
 * What the registry logs once a configuration read from etcd is in force (logged just before it
 * is handed to the chat core, in the same tick).
 */
export const CONFIG_APPLIED = 'cluster configuration changed';
