import { escapeTagValue } from '@parley/protocol';
import { addTags } from './outgoing.js';
import type { Session } from './session.js';

let batchCounter = 0;

/** A fresh batch reference tag, unique within the connection's lifetime. */
export function batchId(): string {
  batchCounter = (batchCounter + 1) % 0x7fffffff;
  return `b${batchCounter.toString(36)}`;
}

/**
 * The response to one client command. Without a label (or without labeled-response) lines go
 * straight to the session. With one, lines are collected and sent when the command is done, per
 * IRCv3 labeled-response: nothing → `ACK`, one line → the line with the label, several → a
 * `labeled-response` batch (or, when the response is itself exactly one batch, that batch
 * carries the label).
 */
export class Reply {
  private lines: string[] | null;
  private done = false;
  /** set by handlers whose whole response is one BATCH ... BATCH - */
  singleBatch = false;

  constructor(readonly session: Session, readonly label: string | null, private readonly serverName: string) {
    this.lines = label === null ? null : [];
  }

  /**
   * Hands the whole response (one line) to the caller instead of sending it: for echoes that must
   * be written in room order by the room itself. Returns the line with the label, if any.
   */
  takeAsOnly(line: string): string {
    this.done = true;
    return this.label === null ? line : addTags(line, `label=${escapeTagValue(this.label)}`);
  }

  send(line: string): void {
    if (this.lines && !this.done) this.lines.push(line);
    else this.session.write(line);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    const lines = this.lines;
    if (!lines) return;
    const s = this.session;
    const label = `label=${escapeTagValue(this.label ?? '')}`;
    if (lines.length === 0) {
      s.write(`@${label} :${this.serverName} ACK`);
    } else if (lines.length === 1 || this.singleBatch) {
      s.write(addTags(lines[0] as string, label));
      for (let i = 1; i < lines.length; i++) s.write(lines[i] as string);
    } else {
      const id = batchId();
      s.write(`@${label} :${this.serverName} BATCH +${id} labeled-response`);
      for (const l of lines) s.write(addTags(l, `batch=${id}`));
      s.write(`:${this.serverName} BATCH -${id}`);
    }
  }
}

