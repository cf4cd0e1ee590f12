import os from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Connection, Driver, DriverSink } from './drivers/driver.js';
import { leadingInt } from './drivers/driver.js';
import { EventLog } from './events.js';
import { adviceFor, checkPorts, ensureFdLimit } from './limits.js';
import { formatTarget, type LoadOptions } from './options.js';
import type { LoadResult, Percentiles, RoomResult, TimelineEntry } from './result.js';
import { GrowableF64, GrowableI32, GrowableU8, LatencyHistogram, POPCOUNT, Timeline, round3 } from './stats.js';

/*
 * The load engine: opens the users' connections, joins them to their rooms, sends on a schedule,
 * and accounts for every message by its number `g` (carried at the start of its text):
 *
 *   sent = acked + refused + errors          (every message gets exactly one outcome)
 *   expectedDeliveries = Σ acked × (joined members of its room − 1)
 *   deliveries = expected − lost + duplicated + deliveredNotAcked
 *
 * Each message has one bit per room member (by the member's position in the room), set on its
 * first receipt; a receipt whose bit is already set is a duplicate. The msgid of every receipt is
 * checked against the sender's acknowledgement, and for Parley the room sequence number in it
 * must never go backwards for a member.
 */

export type Phase = 'connect' | 'join' | 'send' | 'drain' | 'done';

export interface Progress {
  phase: Phase;
  /** seconds since the phase began */
  elapsed: number;
  users: number;
  connected: number;
  failed: number;
  dropped: number;
  joined: number;
  sent: number;
  acked: number;
  refused: number;
  errors: number;
  deliveries: number;
  inflight: number;
  /** the last complete second of the send phase */
  second: TimelineEntry | undefined;
}

export interface RunHooks {
  /** once a second */
  onProgress?(p: Progress): void;
  /** when a phase starts, with the counts so far; the benchmark scripts sample CPU around 'send' and 'done' */
  onPhase?(phase: Phase, p: Progress): void;
  /** one-line warnings while running (advice when connections fail, ...) */
  onWarning?(line: string): void;
  /** aborting ends the current phase; the result is still produced (generator.interrupted) */
  signal?: AbortSignal;
  /** awaited once every user has joined, before the send phase starts (its time is in neither) */
  beforeSend?(): Promise<void>;
}

/** A run that cannot go on; its message is one line for the user. */
export class LoadError extends Error {
  override readonly name = 'LoadError';
}

const TICK_MS = 2;
const FLOOD_REASON = 'Excess Flood';

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** 32-bit FNV-1a of a msgid: enough to tell two msgids apart without keeping the strings. */
function hashMsgid(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The sequence number of a Parley msgid (`<tag>-<seq>`) or an InspIRCd one (`<sid>~<boot>~<counter>`), or -1. */
function msgidSeq(msgid: string): number {
  const dash = Math.max(msgid.lastIndexOf('-'), msgid.lastIndexOf('~'));
  if (dash < 0) return -1;
  let n = 0;
  for (let i = dash + 1; i < msgid.length; i++) {
    const c = msgid.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return dash + 1 < msgid.length ? n : -1;
}

function bump(m: Record<string, number>, k: string, n = 1): void {
  m[k] = (m[k] ?? 0) + n;
}

/** `ERROR :Closing Link: 127.0.0.1 (Excess Flood)` → `Excess Flood`. */
function dropReason(reason: string): string {
  const m = /\(([^()]*)\)\s*$/.exec(reason);
  const r = (m ? (m[1] as string) : reason).replace(/\d+ seconds/, 'N seconds').trim();
  return r === '' ? 'closed' : r.slice(0, 80);
}

/** `2-10/s per room, 4,200/s in all` */
function describeRates(rates: readonly number[]): string {
  const lo = Math.min(...rates);
  const hi = Math.max(...rates);
  const sum = rates.reduce((a, b) => a + b, 0);
  return `${lo === hi ? lo : `${lo}-${hi}`}/s per room, ${Math.round(sum).toLocaleString('en-US')}/s in all`;
}

const cores = (): number => os.availableParallelism?.() ?? os.cpus().length;

const M_NONE = 0;
const M_ACKED = 1;
const M_REFUSED = 2;
const M_ERROR = 3;

export async function runLoad(opts: LoadOptions, driver: Driver, hooks: RunHooks = {}): Promise<LoadResult> {
  const run = new LoadRun(opts, driver, hooks);
  return run.run();
}

class LoadRun implements DriverSink {
  private readonly U: number;
  private readonly R: number;
  private readonly M: number;
  private readonly roomNames: string[];
  private readonly roomIndex = new Map<string, number>();
  /** rooms of each user and the user's position in each */
  private readonly userRooms: Int32Array[];
  /** the rooms a user sends to: those where its position is below --senders-per-room */
  private readonly sendRooms: Int32Array[];
  private readonly userPos: Int32Array[];
  private readonly slotBase: Int32Array;
  private readonly lastSeq: Float64Array;
  private readonly userJoined: Uint8Array;
  private readonly joinedCount: Int32Array;
  private readonly joinedMembers: Int32Array[] = [];
  /** the joined members of each room that send to it */
  private readonly roomSenders: Int32Array[] = [];
  private readonly conns: Array<Connection | null>;
  private readonly alive: Uint8Array;
  private readonly inflight: Int32Array;
  private readonly rr: Int32Array;
  private readonly nicks: string[];

  // per message g
  private n = 0;
  private readonly mRoom = new GrowableI32();
  private readonly mSender = new GrowableI32();
  private readonly mSentAt = new GrowableF64();
  private readonly mState = new GrowableU8();
  /** 1: sent within its room's steady window (opts.roomSteadyFromMs) */
  private readonly mSteady = new GrowableU8();
  /** msgid hash + 1 of the acknowledgement and of the first receipt (0 = none yet) */
  private readonly mAckId = new GrowableF64();
  private readonly mSeenId = new GrowableF64();
  private readonly bits = new GrowableU8();
  private readonly bpm: number;

  // per room
  private readonly roomSent: Float64Array;
  private readonly roomAcked: Float64Array;
  private readonly roomRefused: Float64Array;
  private readonly roomDeliveries: Float64Array;
  /** performance.now() of each room's first and last send (0: none yet) */
  private readonly roomFirstAt: Float64Array;
  private readonly roomLastAt: Float64Array;
  private readonly roomSteadyAt: Float64Array;
  private readonly roomSteadySent: Float64Array;
  private readonly roomSteadyAcked: Float64Array;

  // totals
  private sent = 0;
  private acked = 0;
  private refusedCount = 0;
  private errors = 0;
  private deliveries = 0;
  private duplicated = 0;
  private expected = 0;
  private uniqueAcked = 0;
  private totalInflight = 0;
  private skipped = 0;
  private foreign = 0;
  private lateAcks = 0;
  private msgidMismatches = 0;
  private outOfOrder = 0;
  private connectionsOpened = 0;
  private connectionsFailed = 0;
  private connectionsDropped = 0;
  private joinedUsers = 0;
  private readonly refusedByCode: Record<string, number> = {};
  private readonly errorsByCode: Record<string, number> = {};
  private readonly connectErrorsByCode: Record<string, number> = {};
  private readonly dropReasons: Record<string, number> = {};
  private readonly adviceGiven = new Set<string>();

  private readonly ackHist = new LatencyHistogram();
  private readonly deliverHist = new LatencyHistogram();
  private readonly lagHist = new LatencyHistogram();
  private timeline: Timeline | null = null;
  private events: EventLog | null = null;
  private t0 = 0;
  private phase: Phase = 'connect';
  private phaseStart = performance.now();
  private sending = false;
  private closingAll = false;
  private interrupted = false;
  private fatal: string | null = null;
  private lastAnswerAt = 0;
  /** performance.now() of the latest acknowledgement, refusal, error or delivery */
  private lastEventAt = 0;
  private readonly pad: string;
  private readonly closedLoop: boolean;
  private readonly orderCheck: boolean;
  private sendDone: (() => void) | null = null;
  /** rooms with a joined member, and how many of them got their --messages-per-room */
  private quotaRooms = 0;
  private roomsFull = 0;

  constructor(
    private readonly opts: LoadOptions,
    private readonly driver: Driver,
    private readonly hooks: RunHooks,
  ) {
    const U = (this.U = opts.users);
    const R = (this.R = opts.rooms);
    const M = (this.M = opts.membersPerRoom);
    this.bpm = Math.max(1, Math.ceil(M / 8));
    this.bits.ensure(this.mRoom.a.length * this.bpm);
    this.pad = 'x'.repeat(opts.payloadBytes);
    this.closedLoop = opts.rate === 'max';
    this.orderCheck = driver.kind === 'parley' || driver.kind === 'irc';
    this.nicks = Array.from({ length: U }, (_, i) => `${opts.nickPrefix}${i}`);
    this.roomNames = Array.from({ length: R }, (_, i) => `#${opts.roomPrefix}${i}`);
    this.roomNames.forEach((name, i) => this.roomIndex.set(name, i));
    // Room r has the M consecutive users from r*M (mod U): rooms overlap only when R*M > U, and
    // consecutive users sit on different targets, so every room spans the instances.
    const rooms: number[][] = Array.from({ length: U }, () => []);
    const pos: number[][] = Array.from({ length: U }, () => []);
    for (let r = 0; r < R; r++) {
      for (let j = 0; j < M; j++) {
        const u = (r * M + j) % U;
        (rooms[u] as number[]).push(r);
        (pos[u] as number[]).push(j);
      }
    }
    this.userRooms = rooms.map((l) => Int32Array.from(l));
    this.userPos = pos.map((l) => Int32Array.from(l));
    this.sendRooms = rooms.map((l, u) => Int32Array.from(l.filter((_, k) => (pos[u] as number[])[k]! < opts.sendersPerRoom)));
    this.slotBase = new Int32Array(U + 1);
    for (let u = 0; u < U; u++) this.slotBase[u + 1] = (this.slotBase[u] as number) + (rooms[u] as number[]).length;
    this.lastSeq = new Float64Array(this.slotBase[U] as number).fill(-1);
    this.userJoined = new Uint8Array(U);
    this.joinedCount = new Int32Array(R);
    this.conns = new Array<Connection | null>(U).fill(null);
    this.alive = new Uint8Array(U);
    this.inflight = new Int32Array(U);
    this.rr = new Int32Array(U);
    this.roomSent = new Float64Array(R);
    this.roomAcked = new Float64Array(R);
    this.roomRefused = new Float64Array(R);
    this.roomDeliveries = new Float64Array(R);
    this.roomFirstAt = new Float64Array(R);
    this.roomLastAt = new Float64Array(R);
    this.roomSteadyAt = new Float64Array(R);
    this.roomSteadySent = new Float64Array(R);
    this.roomSteadyAcked = new Float64Array(R);
  }

  // ---- the run -----------------------------------------------------------------------------

  async run(): Promise<LoadResult> {
    const o = this.opts;
    const fd = ensureFdLimit(o.users + 64);
    if (fd !== null) throw new LoadError(fd);
    const ports = checkPorts(o.users, o.sourceIps.length, o.target.length);
    if (ports !== null) throw new LoadError(ports);
    if (o.events !== null) this.events = await EventLog.open(o.events);

    const progress = setInterval(() => this.tickProgress(), 1000);
    progress.unref();
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    let cpu0 = process.cpuUsage();
    let sendEnd = 0;
    let drainSeconds = 0;
    let drained = false;
    let connectSeconds = 0;
    let joinSeconds = 0;
    try {
      this.enter('connect');
      await this.connectAll();
      connectSeconds = (performance.now() - this.phaseStart) / 1000;
      if (this.connectionsOpened === 0) {
        const [code] = Object.entries(this.connectErrorsByCode).sort((a, b) => b[1] - a[1])[0] ?? ['?'];
        throw new LoadError(`no connection could be opened (${this.connectionsFailed} failed, mostly ${code})${adviceFor(code) ? `: ${adviceFor(code)}` : ''}`);
      }
      this.enter('join');
      await this.joinAll();
      joinSeconds = (performance.now() - this.phaseStart) / 1000;
      await this.hooks.beforeSend?.();

      loopDelay.enable();
      cpu0 = process.cpuUsage();
      this.t0 = performance.now();
      this.timeline = new Timeline(this.t0);
      this.events?.start(this.t0);
      this.enter('send');
      const startedAt = new Date();
      await this.sendPhase();
      sendEnd = performance.now();

      this.enter('drain');
      drained = await this.drain();
      drainSeconds = (performance.now() - sendEnd) / 1000;
      return this.finish(startedAt, sendEnd, { cpu0, loopDelay, connectSeconds, joinSeconds, drainSeconds, drained });
    } finally {
      clearInterval(progress);
      loopDelay.disable();
      this.closeAll();
      await this.events?.close();
      this.enter('done');
    }
  }

  private enter(phase: Phase): void {
    const p = this.snapshot();
    this.phase = phase;
    this.phaseStart = performance.now();
    this.hooks.onPhase?.(phase, p);
  }

  private get aborted(): boolean {
    return this.hooks.signal?.aborted === true;
  }

  private tickProgress(): void {
    this.timeline?.roll(performance.now());
    this.hooks.onProgress?.(this.snapshot());
  }

  private snapshot(): Progress {
    const now = performance.now();
    return {
      phase: this.phase,
      elapsed: (now - this.phaseStart) / 1000,
      users: this.U,
      connected: this.connectionsOpened - this.connectionsDropped,
      failed: this.connectionsFailed,
      dropped: this.connectionsDropped,
      joined: this.joinedUsers,
      sent: this.sent,
      acked: this.acked,
      refused: this.refusedCount,
      errors: this.errors,
      deliveries: this.deliveries,
      inflight: this.totalInflight,
      second: this.timeline?.last(),
    };
  }

  private warnOnce(key: string, line: string): void {
    if (this.adviceGiven.has(key)) return;
    this.adviceGiven.add(key);
    this.hooks.onWarning?.(line);
  }

  // ---- connecting --------------------------------------------------------------------------

  private async openUser(u: number): Promise<boolean> {
    const o = this.opts;
    const target = o.target[u % o.target.length]!;
    const localAddress = o.sourceIps.length > 0 ? o.sourceIps[u % o.sourceIps.length] : undefined;
    try {
      const c = await this.driver.open({ user: u, nick: this.nicks[u]!, target, localAddress, timeoutMs: o.connectTimeout * 1000 }, this);
      if (this.closingAll) {
        c.destroy();
        return false;
      }
      this.conns[u] = c;
      this.alive[u] = 1;
      this.connectionsOpened++;
      return true;
    } catch (err) {
      const e = err as Error & { code?: string };
      const code = e.code ?? (/within \d+ ms|timeout/i.test(e.message) ? 'TIMEOUT' : /refused: (\S+)/.exec(e.message)?.[1] ?? 'OTHER');
      this.connectionsFailed++;
      bump(this.connectErrorsByCode, code);
      if (u < o.target.length) {
        // The first connection to each target is the check that the target exists at all.
        const irc = this.driver.kind === 'parley' || this.driver.kind === 'irc';
        const port = this.driver.transport === 'tcp' ? 'IRC (TCP)' : 'WebSocket';
        const hint =
          code === 'ECONNREFUSED'
            ? `nothing listens there: is the server running, and is this its ${irc ? port : this.driver.kind} port?`
            : code === 'OTHER' || code === 'TIMEOUT'
              ? `is this ${irc ? `${this.driver.kind === 'parley' ? 'a Parley' : "an IRC server's"} ${port}` : `a ${this.driver.kind}`} port?`
              : adviceFor(code);
        throw new LoadError(`cannot connect to ${formatTarget(target)}${localAddress ? ` from ${localAddress}` : ''}: ${e.message}${hint ? ` (${hint})` : ''}`);
      }
      const n = this.connectErrorsByCode[code] ?? 0;
      if (n >= 20 && n >= 0.05 * (this.connectionsOpened + this.connectionsFailed)) {
        const advice = adviceFor(code);
        this.warnOnce(`connect:${code}`, `${n} connections failed with ${code}${advice ? `; ${advice}` : `: ${e.message}`}`);
      }
      return false;
    }
  }

  private async connectAll(): Promise<void> {
    const o = this.opts;
    const first = Math.min(o.target.length, this.U);
    // One per target first: a wrong address fails fast with a clear line.
    await Promise.all(Array.from({ length: first }, (_, u) => this.openUser(u)));
    let next = first;
    const start = performance.now();
    const rampMs = o.ramp * 1000;
    const worker = async (): Promise<void> => {
      while (next < this.U && !this.aborted) {
        const u = next++;
        if (rampMs > 0) {
          const due = start + (u * rampMs) / this.U;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait, this.hooks.signal);
        }
        await this.openUser(u);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.connectConcurrency, Math.max(1, this.U - first)) }, worker));
    if (this.aborted) this.interrupted = true;
  }

  private async joinAll(): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.U && !this.aborted) {
        const u = next++;
        const c = this.conns[u];
        const rooms = this.userRooms[u]!;
        if (!c || rooms.length === 0) continue;
        try {
          await c.join(Array.from(rooms, (r) => this.roomNames[r]!));
          if (!this.alive[u]) continue;
          this.userJoined[u] = 1;
          this.joinedUsers++;
          for (const r of rooms) this.joinedCount[r]!++;
        } catch (err) {
          bump(this.errorsByCode, 'JOIN_FAILED');
          this.warnOnce('join', `a user could not join its rooms: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.connectConcurrency, this.U) }, worker));
    if (this.aborted) this.interrupted = true;
    for (let r = 0; r < this.R; r++) {
      const members: number[] = [];
      const senders: number[] = [];
      for (let j = 0; j < this.M; j++) {
        const u = (r * this.M + j) % this.U;
        if (!this.userJoined[u]) continue;
        members.push(u);
        if (j < this.opts.sendersPerRoom) senders.push(u);
      }
      this.joinedMembers.push(Int32Array.from(members));
      this.roomSenders.push(Int32Array.from(senders));
      if (senders.length > 0) this.quotaRooms++;
    }
  }

  // ---- sending -----------------------------------------------------------------------------

  /** Sends message g of user u to room r; false when u cannot send now. */
  private sendOne(u: number, r: number, now: number): boolean {
    const c = this.conns[u];
    if (c === null || c === undefined || this.inflight[u]! >= this.opts.window) return false;
    const g = this.n++;
    if (g >= this.mRoom.a.length) this.grow(g + 1);
    this.mRoom.a[g] = r;
    this.mSender.a[g] = u;
    this.mSentAt.a[g] = now;
    const head = `${g} `;
    const text = head.length >= this.pad.length ? head : head + this.pad.slice(head.length);
    c.send(this.roomNames[r]!, g, text);
    this.inflight[u]!++;
    this.totalInflight++;
    this.sent++;
    if (this.roomFirstAt[r] === 0) this.roomFirstAt[r] = now;
    this.roomLastAt[r] = now;
    const steadyFrom = this.opts.roomSteadyFromMs?.[r];
    if (steadyFrom !== undefined && now - this.roomFirstAt[r]! >= steadyFrom) {
      if (this.roomSteadyAt[r] === 0) this.roomSteadyAt[r] = now;
      this.roomSteadySent[r]!++;
      this.mSteady.a[g] = 1;
    } else this.mSteady.a[g] = 0;
    if (++this.roomSent[r]! === this.opts.messagesPerRoom && ++this.roomsFull >= this.quotaRooms) this.stopSending();
    this.timeline!.addSent(now);
    this.events?.write(now, 'sent', this.nicks[u]!, this.roomNames[r]!, '', -1, g, '');
    return true;
  }

  private grow(n: number): void {
    this.mRoom.ensure(n);
    this.mSender.ensure(n);
    this.mSentAt.ensure(n);
    this.mState.ensure(n);
    this.mSteady.ensure(n);
    this.mAckId.ensure(n);
    this.mSeenId.ensure(n);
    this.bits.ensure(this.mRoom.a.length * this.bpm);
  }

  private async sendPhase(): Promise<void> {
    const o = this.opts;
    this.sending = true;
    this.lastAnswerAt = performance.now();
    const ended = new Promise<void>((resolve) => (this.sendDone = resolve));
    const onAbort = (): void => {
      this.interrupted = true;
      this.stopSending();
    };
    this.hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.aborted) onAbort();
    let timer: NodeJS.Timeout | undefined;
    if (o.duration !== null) timer = setTimeout(() => this.stopSending(), o.duration * 1000);
    try {
      if (o.rate === 0) {
        // idle: connections are open and joined; nothing is sent until the duration is over
      } else if (this.closedLoop) {
        if (this.quotaRooms === 0) {
          this.fatal = 'no user could join a room, so nothing can be sent';
          this.stopSending();
        }
        for (let u = 0; u < this.U && this.sending; u++) if (this.userJoined[u]) this.refill(u);
      } else if (o.roomRates !== null) {
        this.perRoomLoop(o.roomRates);
      } else {
        this.openLoop();
      }
      await ended;
    } finally {
      clearTimeout(timer);
      this.hooks.signal?.removeEventListener('abort', onAbort);
      this.sending = false;
    }
  }

  private stopSending(): void {
    if (!this.sending) return;
    this.sending = false;
    const done = this.sendDone;
    this.sendDone = null;
    done?.();
  }

  /** Closed loop (--rate max): keeps u's window full, over the rooms it sends to in turn. */
  private refill(u: number): void {
    const rooms = this.sendRooms[u]!;
    if (rooms.length === 0 || !this.userJoined[u]) return;
    const quota = this.opts.messagesPerRoom;
    const now = performance.now();
    while (this.sending && this.inflight[u]! < this.opts.window && this.conns[u]) {
      let r = -1;
      for (let k = 0; k < rooms.length; k++) {
        const cand = rooms[this.rr[u]! % rooms.length]!;
        this.rr[u]!++;
        if (quota === null || this.roomSent[cand]! < quota) {
          r = cand;
          break;
        }
      }
      if (r < 0 || !this.sendOne(u, r, now)) break;
    }
  }

  private checkQuotaDone(): void {
    const quota = this.opts.messagesPerRoom;
    if (quota === null || !this.sending) return;
    for (let r = 0; r < this.R; r++) {
      if (this.roomSent[r]! >= quota) continue;
      // a room nobody alive can send to any more is given up
      if (this.roomSenders[r]!.some((u) => this.conns[u] !== null)) return;
    }
    this.stopSending();
  }

  /** Open loop: a fixed total rate, whatever the answers; a user whose window is full is skipped. */
  private openLoop(): void {
    const o = this.opts;
    const senders: number[] = [];
    for (let u = 0; u < this.U; u++) if (this.userJoined[u] && this.sendRooms[u]!.length > 0) senders.push(u);
    const activeRooms: number[] = [];
    for (let r = 0; r < this.R; r++) if (this.roomSenders[r]!.length > 0) activeRooms.push(r);
    const total = o.rateTotal ?? (o.rate as number) * senders.length;
    if (senders.length === 0 || total <= 0) {
      this.fatal = 'no user could join a room, so nothing can be sent';
      this.stopSending();
      return;
    }
    const S = senders.length;
    const AR = activeRooms.length;
    const quota = o.messagesPerRoom;
    const slots = quota === null ? Infinity : quota * AR;
    this.skipped += quota === null ? 0 : quota * (this.R - AR);
    const msPer = 1000 / total;
    const t0 = this.t0;
    let k = 0;
    const tick = (): void => {
      if (!this.sending) return;
      const now = performance.now();
      const due = Math.min(slots, Math.floor((now - t0) / msPer) + 1);
      if (k < due) this.lagHist.record(now - (t0 + k * msPer));
      while (k < due) {
        if (quota === null) {
          const u = senders[k % S]!;
          const rooms = this.sendRooms[u]!;
          const r = rooms[Math.floor(k / S) % rooms.length]!;
          if (!this.sendOne(u, r, now)) this.skipped++;
          k++;
          continue;
        }
        const r = activeRooms[k % AR]!;
        const members = this.roomSenders[r]!;
        const first = Math.floor(k / AR) % members.length;
        let sentIt = false;
        let anyAlive = false;
        for (let j = 0; j < members.length; j++) {
          const u = members[(first + j) % members.length]!;
          if (this.conns[u] === null) continue;
          anyAlive = true;
          if (this.sendOne(u, r, now)) {
            sentIt = true;
            break;
          }
        }
        if (sentIt || !anyAlive) {
          if (!sentIt) this.skipped++;
          k++;
          continue;
        }
        // Every live member's window is full: the schedule waits (each room gets its quota),
        // unless nothing has been answered for the drain timeout.
        if (now - this.lastAnswerAt > o.drainTimeout * 1000) {
          this.skipped += slots - k;
          this.warnOnce('stall', `no answer for ${o.drainTimeout} s with every window full: giving up the remaining messages`);
          this.stopSending();
          return;
        }
        break;
      }
      if (k >= slots) {
        this.stopSending();
        return;
      }
      setTimeout(tick, TICK_MS);
    };
    tick();
  }

  /**
   * Open loop with a rate per room: room r gets message k at t0 + offset_r + k / rate_r (its
   * senders in turn), whatever the answers; the offsets spread the rooms' first sends over one
   * interval so they do not all start at the same instant. A room whose live senders all have full
   * windows waits (with --messages-per-room every room gets exactly its quota).
   */
  private perRoomLoop(rates: readonly number[]): void {
    const o = this.opts;
    const active: number[] = [];
    for (let r = 0; r < this.R; r++) if (this.roomSenders[r]!.length > 0) active.push(r);
    if (active.length === 0) {
      this.fatal = 'no user could join a room, so nothing can be sent';
      this.stopSending();
      return;
    }
    const quota = o.messagesPerRoom;
    if (quota !== null) this.skipped += quota * (this.R - active.length);
    const msPer = Float64Array.from(rates, (v) => 1000 / v);
    const offset = Float64Array.from(rates, (_, r) => (msPer[r]! * r) / this.R);
    const k = new Float64Array(this.R);
    const done = new Uint8Array(this.R);
    let remaining = active.length;
    const t0 = this.t0;
    const tick = (): void => {
      if (!this.sending) return;
      const now = performance.now();
      for (const r of active) {
        if (done[r]) continue;
        const start = t0 + offset[r]!;
        if (now < start) continue;
        let due = Math.floor((now - start) / msPer[r]!) + 1;
        if (quota !== null && due > quota) due = quota;
        if (k[r]! < due) this.lagHist.record(now - (start + k[r]! * msPer[r]!));
        const members = this.roomSenders[r]!;
        while (k[r]! < due) {
          let sentIt = false;
          let anyAlive = false;
          const first = k[r]! % members.length;
          for (let j = 0; j < members.length; j++) {
            const u = members[(first + j) % members.length]!;
            if (this.conns[u] === null) continue;
            anyAlive = true;
            if (this.sendOne(u, r, now)) {
              sentIt = true;
              break;
            }
          }
          if (!sentIt && anyAlive) {
            if (now - this.lastAnswerAt > o.drainTimeout * 1000) {
              this.warnOnce('stall', `no answer for ${o.drainTimeout} s with every window full: giving up the remaining messages`);
              this.stopSending();
              return;
            }
            break;
          }
          if (!sentIt) this.skipped++;
          k[r]!++;
        }
        if (quota !== null && k[r]! >= quota) {
          done[r] = 1;
          remaining--;
        }
        if (!this.sending) return;
      }
      if (quota !== null && remaining === 0) {
        this.stopSending();
        return;
      }
      setTimeout(tick, TICK_MS);
    };
    tick();
  }

  // ---- answers (DriverSink) ----------------------------------------------------------------

  private answered(u: number): void {
    this.inflight[u]!--;
    this.totalInflight--;
    if (this.closedLoop && this.sending) this.refill(u);
  }

  /** The message g of u, if it is one of ours still waiting for its answer; counts strays. */
  private pending(u: number, g: number): boolean {
    if (g < 0 || g >= this.n || this.mSender.a[g] !== u) {
      this.foreign++;
      return false;
    }
    const st = this.mState.a[g];
    if (st !== M_NONE) {
      if (st === M_ERROR) this.lateAcks++;
      else this.foreign++;
      return false;
    }
    return true;
  }

  ack(u: number, g: number, msgid: string): void {
    if (!this.pending(u, g)) return;
    const now = performance.now();
    this.lastAnswerAt = this.lastEventAt = now;
    this.mState.a[g] = M_ACKED;
    this.acked++;
    const r = this.mRoom.a[g]!;
    this.roomAcked[r]!++;
    if (this.mSteady.a[g] === 1) this.roomSteadyAcked[r]!++;
    this.expected += this.joinedCount[r]! - 1;
    let got = 0;
    for (let i = g * this.bpm, end = i + this.bpm; i < end; i++) got += POPCOUNT[this.bits.a[i]!]!;
    this.uniqueAcked += got;
    const latency = now - this.mSentAt.a[g]!;
    this.ackHist.record(latency);
    this.timeline?.addAck(now, latency);
    if (msgid !== '') {
      const h = hashMsgid(msgid) + 1;
      this.mAckId.a[g] = h;
      const seen = this.mSeenId.a[g]!;
      if (seen !== 0 && seen !== h) this.msgidMismatches++;
    }
    this.events?.write(now, 'ack', this.nicks[u]!, this.roomNames[r]!, msgid, latency, g, '');
    this.answered(u);
  }

  refused(u: number, g: number, code: string): void {
    if (!this.pending(u, g)) return;
    const now = performance.now();
    this.lastAnswerAt = this.lastEventAt = now;
    this.mState.a[g] = M_REFUSED;
    this.refusedCount++;
    bump(this.refusedByCode, code);
    const r = this.mRoom.a[g]!;
    this.roomRefused[r]!++;
    this.timeline?.addRefused(now);
    this.events?.write(now, 'refused', this.nicks[u]!, this.roomNames[r]!, '', now - this.mSentAt.a[g]!, g, code);
    this.answered(u);
  }

  failed(u: number, g: number, code: string): void {
    if (!this.pending(u, g)) return;
    const now = performance.now();
    this.lastAnswerAt = this.lastEventAt = now;
    this.mState.a[g] = M_ERROR;
    this.errors++;
    bump(this.errorsByCode, code);
    this.timeline?.addErrors(now, 1);
    this.events?.write(now, 'error', this.nicks[u]!, this.roomNames[this.mRoom.a[g]!]!, '', now - this.mSentAt.a[g]!, g, code);
    this.answered(u);
  }

  deliver(u: number, room: string, text: string, msgid: string): void {
    const r = this.roomIndex.get(room);
    const g = leadingInt(text);
    if (r === undefined || g < 0 || g >= this.n || this.mRoom.a[g] !== r || !this.userJoined[u]) {
      this.foreign++;
      return;
    }
    const rooms = this.userRooms[u]!;
    let k = 0;
    while (k < rooms.length && rooms[k] !== r) k++;
    if (k === rooms.length) {
      this.foreign++;
      return;
    }
    const now = performance.now();
    this.lastEventAt = now;
    this.deliveries++;
    this.roomDeliveries[r]!++;
    const latency = now - this.mSentAt.a[g]!;
    this.deliverHist.record(latency);
    this.timeline?.addDelivery(now, latency);
    if (this.mSender.a[g] === u) {
      this.duplicated++; // a copy to the sender itself: its echo is the acknowledgement, not a delivery
    } else {
      const pos = this.userPos[u]![k]!;
      const byte = g * this.bpm + (pos >> 3);
      const mask = 1 << (pos & 7);
      const b = this.bits.a[byte]!;
      if ((b & mask) !== 0) this.duplicated++;
      else {
        this.bits.a[byte] = b | mask;
        if (this.mState.a[g] === M_ACKED) this.uniqueAcked++;
      }
    }
    if (msgid !== '') {
      const h = hashMsgid(msgid) + 1;
      const a = this.mAckId.a[g]!;
      if (a !== 0) {
        if (a !== h) this.msgidMismatches++;
      } else {
        const seen = this.mSeenId.a[g]!;
        if (seen === 0) this.mSeenId.a[g] = h;
        else if (seen !== h) this.msgidMismatches++;
      }
      if (this.orderCheck) {
        const seq = msgidSeq(msgid);
        const slot = this.slotBase[u]! + k;
        if (seq >= 0) {
          if (seq < this.lastSeq[slot]!) this.outOfOrder++;
          else this.lastSeq[slot] = seq;
        }
      }
    }
    this.events?.write(now, 'deliver', this.nicks[u]!, room, msgid, latency, g, '');
  }

  closed(u: number, reason: string): void {
    if (this.closingAll || !this.alive[u]) return;
    this.alive[u] = 0;
    this.conns[u] = null;
    this.connectionsDropped++;
    const why = dropReason(reason);
    bump(this.dropReasons, why);
    const lost = this.inflight[u]!;
    if (lost > 0) {
      this.totalInflight -= lost;
      this.inflight[u] = 0;
      this.timeline?.addErrors(performance.now(), lost);
    }
    if (why === FLOOD_REASON && this.sending) {
      const n = this.dropReasons[FLOOD_REASON] ?? 0;
      if (n >= Math.max(1, 0.1 * this.connectionsOpened)) {
        const perUser = this.opts.rate === null ? `${Math.round((this.opts.rateTotal ?? 0) / Math.max(1, this.joinedUsers))}/s per user` : `--rate ${this.opts.rate}`;
        this.fatal = `the server disconnected ${n} users for Excess Flood: ${perUser} is above its per-connection flood limit (flood.linesPerSecond, default 20/s, burst 200); lower the rate or raise the limit, e.g. parley config set '{"flood":{"linesPerSecond":0}}'`;
        this.stopSending();
      }
    }
    if (this.closedLoop && this.opts.messagesPerRoom !== null) this.checkQuotaDone();
  }

  // ---- the end -----------------------------------------------------------------------------

  private async drain(): Promise<boolean> {
    const deadline = performance.now() + this.opts.drainTimeout * 1000;
    const complete = (): boolean => this.totalInflight <= 0 && this.uniqueAcked >= this.expected;
    while (!complete() && performance.now() < deadline && !this.aborted) await sleep(20);
    if (this.aborted) this.interrupted = true;
    if (!complete()) return false;
    await sleep(200, this.hooks.signal); // late duplicates would show up here
    return true;
  }

  private closeAll(): void {
    this.closingAll = true;
    for (let u = 0; u < this.U; u++) {
      const c = this.conns[u];
      this.conns[u] = null;
      c?.destroy();
    }
  }

  private finish(
    startedAt: Date,
    sendEnd: number,
    x: { cpu0: NodeJS.CpuUsage; loopDelay: ReturnType<typeof monitorEventLoopDelay>; connectSeconds: number; joinSeconds: number; drainSeconds: number; drained: boolean },
  ): LoadResult {
    const o = this.opts;
    const now = performance.now();
    const cpu = process.cpuUsage(x.cpu0);
    const cpuPercent = ((cpu.user + cpu.system) / 1000 / Math.max(1, now - this.t0)) * 100;
    // Every message without an answer now is an error: its connection is gone, or no answer came.
    let unanswered = 0;
    let deliveredNotAcked = 0;
    for (let g = 0; g < this.n; g++) {
      const st = this.mState.a[g];
      if (st === M_NONE) {
        this.mState.a[g] = M_ERROR;
        const u = this.mSender.a[g]!;
        const code = this.alive[u] ? 'NO_ANSWER' : 'CONNECTION_LOST';
        bump(this.errorsByCode, code);
        if (code === 'NO_ANSWER') unanswered++;
        this.errors++;
        this.events?.write(now, 'error', this.nicks[u]!, this.roomNames[this.mRoom.a[g]!]!, '', -1, g, code);
      }
      if (st !== M_ACKED) for (let i = g * this.bpm, end = i + this.bpm; i < end; i++) deliveredNotAcked += POPCOUNT[this.bits.a[i]!]!;
    }
    const timeline = this.timeline!;
    if (unanswered > 0) timeline.addErrors(now, unanswered);
    const entries = timeline.finish(now);
    const lost = Math.max(0, this.expected - this.uniqueAcked);
    const rooms: RoomResult[] = this.roomNames.map((room, r) => ({
      room,
      sent: this.roomSent[r]!,
      acked: this.roomAcked[r]!,
      refused: this.roomRefused[r]!,
      deliveries: this.roomDeliveries[r]!,
      ...(this.roomFirstAt[r]! > 0 ? { firstSentMs: round3(this.roomFirstAt[r]! - this.t0), lastSentMs: round3(this.roomLastAt[r]! - this.t0) } : {}),
      ...(o.roomRates !== null ? { offeredRate: o.roomRates[r]! } : {}),
      ...(o.roomSteadyFromMs !== null && this.roomSteadyAt[r]! > 0 ? { steady: { fromMs: round3(this.roomSteadyAt[r]! - this.t0), sent: this.roomSteadySent[r]!, acked: this.roomSteadyAcked[r]! } } : {}),
    }));
    const ld = x.loopDelay;
    const lag = (p: number): number => round3(ld.count === 0 ? 0 : ld.percentile(p) / 1e6);
    const total = o.roomRates !== null ? o.roomRates.reduce((a, b) => a + b, 0) : (o.rateTotal ?? (typeof o.rate === 'number' ? o.rate * this.joinedSenders() : null));
    // Per-room rates are in rooms[].offeredRate; the options carry their range, not 1000 numbers.
    const { roomRates, roomSteadyFromMs: _steady, ...rest } = o;
    const options: Record<string, unknown> = { ...rest, target: o.target.map(formatTarget), ...(roomRates !== null ? { roomRates: describeRates(roomRates) } : {}) };
    const lagP: Percentiles = this.lagHist.percentiles();
    return {
      version: 1,
      name: o.name,
      startedAt: startedAt.toISOString(),
      durationSeconds: round3((sendEnd - this.t0) / 1000),
      target: { kind: this.driver.kind, transport: this.driver.transport, addresses: o.target.map(formatTarget) },
      options,
      totals: {
        sent: this.sent,
        acked: this.acked,
        refused: this.refusedCount,
        errors: this.errors,
        deliveries: this.deliveries,
        expectedDeliveries: this.expected,
        lost,
        duplicated: this.duplicated,
        connectionsOpened: this.connectionsOpened,
        connectionsFailed: this.connectionsFailed,
        connectionsDropped: this.connectionsDropped,
      },
      refusedByCode: { ...this.refusedByCode },
      latency: { ack: this.ackHist.percentiles(), deliver: this.deliverHist.percentiles() },
      timeline: entries,
      rooms,
      machine: { cores: cores(), node: process.version, hostname: os.hostname() },
      generator: {
        cpuPercent: round3(cpuPercent),
        eventLoopDelayMs: { p50: lag(50), p99: lag(99), max: round3(ld.count === 0 ? 0 : ld.max / 1e6) },
        scheduleLagMs: { p50: lagP.p50, p99: lagP.p99, max: lagP.max },
        skipped: this.skipped,
        offeredRate: total === null || total === 0 ? null : round3(total),
        connectSeconds: round3(x.connectSeconds),
        joinSeconds: round3(x.joinSeconds),
        drainSeconds: round3(x.drainSeconds),
        completionSeconds: round3(Math.max(0, Math.max(this.lastEventAt, sendEnd) - this.t0) / 1000),
        drained: x.drained,
        interrupted: this.interrupted,
        errorsByCode: { ...this.errorsByCode },
        connectErrorsByCode: { ...this.connectErrorsByCode },
        dropReasons: { ...this.dropReasons },
        msgidMismatches: this.msgidMismatches,
        outOfOrder: this.outOfOrder,
        deliveredNotAcked,
        lateAcks: this.lateAcks,
        unmatched: this.foreign,
        ...(this.fatal !== null ? { stoppedBecause: this.fatal } : {}),
      },
    };
  }

  private joinedSenders(): number {
    let n = 0;
    for (let u = 0; u < this.U; u++) if (this.userJoined[u] && this.sendRooms[u]!.length > 0) n++;
    return n;
  }
}
