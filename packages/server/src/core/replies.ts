import { N } from '@parley/protocol';

/**
 * The catalogue of every reply the server sends: numerics with their fixed texts, and the codes of
 * standard replies (`FAIL`). Handlers name an entry, never a code or a text, so a reply is worded
 * in one place; test/unit/docs.test.ts keeps this catalogue and docs/irc.md in step both ways.
 */

export interface NumericSpec {
  readonly name: keyof typeof N;
  readonly code: string;
  /** the fixed trailing text; null when the last parameter is data given by the caller */
  readonly text: string | null;
}

function num(name: keyof typeof N, text: string | null): NumericSpec {
  return { name, code: N[name], text };
}

export const RPL = {
  WELCOME: num('RPL_WELCOME', null),
  YOURHOST: num('RPL_YOURHOST', null),
  CREATED: num('RPL_CREATED', null),
  MYINFO: num('RPL_MYINFO', null),
  ISUPPORT: num('RPL_ISUPPORT', 'are supported by this server'),
  UMODEIS: num('RPL_UMODEIS', null),
  LUSERCLIENT: num('RPL_LUSERCLIENT', null),
  AWAY: num('RPL_AWAY', null),
  ISON: num('RPL_ISON', null),
  UNAWAY: num('RPL_UNAWAY', 'You are no longer marked as being away'),
  NOWAWAY: num('RPL_NOWAWAY', 'You have been marked as being away'),
  WHOISUSER: num('RPL_WHOISUSER', null),
  WHOISSERVER: num('RPL_WHOISSERVER', 'Parley'),
  ENDOFWHO: num('RPL_ENDOFWHO', 'End of /WHO list.'),
  WHOISIDLE: num('RPL_WHOISIDLE', 'seconds idle, signon time'),
  ENDOFWHOIS: num('RPL_ENDOFWHOIS', 'End of /WHOIS list.'),
  WHOISCHANNELS: num('RPL_WHOISCHANNELS', null),
  LISTSTART: num('RPL_LISTSTART', 'Users  Name'),
  LIST: num('RPL_LIST', null),
  LISTEND: num('RPL_LISTEND', 'End of /LIST'),
  CHANNELMODEIS: num('RPL_CHANNELMODEIS', null),
  CREATIONTIME: num('RPL_CREATIONTIME', null),
  NOTOPIC: num('RPL_NOTOPIC', 'No topic is set'),
  TOPIC: num('RPL_TOPIC', null),
  TOPICWHOTIME: num('RPL_TOPICWHOTIME', null),
  WHOREPLY: num('RPL_WHOREPLY', null),
  NAMREPLY: num('RPL_NAMREPLY', null),
  ENDOFNAMES: num('RPL_ENDOFNAMES', 'End of /NAMES list.'),
  ENDOFBANLIST: num('RPL_ENDOFBANLIST', 'End of channel ban list'),
  MOTD: num('RPL_MOTD', null),
  MOTDSTART: num('RPL_MOTDSTART', null),
  ENDOFMOTD: num('RPL_ENDOFMOTD', 'End of /MOTD command.'),
  WHOISACCOUNT: num('RPL_WHOISACCOUNT', 'is logged in as'),
  /** `<nick>!<user>@<host> <account> :You are now logged in as <account>` */
  LOGGEDIN: num('RPL_LOGGEDIN', null),
  LOGGEDOUT: num('RPL_LOGGEDOUT', 'You are now logged out'),
  SASLSUCCESS: num('RPL_SASLSUCCESS', 'SASL authentication successful'),
  SASLMECHS: num('RPL_SASLMECHS', 'are available SASL mechanisms'),
  // channel modes, owned channels, operators and the common surface
  /** `<chan> <mask> <setter> <set-at>` */
  BANLIST: num('RPL_BANLIST', null),
  EXCEPTLIST: num('RPL_EXCEPTLIST', null),
  ENDOFEXCEPTLIST: num('RPL_ENDOFEXCEPTLIST', 'End of channel exception list'),
  INVITELIST: num('RPL_INVITELIST', null),
  ENDOFINVITELIST: num('RPL_ENDOFINVITELIST', 'End of channel invite list'),
  /** `<nick> <chan>` */
  INVITING: num('RPL_INVITING', null),
  USERHOST: num('RPL_USERHOST', null),
  WHOISOPERATOR: num('RPL_WHOISOPERATOR', 'is an IRC operator'),
  YOUREOPER: num('RPL_YOUREOPER', 'You are now an IRC operator'),
  /** WHOX: the fields asked, in the order of the spec */
  WHOSPCRPL: num('RPL_WHOSPCRPL', null),
  /** `:nick!user@host,…` */
  MONONLINE: num('RPL_MONONLINE', null),
  MONOFFLINE: num('RPL_MONOFFLINE', null),
  MONLIST: num('RPL_MONLIST', null),
  ENDOFMONLIST: num('RPL_ENDOFMONLIST', 'End of MONITOR list'),
} as const;

export const ERR = {
  NOSUCHNICK: num('ERR_NOSUCHNICK', 'No such nick/channel'),
  NOSUCHCHANNEL: num('ERR_NOSUCHCHANNEL', 'No such channel'),
  CANNOTSENDTOCHAN: num('ERR_CANNOTSENDTOCHAN', 'Cannot send to channel'),
  TOOMANYCHANNELS: num('ERR_TOOMANYCHANNELS', 'You have joined too many channels'),
  TOOMANYTARGETS: num('ERR_TOOMANYTARGETS', 'Too many targets, send to one at a time'),
  NOORIGIN: num('ERR_NOORIGIN', 'No origin specified'),
  INVALIDCAPCMD: num('ERR_INVALIDCAPCMD', 'Invalid CAP command'),
  /** the text names the command: `No recipient given (PRIVMSG)` */
  NORECIPIENT: num('ERR_NORECIPIENT', null),
  NOTEXTTOSEND: num('ERR_NOTEXTTOSEND', 'No text to send'),
  INPUTTOOLONG: num('ERR_INPUTTOOLONG', 'Input line was too long'),
  UNKNOWNCOMMAND: num('ERR_UNKNOWNCOMMAND', 'Unknown command'),
  NOMOTD: num('ERR_NOMOTD', 'MOTD File is missing'),
  NONICKNAMEGIVEN: num('ERR_NONICKNAMEGIVEN', 'No nickname given'),
  ERRONEUSNICKNAME: num('ERR_ERRONEUSNICKNAME', 'Erroneous nickname'),
  NICKNAMEINUSE: num('ERR_NICKNAMEINUSE', 'Nickname is already in use'),
  USERNOTINCHANNEL: num('ERR_USERNOTINCHANNEL', "They aren't on that channel"),
  NOTONCHANNEL: num('ERR_NOTONCHANNEL', "You're not on that channel"),
  NOTREGISTERED: num('ERR_NOTREGISTERED', 'You have not registered'),
  NEEDMOREPARAMS: num('ERR_NEEDMOREPARAMS', 'Not enough parameters'),
  ALREADYREGISTERED: num('ERR_ALREADYREGISTERED', 'You may not reregister'),
  PASSWDMISMATCH: num('ERR_PASSWDMISMATCH', 'Password incorrect'),
  UNKNOWNMODE: num('ERR_UNKNOWNMODE', 'is unknown mode char to me'),
  CHANOPRIVSNEEDED: num('ERR_CHANOPRIVSNEEDED', "You're not channel operator"),
  UMODEUNKNOWNFLAG: num('ERR_UMODEUNKNOWNFLAG', 'Unknown MODE flag'),
  USERSDONTMATCH: num('ERR_USERSDONTMATCH', "Can't change mode for other users"),
  SASLFAIL: num('ERR_SASLFAIL', 'SASL authentication failed'),
  SASLTOOLONG: num('ERR_SASLTOOLONG', 'SASL message too long'),
  SASLABORTED: num('ERR_SASLABORTED', 'SASL authentication aborted'),
  SASLALREADY: num('ERR_SASLALREADY', 'You have already authenticated using SASL'),
  CHANNELISFULL: num('ERR_CHANNELISFULL', 'Cannot join channel (+l)'),
  INVITEONLYCHAN: num('ERR_INVITEONLYCHAN', 'Cannot join channel (+i)'),
  BANNEDFROMCHAN: num('ERR_BANNEDFROMCHAN', 'Cannot join channel (+b)'),
  BADCHANNELKEY: num('ERR_BADCHANNELKEY', 'Cannot join channel (+k)'),
  BANLISTFULL: num('ERR_BANLISTFULL', 'Channel list is full'),
  USERONCHANNEL: num('ERR_USERONCHANNEL', 'is already on channel'),
  NOPRIVILEGES: num('ERR_NOPRIVILEGES', "Permission Denied- You're not an IRC operator"),
  NOOPERHOST: num('ERR_NOOPERHOST', 'No O-lines for your host'),
  YOUREBANNEDCREEP: num('ERR_YOUREBANNEDCREEP', 'You are banned from this server'),
  /** `<target> <mode> <param> :<why>` */
  INVALIDMODEPARAM: num('ERR_INVALIDMODEPARAM', null),
  /** `<limit> <targets> :Monitor list is full.` */
  MONLISTFULL: num('ERR_MONLISTFULL', 'Monitor list is full.'),
} as const;

/** Every numeric the server can send. */
export const NUMERICS: readonly NumericSpec[] = [...Object.values(RPL), ...Object.values(ERR)];

/** A standard reply code with its default text (callers may give a more precise one). */
export interface FailSpec {
  readonly code: string;
  readonly text: string;
}

function fail(code: string, text: string): FailSpec {
  return { code, text };
}

export const FAIL = {
  INVALID_UTF8: fail('INVALID_UTF8', 'Message rejected, your message contained invalid UTF-8'),
  INVALID_MESSAGE: fail('INVALID_MESSAGE', 'Malformed line'),
  INTERNAL_ERROR: fail('INTERNAL_ERROR', 'Could not process the command, try again'),
  /** a cluster service this command needs (Redis) is unreachable right now */
  TEMPORARILY_UNAVAILABLE: fail('TEMPORARILY_UNAVAILABLE', 'The cluster is briefly unavailable, try again'),
  MESSAGE_ERROR: fail('MESSAGE_ERROR', 'Message could not be stored, it was not delivered; try again'),
  /** the room's shard is down: nothing was stored or delivered */
  SHARD_UNAVAILABLE: fail('SHARD_UNAVAILABLE', 'The message store of this room is unavailable, the message was not stored; try again later'),
  RATE_LIMITED: fail('RATE_LIMITED', 'Server busy: message not stored, retry later'),
  INVALID_PARAMS: fail('INVALID_PARAMS', 'Invalid parameters'),
  INVALID_TARGET: fail('INVALID_TARGET', 'Invalid target'),
  INVALID_MSGREFTYPE: fail('INVALID_MSGREFTYPE', 'Invalid message reference'),
  // draft/account-registration
  ACCOUNT_EXISTS: fail('ACCOUNT_EXISTS', 'Account already exists'),
  BAD_ACCOUNT_NAME: fail('BAD_ACCOUNT_NAME', 'An account name must be a valid nick and not a service'),
  NEED_NICK: fail('NEED_NICK', 'Send NICK first, or name the account'),
  ALREADY_AUTHENTICATED: fail('ALREADY_AUTHENTICATED', 'You are already logged in'),
  WEAK_PASSWORD: fail('WEAK_PASSWORD', 'Password too short: at least 8 bytes'),
  UNACCEPTABLE_PASSWORD: fail('UNACCEPTABLE_PASSWORD', 'Password too long: at most 300 bytes'),
  INVALID_CODE: fail('INVALID_CODE', 'Nothing to verify: accounts are verified when registered'),
  // setname
  INVALID_REALNAME: fail('INVALID_REALNAME', 'Invalid real name'),
} as const;

export const FAIL_CODES: readonly FailSpec[] = Object.values(FAIL);

/** `:server CODE nick p1 p2 :last`, where `last` is the spec's text or, without one, the last param. */
export function numericLine(server: string, nick: string, spec: NumericSpec, params: readonly string[]): string {
  let line = `:${server} ${spec.code} ${nick}`;
  if (spec.text !== null) {
    for (const p of params) line += ` ${p}`;
    return `${line} :${spec.text}`;
  }
  const last = params.length - 1;
  for (let i = 0; i < last; i++) line += ` ${params[i]}`;
  if (last >= 0) line += ` :${params[last]}`;
  return line;
}

/** `:server FAIL COMMAND CODE context... :text` */
export function failLine(server: string, command: string, spec: FailSpec, context: readonly string[], text?: string): string {
  let line = `:${server} FAIL ${command} ${spec.code}`;
  for (const c of context) line += ` ${c}`;
  return `${line} :${text ?? spec.text}`;
}
