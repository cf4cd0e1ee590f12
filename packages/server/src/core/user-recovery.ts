import type { Logger } from 'pino';
import type { ClusterConfig } from '../config.js';
import type { ClusterState } from '../cluster/state.js';
import type { ClusterBus } from './bus.js';
import type { Session } from './session.js';

export interface UserRecoveryOptions {
  instanceId: string;
  serverName: string;
  state: ClusterState;
  bus: ClusterBus;
  log: Logger;
  config: () => ClusterConfig;
  /** true while a local session holds the claim of `nickKey` */
  claimed: (nickKey: string) => boolean;
  /** the registered local users */
  local: () => Session[];
  /** a QUIT to every member of `roomKeys` in the cluster (Users.announce) */
  announce: (roomKeys: string[], rest: string) => void;
}

/**
 * Users in the cluster state after a failure: the users of a dead instance released (by the one
 * instance that wins the clean-up), those a previous process with this id left behind, nicks
 * listed for this instance that no session holds, and the local users put back after this
 * instance was cut off or Redis lost its data.
 */
export class UserRecovery {
  constructor(private readonly o: UserRecoveryOptions) {}

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
    if (u) this.o.announce(rooms, `:${u.nick}!${u.user}@${u.host} QUIT :${reason}`);
  }

  /**
   * Nicks the cluster state lists for this instance that no session holds (a clean-up that failed
   * while Redis was away, a race): released with a QUIT.
   */
  async reconcile(): Promise<number> {
    const held = await this.o.state.instanceUsers(this.o.instanceId);
    let released = 0;
    for (const nick of held) {
      if (this.o.claimed(nick)) continue;
      const u = await this.o.state.getUser(nick);
      // A claim or rename may have completed while we read: look again after the round trip.
      if (this.o.claimed(nick) || !u || u.inst !== this.o.instanceId) continue;
      const rooms = await this.o.state.releaseUser(nick, this.o.instanceId);
      this.o.announce(rooms, `:${u.nick}!${u.user}@${u.host} QUIT :Connection closed`);
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
    for (const s of this.o.local()) {
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
