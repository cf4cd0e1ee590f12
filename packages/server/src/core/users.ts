import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.js';
import type { ClusterConfig } from '../config.js';
import type { ClusterState } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { ClusterBus } from './bus.js';
import { Cap } from './caps.js';
import { topics, type DirectEnvelope, type KillEnvelope, type UserEventEnvelope } from './envelope.js';
import { lower } from './names.js';
import { RPL, numericLine } from './replies.js';
import { Outgoing } from './outgoing.js';
import { eventLine, type Rooms } from './rooms.js';
import type { Responder } from './reply.js';
import type { Session } from './session.js';

export interface UsersOptions {
  instanceId: string;
  serverName: string;
  state: ClusterState;
  bus: ClusterBus;
  rooms: Rooms;
  metrics: Metrics;
  log: Logger;
  config: () => ClusterConfig;
  accounts: AccountService;
  /** closes a local session from the server side (GHOST) */
  drop: (s: Session, reason: string) => void;
}

/** The pseudo-user whose notices tell about nick reservation (accounts/nickserv.ts answers it). */
export const NICKSERV_SOURCE = 'NickServ!NickServ@services.parley';

/**
 * The users of this instance and their place in the cluster: nick claims and renames (with the
 * nick's bus topic, subscribed before the nick is visible so no direct message is missed),
 * QUIT/NICK announcements, and the clean-ups — after a disconnect, after another instance died,
 * after this one was cut off.
 *
 * Ordering rule: a session's clean-up runs after the blocking command it has in flight (a NICK,
 * a JOIN), so a nick changed while the connection drops is released under its new name; and each
 * claim is released exactly once (`Session.claimed`). A periodic reconcile releases nicks that
 * the cluster still lists for this instance but no session holds.
 */
export class Users {
  /** registered, connected users by lower-case nick */
  private readonly byNick = new Map<string, Session>();
  /** every session whose nick the cluster state holds (registered or still cleaning up) */
  private readonly claims = new Map<string, Session>();
  private readonly releasing = new Set<Promise<void>>();
  /** MONITOR: lower-case nick → the local sessions watching it */
  private readonly watchers = new Map<string, Set<Session>>();

  constructor(private readonly o: UsersOptions) {}

  get size(): number {
    return this.byNick.size;
  }

  get(nickKey: string): Session | undefined {
    return this.byNick.get(nickKey);
  }

  values(): IterableIterator<Session> {
    return this.byNick.values();
  }

  /** Claims `s.nick` cluster-wide and makes `s` a registered user; false when the nick is taken. */
  async claim(s: Session): Promise<boolean> {
    const key = lower(s.nick);
    if (this.claims.has(key)) return false;
    const topic = topics.nick(key);
    await this.o.bus.acquire(topic);
    let ok: boolean;
    try {
      ok = await this.o.state.claimNick({
        nick: s.nick, user: s.user, host: s.host, realname: s.realname, inst: this.o.instanceId,
        server: this.o.serverName, away: null, signon: Date.now(), account: s.account, conn: s.conn,
      });
    } catch (err) {
      this.o.bus.release(topic);
      throw err;
    }
    if (!ok) {
      this.o.bus.release(topic);
      return false;
    }
    s.claimed = true;
    s.nickKey = key;
    this.claims.set(key, s);
    // Closed meanwhile: the disconnect clean-up, queued behind this command, releases the claim.
    if (s.closed) return true;
    s.registered = true;
    this.byNick.set(key, s);
    this.o.metrics.users.inc();
    // Sign-on, for MONITOR on every instance: a NICK to the same nick, to no room.
    this.announce([], `:${s.source} NICK ${s.nick}`);
    return true;
  }

  /** NICK of a registered user (its own NICK line goes through `r`); false when the new nick is taken. */
  async rename(s: Session, wanted: string, r: Responder): Promise<boolean> {
    const oldKey = s.nickKey;
    const newKey = lower(wanted);
    const oldSource = s.source;
    const moves = newKey !== oldKey;
    if (moves) {
      if (this.claims.has(newKey)) return false;
      await this.o.bus.acquire(topics.nick(newKey));
    }
    let res;
    try {
      res = await this.o.state.changeNick(s.nick, wanted, this.o.instanceId);
    } catch (err) {
      if (moves) this.o.bus.release(topics.nick(newKey));
      throw err;
    }
    if (res.kind === 'taken') {
      if (moves) this.o.bus.release(topics.nick(newKey));
      return false;
    }
    if (moves) {
      this.o.bus.release(topics.nick(oldKey));
      if (this.claims.get(oldKey) === s) this.claims.delete(oldKey);
      this.claims.set(newKey, s);
      if (this.byNick.get(oldKey) === s) {
        this.byNick.delete(oldKey);
        this.byNick.set(newKey, s);
      }
    }
    s.nick = wanted;
    s.nickKey = newKey;
    this.announce(res.channels, `:${oldSource} NICK ${wanted}`, s, r);
    return true;
  }

  /** The connection is gone: leave the local rooms now, release the nick after the command in flight. */
  disconnected(s: Session, reason: string): void {
    this.clearGrace(s);
    s.sasl = null;
    this.unwatchAll(s);
    if (s.registered && this.byNick.get(s.nickKey) === s) {
      this.byNick.delete(s.nickKey);
      this.o.metrics.users.dec();
    }
    for (const room of [...s.rooms.values()]) this.o.rooms.leave(room, s);
    const before = s.current ?? Promise.resolve();
    const p = before
      .then(() => this.releaseClaim(s, reason))
      .catch((err: Error) => this.o.log.warn({ err: err.message, nick: s.nick }, 'releasing a user failed; the reconcile will'))
      .finally(() => this.releasing.delete(p));
    this.releasing.add(p);
  }

  private async releaseClaim(s: Session, reason: string): Promise<void> {
    if (!s.claimed) return;
    s.claimed = false;
    const key = s.nickKey;
    if (this.claims.get(key) === s) this.claims.delete(key);
    this.o.bus.release(topics.nick(key));
    const rooms = await this.o.state.releaseUser(key, this.o.instanceId);
    this.announce(rooms, `:${s.source} QUIT :${reason}`);
  }

  /** Resolves once every clean-up started so far is done. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.releasing]);
  }

  // ---- announcements -----------------------------------------------------------------------

  /**
   * QUIT or NICK: to every local session that shares a room, and to the cluster; `self` gets it
   * through its command's responder `r`.
   */
  announce(roomKeys: string[], rest: string, self?: Session, r?: Responder): void {
    const out = eventLine(rest);
    this.observe(rest);
    if (self && r && !self.closed) r.send(out.lineFor(self.caps));
    this.deliverUserEvent(roomKeys, out, self);
    const env: UserEventEnvelope = { k: 'u', o: '', rooms: roomKeys, t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest };
    this.o.bus.publish(topics.all, env);
  }

  remoteUserEvent(env: UserEventEnvelope): void {
    if (env.rooms.length === 0 && /^:\S+ WALLOPS :/.test(env.l)) return this.deliverWallops(new Outgoing(env.l, env.ms, env.t, env.i, ''));
    this.observe(env.l);
    this.deliverUserEvent(env.rooms, new Outgoing(env.l, env.ms, env.t, env.i, ''), undefined, env.c ?? 0);
  }

  /** A direct message another instance stored for a local user. */
  remoteDirect(env: DirectEnvelope): void {
    const s = this.byNick.get(env.to);
    if (!s) return;
    // TAGMSG only reaches clients that negotiated message-tags.
    if (!s.has(Cap.MessageTags) && /^:\S+ TAGMSG /.test(env.l)) return;
    s.write(new Outgoing(env.l, env.ms, env.t, env.i, env.g).lineFor(s.caps));
    this.o.rooms.countDeliveries(1);
  }

  /** To every local member of `roomKeys` once, except `skip`, that negotiated the caps `need`. */
  private deliverUserEvent(roomKeys: string[], out: Outgoing, skip?: Session, need = 0): void {
    const seen = new Set<Session>();
    if (skip) seen.add(skip);
    for (const key of roomKeys) {
      const room = this.o.rooms.get(key);
      if (!room) continue;
      for (const m of room.members) {
        if (seen.has(m)) continue;
        seen.add(m);
        if ((m.caps & need) === need) m.write(out.lineFor(m.caps));
      }
    }
  }

  // ---- lines to users wherever they are ------------------------------------------------------

  /** A line for one user wherever it is connected (INVITE, KILL): written here, else on its nick's topic. */
  toNick(nickKey: string, out: Outgoing, need = 0): void {
    const local = this.byNick.get(nickKey);
    if (local) {
      if ((local.caps & need) === need) local.write(out.lineFor(local.caps));
      return;
    }
    const env: DirectEnvelope = { k: 'd', o: '', to: nickKey, t: out.time, ms: out.timeMs, i: out.msgid, g: out.clientTags, l: out.rest };
    this.o.bus.publish(topics.nick(nickKey), env);
  }

  /**
   * A line to the members of `roomKeys` on every instance that negotiated the caps `need`
   * (away-notify, invite-notify, setname), each once, except `skip`. Without client tags: the
   * user event envelope carries none.
   */
  toRoomMembers(roomKeys: string[], out: Outgoing, skip: Session | undefined, need: number): void {
    this.deliverUserEvent(roomKeys, out, skip, need);
    if (roomKeys.length === 0) return;
    const env: UserEventEnvelope = { k: 'u', o: '', rooms: roomKeys, t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest, c: need };
    this.o.bus.publish(topics.all, env);
  }

  /** WALLOPS: to every user with `+w` on every instance (the sender included, when it has `+w`). */
  wallops(rest: string): void {
    const out = eventLine(rest);
    this.deliverWallops(out);
    const env: UserEventEnvelope = { k: 'u', o: '', rooms: [], t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest };
    this.o.bus.publish(topics.all, env);
  }

  private deliverWallops(out: Outgoing): void {
    for (const s of this.byNick.values()) if (s.umodes.includes('w')) s.write(out.lineFor(s.caps));
  }

  /** Sets a user's modes here and in the cluster state (WHO, WHOIS). */
  async setUserModes(s: Session, modes: string): Promise<void> {
    s.umodes = modes;
    await this.o.state.updateUser(s.nick, { modes });
  }

  // ---- MONITOR --------------------------------------------------------------------------------

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

  /**
   * MONITOR notices from the user events every instance sees: a QUIT (offline), a NICK (the old
   * nick offline, the new one online; a NICK to the same nick is a sign-on).
   */
  private observe(rest: string): void {
    if (this.watchers.size === 0) return;
    const m = /^:(([^! ]+)!\S+) (QUIT|NICK)(?: :?(\S+))?/.exec(rest);
    if (!m) return;
    const [, source = '', nick = '', command, arg = ''] = m;
    if (command === 'QUIT') return this.notifyWatchers(nick, null);
    if (lower(arg) !== lower(nick)) this.notifyWatchers(nick, null);
    this.notifyWatchers(arg, `${arg}${source.slice(nick.length)}`);
  }

  private notifyWatchers(nick: string, source: string | null): void {
    const set = this.watchers.get(lower(nick));
    if (!set) return;
    const server = this.o.serverName;
    for (const s of set) {
      s.write(source ? numericLine(server, s.nick, RPL.MONONLINE, [source]) : numericLine(server, s.nick, RPL.MONOFFLINE, [nick]));
    }
  }

  // ---- accounts ----------------------------------------------------------------------------

  /**
   * Logs `s` in to `account` (null: out): the session, the cluster's user info (WHOIS 330, the
   * DM identity others see), `ACCOUNT` to the members of its channels that negotiated
   * account-notify on every instance, and the nick reservation checked again. The caller sends
   * 900/901.
   */
  async setAccount(s: Session, account: string | null): Promise<void> {
    s.account = account;
    if (!s.registered || s.closed) return;
    await this.o.state.setAccount(s.nick, account);
    const roomKeys = [...s.rooms.keys()];
    const out = eventLine(`:${s.source} ACCOUNT ${account ?? '*'}`);
    this.deliverUserEvent(roomKeys, out, s, Cap.AccountNotify);
    if (roomKeys.length > 0) {
      const env: UserEventEnvelope = { k: 'u', o: '', rooms: roomKeys, t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest, c: Cap.AccountNotify };
      this.o.bus.publish(topics.all, env);
    }
    this.checkReservation(s);
  }

  /**
   * A registered nick held by a session not logged in to its account: NickServ says so, and
   * after `accounts.nickGraceSeconds` the session is renamed to a guest nick unless it logged in
   * or changed nick meanwhile. One timer per session: a new check replaces the old one. Never
   * rejects (a failed account lookup leaves the nick alone).
   */
  checkReservation(s: Session): void {
    if (!s.registered || s.closed) return;
    const key = s.nickKey;
    if (s.account && s.account.toLowerCase() === key) {
      this.clearGrace(s);
      return;
    }
    if (s.nickGrace?.nickKey === key) return;
    this.clearGrace(s);
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

  private clearGrace(s: Session): void {
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
        if (await this.rename(s, guest, s)) {
          s.write(`:${NICKSERV_SOURCE} NOTICE ${s.nick} :Your nick was changed: ${key} is registered to another account.`);
          return;
        }
      }
      this.o.log.warn({ nick: s.nick }, 'no guest nick was free for a reserved nick');
    };
    rename().catch((err: Error) => this.o.log.warn({ err: err.message, nick: s.nick }, 'renaming a reserved nick failed'));
  }

  /** Closes the session holding `nickKey`, on whichever instance holds it (NickServ GHOST). */
  kill(nickKey: string, reason: string): void {
    const local = this.byNick.get(nickKey);
    if (local) {
      this.o.drop(local, reason);
      return;
    }
    const env: KillEnvelope = { k: 'k', o: '', to: nickKey, l: reason };
    this.o.bus.publish(topics.nick(nickKey), env);
  }

  remoteKill(env: KillEnvelope): void {
    const s = this.byNick.get(env.to);
    if (s) this.o.drop(s, env.l);
  }

  // ---- cluster membership ------------------------------------------------------------------

  /**
   * Another instance is gone (its lease expired or it stopped without cleaning up). One instance
   * wins the right to clean up: its users leave their channels with a QUIT everyone sees.
   */
  async reapInstance(inst: string): Promise<void> {
    if (inst === this.o.instanceId) return;
    this.o.bus.forgetInstance(inst);
    if (!(await this.o.state.claimReap(inst))) return;
    await this.releaseInstanceUsers(inst);
  }

  /** At start: users a previous process with this same instance id left behind are not connected. */
  async recoverOwnId(): Promise<void> {
    await this.releaseInstanceUsers(this.o.instanceId);
  }

  private async releaseInstanceUsers(inst: string): Promise<void> {
    const nicks = await this.o.state.instanceUsers(inst);
    this.o.log.info({ instance: inst, users: nicks.length }, 'cleaning up after a lost instance');
    for (const nick of nicks) await this.releaseNick(nick, inst, '*.net *.split');
    await this.o.state.forgetInstance(inst);
  }

  private async releaseNick(nick: string, inst: string, reason: string): Promise<void> {
    const u = await this.o.state.getUser(nick);
    const rooms = await this.o.state.releaseUser(nick, inst);
    if (u) this.announce(rooms, `:${u.nick}!${u.user}@${u.host} QUIT :${reason}`);
  }

  /**
   * Nicks the cluster state lists for this instance that no session holds (a clean-up that failed
   * while Redis was away, a race): released with a QUIT.
   */
  async reconcile(): Promise<number> {
    const held = await this.o.state.instanceUsers(this.o.instanceId);
    let released = 0;
    for (const nick of held) {
      if (this.claims.has(nick)) continue;
      const u = await this.o.state.getUser(nick);
      // A claim or rename may have completed while we read: look again after the round trip.
      if (this.claims.has(nick) || !u || u.inst !== this.o.instanceId) continue;
      const rooms = await this.o.state.releaseUser(nick, this.o.instanceId);
      this.announce(rooms, `:${u.nick}!${u.user}@${u.host} QUIT :Connection closed`);
      released++;
    }
    if (released) this.o.log.warn({ released }, 'released nicks no session of this instance held');
    return released;
  }

  /**
   * After this instance lost its lease (the others may have released its users) or Redis came
   * back (it may have lost its data): puts every local user back into the cluster state; one
   * whose nick was taken meanwhile is dropped with `drop`.
   */
  async reassert(drop: (s: Session) => void): Promise<void> {
    // A clean-up of this instance still running would release what is put back now: let it finish.
    for (let i = 0; i < 100 && (await this.o.state.reapInProgress(this.o.instanceId)); i++) await new Promise((r) => setTimeout(r, 100));
    await this.o.state.addInstance(this.o.instanceId);
    const max = this.o.config().limits.channelsPerUser;
    for (const s of [...this.byNick.values()]) {
      if (s.closed) continue;
      if (!(await this.reclaimNick(s))) {
        drop(s);
        continue;
      }
      for (const room of s.rooms.values()) await this.o.state.join(room.key, room.name, s.nick, max);
    }
  }

  /**
   * Claims a local user's nick again. A reaper may be releasing it at the same moment (the claim
   * finds it still held, then it is gone), so a vanished holder means: try again.
   */
  private async reclaimNick(s: Session): Promise<boolean> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const claimed = await this.o.state.claimNick({
        nick: s.nick, user: s.user, host: s.host, realname: s.realname, inst: this.o.instanceId,
        server: this.o.serverName, away: s.away, signon: s.connectedAt, account: s.account, conn: s.conn,
      });
      if (claimed) return true;
      const holder = await this.o.state.getUser(s.nick);
      if (holder?.inst === this.o.instanceId) return true;
      if (holder) return false;
    }
    return false;
  }
}
