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
 * Where a command's response goes. A session is its own responder (lines go straight out); a
 * labeled command gets a `Reply` that collects them.
 */
export interface Responder {
  send(line: string): void;
  /** the command is done: a labeled response goes out now */
  end(): void;
  /** the whole response is one BATCH ... BATCH -: that batch carries the label */
  markSingleBatch(): void;
  /**
   * Hands the whole response (one line) to the caller instead of sending it: for echoes that must
   * be written in room order by the room itself. Returns the line with the label, if any.
   */
  takeAsOnly(line: string): string;
}

/**
 * The response to one labeled client command: lines are collected and sent when the command is done, per
 * IRCv3 labeled-response: nothing → `ACK`, one line → the line with the label, several → a
 * `labeled-response` batch (or, when the response is itself exactly one batch, that batch
 * carries the label).
 */
export class Reply implements Responder {
  private readonly lines: string[] = [];
  private done = false;
  private singleBatch = false;

  constructor(readonly session: Session, readonly label: string, private readonly serverName: string) {}

  markSingleBatch(): void {
    this.singleBatch = true;
  }

  takeAsOnly(line: string): string {
    this.done = true;
    return addTags(line, `label=${escapeTagValue(this.label)}`);
  }

  send(line: string): void {
    if (!this.done) this.lines.push(line);
    else this.session.write(line);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    const lines = this.lines;
    const s = this.session;
    const label = `label=${escapeTagValue(this.label)}`;
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

