import type { CommandSpec, CommandTable, Handler } from '../context.js';
import { authenticate, register, verify } from './accounts.js';
import { invite, join, kick, list, names, part, topic } from './channels.js';
import { mode } from './modes.js';
import { monitor } from './monitor.js';
import { kill, kline, oper, unkline, wallops } from './oper.js';
import { chathistory, historyCost } from './history.js';
import { privmsg, tagmsg } from './messages.js';
import { away, ison, lusers, setname, userhost, who, whois } from './queries.js';
import { cap, motd, nick, pass, ping, pong, quit, user } from './registration.js';

type Row = Partial<Omit<CommandSpec, 'handler'>>;

function cmd(handler: Handler, row: Row = {}): CommandSpec {
  return { handler, minParams: 0, preRegistration: false, blocking: true, ...row };
}

/**
 * Every command the server knows, with what the dispatcher checks before the handler runs.
 * Commands run one at a time per connection, in order (a PRIVMSG right after a JOIN sees the join
 * done), except the non-blocking ones, which wait for the store without holding back the lines
 * behind them; messages to one room still commit in the order they were sent.
 */
export const COMMANDS: CommandTable = new Map<string, CommandSpec>([
  // registration and connection
  ['CAP', cmd(cap, { preRegistration: true })],
  ['PASS', cmd(pass, { preRegistration: true, minParams: 1 })],
  ['NICK', cmd(nick, { preRegistration: true })],
  ['USER', cmd(user, { preRegistration: true, minParams: 4 })],
  ['PING', cmd(ping, { preRegistration: true, barrier: true })],
  ['PONG', cmd(pong, { preRegistration: true })],
  ['QUIT', cmd(quit, { preRegistration: true, barrier: true })],
  ['MOTD', cmd(motd)],
  // accounts (SASL, draft/account-registration)
  ['AUTHENTICATE', cmd(authenticate, { preRegistration: true, minParams: 1 })],
  ['REGISTER', cmd(register, { preRegistration: true, minParams: 3 })],
  ['VERIFY', cmd(verify, { preRegistration: true, minParams: 2 })],
  // channels
  ['JOIN', cmd(join, { minParams: 1 })],
  ['PART', cmd(part, { minParams: 1 })],
  ['TOPIC', cmd(topic, { minParams: 1 })],
  ['NAMES', cmd(names)],
  ['LIST', cmd(list)],
  ['MODE', cmd(mode, { minParams: 1 })],
  ['KICK', cmd(kick, { minParams: 2 })],
  ['INVITE', cmd(invite, { minParams: 2 })],
  // messages and history
  ['PRIVMSG', cmd(privmsg, { blocking: false })],
  ['NOTICE', cmd(privmsg, { blocking: false })],
  ['TAGMSG', cmd(tagmsg, { blocking: false, minParams: 1 })],
  ['CHATHISTORY', cmd(chathistory, { blocking: false, extraCost: historyCost })],
  // queries
  // A WHO with a mask reads every instance's user list: it costs as much as 10 lines.
  ['WHO', cmd(who, { extraCost: (m) => (/[*?]/.test(m.params[0] ?? '') ? 10 : 0) })],
  ['WHOIS', cmd(whois)],
  ['AWAY', cmd(away)],
  ['ISON', cmd(ison)],
  ['LUSERS', cmd(lusers)],
  ['USERHOST', cmd(userhost, { minParams: 1 })],
  ['SETNAME', cmd(setname, { minParams: 1 })],
  ['MONITOR', cmd(monitor, { minParams: 1 })],
  // server operators
  ['OPER', cmd(oper, { minParams: 2 })],
  ['KILL', cmd(kill, { minParams: 1 })],
  ['WALLOPS', cmd(wallops, { minParams: 1 })],
  ['KLINE', cmd(kline)],
  ['UNKLINE', cmd(unkline, { minParams: 1 })],
]);
