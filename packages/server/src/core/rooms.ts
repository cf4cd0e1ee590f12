import type { Logger } from 'pino';
import { eventMsgid, formatServerTime, parseLine, roomTag, serializeTags } from '@parley/protocol';
import { maskMatches } from '../cluster/masks.js';
import type { ChannelInfo, ListEntry } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { MessageStore, StoredMessage } from '../store/store.js';
import type { ClusterBus } from './bus.js';
import { topics, type ChannelEventEnvelope, type RoomMessageEnvelope } from './envelope.js';
import { Outgoing } from './outgoing.js';
import { LocalRoom, type RoomEvents } from './room.js';
import type { Session } from './session.js';

/** Counters the HTTP API shows for this instance. */
export interface NodeStats {
  messagesIn: number;
  deliveries: number;
  stored: number;
}

export interface RoomsOptions {
  bus: ClusterBus;
  store: Pick<MessageStore, 'counts' | 'after'>;
  metrics: Metrics;
  log: Logger;
  stats: NodeStats;
}

/** One delivery in this many is timed for `parley_fanout_latency_seconds` (a power of two). */
const FANOUT_SAMPLE = 8;
/** Rows one gap fill or catch-up reads from the store at most, per room. */
const FILL_PAGE = 1000;
const CATCH_UP_PAGES = 5;
/** reads of a gap whose fill failed, before members here are left to fill it from history */
const LATE_FILL_ATTEMPTS = 5;

/** Builds the shared line of a stored message; `tag` is the room's msgid tag (`roomTag(room)`). */
export function storedLine(tag: string, seq: number, time: number, rest: string, clientTags: string): Outgoing {
  return new Outgoing(rest, time, formatServerTime(time), `${tag}-${seq}`, clientTags);
}

/** The shared line of a message read back from the store. */
export function historyLine(room: string, m: StoredMessage, tag = roomTag(room)): Outgoing {
  return storedLine(tag, m.seq, m.time, `:${m.source} ${m.command} ${m.target} :${m.text}`, m.tags ? serializeTags(m.tags) : '');
}

/** A line with a fresh time and msgid, for an event that is not stored (JOIN, QUIT, ...). */
export function eventLine(rest: string): Outgoing {
  const now = Date.now();
  return new Outgoing(rest, now, formatServerTime(now), eventMsgid(), '');
}

/**
 * What this instance knows of a local room's rules, so that a member's message is checked
 * without a Redis round trip: the modes and ban lists (loaded when the room opens, then kept up
 * to date from the room's MODE events, local and remote) and the status of each local member.
 */
export class RoomRules {
  modes = '';
  bans: string[] = [];
  excepts: string[] = [];
  loaded = false;
  readonly status = new Map<Session, { op: boolean; voice: boolean }>();

  load(ch: ChannelInfo, lists: ListEntry[]): void {
    this.modes = ch.modes;
    this.bans = lists.filter((e) => e.mode === 'b').map((e) => e.mask);
    this.excepts = lists.filter((e) => e.mode === 'e').map((e) => e.mask);
    this.loaded = true;
  }

  /**
   * May this local member speak? `+m` needs voice or operator status; a banned member (a `+b`
   * that matches, no `+e` that does) may not either, unless voiced or operator.
   */
  maySpeak(s: Session): boolean {
    const st = this.status.get(s);
    if (st && (st.op || st.voice)) return true;
    if (this.modes.includes('m')) return false;
    return !this.banned(s.source, s.account);
  }

  banned(source: string, account: string | null): boolean {
    return this.bans.some((m) => maskMatches(m, source, account)) && !this.excepts.some((m) => maskMatches(m, source, account));
  }

  /** Applies a MODE line's changes (`+ov-b nick nick mask`). */
  applyMode(params: string[], members: Iterable<Session>): void {
    const letters = params[1] ?? '';
    let arg = 2;
    let add = true;
    for (const c of letters) {
      if (c === '+' || c === '-') {
        add = c === '+';
        continue;
      }
      if (c === 'o' || c === 'v') {
        const key = (params[arg++] ?? '').toLowerCase();
        for (const m of members) {
          if (m.nickKey !== key) continue;
          const st = this.status.get(m) ?? { op: false, voice: false };
          if (c === 'o') st.op = add;
          else st.voice = add;
          this.status.set(m, st);
        }
      } else if (c === 'b' || c === 'e') {
        const mask = params[arg++] ?? '';
        const list = c === 'b' ? this.bans : this.excepts;
        const i = list.findIndex((x) => x.toLowerCase() === mask.toLowerCase());
        if (add && i === -1) list.push(mask);
        else if (!add && i !== -1) list.splice(i, 1);
      } else if (c === 'I' || c === 'k' || (c === 'l' && add)) {
        arg++;
      } else if (!add) {
        this.modes = this.modes.split(c).join('');
      } else if (!this.modes.includes(c)) {
        this.modes += c;
      }
    }
  }
}

/**
 * This instance's channels: which ones have local members (each subscribed on the bus while it
 * has any), delivery of stored messages in order to local members, and channel events. A room
 * that misses sequence numbers (a lost publish, a dead publisher, a broker outage) fills them
 * from the store, so every local member gets every stored message once, in order.
 */
export class Rooms implements RoomEvents {
  private readonly map = new Map<string, LocalRoom>();
  private readonly ruleMap = new Map<string, RoomRules>();
  private readonly filling = new Set<LocalRoom>();
  private fanoutTick = 0;

  constructor(private readonly o: RoomsOptions) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string): LocalRoom | undefined {
    return this.map.get(key);
  }

  /** The rules of a room open here (see RoomRules). */
  rules(key: string): RoomRules | undefined {
    return this.ruleMap.get(key);
  }

  values(): IterableIterator<LocalRoom> {
    return this.map.values();
  }

  /** The local room, subscribed to its topic; created on the first local member. */
  async open(key: string, name: string): Promise<LocalRoom> {
    const existing = this.map.get(key);
    if (existing) {
      await existing.ready;
      return existing;
    }
    const room = new LocalRoom(key, name, this);
    room.tag = roomTag(key);
    this.map.set(key, room);
    this.ruleMap.set(key, new RoomRules());
    this.o.metrics.localRooms.inc();
    room.ready = (async () => {
      await this.o.bus.acquire(topics.room(key));
      // Subscribed first, then read where the sequence stands, so no message falls in between.
      try {
        const [count] = await this.o.store.counts([key]);
        room.startAt(count?.messages ?? 0);
      } catch (err) {
        this.o.bus.release(topics.room(key));
        throw err;
      }
    })();
    try {
      await room.ready;
    } catch (err) {
      if (this.map.get(key) === room) this.remove(room, false);
      throw err;
    }
    return room;
  }

  /** `s` leaves the local room; the room closes with its last local member. */
  leave(room: LocalRoom, s: Session): void {
    room.members.delete(s);
    s.rooms.delete(room.key);
    this.ruleMap.get(room.key)?.status.delete(s);
    if (room.members.size === 0 && this.map.get(room.key) === room) this.remove(room, true);
  }

  private remove(room: LocalRoom, subscribed: boolean): void {
    this.map.delete(room.key);
    this.ruleMap.delete(room.key);
    this.o.metrics.localRooms.dec();
    room.dispose();
    if (subscribed) this.o.bus.release(topics.room(room.key));
  }

  /** A message this instance committed: deliver to local members in order, publish to the others. */
  committed(room: string, seq: number, out: Outgoing, sender: Session, echo: string | null): void {
    const local = this.map.get(room);
    if (local) {
      local.accept(seq, out, sender, echo);
      this.observeFanout(out);
    } else if (echo !== null) {
      sender.write(echo);
    }
    const env: RoomMessageEnvelope = { k: 'm', o: '', r: room, q: seq, ms: out.timeMs, g: out.clientTags, l: out.rest };
    this.o.bus.publishToPeers(topics.room(room), env);
  }

  /** A channel event: to local members (except `exclude`) and to the other instances. */
  event(room: string, out: Outgoing, exclude: Session | null, leave?: string): void {
    this.observeMode(room, out.rest);
    this.map.get(room)?.broadcast(out, exclude);
    const env: ChannelEventEnvelope = { k: 'e', o: '', r: room, t: out.time, ms: out.timeMs, i: out.msgid, l: out.rest };
    if (leave) env.leave = leave;
    if (out.ext) env.x = out.ext.rest;
    this.o.bus.publish(topics.room(room), env);
  }

  /** A stored message another instance committed. */
  remoteMessage(env: RoomMessageEnvelope): void {
    const room = this.map.get(env.r);
    if (!room) return;
    const out = storedLine(room.tag, env.q, env.ms, env.l, env.g);
    room.accept(env.q, out, null, null);
    this.observeFanout(out);
  }

  /** A channel event from another instance; returns the local room it concerned, if any. */
  remoteEvent(env: ChannelEventEnvelope): LocalRoom | undefined {
    const room = this.map.get(env.r);
    this.observeMode(env.r, env.l);
    const out = new Outgoing(env.l, env.ms, env.t, env.i, '');
    if (env.x !== undefined) out.ext = new Outgoing(env.x, env.ms, env.t, env.i, '');
    room?.broadcast(out, null);
    return room;
  }

  /** Keeps a room's rules in step with its MODE events. */
  private observeMode(key: string, rest: string): void {
    const rules = this.ruleMap.get(key);
    if (!rules || !/^:\S+ MODE /.test(rest)) return;
    try {
      rules.applyMode(parseLine(rest).params, this.map.get(key)?.members ?? []);
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message, room: key }, 'unreadable MODE event');
    }
  }

  highestSeq(key: string): number {
    return this.map.get(key)?.highestSeq ?? -1;
  }

  /** Another instance has seen `seq`: fetch what this instance has not delivered below it. */
  catchUpTo(key: string, seq: number): void {
    const room = this.map.get(key);
    if (room && seq > room.deliveredSeq && room.deliveredSeq >= 0) void this.catchUp(room, seq);
  }

  /** After a broker outage: every room reads what it missed from the store. Never rejects. */
  async catchUpAll(): Promise<void> {
    await Promise.all([...this.map.values()].map((room) => this.catchUp(room, Infinity)));
  }

  private async catchUp(room: LocalRoom, upTo: number): Promise<void> {
    if (this.filling.has(room)) return;
    this.filling.add(room);
    try {
      await this.fill(room, room.deliveredSeq, upTo, CATCH_UP_PAGES);
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message, room: room.key }, 'catching up from the store failed');
    } finally {
      this.filling.delete(room);
    }
  }

  /** Reads messages after `after` (up to `upTo`, at most `pages` pages) into the room. */
  private async fill(room: LocalRoom, after: number, upTo: number, pages: number): Promise<void> {
    for (let page = 0; page < pages && after < upTo && room.deliveredSeq >= 0; page++) {
      const want = Math.min(FILL_PAGE, upTo - after);
      const rows = await this.o.store.after(room.key, { kind: 'seq', seq: after }, want);
      for (const m of rows) {
        if (m.seq > room.deliveredSeq) this.o.metrics.gapFills.inc();
        room.accept(m.seq, historyLine(room.key, m, room.tag), null, null);
        after = m.seq;
      }
      if (rows.length < want) return;
    }
  }

  // RoomEvents

  delivered(_out: Outgoing, n: number): void {
    this.countDeliveries(n);
  }

  countDeliveries(n: number): void {
    this.o.stats.deliveries += n;
    this.o.metrics.deliveries.inc(n);
  }

  gap(room: LocalRoom, from: number, to: number): void {
    this.fill(room, from - 1, to, 1).then(
      () => room.release(),
      (err: Error) => {
        this.o.log.warn({ err: err.message, room: room.key, from, to }, 'filling a gap from the store failed; trying again later');
        // What is held goes out now; the missing ones are delivered late when a later read finds them.
        room.release();
        this.fillLate(room, from, to, 1);
      },
    );
  }

  /**
   * Reads skipped sequence numbers `from`..`to` again after a failed gap fill (the shard was down
   * or slow), backing off (1, 2, 4, 8, 16 s); the room delivers each one it still misses, late.
   * Only after a failed read, so never on the message path.
   */
  private fillLate(room: LocalRoom, from: number, to: number, attempt: number): void {
    if (attempt > LATE_FILL_ATTEMPTS) {
      this.o.log.warn({ room: room.key, from, to }, 'gave up filling a gap from the store: members here miss these messages live (they are in history)');
      return;
    }
    const timer = setTimeout(() => {
      // The room closed here meanwhile (its last local member left): nobody to deliver to.
      if (this.map.get(room.key) !== room) return;
      this.fill(room, from - 1, to, CATCH_UP_PAGES).then(
        () => this.o.log.info({ room: room.key, from, to, attempt }, 'gap filled from the store, late'),
        () => this.fillLate(room, from, to, attempt + 1),
      );
    }, 1000 * 2 ** (attempt - 1));
    timer.unref();
  }

  /** Commit → delivery latency, sampled (one message in FANOUT_SAMPLE): a histogram observation per message costs more than the rest of the delivery bookkeeping. */
  private observeFanout(out: Outgoing): void {
    if ((++this.fanoutTick & (FANOUT_SAMPLE - 1)) !== 0) return;
    this.o.metrics.fanoutLatency.observe(Math.max(0, Date.now() - out.timeMs) / 1000);
  }
}
