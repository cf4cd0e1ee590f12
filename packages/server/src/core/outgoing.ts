import { Cap } from './caps.js';

/**
 * A line to be sent to many recipients, serialised once. Recipients differ only in which tags
 * they negotiated, so at most three variants exist and each is built on first use and then
 * shared by every recipient that wants it.
 */
export class Outgoing {
  private full: string | undefined;
  private timed: string | undefined;
  /** variants serialised so far (each at most once): lets a test prove the sharing */
  builds = 0;
  /** the same event as clients with `extended-join` see it (a JOIN with account and real name) */
  ext: Outgoing | null = null;

  /**
   * @param rest  the line without tags: `:source COMMAND params`
   * @param timeMs the same time in ms since the epoch (kept, so nobody parses `time` again)
   * @param time  server-time value (`2026-11-23T19:17:08.123Z`)
   * @param msgid msgid tag value
   * @param clientTags serialised client-only tags (`+draft/reply=x`), '' when none
   */
  constructor(
    readonly rest: string,
    readonly timeMs: number,
    readonly time: string,
    readonly msgid: string,
    readonly clientTags: string,
  ) {}

  /** the tag section (without '@' and trailing space) for a client with message-tags */
  tagText(): string {
    const base = `time=${this.time};msgid=${this.msgid}`;
    return this.clientTags ? `${base};${this.clientTags}` : base;
  }

  lineFor(caps: number): string {
    if (this.ext !== null && caps & Cap.ExtendedJoin) return this.ext.lineFor(caps);
    if (caps & Cap.MessageTags) {
      if (this.full === undefined) {
        this.builds++;
        this.full = `@${this.tagText()} ${this.rest}`;
      }
      return this.full;
    }
    if (caps & Cap.ServerTime) {
      if (this.timed === undefined) {
        this.builds++;
        this.timed = `@time=${this.time} ${this.rest}`;
      }
      return this.timed;
    }
    return this.rest;
  }

  /** the line with extra tags in front (label, batch), for one recipient */
  lineWith(caps: number, extra: string): string {
    if (caps & Cap.MessageTags) return `@${extra};${this.tagText()} ${this.rest}`;
    if (caps & Cap.ServerTime) return `@${extra};time=${this.time} ${this.rest}`;
    return `@${extra} ${this.rest}`;
  }
}

/** Adds tags (already serialised, `a=b;c`) in front of a serialised line. */
export function addTags(line: string, tags: string): string {
  return line.charCodeAt(0) === 64 /* @ */ ? `@${tags};${line.slice(1)}` : `@${tags} ${line}`;
}
