import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.js';
import type { ClusterConfig } from '../config.js';
import type { ClusterState } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { ClusterBus } from './bus.js';
import { Cap } from './caps.js';
import { topics, type DirectEnvelope, type KillEnvelope, type UserEventEnvelope } from './envelope.js';
import { lower } from './names.js';
import { NickReservation } from './nick-reservation.js';
import { Outgoing } from './outgoing.js';
import { eventLine, type Rooms } from './rooms.js';
import type { Responder } from './reply.js';
import type { Session } from './session.js';
import { UserRecovery } from './user-recovery.js';
import { Watchers } from './watchers.js';

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

/**
 * The users of this instance and their place in the cluster: nick claims and renames (with the
 * nick's bus topic, subscribed before the nick is visible so no direct message is missed),
 * QUIT/NICK announcements, and the clean-ups — after a disconnect, after another instance died,
 * after this one was cut off.
 *
 * Ordering rule: a session's clean-up runs after the blocking command it has in flight (a NICK,
 * a JOIN), so a nick changed while the connection drops is released under its new name; and each
 * claim is released exactly once (`Session.claimed`). A periodic reconcile releases nicks that
 * the cluster still lists for this instance but no session holds (that and the other clean-ups
 * after failures are in user-recovery.ts). MONITOR is in watchers.ts, the grace period of a
 * registered nick in nick-reservation.ts.
 */
export class Users {
  /** registered, connected users by lower-case nick */
  private readonly byNick = new Map<string, Session>();
  /** every session whose nick the cluster state holds (registered or still cleaning up) */
  private readonly claims = new Map<string, Session>();
  private readonly releasing = new Set<Promise<void>>();
  private readonly watchers: Watchers;
  private readonly reservation: NickReservation;
  private readonly recovery: UserRecovery;

  constructor(private readonly o: UsersOptions) {
    this.watchers = new Watchers(o.serverName);
    this.reservation = new NickReservation({
      accounts: o.accounts, config: o.config, log: o.log, rename: (s, nick) => this.rename(s, nick, s),
    });
    this.recovery = new UserRecovery({
      instanceId: o.instanceId, serverName: o.serverName, state: o.state, bus: o.bus, log: o.log, config: o.config,
      claimed: (nickKey) => this.claims.has(nickKey), local: () => [...this.byNick.values()],
      announce: (rooms, rest) => this.announce(rooms, rest),
    });
  }

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
    this.reservation.clear(s);
    s.sasl = null;
    this.watchers.unwatchAll(s);
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
    this.watchers.observe(rest);
    if (self && r && !self.closed) r.send(out.lineFor(self.caps));
    this.deliverUserEvent(roomKeys, out, self);
    const env: UserEventEnvelope = { k: 'u', o: '', rooms: roomKeys, t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest };
    this.o.bus.publish(topics.all, env);
  }

  remoteUserEvent(env: UserEventEnvelope): void {
    if (env.rooms.length === 0 && /^:\S+ WALLOPS :/.test(env.l)) return this.deliverWallops(new Outgoing(env.l, env.ms, env.t, env.i, ''));
    this.watchers.observe(env.l);
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

  // ---- MONITOR (watchers.ts) ----------------------------------------------------------------

  /** `s` watches `nickKey`; false when its list is full. */
  watch(s: Session, nickKey: string, max: number): boolean {
    return this.watchers.watch(s, nickKey, max);
  }

  unwatch(s: Session, nickKey: string): void {
    this.watchers.unwatch(s, nickKey);
  }

  unwatchAll(s: Session): void {
    this.watchers.unwatchAll(s);
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

  /** A registered nick held by a session not logged in to its account: see nick-reservation.ts. */
  checkReservation(s: Session): void {
    this.reservation.check(s);
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

  // ---- cluster membership (user-recovery.ts) ------------------------------------------------

  /** Another instance is gone: one instance in the cluster releases its users, with a QUIT everyone sees. */
  reapInstance(inst: string): Promise<void> {
    return this.recovery.reapInstance(inst);
  }

  /** At start: users a previous process with this same instance id left behind are not connected. */
  recoverOwnId(): Promise<void> {
    return this.recovery.recoverOwnId();
  }

  /** Releases the nicks the cluster state lists for this instance that no session holds; how many. */
  reconcile(): Promise<number> {
    return this.recovery.reconcile();
  }

  /** Puts every local user back into the cluster state; one whose nick was taken meanwhile is dropped with `drop`. */
  reassert(drop: (s: Session) => void): Promise<void> {
    return this.recovery.reassert(drop);
  }
}
