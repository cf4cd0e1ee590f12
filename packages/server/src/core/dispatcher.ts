import { LineError, parseLine, type IrcMessage } from '@parley/protocol';
import { StoreUnavailableError } from '../store/errors.js';
import { Cap } from './caps.js';
import type { CommandContext, CommandSpec, CommandTable } from './context.js';
import { ERR, FAIL, failLine, numericLine } from './replies.js';
import { Reply, type Responder } from './reply.js';
import type { Session } from './session.js';

/** Lines a connection may have waiting behind a slow command before it counts as a flood. */
const MAX_QUEUED_LINES = 4096;

/**
 * From a line to a handler: flood control, parsing, the command table's checks (known command,
 * registration, parameters), labels, and per-connection ordering. Every problem becomes a reply;
 * nothing here throws into the transport.
 */
export class Dispatcher {
  constructor(
    private readonly table: CommandTable,
    private readonly ctx: CommandContext,
  ) {}

  /** A line arrived from a client. */
  line(s: Session, line: string): void {
    if (s.closed) return;
    const ctx = this.ctx;
    ctx.metrics.linesIn.inc();
    s.lastActivity = Date.now();
    s.pingSent = false;
    if (!this.takeTokens(s, 1)) {
      ctx.drop(s, 'Excess Flood', 'flood');
      return;
    }
    const limits = ctx.config.limits;
    let msg: IrcMessage;
    try {
      msg = parseLine(line, { maxBodyBytes: limits.lineBytes, maxTagBytes: limits.tagBytes });
    } catch (err) {
      if (err instanceof LineError) this.answerLineError(s, err);
      else ctx.log.error({ err }, 'parser failure');
      return;
    }
    if (s.busy) {
      if (s.queue.length >= MAX_QUEUED_LINES) ctx.drop(s, 'Excess Flood', 'flood');
      else s.queue.push(msg);
      return;
    }
    this.run(s, msg);
  }

  /** A line the transport could not even decode (too long, bad UTF-8). */
  lineError(s: Session, err: LineError): void {
    if (s.closed) return;
    if (!this.takeTokens(s, 1)) {
      this.ctx.drop(s, 'Excess Flood', 'flood');
      return;
    }
    this.answerLineError(s, err);
  }

  private answerLineError(s: Session, err: LineError): void {
    const ctx = this.ctx;
    ctx.metrics.protocolErrors.inc({ code: err.code });
    switch (err.code) {
      case 'EMPTY':
        return;
      case 'TOO_LONG':
      case 'TAGS_TOO_LONG':
        s.write(numericLine(ctx.serverName, s.nick, ERR.INPUTTOOLONG, []));
        return;
      case 'BAD_ENCODING':
        s.write(failLine(ctx.serverName, '*', FAIL.INVALID_UTF8, []));
        return;
      default:
        s.write(failLine(ctx.serverName, '*', FAIL.INVALID_MESSAGE, []));
    }
  }

  /** Flood control: a token bucket per connection (`flood.burst`, `flood.linesPerSecond`). */
  private takeTokens(s: Session, n: number): boolean {
    const f = this.ctx.config.flood;
    if (f.linesPerSecond === 0) return true;
    const now = Date.now();
    s.tokens = Math.min(f.burst, s.tokens + ((now - s.tokensAt) * f.linesPerSecond) / 1000);
    s.tokensAt = now;
    if (s.tokens < n) return false;
    s.tokens -= n;
    return true;
  }

  private run(s: Session, msg: IrcMessage): void {
    const ctx = this.ctx;
    const spec = this.table.get(msg.command);
    const label = msg.tags.label;
    const r: Responder = label !== undefined && s.has(Cap.LabeledResponse) ? new Reply(s, label, ctx.serverName) : s;
    if (!spec || (!s.registered && !spec.preRegistration)) {
      // labeled-response: the server MUST reply to a labeled command with the label, 421 included.
      if (spec || !s.registered) r.send(numericLine(ctx.serverName, s.nick, ERR.NOTREGISTERED, []));
      else r.send(numericLine(ctx.serverName, s.nick, ERR.UNKNOWNCOMMAND, [msg.command]));
      r.end();
      return;
    }
    if (!this.checked(s, msg, spec, r)) {
      r.end();
      return;
    }
    if (spec.barrier && s.inflight) {
      // Runs after the connection's earlier messages are answered; later lines wait for it.
      const before = s.inflight;
      this.block(s, msg, r, before.then(() => this.invoke(s, msg, spec, r)));
      return;
    }
    const result = this.invoke(s, msg, spec, r);
    if (!result) return;
    if (spec.blocking) this.block(s, msg, r, result);
    else s.inflight = result;
  }

  /** The declared checks: parameters and flood cost. Answers the refusal itself. */
  private checked(s: Session, msg: IrcMessage, spec: CommandSpec, r: Responder): boolean {
    const n = spec.minParams;
    if (n > 0 && (msg.params.length < n || msg.params[n - 1] === '')) {
      r.send(numericLine(this.ctx.serverName, s.nick, ERR.NEEDMOREPARAMS, [msg.command]));
      return false;
    }
    const extra = spec.extraCost?.(msg) ?? 0;
    if (extra > 0 && !this.takeTokens(s, extra)) {
      r.send(failLine(this.ctx.serverName, msg.command, FAIL.RATE_LIMITED, [msg.params[0] ?? '*', String(Math.ceil((extra * 1000) / Math.max(this.ctx.config.flood.linesPerSecond, 1)))], 'Too many lines or rows asked, slow down'));
      return false;
    }
    return true;
  }

  /**
   * Runs the handler. Returns null when it finished synchronously (the response is complete),
   * else a promise that settles (never rejects) once the response is complete.
   */
  private invoke(s: Session, msg: IrcMessage, spec: CommandSpec, r: Responder): Promise<void> | null {
    let p: void | Promise<void>;
    try {
      p = spec.handler(this.ctx, s, msg, r);
    } catch (err) {
      this.failed(msg, r, err);
      return null;
    }
    if (!p) {
      r.end();
      return null;
    }
    if (r === s) return spec.blocking ? p.catch((err: unknown) => this.failed(msg, r, err)) : p.catch(this.bug);
    return p.then(() => r.end(), (err: unknown) => this.failed(msg, r, err));
  }

  private readonly bug = (err: unknown): void => {
    this.ctx.metrics.commandErrors.inc({ command: 'non-blocking' });
    this.ctx.log.error({ err }, 'a non-blocking command rejected (it must answer its own failures)');
  };

  /** The connection's next lines wait for `done`. */
  private block(s: Session, msg: IrcMessage, r: Responder, done: Promise<void | null>): void {
    s.busy = true;
    const current = done.then(
      () => this.resume(s),
      (err: unknown) => {
        this.failed(msg, r, err);
        this.resume(s);
      },
    );
    s.current = current;
  }

  private resume(s: Session): void {
    s.busy = false;
    s.current = null;
    while (!s.busy && !s.closed) {
      const next = s.queue.shift();
      if (!next) return;
      this.run(s, next);
    }
  }

  /** A command threw: a channel whose shard is down says so, anything else is INTERNAL_ERROR. */
  private failed(msg: IrcMessage, r: Responder, err: unknown): void {
    const ctx = this.ctx;
    ctx.metrics.commandErrors.inc({ command: msg.command });
    ctx.log.warn({ err: err instanceof Error ? err.message : String(err), command: msg.command }, 'command failed');
    if (err instanceof StoreUnavailableError) {
      r.send(failLine(ctx.serverName, msg.command, FAIL.SHARD_UNAVAILABLE, [msg.params[0] ?? '*'], 'The message store of this channel is unavailable; try again later'));
    } else {
      r.send(failLine(ctx.serverName, msg.command, FAIL.INTERNAL_ERROR, []));
    }
    r.end();
  }
}
