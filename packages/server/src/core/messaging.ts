import type { Logger } from 'pino';
import type { ClusterState } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { MessageStore } from '../store/store.js';
import { StoreUnavailableError } from '../store/errors.js';
import { NO_OUTCOMES, type Admission, type MessageOutcomes, type Refusal } from './admission.js';
import { Cap } from './caps.js';
import type { ClusterBus } from './bus.js';
import { topics, type DirectEnvelope } from './envelope.js';
import { dmKey, identityOf, identityOfUser } from '../accounts/identity.js';
import { lower } from './names.js';
import { ERR, FAIL, RPL, failLine, numericLine, type NumericSpec } from './replies.js';
import type { Responder } from './reply.js';
import { eventMsgid, formatServerTime, roomTag, serializeTags } from '@parley/protocol';
import { Outgoing } from './outgoing.js';
import { RoomRules, storedLine, type NodeStats, type Rooms } from './rooms.js';
import type { Session } from './session.js';
import type { Users } from './users.js';

export interface MessagingOptions {
  serverName: string;
  state: ClusterState;
  store: Pick<MessageStore, 'append'>;
  admission: Admission;
  /** what became of each message, per room (cluster-wide counters); default: not counted */
  outcomes?: MessageOutcomes;
  rooms: Rooms;
  users: Users;
  bus: ClusterBus;
  metrics: Metrics;
  log: Logger;
  stats: NodeStats;
}

/** A PRIVMSG or NOTICE as the sender wrote it. */
export interface Post {
  command: 'PRIVMSG' | 'NOTICE';
  target: string;
  text: string;
  /** serialised client-only tags ('' when none) and their parsed form for the store */
  tagText: string;
  tags: Record<string, string> | null;
}

/**
 * The path of a message, in one place: who may send it here (channel rules), admission (the seam
 * for QoS and shard isolation), the durable append, then local delivery and publication. A
 * message is acknowledged (echo) and delivered only after its commit; one that is refused or
 * cannot be stored gets a standard reply and reaches nobody. Never rejects.
 */
export class Messaging {
  private readonly outcomes: MessageOutcomes;
  private readonly rateLimited;

  constructor(private readonly o: MessagingOptions) {
    this.outcomes = o.outcomes ?? NO_OUTCOMES;
    this.rateLimited = o.metrics.messagesRefused.labels('RATE_LIMITED');
  }

  /**
   * A logged-in sender's messages carry `account=<name>` (account-tag), stored with the message
   * so history replays it too; clients cannot send that tag themselves (only `+` tags pass).
   */
  private tagged(s: Session, p: Post): Post {
    const bot = s.umodes.includes('B');
    if (!s.account && !bot) return p;
    // A bot's messages carry `bot` (IRCv3 bot mode), stored like `account`.
    const tags = { ...(p.tags ?? {}), ...(s.account ? { account: s.account } : {}), ...(bot ? { bot: '' } : {}) };
    return { ...p, tags, tagText: serializeTags(tags) };
  }

  async toChannel(s: Session, post: Post, r: Responder): Promise<void> {
    const p = this.tagged(s, post);
    const key = lower(p.target);
    const room = s.rooms.get(key);
    let display: string;
    if (room) {
      display = room.name;
      // +m and +b from the room's rules kept here: no round trip for a member.
      if (!(this.o.rooms.rules(key)?.maySpeak(s) ?? true)) return this.refuse(s, p, r, ERR.CANNOTSENDTOCHAN, display);
    } else {
      // Not a member: allowed only into an existing channel without +n.
      // NOTICE never gets automatic replies (RFC 2812 3.3.2).
      let ch;
      try {
        ch = await this.o.state.channel(key);
      } catch (err) {
        return this.failed(s, p, r, err, FAIL.TEMPORARILY_UNAVAILABLE);
      }
      if (!ch) return this.refuse(s, p, r, ERR.NOSUCHCHANNEL, p.target);
      if (ch.modes.includes('n') || ch.modes.includes('m')) return this.refuse(s, p, r, ERR.CANNOTSENDTOCHAN, ch.name);
      let lists;
      try {
        lists = await this.o.state.listModes(key);
      } catch (err) {
        return this.failed(s, p, r, err, FAIL.TEMPORARILY_UNAVAILABLE);
      }
      const rules = new RoomRules();
      rules.load(ch, lists);
      if (rules.banned(s.source, s.account)) return this.refuse(s, p, r, ERR.CANNOTSENDTOCHAN, ch.name);
      display = ch.name;
    }
    let verdict = this.o.admission.admit(key);
    if (verdict !== null) {
      // A later answer is confirmed in the tick of the append (see Admission).
      if ('then' in verdict) verdict = (await verdict) ?? this.o.admission.confirm?.(key) ?? null;
      if (verdict !== null) return this.refused(s, p, key, display, r, verdict);
    }
    const rest = `:${s.source} ${p.command} ${display} :${p.text}`;
    let stored;
    try {
      stored = await this.o.store.append({ room: key, source: s.source, command: p.command, target: display, text: p.text, tags: p.tags });
    } catch (err) {
      return this.notStored(p, key, display, r, err);
    }
    this.outcomes.count(key, 'accepted');
    this.o.metrics.messagesStored.inc();
    this.o.stats.stored++;
    const out = storedLine(room?.tag ?? roomTag(key), stored.seq, stored.time, rest, p.tagText);
    // The echo is written by the room, in sequence order with everyone else's messages.
    const echo = s.echo ? r.takeAsOnly(out.lineFor(s.caps)) : null;
    this.o.rooms.committed(key, stored.seq, out, s, echo);
  }

  async toNick(s: Session, post: Post, r: Responder): Promise<void> {
    const p = this.tagged(s, post);
    const tkey = lower(p.target);
    const local = this.o.users.get(tkey);
    let remote = null;
    if (!local) {
      try {
        remote = await this.o.state.getUser(p.target);
      } catch (err) {
        return this.failed(s, p, r, err, FAIL.TEMPORARILY_UNAVAILABLE);
      }
      if (!remote) return this.refuse(s, p, r, ERR.NOSUCHNICK, p.target);
    }
    const display = local?.nick ?? remote?.nick ?? p.target;
    // Keyed by who the two are (account, or this very connection for a guest), not by nicks.
    const room = dmKey(identityOf(s, s.conn), local ? identityOf(local, local.conn) : identityOfUser(remote as NonNullable<typeof remote>));
    let verdict = this.o.admission.admit(room);
    if (verdict !== null) {
      if ('then' in verdict) verdict = (await verdict) ?? this.o.admission.confirm?.(room) ?? null;
      if (verdict !== null) return this.refused(s, p, room, display, r, verdict);
    }
    const rest = `:${s.source} ${p.command} ${display} :${p.text}`;
    let stored;
    try {
      stored = await this.o.store.append({ room, source: s.source, command: p.command, target: display, text: p.text, tags: p.tags });
    } catch (err) {
      return this.notStored(p, room, display, r, err);
    }
    this.outcomes.count(room, 'accepted');
    this.o.metrics.messagesStored.inc();
    this.o.stats.stored++;
    const out = storedLine(roomTag(room), stored.seq, stored.time, rest, p.tagText);
    if (s.echo) r.send(out.lineFor(s.caps));
    const away = local ? local.away : remote?.away ?? null;
    if (away !== null && p.command === 'PRIVMSG') r.send(numericLine(this.o.serverName, s.nick, RPL.AWAY, [display, away]));
    const recipient = this.o.users.get(tkey);
    if (recipient) {
      // To oneself: delivered as to anyone, besides the echo (labeled-response: the echo is the
      // response, the delivery is not; echo-message: the echo is sent "in addition").
      recipient.write(out.lineFor(recipient.caps));
      this.o.rooms.countDeliveries(1);
      return;
    }
    const env: DirectEnvelope = { k: 'd', o: '', to: tkey, t: out.time, ms: out.timeMs, i: out.msgid, g: out.clientTags, l: out.rest };
    this.o.bus.publish(topics.nick(tkey), env);
  }

  /**
   * TAGMSG (message-tags): relayed to the target's clients that negotiated message-tags, never
   * stored (it has no text: `+typing` and the like). A channel needs membership and the right to
   * speak there; a nick, to be online. The sender's echo (echo-message) is its response.
   */
  async tagmsg(s: Session, target: string, clientTags: Record<string, string> | null, r: Responder): Promise<void> {
    const bot = s.umodes.includes('B');
    const tags = { ...(clientTags ?? {}), ...(s.account ? { account: s.account } : {}), ...(bot ? { bot: '' } : {}) };
    const now = Date.now();
    const line = (display: string): Outgoing => new Outgoing(`:${s.source} TAGMSG ${display}`, now, formatServerTime(now), eventMsgid(), serializeTags(tags));
    if (target.startsWith('#')) {
      const key = lower(target);
      const room = s.rooms.get(key);
      if (!room) return void r.send(numericLine(this.o.serverName, s.nick, ERR.CANNOTSENDTOCHAN, [target]));
      if (!(this.o.rooms.rules(key)?.maySpeak(s) ?? true)) return void r.send(numericLine(this.o.serverName, s.nick, ERR.CANNOTSENDTOCHAN, [room.name]));
      const out = line(room.name);
      if (s.echo) r.send(out.lineFor(s.caps));
      for (const m of room.members) if (m !== s && m.has(Cap.MessageTags)) m.write(out.lineFor(m.caps));
      // Members elsewhere get it as a line to their nick (the channel event envelope carries no
      // client tags): one envelope per remote member, so TAGMSG costs more in big channels.
      let members;
      try {
        members = await this.o.state.members(key);
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'cluster state unavailable for a TAGMSG');
        return;
      }
      for (const m of members) {
        const mk = lower(m.nick);
        if (!this.o.users.get(mk)) this.o.users.toNick(mk, out, Cap.MessageTags);
      }
      return;
    }
    const tkey = lower(target);
    let display = this.o.users.get(tkey)?.nick;
    if (!display) {
      try {
        display = (await this.o.state.getUser(target))?.nick;
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'cluster state unavailable for a TAGMSG');
        return void r.send(failLine(this.o.serverName, 'TAGMSG', FAIL.TEMPORARILY_UNAVAILABLE, [target]));
      }
      if (!display) return void r.send(numericLine(this.o.serverName, s.nick, ERR.NOSUCHNICK, [target]));
    }
    const out = line(display);
    if (s.echo) r.send(out.lineFor(s.caps));
    this.o.users.toNick(tkey, out, Cap.MessageTags);
  }

  /**
   * The admission step refused (a plain yes costs no await, so the check and the append of one
   * message happen in the same tick): `FAIL <command> RATE_LIMITED <target> <retry-after-ms>`,
   * and for a PRIVMSG from a client that negotiated neither echo-message nor labeled-response (it
   * would show nothing of a FAIL it does not know) also a server NOTICE saying the same. A refused
   * NOTICE gets no NOTICE back (RFC 2812: no automatic replies to NOTICE).
   */
  private refused(s: Session, p: Post, room: string, display: string, r: Responder, refusal: Refusal): void {
    this.rateLimited.inc();
    this.outcomes.count(room, refusal.reason === 'qos' ? 'refusedQos' : 'refusedBacklog');
    const ms = String(refusal.retryAfterMs);
    r.send(failLine(this.o.serverName, p.command, FAIL[refusal.code], [display, ms], refusal.text));
    if (p.command === 'PRIVMSG' && (s.caps & (Cap.EchoMessage | Cap.LabeledResponse)) === 0) {
      const why = refusal.reason === 'qos' ? 'rate limited' : 'server busy';
      r.send(`:${this.o.serverName} NOTICE ${s.nick} :Message to ${display} refused: ${why}, retry in ${ms} ms`);
    }
  }

  /** The store refused: a definitive answer (the message is not in history and never will be). */
  private notStored(p: Post, room: string, display: string, r: Responder, err: unknown): void {
    this.o.metrics.messagesFailed.inc();
    this.outcomes.count(room, 'failed');
    const down = err instanceof StoreUnavailableError;
    if (down) this.o.log.debug({ err: err.message, room }, 'message refused: shard down');
    else this.o.log.error({ err: (err as Error).message, room }, 'message could not be stored');
    r.send(failLine(this.o.serverName, p.command, down ? FAIL.SHARD_UNAVAILABLE : FAIL.MESSAGE_ERROR, [display]));
  }

  /** A numeric refusal; NOTICE never gets one. */
  private refuse(s: Session, p: Post, r: Responder, spec: NumericSpec, target: string): void {
    if (p.command !== 'NOTICE') r.send(numericLine(this.o.serverName, s.nick, spec, [target]));
  }

  private failed(s: Session, p: Post, r: Responder, err: unknown, spec: typeof FAIL.TEMPORARILY_UNAVAILABLE): void {
    this.o.metrics.commandErrors.inc({ command: p.command });
    this.o.log.warn({ err: (err as Error).message, nick: s.nick }, 'cluster state unavailable for a message');
    r.send(failLine(this.o.serverName, p.command, spec, [p.target]));
  }
}
