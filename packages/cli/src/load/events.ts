import fs from 'node:fs';

/*
 * `--events FILE`: one CSV row per message event, written through a buffer (a run can produce
 * millions of rows). Columns:
 *   t_ms        ms since the start of the send phase (3 decimals)
 *   type        sent | ack | deliver | refused | error
 *   user        the sender's nick (sent, ack, refused, error) or the receiving member's (deliver)
 *   room        the room
 *   msgid       the server's msgid (ack, deliver), empty otherwise
 *   latency_ms  send → this event (empty for sent, and for errors found at the end)
 *   msg         the load tool's message number (the first word of the text)
 *   code        the FAIL code (refused) or the error (error), empty otherwise
 */

const HEADER = 't_ms,type,user,room,msgid,latency_ms,msg,code\n';
const FLUSH_AT = 1 << 16;

export class EventLog {
  private buf = '';
  private t0 = 0;
  private failed: Error | null = null;

  private constructor(private readonly stream: fs.WriteStream) {
    stream.on('error', (err) => (this.failed ??= err));
  }

  static async open(file: string): Promise<EventLog> {
    const stream = fs.createWriteStream(file);
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err) => reject(new Error(`--events ${file}: ${err.message}`)));
    });
    const log = new EventLog(stream);
    log.buf = HEADER;
    return log;
  }

  start(t0: number): void {
    this.t0 = t0;
  }

  write(now: number, type: string, user: string, room: string, msgid: string, latencyMs: number, g: number, code: string): void {
    this.buf += `${(now - this.t0).toFixed(3)},${type},${user},${room},${msgid},${latencyMs >= 0 ? latencyMs.toFixed(3) : ''},${g},${code}\n`;
    if (this.buf.length >= FLUSH_AT) {
      this.stream.write(this.buf);
      this.buf = '';
    }
  }

  async close(): Promise<void> {
    if (this.buf !== '') this.stream.write(this.buf);
    this.buf = '';
    await new Promise<void>((resolve) => this.stream.end(resolve));
    if (this.failed) throw new Error(`writing the events file failed: ${this.failed.message}`);
  }
}
