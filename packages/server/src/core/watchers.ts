import { lower } from './names.js';
import { RPL, numericLine } from './replies.js';
import type { Session } from './session.js';

/**
 * MONITOR on this instance: which local sessions watch which nicks, and their online/offline
 * notices, drawn from the user events every instance sees (`Users.announce` and the remote user
 * events): a QUIT (offline), a NICK (the old nick offline, the new one online; a NICK to the same
 * nick is a sign-on).
 */
export class Watchers {
  /** lower-case nick → the local sessions watching it */
  private readonly watchers = new Map<string, Set<Session>>();

  constructor(private readonly serverName: string) {}

  /** `s` watches `nickKey`; false when its list is full. */
  watch(s: Session, nickKey: string, max: number): boolean {
    if (s.monitors.has(nickKey)) return true;
    if (s.monitors.size >= max) return false;
    s.monitors.add(nickKey);
    let set = this.watchers.get(nickKey);
    if (!set) this.watchers.set(nickKey, (set = new Set()));
    set.add(s);
    return true;
  }

  unwatch(s: Session, nickKey: string): void {
    s.monitors.delete(nickKey);
    const set = this.watchers.get(nickKey);
    set?.delete(s);
    if (set?.size === 0) this.watchers.delete(nickKey);
  }

  unwatchAll(s: Session): void {
    for (const k of [...s.monitors]) this.unwatch(s, k);
  }

  /** A user event's line (`:<source> QUIT ...`, `:<source> NICK <new>`): notices to the watchers of the nicks. */
  observe(rest: string): void {
    if (this.watchers.size === 0) return;
    const m = /^:(([^! ]+)!\S+) (QUIT|NICK)(?: :?(\S+))?/.exec(rest);
    if (!m) return;
    const [, source = '', nick = '', command, arg = ''] = m;
    if (command === 'QUIT') return this.notify(nick, null);
    if (lower(arg) !== lower(nick)) this.notify(nick, null);
    this.notify(arg, `${arg}${source.slice(nick.length)}`);
  }

  private notify(nick: string, source: string | null): void {
    const set = this.watchers.get(lower(nick));
    if (!set) return;
    const server = this.serverName;
    for (const s of set) {
      s.write(source ? numericLine(server, s.nick, RPL.MONONLINE, [source]) : numericLine(server, s.nick, RPL.MONOFFLINE, [nick]));
    }
  }
}
