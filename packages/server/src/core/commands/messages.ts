import { serializeTags } from '@parley/protocol';
import { nickserv } from '../../accounts/nickserv.js';
import { isServiceNick } from '../../accounts/service.js';
import { Cap } from '../caps.js';
import type { Handler } from '../context.js';
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
  if (target.includes(',')) {
    if (!notice) ctx.num(s, r, ERR.TOOMANYTARGETS, target);
    return;
  }
  // NickServ is answered here: never stored nor relayed (a NOTICE to it gets no answer).
  if (isServiceNick(target)) return notice ? undefined : nickserv(ctx, s, text, r);
  (notice ? ctx.metrics.noticeIn : ctx.metrics.privmsgIn).inc();
  ctx.stats.messagesIn++;
  const tags = s.has(Cap.MessageTags) ? clientTags(msg.tags) : null;
  const post: Post = { command, target, text, tags, tagText: tags ? serializeTags(tags) : '' };
  return isChannel(target) ? ctx.messages.toChannel(s, post, r) : ctx.messages.toNick(s, post, r);
};
