// Accounts in words: the services (NickServ, ChanServ), what a refused log-in or registration
// means, and a line to NickServ as it may be shown. Pure (no DOM): unit-tested in Node.

import type { IrcMessage } from '@parley/protocol';
import { asciiLower } from './text.js';

const SERVICES = new Set(['nickserv', 'chanserv']);

/** NickServ and ChanServ: messages to them are never stored nor echoed, and have no history. */
export function isService(name: string): boolean {
  return SERVICES.has(asciiLower(name));
}

/** Why a log-in or registration was refused, in words for the field it concerns. */
export function authFailure(reply: IrcMessage | undefined, fallback: string): string {
  if (reply === undefined) return fallback;
  const last = reply.params[reply.params.length - 1] ?? '';
  switch (reply.command) {
    case '904':
      return 'Wrong account name or password.';
    case '905':
      return 'This password is too long.';
    case '906':
      return 'The log-in was interrupted: try again.';
    case 'FAIL':
      switch (reply.params[1]) {
        case 'ACCOUNT_EXISTS':
          return 'This account exists already: log in with its password, or pick another nick.';
        case 'WEAK_PASSWORD':
          return 'This password is too short: use 8 characters or more.';
        case 'UNACCEPTABLE_PASSWORD':
          return `This password cannot be used: ${last}`;
        case 'BAD_ACCOUNT_NAME':
          return `This nick cannot be an account name: ${last}`;
        case 'TEMPORARILY_UNAVAILABLE':
          return 'Accounts are unavailable for a moment: try again shortly.';
      }
      return `${reply.params[1] ?? 'FAIL'}: ${last}`;
  }
  return `${reply.command}: ${last}`;
}

/** The text of a line to NickServ as shown in the client: its command word, the rest hidden. */
export function masked(text: string): string {
  const m = /^(\S+)(\s[\s\S]*)?$/.exec(text.trim());
  return m === null ? '' : m[2] === undefined ? (m[1] ?? '') : `${m[1] ?? ''} ••••••`;
}
