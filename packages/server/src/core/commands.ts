import { N, parseMsgid, parseServerTime, roomTag } from '@parley/protocol';
import type { IrcMessage } from '@parley/protocol';
import type { ModeChange } from '../cluster/state.js';
import type { Selector, StoredMessage } from '../store/store.js';
import { CAP_BITS, CAP_LS, Cap } from './caps.js';
import type { ChatNode } from './node.js';
import { Outgoing } from './outgoing.js';
import { type Reply, batchId } from './reply.js';
import type { Session } from './session.js';
import { topics } from './envelope.js';

export type Handler = (node: ChatNode, s: Session, msg: IrcMessage, r: Reply) => void | Promise<void>;

const NICK_RE = /^[A-Za-z[\]\\`_^{|}][A-Za-z0-9[\]\\`_^{|}-]*$/;
// eslint-disable-next-line no-control-regex
const BAD_CHANNEL_CHARS = /[\s,\x00-\x1f\x7f]/;

/** ISUPPORT's CASEMAPPING=ascii */
export const lower = (s: string): string => s.toLowerCase();

function isChannel(name: string): boolean {
  return name.startsWith('#');
}

function validChannel(node: ChatNode, name: string): boolean {
  return name.length > 1 && name.length <= node.config.limits.channelLen && name.startsWith('#') && !BAD_CHANNEL_CHARS.test(name);
}

function validNick(node: ChatNode, nick: string): boolean {
  return nick.length <= node.config.limits.nickLen && NICK_RE.test(nick);
}

/** The room key of a direct conversation: both nicks, lower-cased and sorted. */
export function dmRoom(a: string, b: string): string {
  const x = lower(a);
  const y = lower(b);
  return x < y ? `dm:${x},${y}` : `dm:${y},${x}`;
}

function num(node: ChatNode, s: Session, r: Reply, code: string, ...params: string[]): void {
  r.send(node.numericLine(s, code, params));
}

function fail(node: ChatNode, r: Reply, command: string, code: string, context: string[], text: string): void {
  const ctx = context.length ? ` ${context.join(' ')}` : '';
  r.send(`:${node.serverName} FAIL ${command} ${code}${ctx} :${text}`);
}

function needParams(node: ChatNode, s: Session, r: Reply, msg: IrcMessage, n: number): boolean {
  if (msg.params.length >= n && (n === 0 || msg.params[n - 1] !== '')) return true;
  num(node, s, r, N.ERR_NEEDMOREPARAMS, msg.command, 'Not enough parameters');
  return false;
}

// ---- registration ---------------------------------------------------------------------------

const cap: Handler = (node, s, msg, r) => {
  const sub = (msg.params[0] ?? '').toUpperCase();
  const target = s.registered ? s.nick : '*';
  switch (sub) {
    case 'LS':
      if (!s.registered) s.capNegotiating = true;
      r.send(`:${node.serverName} CAP ${target} LS :${CAP_LS}`);
      return;
    case 'LIST': {
      const on = [...CAP_BITS].filter(([, bit]) => s.has(bit)).map(([name]) => name);
      r.send(`:${node.serverName} CAP ${target} LIST :${on.join(' ')}`);
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
      r.send(`:${node.serverName} CAP ${target} ${ok ? 'ACK' : 'NAK'} :${asked}`);
      return;
    }
    case 'END':
      if (s.registered) return;
      s.capNegotiating = false;
      return tryRegister(node, s, r);
    default:
      num(node, s, r, N.ERR_INVALIDCAPCMD, sub || '*', 'Invalid CAP command');
  }
};

const pass: Handler = (node, s, msg, r) => {
  if (s.registered) return num(node, s, r, N.ERR_ALREADYREGISTERED, 'You may not reregister');
  if (!needParams(node, s, r, msg, 1)) return;
  const want = node.config.password;
  s.passOk = want === null || msg.params[0] === want;
};

const nick: Handler = async (node, s, msg, r) => {
  const wanted = msg.params[0] ?? '';
  if (!wanted) return num(node, s, r, N.ERR_NONICKNAMEGIVEN, 'No nickname given');
  if (!validNick(node, wanted)) return num(node, s, r, N.ERR_ERRONEUSNICKNAME, wanted, 'Erroneous nickname');
  if (!s.registered) {
    const key = lower(wanted);
    const local = node.nicks.get(key);
    if (local && local !== s) return num(node, s, r, N.ERR_NICKNAMEINUSE, wanted, 'Nickname is already in use');
    s.nick = wanted;
    return tryRegister(node, s, r);
  }
  if (wanted === s.nick) return;
  const oldSource = s.source;
  const oldKey = s.nickKey;
  const res = await node.state.changeNick(s.nick, wanted, node.id);
  if (res.kind === 'taken') return num(node, s, r, N.ERR_NICKNAMEINUSE, wanted, 'Nickname is already in use');
  const newKey = lower(wanted);
  if (newKey !== oldKey) {
    node.nicks.delete(oldKey);
    node.nicks.set(newKey, s);
    await node.broker.subscribe(topics.nick(newKey));
    void node.broker.unsubscribe(topics.nick(oldKey));
  }
  s.nick = wanted;
  s.nickKey = newKey;
  node.announceUser(res.channels, `:${oldSource} NICK ${wanted}`, s);
};

const user: Handler = (node, s, msg, r) => {
  if (s.registered) return num(node, s, r, N.ERR_ALREADYREGISTERED, 'You may not reregister');
  if (!needParams(node, s, r, msg, 4)) return;
  const u = (msg.params[0] ?? '').replace(/[^A-Za-z0-9._-]/g, '').slice(0, 16);
  s.user = `~${u || 'user'}`;
  s.realname = (msg.params[3] ?? '').slice(0, 100);
  return tryRegister(node, s, r);
};

async function tryRegister(node: ChatNode, s: Session, r: Reply): Promise<void> {
  if (s.registered || s.registering || s.capNegotiating || s.nick === '*' || !s.user) return;
  if (node.config.password !== null && !s.passOk) {
    num(node, s, r, N.ERR_PASSWDMISMATCH, 'Password incorrect');
    r.end();
    node.drop(s, 'Bad password', 'password');
    return;
  }
  s.registering = true;
  try {
    const key = lower(s.nick);
    if (node.nicks.has(key)) return num(node, s, r, N.ERR_NICKNAMEINUSE, s.nick, 'Nickname is already in use');
    // Subscribe before the nick is visible, so no direct message can be missed.
    await node.broker.subscribe(topics.nick(key));
    const ok = await node.state.claimNick({
      nick: s.nick, user: s.user, host: s.host, realname: s.realname, inst: node.id,
      server: node.serverName, away: null, signon: Date.now(),
    });
    if (!ok) {
      if (!node.nicks.has(key)) void node.broker.unsubscribe(topics.nick(key));
      const taken = s.nick;
      s.nick = '*';
      return num(node, s, r, N.ERR_NICKNAMEINUSE, taken, 'Nickname is already in use');
    }
    if (s.closed) {
      await node.state.releaseUser(key, node.id);
      return;
    }
    s.nickKey = key;
    s.registered = true;
    node.nicks.set(key, s);
    node.metrics.users.inc();
    welcome(node, s, r);
  } finally {
    s.registering = false;
  }
}

function isupport(node: ChatNode): string[] {
  const l = node.config.limits;
  return [
    'CASEMAPPING=ascii', 'CHANTYPES=#', 'CHANMODES=,,,nt', 'PREFIX=(o)@', `NICKLEN=${l.nickLen}`,
    `CHANNELLEN=${l.channelLen}`, `TOPICLEN=${l.topicLen}`, `AWAYLEN=${l.awayLen}`, `KICKLEN=${l.kickLen}`,
    `CHANLIMIT=#:${l.channelsPerUser}`, `NETWORK=${node.config.networkName}`, `CHATHISTORY=${l.historyMax}`,
    'MSGREFTYPES=msgid,timestamp', 'UTF8ONLY', `LINELEN=${l.lineBytes}`, 'TARGMAX=PRIVMSG:1,NOTICE:1,JOIN:,PART:,NAMES:1,WHOIS:1',
  ];
}

function welcome(node: ChatNode, s: Session, r: Reply): void {
  const net = node.config.networkName;
  num(node, s, r, N.RPL_WELCOME, `Welcome to the ${net} IRC Network ${s.source}`);
  num(node, s, r, N.RPL_YOURHOST, `Your host is ${node.serverName}, running parley-0.1`);
  num(node, s, r, N.RPL_CREATED, `This server was created ${new Date(node.startedAt).toISOString()}`);
  r.send(node.numericLine(s, N.RPL_MYINFO, [node.serverName, 'parley-0.1', 'i', 'ont']).replace(/ :ont$/, ' ont'));
  const tokens = isupport(node);
  for (let i = 0; i < tokens.length; i += 12) {
    num(node, s, r, N.RPL_ISUPPORT, ...tokens.slice(i, i + 12), 'are supported by this server');
  }
  motd(node, s, { command: 'MOTD', params: [], tags: {} }, r);
}

const motd: Handler = (node, s, _msg, r) => {
  const lines = node.config.motd;
  if (lines.length === 0) return num(node, s, r, N.ERR_NOMOTD, 'MOTD File is missing');
  num(node, s, r, N.RPL_MOTDSTART, `- ${node.serverName} Message of the day - `);
  for (const l of lines) num(node, s, r, N.RPL_MOTD, `- ${l}`);
  num(node, s, r, N.RPL_ENDOFMOTD, 'End of /MOTD command.');
};

const ping: Handler = (node, s, msg, r) => {
  if (msg.params.length === 0) return num(node, s, r, N.ERR_NOORIGIN, 'No origin specified');
  r.send(`:${node.serverName} PONG ${node.serverName} :${msg.params[0]}`);
};

const pong: Handler = () => undefined;

const quit: Handler = async (node, s, msg) => {
  // Messages sent before the QUIT are delivered before it.
  if (s.inflight) await s.inflight;
  if (s.closed) return;
  const reason = msg.params[0] ? `Quit: ${msg.params[0]}` : 'Quit';
  s.write(`ERROR :Closing Link: ${s.host} (${reason})`);
  s.hangUp();
  node.disconnected(s, reason);
};

// ---- channels -------------------------------------------------------------------------------

const join: Handler = async (node, s, msg, r) => {
  if (!needParams(node, s, r, msg, 1)) return;
  if (msg.params[0] === '0') {
    for (const room of [...s.rooms.values()]) await partOne(node, s, room.name, 'Left all channels', r);
    return;
  }
  for (const name of (msg.params[0] ?? '').split(',')) {
    if (!name) continue;
    if (!validChannel(node, name)) {
      num(node, s, r, N.ERR_NOSUCHCHANNEL, name, 'No such channel');
      continue;
    }
    await joinOne(node, s, name, r);
  }
};

async function joinOne(node: ChatNode, s: Session, name: string, r: Reply): Promise<void> {
  const key = lower(name);
  if (s.rooms.has(key)) return;
  // Subscribe before joining, so that nothing published after the join is missed.
  const room = await node.openRoom(key, name);
  const res = await node.state.join(key, name, s.nick, node.config.limits.channelsPerUser);
  if (res.kind !== 'joined') {
    if (room.members.size === 0) node.leaveLocal(room, s);
    if (res.kind === 'too-many') num(node, s, r, N.ERR_TOOMANYCHANNELS, name, 'You have joined too many channels');
    return;
  }
  if (s.closed) {
    await node.state.part(key, s.nick);
    if (room.members.size === 0) node.leaveLocal(room, s);
    return;
  }
  room.name = res.channel.name;
  room.members.add(s);
  s.rooms.set(key, room);
  const out = node.event(`:${s.source} JOIN ${res.channel.name}`);
  // The joiner's own JOIN is part of its response (labeled); the others get it by broadcast.
  r.send(out.lineFor(s.caps));
  room.members.delete(s);
  node.channelEvent(key, out);
  room.members.add(s);
  if (res.channel.topic) {
    num(node, s, r, N.RPL_TOPIC, res.channel.name, res.channel.topic);
    num(node, s, r, N.RPL_TOPICWHOTIME, res.channel.name, res.channel.topicBy, String(Math.floor(res.channel.topicAt / 1000)));
  }
  await sendNames(node, s, key, res.channel.name, r);
}

async function sendNames(node: ChatNode, s: Session, key: string, name: string, r: Reply): Promise<void> {
  const members = await node.state.members(key);
  const head = node.numericLine(s, N.RPL_NAMREPLY, ['=', name, '']);
  let line = head;
  let count = 0;
  for (const m of members) {
    const item = (m.op ? '@' : '') + m.nick;
    if (count > 0 && line.length + item.length + 1 > 400) {
      r.send(line);
      line = head;
      count = 0;
    }
    line += count === 0 ? item : ` ${item}`;
    count++;
  }
  if (count > 0) r.send(line);
  num(node, s, r, N.RPL_ENDOFNAMES, name, 'End of /NAMES list.');
}

const part: Handler = async (node, s, msg, r) => {
  if (!needParams(node, s, r, msg, 1)) return;
  const reason = msg.params[1] ?? '';
  for (const name of (msg.params[0] ?? '').split(',')) {
    if (name) await partOne(node, s, name, reason, r);
  }
};

async function partOne(node: ChatNode, s: Session, name: string, reason: string, r: Reply): Promise<void> {
  const key = lower(name);
  const res = await node.state.part(key, s.nick);
  if (res === 'no-channel') return num(node, s, r, N.ERR_NOSUCHCHANNEL, name, 'No such channel');
  if (res === 'not-on-channel') return num(node, s, r, N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  const room = s.rooms.get(key);
  const display = room?.name ?? name;
  const out = node.event(`:${s.source} PART ${display}${reason ? ` :${reason}` : ''}`);
  r.send(out.lineFor(s.caps));
  if (room) node.leaveLocal(room, s);
  node.channelEvent(key, out, s.nickKey);
}

const topic: Handler = async (node, s, msg, r) => {
  if (!needParams(node, s, r, msg, 1)) return;
  const name = msg.params[0] ?? '';
  const key = lower(name);
  if (msg.params.length < 2) {
    const ch = await node.state.channel(key);
    if (!ch) return num(node, s, r, N.ERR_NOSUCHCHANNEL, name, 'No such channel');
    if (!ch.topic) return num(node, s, r, N.RPL_NOTOPIC, ch.name, 'No topic is set');
    num(node, s, r, N.RPL_TOPIC, ch.name, ch.topic);
    num(node, s, r, N.RPL_TOPICWHOTIME, ch.name, ch.topicBy, String(Math.floor(ch.topicAt / 1000)));
    return;
  }
  const text = (msg.params[1] ?? '').slice(0, node.config.limits.topicLen);
  const res = await node.state.setTopic(key, s.nick, text, s.source, Date.now());
  if (res === 'no-channel') return num(node, s, r, N.ERR_NOSUCHCHANNEL, name, 'No such channel');
  if (res === 'not-on-channel') return num(node, s, r, N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  if (res === 'not-op') return num(node, s, r, N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
  const display = s.rooms.get(key)?.name ?? name;
  const out = node.event(`:${s.source} TOPIC ${display} :${text}`);
  r.send(out.lineFor(s.caps));
  broadcastExcept(node, key, out, s);
};

/** A channel event whose originator already got it in its (labeled) response. */
function broadcastExcept(node: ChatNode, key: string, out: Outgoing, s: Session, leave?: string): void {
  const room = node.rooms.get(key);
  const had = room?.members.delete(s) ?? false;
  node.channelEvent(key, out, leave);
  if (room && had) room.members.add(s);
}

const names: Handler = async (node, s, msg, r) => {
  const arg = msg.params[0];
  if (!arg) return num(node, s, r, N.RPL_ENDOFNAMES, '*', 'End of /NAMES list.');
  for (const name of arg.split(',')) {
    if (!name) continue;
    const key = lower(name);
    const ch = await node.state.channel(key);
    if (!ch) num(node, s, r, N.RPL_ENDOFNAMES, name, 'End of /NAMES list.');
    else await sendNames(node, s, key, ch.name, r);
  }
};

const list: Handler = async (node, s, msg, r) => {
  const keys = msg.params[0] ? msg.params[0].split(',').filter(Boolean).map(lower) : await node.state.listChannels();
  const shown = keys.slice(0, 10_000);
  const [infos, counts] = await Promise.all([node.state.channels(shown), node.state.memberCounts(shown)]);
  num(node, s, r, N.RPL_LISTSTART, 'Channel', 'Users  Name');
  infos.forEach((ch, i) => {
    if (ch) num(node, s, r, N.RPL_LIST, ch.name, String(counts[i] ?? 0), ch.topic);
  });
  num(node, s, r, N.RPL_LISTEND, 'End of /LIST');
};

const who: Handler = async (node, s, msg, r) => {
  const mask = msg.params[0] ?? '*';
  if (isChannel(mask)) {
    const key = lower(mask);
    const ch = await node.state.channel(key);
    if (ch) {
      const members = await node.state.members(key);
      const users = await node.state.getUsers(members.map((m) => m.nick));
      users.forEach((u, i) => {
        if (u) whoLine(node, s, r, ch.name, u.nick, u.user, u.host, u.server, u.away !== null, members[i]?.op ?? false, u.realname);
      });
    }
  } else if (mask !== '*') {
    const u = await node.state.getUser(mask);
    if (u) whoLine(node, s, r, '*', u.nick, u.user, u.host, u.server, u.away !== null, false, u.realname);
  }
  num(node, s, r, N.RPL_ENDOFWHO, mask, 'End of /WHO list.');
};

function whoLine(node: ChatNode, s: Session, r: Reply, chan: string, nk: string, user: string, host: string, server: string, away: boolean, op: boolean, real: string): void {
  num(node, s, r, N.RPL_WHOREPLY, chan, user, host, server, nk, `${away ? 'G' : 'H'}${op ? '@' : ''}`, `0 ${real}`);
}

const whois: Handler = async (node, s, msg, r) => {
  if (!msg.params[0]) return num(node, s, r, N.ERR_NONICKNAMEGIVEN, 'No nickname given');
  const target = msg.params[msg.params.length - 1] ?? '';
  const u = await node.state.getUser(target);
  if (!u) {
    num(node, s, r, N.ERR_NOSUCHNICK, target, 'No such nick/channel');
    return num(node, s, r, N.RPL_ENDOFWHOIS, target, 'End of /WHOIS list.');
  }
  num(node, s, r, N.RPL_WHOISUSER, u.nick, u.user, u.host, '*', u.realname);
  const chans = await node.state.userChannels(u.nick);
  if (chans.length) {
    const infos = await node.state.channels(chans);
    const members = await Promise.all(chans.map((c) => node.state.members(c)));
    const parts: string[] = [];
    infos.forEach((ch, i) => {
      if (!ch) return;
      const op = members[i]?.find((m) => lower(m.nick) === lower(u.nick))?.op ?? false;
      parts.push(`${op ? '@' : ''}${ch.name}`);
    });
    if (parts.length) num(node, s, r, N.RPL_WHOISCHANNELS, u.nick, parts.join(' '));
  }
  num(node, s, r, N.RPL_WHOISSERVER, u.nick, u.server, 'Parley');
  if (u.away !== null) num(node, s, r, N.RPL_AWAY, u.nick, u.away);
  num(node, s, r, N.RPL_WHOISIDLE, u.nick, '0', String(Math.floor(u.signon / 1000)), 'seconds idle, signon time');
  num(node, s, r, N.RPL_ENDOFWHOIS, u.nick, 'End of /WHOIS list.');
};

const away: Handler = async (node, s, msg, r) => {
  const text = (msg.params[0] ?? '').slice(0, node.config.limits.awayLen);
  s.away = text || null;
  await node.state.setAway(s.nick, s.away);
  if (s.away) num(node, s, r, N.RPL_NOWAWAY, 'You have been marked as being away');
  else num(node, s, r, N.RPL_UNAWAY, 'You are no longer marked as being away');
};

const mode: Handler = async (node, s, msg, r) => {
  if (!needParams(node, s, r, msg, 1)) return;
  const target = msg.params[0] ?? '';
  if (!isChannel(target)) {
    if (lower(target) !== s.nickKey) return num(node, s, r, N.ERR_USERSDONTMATCH, "Can't change mode for other users");
    if (msg.params[1] && /[^+\-i]/.test(msg.params[1])) return num(node, s, r, N.ERR_UMODEUNKNOWNFLAG, 'Unknown MODE flag');
    return num(node, s, r, N.RPL_UMODEIS, '+');
  }
  const key = lower(target);
  const spec = msg.params[1];
  if (!spec) {
    const ch = await node.state.channel(key);
    if (!ch) return num(node, s, r, N.ERR_NOSUCHCHANNEL, target, 'No such channel');
    r.send(node.numericLine(s, N.RPL_CHANNELMODEIS, [ch.name, `+${ch.modes}`]).replace(/ :\+/, ' +'));
    num(node, s, r, N.RPL_CREATIONTIME, ch.name, String(Math.floor(ch.created / 1000)));
    return;
  }
  if (spec === 'b' || spec === '+b') return num(node, s, r, N.RPL_ENDOFBANLIST, target, 'End of channel ban list');
  const changes: ModeChange[] = [];
  let add = true;
  let argi = 2;
  for (const c of spec) {
    if (c === '+' || c === '-') {
      add = c === '+';
    } else if (c === 'o') {
      const nk = msg.params[argi++];
      if (!nk) return num(node, s, r, N.ERR_NEEDMOREPARAMS, 'MODE', 'Not enough parameters');
      changes.push({ add, mode: 'o', nick: nk });
    } else if (c === 't' || c === 'n') {
      changes.push({ add, mode: c });
    } else {
      return num(node, s, r, N.ERR_UNKNOWNMODE, c, 'is unknown mode char to me');
    }
  }
  const res = await node.state.setModes(key, s.nick, changes);
  if (res.kind === 'no-channel') return num(node, s, r, N.ERR_NOSUCHCHANNEL, target, 'No such channel');
  if (res.kind === 'not-op') return num(node, s, r, N.ERR_CHANOPRIVSNEEDED, target, "You're not channel operator");
  for (const m of res.missing) num(node, s, r, N.ERR_USERNOTINCHANNEL, m, target, "They aren't on that channel");
  if (res.applied.length === 0) return;
  let letters = '';
  let sign = '';
  const args: string[] = [];
  for (const c of res.applied) {
    const sg = c.add ? '+' : '-';
    if (sg !== sign) {
      letters += sg;
      sign = sg;
    }
    letters += c.mode;
    if (c.nick) args.push(c.nick);
  }
  const display = s.rooms.get(key)?.name ?? target;
  const out = node.event(`:${s.source} MODE ${display} ${[letters, ...args].join(' ')}`);
  r.send(out.lineFor(s.caps));
  broadcastExcept(node, key, out, s);
};

const kick: Handler = async (node, s, msg, r) => {
  if (!needParams(node, s, r, msg, 2)) return;
  const name = msg.params[0] ?? '';
  const target = msg.params[1] ?? '';
  const key = lower(name);
  const reason = (msg.params[2] || s.nick).slice(0, node.config.limits.kickLen);
  const res = await node.state.kick(key, s.nick, target);
  if (res === 'no-channel') return num(node, s, r, N.ERR_NOSUCHCHANNEL, name, 'No such channel');
  if (res === 'not-on-channel') return num(node, s, r, N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  if (res === 'not-op') return num(node, s, r, N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
  if (res === 'target-not-on-channel') return num(node, s, r, N.ERR_USERNOTINCHANNEL, target, name, "They aren't on that channel");
  const display = s.rooms.get(key)?.name ?? name;
  const out = node.event(`:${s.source} KICK ${display} ${target} :${reason}`);
  r.send(out.lineFor(s.caps));
  const targetKey = lower(target);
  broadcastExcept(node, key, out, s, targetKey);
  // A kicked local member leaves the local room too (remote ones do when the event arrives).
  const victim = node.nicks.get(targetKey);
  const room = node.rooms.get(key);
  if (victim && room?.members.has(victim)) node.leaveLocal(room, victim);
};

// ---- messages -------------------------------------------------------------------------------

const CLIENT_TAG = /^\+/;

function clientTags(tags: Record<string, string>): Record<string, string> | null {
  let out: Record<string, string> | null = null;
  for (const k in tags) {
    if (CLIENT_TAG.test(k)) (out ??= {})[k] = tags[k] as string;
  }
  return out;
}

const privmsg: Handler = (node, s, msg, r) => {
  const cmd = msg.command;
  const notice = cmd === 'NOTICE';
  if (msg.params.length === 0 || !msg.params[0]) {
    if (!notice) num(node, s, r, N.ERR_NORECIPIENT, `No recipient given (${cmd})`);
    return;
  }
  if (msg.params.length < 2 || msg.params[1] === '') {
    if (!notice) num(node, s, r, N.ERR_NOTEXTTOSEND, 'No text to send');
    return;
  }
  const target = msg.params[0] as string;
  const text = msg.params[1] as string;
  if (target.includes(',')) {
    if (!notice) num(node, s, r, N.ERR_TOOMANYTARGETS, target, 'Too many targets, send to one at a time');
    return;
  }
  node.metrics.messagesIn.inc({ kind: cmd });
  node.stats.messagesIn++;
  const tags = s.has(Cap.MessageTags) ? clientTags(msg.tags) : null;
  if (isChannel(target)) return channelMessage(node, s, cmd, target, text, tags, r);
  return directMessage(node, s, cmd, target, text, tags, r);
};

/**
 * Overload protection: when the room's shard already has `limits.storeBacklog` messages of this
 * instance waiting for their commit, a new message is refused with a retry hint (never dropped
 * silently) rather than queued behind seconds of backlog.
 */
function overloaded(node: ChatNode, room: string, cmd: string, target: string, r: Reply): boolean {
  if (node.store.backlog(room) < node.config.limits.storeBacklog) return false;
  node.metrics.messagesRefused.inc({ code: 'RATE_LIMITED' });
  fail(node, r, cmd, 'RATE_LIMITED', [target, '1'], 'Server busy: message not stored, retry in 1 second');
  return true;
}

async function channelMessage(node: ChatNode, s: Session, cmd: string, target: string, text: string, tags: Record<string, string> | null, r: Reply): Promise<void> {
  const key = lower(target);
  let room = s.rooms.get(key);
  if (!room) {
    // Not a member: allowed only into an existing channel without +n.
    // NOTICE never gets automatic replies (RFC 2812 3.3.2).
    const ch = await node.state.channel(key);
    if (!ch) return cmd === 'NOTICE' ? undefined : num(node, s, r, N.ERR_NOSUCHCHANNEL, target, 'No such channel');
    if (ch.modes.includes('n')) return cmd === 'NOTICE' ? undefined : num(node, s, r, N.ERR_CANNOTSENDTOCHAN, ch.name, 'Cannot send to channel');
    target = ch.name;
    room = undefined;
  } else {
    target = room.name;
  }
  const rest = `:${s.source} ${cmd} ${target} :${text}`;
  if (overloaded(node, key, cmd, target, r)) return;
  let stored;
  try {
    stored = await node.store.append({ room: key, source: s.source, command: cmd, target, text, tags });
  } catch (err) {
    node.metrics.messagesFailed.inc();
    node.log.error({ err: (err as Error).message, room: key }, 'message could not be stored');
    return fail(node, r, cmd, 'MESSAGE_ERROR', [target], 'Message could not be stored, it was not delivered; try again');
  }
  node.metrics.messagesStored.inc();
  node.stats.stored++;
  const out = node.storedLine(key, stored.seq, stored.time, rest, tags);
  // The echo is written by the room, in sequence order with everyone else's messages.
  const echo = s.echo ? r.takeAsOnly(out.lineFor(s.caps)) : null;
  node.roomMessageCommitted(key, stored.seq, out, s, echo);
}

async function directMessage(node: ChatNode, s: Session, cmd: string, target: string, text: string, tags: Record<string, string> | null, r: Reply): Promise<void> {
  const tkey = lower(target);
  const local = node.nicks.get(tkey);
  const u = local ? null : await node.state.getUser(target);
  if (!local && !u) {
    if (cmd !== 'NOTICE') num(node, s, r, N.ERR_NOSUCHNICK, target, 'No such nick/channel');
    return;
  }
  const display = local?.nick ?? u?.nick ?? target;
  const room = dmRoom(s.nick, display);
  const rest = `:${s.source} ${cmd} ${display} :${text}`;
  if (overloaded(node, room, cmd, display, r)) return;
  let stored;
  try {
    stored = await node.store.append({ room, source: s.source, command: cmd, target: display, text, tags });
  } catch (err) {
    node.metrics.messagesFailed.inc();
    node.log.error({ err: (err as Error).message, room }, 'direct message could not be stored');
    return fail(node, r, cmd, 'MESSAGE_ERROR', [display], 'Message could not be stored, it was not delivered; try again');
  }
  node.metrics.messagesStored.inc();
  node.stats.stored++;
  const out = node.storedLine(room, stored.seq, stored.time, rest, tags);
  if (s.echo) r.send(out.lineFor(s.caps));
  const away = local ? local.away : u?.away ?? null;
  if (away !== null && cmd === 'PRIVMSG') num(node, s, r, N.RPL_AWAY, display, away);
  const recipient = node.nicks.get(tkey);
  if (recipient) {
    if (recipient !== s) {
      recipient.write(out.lineFor(recipient.caps));
      node.countDelivery(out, 1);
    }
    return;
  }
  node.publish(topics.nick(tkey), { k: 'd', o: node.id, to: tkey, t: out.time, i: out.msgid, g: out.clientTags, l: out.rest });
}

// ---- history --------------------------------------------------------------------------------

function parseSelector(node: ChatNode, room: string, v: string): Selector | null | 'bad' {
  if (v === '*') return null;
  if (v.startsWith('msgid=')) {
    const m = parseMsgid(v.slice(6));
    if (!m || m.tag !== roomTag(room)) return 'bad';
    return { kind: 'seq', seq: m.seq };
  }
  if (v.startsWith('timestamp=')) {
    const t = parseServerTime(v.slice(10));
    return t === null ? 'bad' : { kind: 'time', time: t };
  }
  return 'bad';
}

const chathistory: Handler = async (node, s, msg, r) => {
  const sub = (msg.params[0] ?? '').toUpperCase();
  const max = node.config.limits.historyMax;
  if (sub === 'TARGETS') {
    const a = parseServerTime((msg.params[1] ?? '').replace(/^timestamp=/, ''));
    const b = parseServerTime((msg.params[2] ?? '').replace(/^timestamp=/, ''));
    const limit = Number(msg.params[3]);
    if (a === null || b === null || !Number.isInteger(limit) || limit < 1) {
      return fail(node, r, 'CHATHISTORY', 'INVALID_PARAMS', ['TARGETS'], 'Expected: TARGETS timestamp=A timestamp=B limit');
    }
    const acts = await node.store.targets([...s.rooms.keys()], s.nickKey, Math.min(a, b), Math.max(a, b), Math.min(limit, max));
    const id = batchId();
    const batched = s.has(Cap.Batch);
    r.singleBatch = batched;
    if (batched) r.send(`:${node.serverName} BATCH +${id} draft/chathistory-targets`);
    for (const t of acts) {
      const name = t.room.startsWith('dm:') ? otherNick(t.room, s.nickKey) : (s.rooms.get(t.room)?.name ?? t.target);
      r.send(`${batched ? `@batch=${id} ` : ''}:${node.serverName} CHATHISTORY TARGETS ${name} ${new Date(t.latest).toISOString()}`);
    }
    if (batched) r.send(`:${node.serverName} BATCH -${id}`);
    return;
  }
  const kinds = ['LATEST', 'BEFORE', 'AFTER', 'AROUND', 'BETWEEN'];
  if (!kinds.includes(sub)) return fail(node, r, 'CHATHISTORY', 'INVALID_PARAMS', [sub || '*'], 'Unknown CHATHISTORY subcommand');
  const target = msg.params[1] ?? '';
  if (!target) return fail(node, r, 'CHATHISTORY', 'INVALID_PARAMS', [sub], 'No target given');
  const room = isChannel(target) ? lower(target) : dmRoom(s.nick, target);
  if (isChannel(target) ? !validChannel(node, target) : !validNick(node, target)) {
    return fail(node, r, 'CHATHISTORY', 'INVALID_TARGET', [sub, target], 'Invalid target');
  }
  // A channel's history is for its members (JOIN first, then fill the gap).
  if (isChannel(target) && !s.rooms.has(room)) {
    return fail(node, r, 'CHATHISTORY', 'INVALID_TARGET', [sub, target], 'You are not on that channel');
  }
  const nsel = sub === 'BETWEEN' ? 2 : 1;
  const limitArg = msg.params[2 + nsel];
  const limit = Number(limitArg);
  if (!Number.isInteger(limit) || limit < 1) return fail(node, r, 'CHATHISTORY', 'INVALID_PARAMS', [sub, limitArg ?? '*'], 'Invalid limit');
  const n = Math.min(limit, max);
  const sel1 = parseSelector(node, room, msg.params[2] ?? '');
  const sel2 = nsel === 2 ? parseSelector(node, room, msg.params[3] ?? '') : null;
  if (sel1 === 'bad' || sel2 === 'bad' || (sub !== 'LATEST' && sel1 === null) || (nsel === 2 && sel2 === null)) {
    return fail(node, r, 'CHATHISTORY', 'INVALID_MSGREFTYPE', [sub, target], 'Invalid message reference');
  }
  let rows: StoredMessage[];
  switch (sub) {
    case 'LATEST': rows = await node.store.latest(room, sel1, n); break;
    case 'BEFORE': rows = await node.store.before(room, sel1 as Selector, n); break;
    case 'AFTER': rows = await node.store.after(room, sel1 as Selector, n); break;
    case 'AROUND': rows = await node.store.around(room, sel1 as Selector, n); break;
    default: rows = await node.store.between(room, sel1 as Selector, sel2 as Selector, n);
  }
  const id = batchId();
  const batched = s.has(Cap.Batch);
  r.singleBatch = batched;
  if (batched) r.send(`:${node.serverName} BATCH +${id} chathistory ${target}`);
  for (const m of rows) {
    const out = node.storedLine(room, m.seq, m.time, `:${m.source} ${m.command} ${m.target} :${m.text}`, m.tags);
    r.send(batched ? out.lineWith(s.caps, `batch=${id}`) : out.lineFor(s.caps));
  }
  if (batched) r.send(`:${node.serverName} BATCH -${id}`);
};

function otherNick(room: string, me: string): string {
  const [a, b] = room.slice(3).split(',');
  return (a === me ? b : a) ?? '';
}

// ---- misc -----------------------------------------------------------------------------------

const ison: Handler = async (node, s, msg, r) => {
  const wanted = msg.params.join(' ').split(' ').filter(Boolean).slice(0, 50);
  const users = await node.state.getUsers(wanted);
  num(node, s, r, N.RPL_ISON, users.filter((u) => u !== null).map((u) => u?.nick).join(' '));
};

const lusers: Handler = (node, s, _msg, r) => {
  num(node, s, r, N.RPL_LUSERCLIENT, `There are ${node.nicks.size} users on this server`);
};

export const COMMANDS: ReadonlyMap<string, Handler> = new Map<string, Handler>([
  ['CAP', cap], ['PASS', pass], ['NICK', nick], ['USER', user], ['PING', ping], ['PONG', pong],
  ['QUIT', quit], ['JOIN', join], ['PART', part], ['PRIVMSG', privmsg], ['NOTICE', privmsg],
  ['TOPIC', topic], ['NAMES', names], ['LIST', list], ['WHO', who], ['WHOIS', whois], ['AWAY', away],
  ['MODE', mode], ['KICK', kick], ['CHATHISTORY', chathistory], ['MOTD', motd], ['ISON', ison],
  ['LUSERS', lusers],
]);

/**
 * Commands that do not hold back the connection's next lines while they wait for the store or
 * Redis. Everything else runs one at a time per connection, in order (a PRIVMSG right after a
 * JOIN sees the join done). Messages to one room still commit in the order they were sent.
 */
export const NON_BLOCKING: ReadonlySet<string> = new Set(['PRIVMSG', 'NOTICE', 'CHATHISTORY']);

/** Commands allowed before registration completes. */
export const PRE_REGISTRATION: ReadonlySet<string> = new Set(['CAP', 'PASS', 'NICK', 'USER', 'PING', 'PONG', 'QUIT']);
