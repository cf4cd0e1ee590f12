import { serializeTags } from '@parley/protocol';
import { nickserv } from '../../accounts/nickserv.js';
import { isServiceNick } from '../../accounts/service.js';
import { Cap } from '../caps.js';
import type { CommandContext, Handler } from '../context.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';
import { chanserv, isChanServ } from './services-chanserv.js';
import type { Post } from '../messaging.js';
import { isChannel } from '../names.js';
import { ERR } from '../replies.js';

/** Client-only tags (`+name`) the sender attached; null when none. */
function clientTags(tags: Record<string, string>): Record<string, string> | null {
  let out: Record<string, string> | null = null;
  for (const k in tags) {
    if (k.charCodeAt(0) === 43 /* + */) (out ??= {})[k] = tags[k] as string;
  }
  return out;
}

/** PRIVMSG and NOTICE: the target's path does the rest (messaging.ts). Never rejects. */
export const privmsg: Handler = (ctx, s, msg, r) => {
  const command = msg.command === 'NOTICE' ? 'NOTICE' : 'PRIVMSG';
  const notice = command === 'NOTICE';
  const target = msg.params[0];
  if (!target) {
    if (!notice) ctx.num(s, r, ERR.NORECIPIENT, `No recipient given (${command})`);
    return;
  }
  const text = msg.params[1];
  if (!text) {
    if (!notice) ctx.num(s, r, ERR.NOTEXTTOSEND);
    return;
  }
  const tags = s.has(Cap.MessageTags) ? clientTags(msg.tags) : null;
  if (!target.includes(',')) return sendOne(ctx, s, command, target, text, tags, r);
  const targets = [...new Set(target.split(',').filter(Boolean))];
  if (targets.length > MAX_MESSAGE_TARGETS) {
    if (!notice) ctx.num(s, r, ERR.TOOMANYTARGETS, target);
    return;
  }
  // Several targets: one after the other; each echo is written unlabeled in its room's order
  // (a label can go on one line only), refusals go into the labeled response.
  const each = new EachTarget(r);
  return targets.reduce<Promise<void>>((p, t) => p.then(() => sendOne(ctx, s, command, t, text, tags, each)), Promise.resolve());
};

/** Targets one PRIVMSG/NOTICE may name (ISUPPORT TARGMAX). */
export const MAX_MESSAGE_TARGETS = 4;

async function sendOne(ctx: CommandContext, s: Session, command: 'PRIVMSG' | 'NOTICE', target: string, text: string, tags: Record<string, string> | null, r: Responder): Promise<void> {
  const notice = command === 'NOTICE';
  // The services are answered here: never stored nor relayed (a NOTICE to them gets no answer).
  if (isChanServ(target)) return notice ? undefined : chanserv(ctx, s, text, r);
  if (isServiceNick(target)) return notice ? undefined : nickserv(ctx, s, text, r);
  (notice ? ctx.metrics.noticeIn : ctx.metrics.privmsgIn).inc();
  ctx.stats.messagesIn++;
  const post: Post = { command, target, text, tags, tagText: tags ? serializeTags(tags) : '' };
  return isChannel(target) ? ctx.messages.toChannel(s, post, r) : ctx.messages.toNick(s, post, r);
}

/** The responder of one target of several: lines go into the command's response, echoes straight out. */
class EachTarget implements Responder {
  constructor(private readonly r: Responder) {}
  send(line: string): void {
    this.r.send(line);
  }
  end(): void {}
  markSingleBatch(): void {}
  takeAsOnly(line: string): string {
    return line;
  }
}

/** TAGMSG (message-tags): only client tags, relayed and never stored. Never rejects. */
export const tagmsg: Handler = (ctx, s, msg, r) => {
  const target = msg.params[0] ?? '';
  if (target.includes(',')) return ctx.num(s, r, ERR.TOOMANYTARGETS, target);
  return ctx.messages.tagmsg(s, target, s.has(Cap.MessageTags) ? clientTags(msg.tags) : null, r);
};
