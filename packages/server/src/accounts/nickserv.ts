import type { CommandContext } from '../core/context.js';
import { logIn, logOut } from '../core/commands/accounts.js';
import { lower } from '../core/names.js';
import type { Responder } from '../core/reply.js';
import type { Session } from '../core/session.js';
import { NICKSERV_SOURCE } from '../core/nick-reservation.js';

const HELP = [
  'NickServ registers accounts and logs you in to them. Commands:',
  'REGISTER <password>            register your current nick as an account (and log in)',
  'IDENTIFY [account] <password>  log in (the account defaults to your nick)',
  'LOGOUT                         log out',
  'GHOST <nick>                   disconnect a session that holds the nick of your account',
  'INFO [account]                 when an account was registered',
  'Clients with SASL can log in while connecting instead (PLAIN or SCRAM-SHA-256).',
];

/**
 * `/msg NickServ <command>`: a pseudo-user answered by the server itself with NOTICEs. Messages
 * to it are never stored nor relayed (they may carry a password). Never rejects.
 */
export async function nickserv(ctx: CommandContext, s: Session, text: string, r: Responder): Promise<void> {
  const say = (line: string): void => r.send(`:${NICKSERV_SOURCE} NOTICE ${s.nick} :${line}`);
  const args = text.trim().split(/ +/);
  const command = (args.shift() ?? '').toUpperCase();
  try {
    switch (command) {
      case 'HELP':
      case '':
        for (const l of HELP) say(l);
        return;
      case 'REGISTER': {
        const password = args[0];
        if (!password) return say('Syntax: REGISTER <password>');
        if (s.account) return say(`You are already logged in as ${s.account}.`);
        const res = await ctx.accounts.register(ctx.config.limits, s.nick, password);
        switch (res) {
          case 'bad-name': return say(`${s.nick} cannot be registered.`);
          case 'exists': return say(`${s.nick} is already registered.`);
          case 'weak': return say('That password is too short: at least 8 bytes.');
          case 'unacceptable': return say('That password is too long: at most 300 bytes.');
        }
        if (s.closed || s.account) return;
        await logIn(ctx, s, r, s.nick);
        return say(`Account ${s.nick} registered; you are now logged in.`);
      }
      case 'IDENTIFY': {
        const [account, password] = args.length >= 2 ? [args[0] ?? '', args[1] ?? ''] : [s.nick, args[0] ?? ''];
        if (!password) return say('Syntax: IDENTIFY [account] <password>');
        if (s.account) return say(`You are already logged in as ${s.account}.`);
        const rec = await ctx.accounts.check(account, password);
        if (!rec) return say(`Invalid account or password for ${account}.`);
        if (s.closed || s.account) return;
        await logIn(ctx, s, r, rec.name);
        return say(`You are now identified for ${rec.name}.`);
      }
      case 'LOGOUT':
        if (!s.account) return say('You are not logged in.');
        await logOut(ctx, s, r);
        return say('You are now logged out.');
      case 'GHOST': {
        const nick = args[0];
        if (!nick) return say('Syntax: GHOST <nick>');
        if (!s.account) return say('Log in to the account that owns the nick first.');
        const key = lower(nick);
        if (key === s.nickKey) return say('That is you.');
        const owner = await ctx.accounts.get(nick);
        if (!owner || lower(owner.name) !== lower(s.account)) return say(`${nick} does not belong to your account.`);
        const holder = ctx.users.get(key) ?? (await ctx.state.getUser(nick));
        if (!holder) return say(`${nick} is not online.`);
        ctx.users.kill(key, `Killed (GHOST command used by ${s.nick})`);
        return say(`${nick} has been disconnected.`);
      }
      case 'INFO': {
        const name = args[0] ?? s.account ?? s.nick;
        const rec = await ctx.accounts.get(name);
        if (!rec) return say(`${name} is not registered.`);
        return say(`Account ${rec.name}, registered ${new Date(rec.created).toISOString()}.`);
      }
      default:
        return say(`Unknown command ${command}. /msg NickServ HELP lists the commands.`);
    }
  } catch (err) {
    ctx.metrics.commandErrors.inc({ command: 'NickServ' });
    ctx.log.warn({ err: (err as Error).message }, 'NickServ: the account store failed');
    say('Accounts are briefly unavailable, try again.');
  }
}
