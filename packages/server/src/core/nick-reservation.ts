import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.js';
import type { ClusterConfig } from '../config.js';
import type { Session } from './session.js';

/** The pseudo-user whose notices tell about nick reservation (accounts/nickserv.ts answers it). */
export const NICKSERV_SOURCE = 'NickServ!NickServ@services.parley';

export interface NickReservationOptions {
  accounts: AccountService;
  config: () => ClusterConfig;
  log: Logger;
  /** renames a registered session (its NICK line goes to itself); false when the nick is taken */
  rename: (s: Session, nick: string) => Promise<boolean>;
}

/**
 * Registered nicks: a session that holds one without being logged in to its account is told so
 * by NickServ and, after `accounts.nickGraceSeconds`, renamed to a guest nick unless it logged in
 * or changed nick meanwhile. One timer per session (`Session.nickGrace`): a new check replaces the
 * old one.
 */
export class NickReservation {
  constructor(private readonly o: NickReservationOptions) {}

  /** Checks `s`'s nick again (after registration, NICK, log-in or log-out). Never rejects (a failed account lookup leaves the nick alone). */
  check(s: Session): void {
    if (!s.registered || s.closed) return;
    const key = s.nickKey;
    if (s.account && s.account.toLowerCase() === key) {
      this.clear(s);
      return;
    }
    if (s.nickGrace?.nickKey === key) return;
    this.clear(s);
    this.o.accounts.get(s.nick).then(
      (rec) => {
        if (!rec || s.closed || s.nickKey !== key || s.nickGrace?.nickKey === key) return;
        if (s.account && s.account.toLowerCase() === key) return;
        const secs = this.o.config().accounts.nickGraceSeconds;
        s.write(`:${NICKSERV_SOURCE} NOTICE ${s.nick} :This nickname is registered. Identify with /msg NickServ IDENTIFY <password> within ${secs} seconds or your nick will be changed.`);
        const timer = setTimeout(() => this.graceOver(s, key), secs * 1000);
        timer.unref();
        s.nickGrace = { nickKey: key, timer };
      },
      (err: Error) => this.o.log.warn({ err: err.message, nick: s.nick }, 'nick reservation check failed'),
    );
  }

  /** Stops the grace period of `s`, if any. */
  clear(s: Session): void {
    if (!s.nickGrace) return;
    clearTimeout(s.nickGrace.timer);
    s.nickGrace = null;
  }

  /** The grace period ended: rename to `Guest<digits>`, after the command the session has in flight. */
  private graceOver(s: Session, key: string): void {
    if (s.nickGrace?.nickKey !== key) return;
    s.nickGrace = null;
    const rename = async (): Promise<void> => {
      if (s.current) await s.current;
      if (s.closed || s.nickKey !== key || (s.account && s.account.toLowerCase() === key)) return;
      const len = Math.min(6, this.o.config().limits.nickLen - 5);
      for (let attempt = 0; attempt < 10; attempt++) {
        const guest = `Guest${String(Math.floor(Math.random() * 10 ** len)).padStart(len, '0')}`;
        if (await this.o.rename(s, guest)) {
          s.write(`:${NICKSERV_SOURCE} NOTICE ${s.nick} :Your nick was changed: ${key} is registered to another account.`);
          return;
        }
      }
      this.o.log.warn({ nick: s.nick }, 'no guest nick was free for a reserved nick');
    };
    rename().catch((err: Error) => this.o.log.warn({ err: err.message, nick: s.nick }, 'renaming a reserved nick failed'));
  }
}
