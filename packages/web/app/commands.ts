// Slash commands. Parsing and the command table are pure (no DOM): the app gives a CommandHost
// that sends and prints. A line that starts with '/' is never sent as text unless it starts with
// '//' (then one '/' is dropped and the rest is text), so a mistyped '/msg' cannot leak into a
// channel.

export type Input = { kind: 'text'; text: string } | { kind: 'command'; name: string; args: string } | { kind: 'empty' };

export function parseInput(line: string): Input {
  if (line.trim() === '') return { kind: 'empty' };
  if (line.startsWith('//')) return { kind: 'text', text: line.slice(1) };
  if (!line.startsWith('/')) return { kind: 'text', text: line };
  const m = /^\/(\S*)\s*([\s\S]*)$/.exec(line) as RegExpExecArray;
  return { kind: 'command', name: (m[1] ?? '').toLowerCase(), args: m[2] ?? '' };
}

/** The buffer a command was typed in. */
export interface Where {
  kind: 'server' | 'channel' | 'dm';
  name: string;
}

/** What commands may do; the app implements it over the connection and the buffers. */
export interface CommandHost {
  where(): Where;
  /** An info or error line in the buffer the command was typed in. */
  print(text: string, error?: boolean): void;
  /** Sends a PRIVMSG (or ACTION) to a channel or nick, shown pending in its buffer. */
  say(target: string, text: string, action?: boolean): void;
  join(channels: string[]): void;
  part(channel: string, reason: string): void;
  /** Closes a buffer: parts a channel, forgets a DM. */
  close(name: string): void;
  /** Opens and shows the buffer of a nick (a DM) or of a channel. */
  query(name: string): void;
  /** Sends a command; its replies are printed in the current buffer. */
  send(command: string, params: string[]): void;
  /** Sends a raw line unchecked (for /quote). */
  raw(line: string): void;
  clear(): void;
  quit(reason: string): void;
  /** Leaves and forgets the session and the password kept for reconnects. */
  logout(): void;
}

interface Command {
  usage: string;
  help: string;
  run(h: CommandHost, args: string[], rest: (n: number) => string): void;
}

const isChannel = (s: string): boolean => s.startsWith('#');

/** The channel a command applies to: an explicit '#name' first argument, else the current one. */
function channelArg(h: CommandHost, args: string[]): { channel: string; skip: number } | null {
  const first = args[0];
  if (first !== undefined && isChannel(first)) return { channel: first, skip: 1 };
  const w = h.where();
  if (w.kind === 'channel') return { channel: w.name, skip: 0 };
  h.print('Not in a channel: name one (#channel) or switch to a channel first', true);
  return null;
}

function opMode(sign: '+' | '-'): Command['run'] {
  return (h, args) => {
    const c = channelArg(h, args);
    if (!c) return;
    const nicks = args.slice(c.skip);
    if (nicks.length === 0) return h.print(`Usage: /${sign === '+' ? 'op' : 'deop'} nick…`, true);
    h.send('MODE', [c.channel, sign + 'o'.repeat(nicks.length), ...nicks]);
  };
}

export const COMMANDS: Record<string, Command> = {
  join: {
    usage: '/join #channel[,#other]',
    help: 'join channels (the # may be left out)',
    run: (h, args) => {
      const names = (args[0] ?? '').split(',').filter((s) => s !== '');
      if (names.length === 0) return h.print('Usage: /join #channel', true);
      h.join(names.map((n) => (isChannel(n) ? n : `#${n}`)));
    },
  },
  part: {
    usage: '/part [#channel] [reason]',
    help: 'leave a channel (in a DM: close it)',
    run: (h, args, rest) => {
      const first = args[0];
      if (first !== undefined && isChannel(first)) return h.part(first, rest(1));
      const w = h.where();
      if (w.kind === 'channel') return h.part(w.name, rest(0));
      if (w.kind === 'dm') return h.close(w.name);
      h.print('Usage: /part #channel', true);
    },
  },
  close: {
    usage: '/close',
    help: 'close this buffer (leaves a channel, forgets a DM)',
    run: (h) => {
      const w = h.where();
      if (w.kind === 'server') return h.print('The server buffer cannot be closed', true);
      h.close(w.name);
    },
  },
  msg: {
    usage: '/msg <nick|#channel> <text>',
    help: 'send a private message (or a message to another channel)',
    run: (h, args, rest) => {
      const target = args[0];
      const text = rest(1);
      if (target === undefined || text === '') return h.print('Usage: /msg nick text', true);
      h.query(target);
      h.say(target, text);
    },
  },
  query: {
    usage: '/query <nick> [text]',
    help: 'open a private conversation',
    run: (h, args, rest) => {
      const nick = args[0];
      if (nick === undefined || isChannel(nick)) return h.print('Usage: /query nick [text]', true);
      h.query(nick);
      const text = rest(1);
      if (text !== '') h.say(nick, text);
    },
  },
  me: {
    usage: '/me <action>',
    help: 'send an action ("* you waves")',
    run: (h, _args, rest) => {
      const w = h.where();
      if (w.kind === 'server') return h.print('/me works in a channel or a DM', true);
      const text = rest(0);
      if (text === '') return h.print('Usage: /me action', true);
      h.say(w.name, text, true);
    },
  },
  nick: {
    usage: '/nick <newnick>',
    help: 'change your nick',
    run: (h, args) => (args[0] ? h.send('NICK', [args[0]]) : h.print('Usage: /nick newnick', true)),
  },
  topic: {
    usage: '/topic [#channel] [text]',
    help: 'show or set the topic',
    run: (h, args, rest) => {
      const c = channelArg(h, args);
      if (!c) return;
      const text = rest(c.skip);
      h.send('TOPIC', text === '' ? [c.channel] : [c.channel, text]);
    },
  },
  names: {
    usage: '/names [#channel]',
    help: 'list the members of a channel',
    run: (h, args) => {
      const c = channelArg(h, args);
      if (c) h.send('NAMES', [c.channel]);
    },
  },
  whois: {
    usage: '/whois <nick>',
    help: 'who is this',
    run: (h, args) => (args[0] ? h.send('WHOIS', [args[0]]) : h.print('Usage: /whois nick', true)),
  },
  away: {
    usage: '/away [message]',
    help: 'set away with a message, or come back without one',
    run: (h, _args, rest) => h.send('AWAY', rest(0) === '' ? [] : [rest(0)]),
  },
  kick: {
    usage: '/kick [#channel] <nick> [reason]',
    help: 'remove someone from a channel (operators)',
    run: (h, args, rest) => {
      const c = channelArg(h, args);
      if (!c) return;
      const nick = args[c.skip];
      if (nick === undefined) return h.print('Usage: /kick nick [reason]', true);
      const reason = rest(c.skip + 1);
      h.send('KICK', reason === '' ? [c.channel, nick] : [c.channel, nick, reason]);
    },
  },
  op: { usage: '/op <nick…>', help: 'give channel operator status', run: opMode('+') },
  deop: { usage: '/deop <nick…>', help: 'take channel operator status', run: opMode('-') },
  mode: {
    usage: '/mode [target] [modes [args…]]',
    help: 'show or change modes (of this channel unless a target is named)',
    run: (h, args) => {
      const first = args[0];
      if (first !== undefined && !/^[+-]/.test(first)) return h.send('MODE', args);
      const c = channelArg(h, []);
      if (c) h.send('MODE', [c.channel, ...args]);
    },
  },
  quote: {
    usage: '/quote <raw IRC line>',
    help: 'send a raw line to the server',
    run: (h, _args, rest) => (rest(0) === '' ? h.print('Usage: /quote COMMAND params', true) : h.raw(rest(0))),
  },
  ns: {
    usage: '/ns <command>',
    help: 'talk to NickServ (HELP, INFO, GHOST, IDENTIFY …); what follows the command word is not shown',
    run: (h, _args, rest) => (rest(0) === '' ? h.print('Usage: /ns help', true) : h.say('NickServ', rest(0))),
  },
  logout: { usage: '/logout', help: 'log out of your account: disconnect and forget the password and this session', run: (h) => h.logout() },
  clear: { usage: '/clear', help: 'clear this buffer (history stays on the server)', run: (h) => h.clear() },
  quit: { usage: '/quit [reason]', help: 'disconnect and forget this session', run: (h, _a, rest) => h.quit(rest(0)) },
  help: {
    usage: '/help [command]',
    help: 'this list',
    run: (h, args) => {
      const name = (args[0] ?? '').replace(/^\//, '').toLowerCase();
      if (name !== '') {
        const c = COMMANDS[ALIASES[name] ?? name];
        return c ? h.print(`${c.usage} — ${c.help}`) : h.print(`No command /${name}`, true);
      }
      h.print('Commands (Tab completes nicks, #channels and commands; //text sends "/text"):');
      for (const c of Object.values(COMMANDS)) h.print(`  ${c.usage} — ${c.help}`);
      h.print('Keys: Alt+↑/↓ previous/next buffer, Ctrl+K jump to a buffer, ↑ last message typed');
    },
  },
};

/** Short names IRC users type. */
export const ALIASES: Record<string, string> = { j: 'join', leave: 'part', raw: 'quote', q: 'query', w: 'whois', m: 'msg', wc: 'close', nickserv: 'ns' };

/** Raw commands that carry a password. */
const SECRET_RAW = /^\s*(PASS|OPER|AUTHENTICATE|REGISTER)\b/i;

/**
 * A line that may carry a password: anything to NickServ (typed in its buffer, or a command that
 * names it: /msg, /query, /ns, /quote PRIVMSG …) and raw PASS, OPER, AUTHENTICATE, REGISTER.
 * The input history does not keep it.
 */
export function isSecret(line: string, where: Where): boolean {
  const input = parseInput(line);
  if (input.kind === 'text') return where.kind === 'dm' && where.name.toLowerCase() === 'nickserv';
  if (input.kind === 'empty') return false;
  const name = ALIASES[input.name] ?? input.name;
  // Any command naming NickServ, mistyped ones included (they are not sent, but were typed).
  return name === 'ns' || /\bnickserv\b/i.test(input.args) || (name === 'quote' && SECRET_RAW.test(input.args));
}

export const COMMAND_NAMES: readonly string[] = Object.keys(COMMANDS);

/** Runs one input line: text goes to the current buffer, commands through the table. */
export function execute(h: CommandHost, line: string): void {
  const input = parseInput(line);
  if (input.kind === 'empty') return;
  if (input.kind === 'text') {
    const w = h.where();
    if (w.kind === 'server') return h.print('This is the server buffer: join a channel (/join #name) or open a DM (/query nick)', true);
    return h.say(w.name, input.text);
  }
  const cmd = COMMANDS[ALIASES[input.name] ?? input.name];
  if (!cmd) return h.print(`Unknown command /${input.name} (not sent). /help lists the commands; //${input.name} sends it as text.`, true);
  const args = input.args.split(/\s+/).filter((s) => s !== '');
  // The text after the n-th argument, spacing kept.
  const rest = (n: number): string => {
    let s = input.args;
    for (let i = 0; i < n; i++) s = s.replace(/^\s*\S+/, '');
    return s.replace(/^\s+/, '');
  };
  cmd.run(h, args, rest);
}
