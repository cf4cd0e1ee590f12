import type { IrcMessage } from '@parley/protocol';
import { isServiceNick } from '../../accounts/service.js';
import { CAP_BITS, CAP_LS, capLs302, stsValueFor } from '../caps.js';
import { MAX_LIST_ENTRIES } from '../../cluster/state.js';
import type { CommandContext, Handler } from '../context.js';
import { MAX_CHANNEL_TARGETS } from './channels.js';
import { MAX_MESSAGE_TARGETS } from './messages.js';
import { connectionBan } from './oper.js';
import { isChanServ } from './services-chanserv.js';
import { validNick } from '../names.js';
import { ERR, FAIL, RPL, numericLine } from '../replies.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

export const cap: Handler = (ctx, s, msg, r) => {
  const sub = (msg.params[0] ?? '').toUpperCase();
  const target = s.registered ? s.nick : '*';
  switch (sub) {
    case 'LS': {
      if (!s.registered) s.capNegotiating = true;
      const v302 = Number(msg.params[1] ?? '0') >= 302;
      // `sts` carries its meaning in its value: only clients of 302, which see values, get it.
      r.send(`:${ctx.serverName} CAP ${target} LS :${v302 ? capLs302(stsValueFor(ctx.sts, s)) : CAP_LS}`);
      return;
    }
    case 'LIST': {
      const on = [...CAP_BITS].filter(([, bit]) => s.has(bit)).map(([name]) => name);
      r.send(`:${ctx.serverName} CAP ${target} LIST :${on.join(' ')}`);
      return;
    }
    case 'REQ': {
      if (!s.registered) s.capNegotiating = true;
      const asked = (msg.params[1] ?? '').trim();
      const wanted = asked.split(/ +/).filter(Boolean);
      let caps = s.caps;
      let ok = wanted.length > 0;
      for (const w of wanted) {
        const off = w.startsWith('-');
        const bit = CAP_BITS.get(off ? w.slice(1) : w);
        if (bit === undefined) {
          ok = false;
          break;
        }
        caps = off ? caps & ~bit : caps | bit;
      }
      if (ok) s.caps = caps;
      r.send(`:${ctx.serverName} CAP ${target} ${ok ? 'ACK' : 'NAK'} :${asked}`);
      return;
    }
    case 'END':
      if (s.registered) return;
      s.capNegotiating = false;
      if (s.sasl) {
        // Registration does not wait for an unfinished SASL exchange: it is over.
        s.sasl = null;
        ctx.num(s, r, ERR.SASLABORTED);
      }
      return tryRegister(ctx, s, r);
    default:
      ctx.num(s, r, ERR.INVALIDCAPCMD, sub || '*');
  }
};

export const pass: Handler = (ctx, s, msg, r) => {
  if (s.registered) return ctx.num(s, r, ERR.ALREADYREGISTERED);
  const want = ctx.config.password;
  s.passOk = want === null || msg.params[0] === want;
};

export const nick: Handler = async (ctx, s, msg, r) => {
  const wanted = msg.params[0] ?? '';
  if (!wanted) return ctx.num(s, r, ERR.NONICKNAMEGIVEN);
  // A service's nick (NickServ) is the server's own pseudo-user.
  if (!validNick(ctx.config.limits, wanted) || isServiceNick(wanted) || isChanServ(wanted)) return ctx.num(s, r, ERR.ERRONEUSNICKNAME, wanted);
  if (!s.registered) {
    s.nick = wanted;
    return tryRegister(ctx, s, r);
  }
  if (wanted === s.nick) return;
  if (!(await ctx.users.rename(s, wanted, r))) return ctx.num(s, r, ERR.NICKNAMEINUSE, wanted);
  ctx.users.checkReservation(s);
};

export const user: Handler = (ctx, s, msg, r) => {
  if (s.registered) return ctx.num(s, r, ERR.ALREADYREGISTERED);
  const u = (msg.params[0] ?? '').replace(/[^A-Za-z0-9._-]/g, '').slice(0, 16);
  s.user = `~${u || 'user'}`;
  s.realname = (msg.params[3] ?? '').slice(0, 100);
  return tryRegister(ctx, s, r);
};

async function tryRegister(ctx: CommandContext, s: Session, r: Responder): Promise<void> {
  if (s.registered || s.capNegotiating || s.nick === '*' || !s.user) return;
  if (ctx.config.password !== null && !s.passOk) {
    ctx.num(s, r, ERR.PASSWDMISMATCH);
    r.end();
    ctx.drop(s, 'Bad password', 'password');
    return;
  }
  let claimed: boolean;
  try {
    // A connection ban (KLINE) refuses before the nick is claimed, on every instance alike.
    const banned = await connectionBan(ctx, s);
    if (banned !== null) {
      ctx.num(s, r, ERR.YOUREBANNEDCREEP);
      r.end();
      ctx.drop(s, `Banned: ${banned}`, 'banned');
      return;
    }
    claimed = await ctx.users.claim(s);
  } catch (err) {
    // Without the cluster state no nick can be claimed: say so and close, the client reconnects.
    ctx.metrics.commandErrors.inc({ command: 'registration' });
    ctx.log.warn({ err: (err as Error).message }, 'registration failed: cluster state unavailable');
    ctx.fail(r, 'NICK', FAIL.TEMPORARILY_UNAVAILABLE, [s.nick]);
    r.end();
    ctx.drop(s, 'Cluster briefly unavailable, please reconnect', 'unavailable');
    return;
  }
  if (!claimed) {
    const taken = s.nick;
    s.nick = '*';
    return ctx.num(s, r, ERR.NICKNAMEINUSE, taken);
  }
  if (!s.registered) return;
  welcome(ctx, s, r);
  ctx.users.checkReservation(s);
}

function isupport(ctx: CommandContext): string[] {
  const l = ctx.config.limits;
  return [
    'CASEMAPPING=ascii', 'CHANTYPES=#', 'CHANMODES=beI,k,l,imnpst', 'PREFIX=(ov)@+', `NICKLEN=${l.nickLen}`,
    `CHANNELLEN=${l.channelLen}`, `TOPICLEN=${l.topicLen}`, `AWAYLEN=${l.awayLen}`, `KICKLEN=${l.kickLen}`,
    `CHANLIMIT=#:${l.channelsPerUser}`, `NETWORK=${ctx.config.networkName}`, `CHATHISTORY=${l.historyMax}`,
    'MSGREFTYPES=msgid,timestamp', 'UTF8ONLY', `LINELEN=${l.lineBytes}`,
    `TARGMAX=PRIVMSG:${MAX_MESSAGE_TARGETS},NOTICE:${MAX_MESSAGE_TARGETS},JOIN:,PART:${MAX_CHANNEL_TARGETS},NAMES:${MAX_CHANNEL_TARGETS},KICK:${MAX_CHANNEL_TARGETS},WHOIS:1,USERHOST:5,MONITOR:`,
    `MAXLIST=beI:${MAX_LIST_ENTRIES}`, 'EXCEPTS', 'INVEX', 'ELIST=MNU', 'BOT=B', `MONITOR=${ctx.config.monitorMax}`, 'WHOX',
  ];
}

function welcome(ctx: CommandContext, s: Session, r: Responder): void {
  const server = ctx.serverName;
  ctx.num(s, r, RPL.WELCOME, `Welcome to the ${ctx.config.networkName} IRC Network ${s.source}`);
  ctx.num(s, r, RPL.YOURHOST, `Your host is ${server}, running parley-0.1`);
  ctx.num(s, r, RPL.CREATED, `This server was created ${new Date(ctx.startedAt).toISOString()}`);
  // 004's last parameter is a word, not a trailing text.
  r.send(numericLine(server, s.nick, RPL.MYINFO, [server, 'parley-0.1', 'Biow', 'Ibeiklmnopstv', 'Ibeklov']).replace(/ :Ibeklov$/, ' Ibeklov'));
  const tokens = isupport(ctx);
  for (let i = 0; i < tokens.length; i += 12) ctx.num(s, r, RPL.ISUPPORT, ...tokens.slice(i, i + 12));
  motd(ctx, s, { command: 'MOTD', params: [], tags: {} }, r);
}

export const motd: Handler = (ctx, s, _msg: IrcMessage, r) => {
  const lines = ctx.config.motd;
  if (lines.length === 0) return ctx.num(s, r, ERR.NOMOTD);
  ctx.num(s, r, RPL.MOTDSTART, `- ${ctx.serverName} Message of the day - `);
  for (const l of lines) ctx.num(s, r, RPL.MOTD, `- ${l}`);
  ctx.num(s, r, RPL.ENDOFMOTD);
};

export const ping: Handler = (ctx, s, msg, r) => {
  if (msg.params.length === 0) return ctx.num(s, r, ERR.NOORIGIN);
  r.send(`:${ctx.serverName} PONG ${ctx.serverName} :${msg.params[0]}`);
};

export const pong: Handler = () => undefined;

/** Runs after the connection's earlier messages (a barrier), so they are handled first. */
export const quit: Handler = (ctx, s, msg) => {
  if (s.closed) return;
  ctx.quit(s, msg.params[0] ? `Quit: ${msg.params[0]}` : 'Quit');
};
