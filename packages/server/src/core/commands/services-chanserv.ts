import type { AccessLevel } from '../../cluster/state.js';
import type { CommandContext } from '../context.js';
import { isChannel, lower } from '../names.js';
import type { Responder } from '../reply.js';
import { eventLine } from '../rooms.js';
import type { Session } from '../session.js';
import { modeText } from './modes.js';

/** The pseudo-user that answers `/msg ChanServ …`. */
export const CHANSERV_SOURCE = 'ChanServ!ChanServ@services.parley';

export const isChanServ = (nick: string): boolean => lower(nick) === 'chanserv';

const HELP = [
  'ChanServ keeps channels for their founders. Commands (you must be logged in to an account):',
  'REGISTER <#chan>                           register a channel you are an operator of; you are its founder',
  'ACCESS <#chan> ADD <account> <op|voice>    give an account operator or voice status on join (founder)',
  'ACCESS <#chan> DEL <account>               take it back (founder)',
  'ACCESS <#chan> LIST                        who has access',
  'OP <#chan> [nick]                          operator status for you (or nick) if you have op access',
  'INFO <#chan>                               founder and registration time',
  'DROP <#chan>                               unregister (founder)',
  'A registered channel keeps its modes, topic and lists while empty, and its founder regains ops on join.',
];

/**
 * `/msg ChanServ <command>`: owned channels. Answers with NOTICEs from ChanServ; never stored nor
 * relayed. Never rejects (a backend failure is said as a NOTICE).
 */
export async function chanserv(ctx: CommandContext, s: Session, text: string, r: Responder): Promise<void> {
  const say = (line: string): void => r.send(`:${CHANSERV_SOURCE} NOTICE ${s.nick} :${line}`);
  const args = text.trim().split(/ +/);
  const command = (args.shift() ?? '').toUpperCase();
  const name = args[0] ?? '';
  const key = lower(name);
  try {
    if (command === 'HELP' || command === '') {
      for (const l of HELP) say(l);
      return;
    }
    if (!isChannel(name)) return say(`Syntax: ${command} <#chan> …  (HELP for the list)`);
    const reg = await ctx.state.registration(key);
    const me = s.account ? lower(s.account) : null;
    const level: AccessLevel | null = !reg || !me ? null : reg.founder === me ? 'op' : reg.access[me] ?? null;
    switch (command) {
      case 'REGISTER': {
        if (!me) return say('You must be logged in to an account (NickServ IDENTIFY, or SASL) to register a channel.');
        const res = await ctx.state.registerChannel(key, s.nick, me, Date.now());
        switch (res) {
          case 'no-channel': return say(`${name} does not exist: join it first.`);
          case 'not-op': return say(`You must be an operator of ${name} to register it.`);
          case 'exists': return say(`${name} is already registered.`);
          default: return say(`${name} is now registered to ${s.account ?? me}.`);
        }
      }
      case 'INFO':
        if (!reg) return say(`${name} is not registered.`);
        return say(`${name}: founder ${reg.founder}, registered ${new Date(reg.registeredAt).toISOString()}.`);
      case 'ACCESS': {
        if (!reg) return say(`${name} is not registered.`);
        const sub = (args[1] ?? '').toUpperCase();
        if (sub === 'LIST') {
          if (!level) return say(`You have no access to ${name}.`);
          say(`${name}: ${reg.founder} founder`);
          for (const [acct, l] of Object.entries(reg.access).sort()) say(`${name}: ${acct} ${l}`);
          return say('End of access list.');
        }
        if (!me || reg.founder !== me) return say(`Only the founder of ${name} changes its access list.`);
        const acct = args[2] ?? '';
        if (sub === 'ADD') {
          const lv = (args[3] ?? '').toLowerCase();
          if (!acct || (lv !== 'op' && lv !== 'voice')) return say('Syntax: ACCESS <#chan> ADD <account> <op|voice>');
          if (!(await ctx.accounts.get(acct))) return say(`${acct} is not a registered account.`);
          await ctx.state.setAccess(key, acct, lv);
          return say(`${acct} now has ${lv} access to ${name}.`);
        }
        if (sub === 'DEL') {
          if (!acct) return say('Syntax: ACCESS <#chan> DEL <account>');
          await ctx.state.setAccess(key, acct, null);
          return say(`${acct} has no access to ${name} now.`);
        }
        return say('Syntax: ACCESS <#chan> ADD|DEL|LIST …');
      }
      case 'OP': {
        if (level !== 'op') return say(`You have no operator access to ${name}.`);
        const nick = args[1] ?? s.nick;
        const res = await ctx.state.setModes(key, null, [{ add: true, mode: 'o', nick }], CHANSERV_SOURCE, Date.now());
        if (res.kind !== 'ok') return say(`${name} is empty.`);
        if (res.missing.length) return say(`${nick} is not on ${name}.`);
        if (res.applied.length === 0) return;
        const out = eventLine(`:${CHANSERV_SOURCE} MODE ${s.rooms.get(key)?.name ?? name} ${modeText(res.applied)}`);
        ctx.rooms.event(key, out, null);
        return;
      }
      case 'DROP':
        if (!reg) return say(`${name} is not registered.`);
        if (!me || reg.founder !== me) return say(`Only the founder of ${name} can drop it.`);
        await ctx.state.dropRegistration(key);
        return say(`${name} is no longer registered.`);
      default:
        return say(`Unknown command ${command}: HELP for the list.`);
    }
  } catch (err) {
    ctx.log.warn({ err: (err as Error).message, command }, 'ChanServ failed');
    say('ChanServ is briefly unavailable, try again.');
  }
}
