import { parsePlain, parseScramFirst, SASL_CHUNK, SASL_MAX_BYTES, SASL_MECHANISMS, ScramServer, type SaslMechanism } from '../../accounts/sasl.js';
import type { CommandContext, Handler } from '../context.js';
import { ERR, FAIL, RPL } from '../replies.js';
import type { Responder } from '../reply.js';
import type { Session } from '../session.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Logs `s` in to `account` everywhere (session, cluster, account-notify, nick reservation) and
 * says so with 900. SASL adds its 903; NickServ its notice.
 */
export async function logIn(ctx: CommandContext, s: Session, r: Responder, account: string): Promise<void> {
  await ctx.users.setAccount(s, account);
  ctx.num(s, r, RPL.LOGGEDIN, `${s.nick}!${s.user || '*'}@${s.host}`, account, `You are now logged in as ${account}`);
}

export async function logOut(ctx: CommandContext, s: Session, r: Responder): Promise<void> {
  await ctx.users.setAccount(s, null);
  ctx.num(s, r, RPL.LOGGEDOUT, `${s.nick}!${s.user || '*'}@${s.host}`);
}

/** Sends a server SASL message as `AUTHENTICATE` lines of at most 400 bytes (`+` for an empty one or an exact multiple). */
function sendSasl(r: Responder, data: string): void {
  const b64 = Buffer.from(data, 'utf8').toString('base64');
  for (let i = 0; i < b64.length; i += SASL_CHUNK) r.send(`AUTHENTICATE ${b64.slice(i, i + SASL_CHUNK)}`);
  if (b64.length % SASL_CHUNK === 0) r.send('AUTHENTICATE +');
}

function failSasl(ctx: CommandContext, s: Session, r: Responder): void {
  s.sasl = null;
  ctx.num(s, r, ERR.SASLFAIL);
}

/**
 * AUTHENTICATE (IRCv3 sasl 3.1/3.2): PLAIN and SCRAM-SHA-256, allowed before and after
 * registration. The client message arrives base64 in 400-byte chunks (a shorter chunk, or `+`,
 * ends it); `*` aborts.
 */
export const authenticate: Handler = async (ctx, s, msg, r) => {
  const arg = msg.params[0] ?? '';
  if (arg === '*') {
    s.sasl = null;
    return ctx.num(s, r, ERR.SASLABORTED);
  }
  if (s.account) return ctx.num(s, r, ERR.SASLALREADY);
  const x = s.sasl;
  if (!x) {
    const mech = arg.toUpperCase();
    if (!(SASL_MECHANISMS as readonly string[]).includes(mech)) {
      ctx.num(s, r, RPL.SASLMECHS, SASL_MECHANISMS.join(','));
      return failSasl(ctx, s, r);
    }
    s.sasl = { mechanism: mech as SaslMechanism, buffer: '', scram: null, verified: null };
    r.send('AUTHENTICATE +');
    return;
  }
  if (arg.length > SASL_CHUNK || x.buffer.length + arg.length > SASL_MAX_BYTES) {
    s.sasl = null;
    return ctx.num(s, r, ERR.SASLTOOLONG);
  }
  if (arg !== '+') x.buffer += arg;
  if (arg.length === SASL_CHUNK) return; // more follows
  const b64 = x.buffer;
  x.buffer = '';
  if (!BASE64.test(b64)) return failSasl(ctx, s, r);
  const data = Buffer.from(b64, 'base64');
  try {
    if (x.mechanism === 'PLAIN') return await plain(ctx, s, r, data);
    return await scram(ctx, s, r, data.toString('utf8'));
  } catch (err) {
    ctx.metrics.commandErrors.inc({ command: 'AUTHENTICATE' });
    ctx.log.warn({ err: (err as Error).message }, 'SASL: the account store failed');
    return failSasl(ctx, s, r);
  }
};

async function plain(ctx: CommandContext, s: Session, r: Responder, data: Buffer): Promise<void> {
  const p = parsePlain(data);
  // Logging in as someone else (authzid) is for services; here it must name the same account.
  if (!p || (p.authzid !== '' && p.authzid.toLowerCase() !== p.authcid.toLowerCase())) return failSasl(ctx, s, r);
  const rec = await ctx.accounts.check(p.authcid, p.password);
  if (!rec || s.closed) return failSasl(ctx, s, r);
  await succeed(ctx, s, r, rec.name);
}

async function scram(ctx: CommandContext, s: Session, r: Responder, text: string): Promise<void> {
  const x = s.sasl;
  if (!x) return;
  if (x.verified) {
    // The client acknowledges the server-final message with an empty one.
    if (text !== '') return failSasl(ctx, s, r);
    return succeed(ctx, s, r, x.verified.name);
  }
  if (!x.scram) {
    const first = parseScramFirst(text);
    if (!first) return failSasl(ctx, s, r);
    const rec = await ctx.accounts.get(first.user);
    if (!rec || s.closed) return failSasl(ctx, s, r);
    x.scram = new ScramServer(rec, first);
    return sendSasl(r, x.scram.serverFirst());
  }
  const final = x.scram.finish(text);
  if (!final) return failSasl(ctx, s, r);
  x.verified = x.scram.account;
  sendSasl(r, final);
}

async function succeed(ctx: CommandContext, s: Session, r: Responder, account: string): Promise<void> {
  s.sasl = null;
  await logIn(ctx, s, r, account);
  ctx.num(s, r, RPL.SASLSUCCESS);
}

/**
 * REGISTER <account> <email> <password> (draft/account-registration): `*` names the current
 * nick; the e-mail is not used. The account is verified at once and the connection logged in.
 */
export const register: Handler = async (ctx, s, msg, r) => {
  const asked = msg.params[0] ?? '';
  const password = msg.params[2] ?? '';
  const name = asked === '*' ? s.nick : asked;
  if (name === '*') return ctx.fail(r, 'REGISTER', FAIL.NEED_NICK, ['*']);
  if (s.account) return ctx.fail(r, 'REGISTER', FAIL.ALREADY_AUTHENTICATED, [s.account]);
  let res;
  try {
    res = await ctx.accounts.register(ctx.config.limits, name, password);
  } catch (err) {
    ctx.metrics.commandErrors.inc({ command: 'REGISTER' });
    ctx.log.warn({ err: (err as Error).message }, 'REGISTER: the account store failed');
    return ctx.fail(r, 'REGISTER', FAIL.TEMPORARILY_UNAVAILABLE, [name], 'Accounts are briefly unavailable, try again');
  }
  switch (res) {
    case 'bad-name': return ctx.fail(r, 'REGISTER', FAIL.BAD_ACCOUNT_NAME, [name]);
    case 'exists': return ctx.fail(r, 'REGISTER', FAIL.ACCOUNT_EXISTS, [name]);
    case 'weak': return ctx.fail(r, 'REGISTER', FAIL.WEAK_PASSWORD, [name]);
    case 'unacceptable': return ctx.fail(r, 'REGISTER', FAIL.UNACCEPTABLE_PASSWORD, [name]);
  }
  r.send(`:${ctx.serverName} REGISTER SUCCESS ${name} :Account created`);
  if (!s.closed && !s.account) await logIn(ctx, s, r, name);
};

/** VERIFY <account> <code>: nothing is ever pending, since accounts need no e-mail verification. */
export const verify: Handler = (ctx, s, msg, r) => {
  ctx.fail(r, 'VERIFY', FAIL.INVALID_CODE, [msg.params[0] ?? '*']);
};
