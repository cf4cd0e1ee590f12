import crypto from 'node:crypto';
import net from 'node:net';
import { z } from 'zod';

/*
 * `parley load` options: one schema for the command line and for the benchmark scripts that call
 * the engine directly. Everything that cannot work is refused here, before a single connection is
 * opened, with one line that names the flag.
 */

/** More than one Node process can generate and check (every message is parsed by each member). */
export const MAX_TOTAL_RATE = 200_000;
/** Per connection; far above what any server's flood control accepts. */
export const MAX_USER_RATE = 10_000;
/** Parley's default `limits.channelsPerUser`. */
export const MAX_ROOMS_PER_USER = 100;
/** Parley's default `limits.lineBytes` (512) less CRLF, the command, the target and the ':'. */
const LINE_BYTES = 510;

export interface Target {
  host: string;
  port: number;
}

const SIZE = { users: 1_000_000, rooms: 1_000_000 };

/** A number from a command-line string (commander hands over strings) or from code. */
const numeric = (flag: string, o: { int?: boolean; min: number; max: number; minExclusive?: boolean }) =>
  z.preprocess(
    (v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v),
    z
      .number({ error: `--${flag} must be a number` })
      .refine((n) => Number.isFinite(n), `--${flag} must be a number`)
      .refine((n) => !o.int || Number.isInteger(n), `--${flag} must be a whole number`)
      .refine(
        (n) => (o.minExclusive ? n > o.min : n >= o.min) && n <= o.max,
        `--${flag} must be ${o.minExclusive ? 'more than' : 'at least'} ${o.min} and at most ${o.max.toLocaleString('en-US')}`,
      ),
  );

const TargetSchema = z.string().transform((s, ctx): Target => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `--target: '${s}' is not host:port` });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2]) as string, port };
});

/** `127.0.0.2-127.0.0.9`, `127.0.0.2-9`, or a comma-separated list of IPv4 addresses. */
export function expandSourceIps(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const dash = part.indexOf('-');
    if (dash === -1) {
      if (!net.isIPv4(part)) throw new Error(`--source-ips: '${part}' is not an IPv4 address`);
      out.push(part);
      continue;
    }
    const from = part.slice(0, dash);
    let to = part.slice(dash + 1);
    if (!net.isIPv4(from)) throw new Error(`--source-ips: '${from}' is not an IPv4 address`);
    if (/^\d{1,3}$/.test(to)) to = from.replace(/\d+$/, to);
    if (!net.isIPv4(to)) throw new Error(`--source-ips: '${to}' is not an IPv4 address`);
    const a = ipToInt(from);
    const b = ipToInt(to);
    if (b < a) throw new Error(`--source-ips: the range ${part} is empty`);
    if (b - a >= 1024) throw new Error(`--source-ips: the range ${part} has more than 1024 addresses`);
    for (let i = a; i <= b; i++) out.push(intToIp(i));
  }
  if (out.length === 0) throw new Error('--source-ips: no address given');
  return [...new Set(out)];
}

const ipToInt = (ip: string): number => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

const NICK_PREFIX = /^[A-Za-z][A-Za-z0-9_]{0,11}$/;
const ROOM_PREFIX = /^[A-Za-z0-9_.-]{1,40}$/;

function randomPrefix(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = 'l';
  for (const b of crypto.randomBytes(4)) s += alphabet[b % alphabet.length];
  return s;
}

export const LoadOptionsSchema = z
  .object({
    /** where to connect; connections are spread round-robin over the targets */
    target: z.array(TargetSchema).min(1, '--target: give at least one host:port'),
    /** what the targets are: Parley (IRC), another IRC server (a benchmark peer such as InspIRCd), or one of the benchmark baselines */
    driver: z.enum(['parley', 'irc', 'socketio', 'ws'], { error: '--driver must be parley, irc, socketio or ws' }).default('parley'),
    transport: z.enum(['tcp', 'ws'], { error: '--transport must be tcp or ws' }).default('tcp'),
    users: numeric('users', { int: true, min: 1, max: SIZE.users }).default(100),
    rooms: numeric('rooms', { int: true, min: 0, max: SIZE.rooms }).default(10),
    membersPerRoom: numeric('members-per-room', { int: true, min: 1, max: SIZE.users }).default(10),
    /** the first N members of each room send to it; the others only receive (default: every member) */
    sendersPerRoom: numeric('senders-per-room', { int: true, min: 1, max: SIZE.users }).optional(),
    /** messages per second per user; 'max' = as fast as acknowledgements allow (closed loop, --window in flight); 0 = connect and idle */
    rate: z.union([z.literal('max'), numeric('rate', { min: 0, max: MAX_USER_RATE })], { error: `--rate must be messages per second (0 to ${MAX_USER_RATE}), max, or 0 for idle` }).optional(),
    /** messages per second over all users (instead of --rate) */
    rateTotal: numeric('rate-total', { min: 0, max: MAX_TOTAL_RATE, minExclusive: true }).optional(),
    /**
     * messages per second offered to each room, one number per room (instead of --rate): room r is
     * sent to at roomRates[r] by its senders in turn (open loop). Programmatic only (`parley demo
     * qos` offers each room a multiple of its own QoS limit); not a command-line flag.
     */
    roomRates: z.array(z.number({ error: 'roomRates: expected numbers' }).positive('roomRates: a room rate must be more than 0').max(MAX_USER_RATE * 1000)).optional(),
    /**
     * per room, ms after its first send from which its messages are also counted apart (the
     * result's rooms[].steady: sent and acknowledged from then on), e.g. once a QoS burst is spent.
     * Programmatic only, with roomRates.
     */
    roomSteadyFromMs: z.array(z.number().nonnegative()).optional(),
    /** unacknowledged messages a user may have in flight; the schedule skips a user whose window is full */
    window: numeric('window', { int: true, min: 1, max: 100_000 }).default(1000),
    duration: numeric('duration', { min: 0, max: 86_400, minExclusive: true }).optional(),
    messagesPerRoom: numeric('messages-per-room', { int: true, min: 1, max: 10_000_000 }).optional(),
    /** seconds over which the connections are opened (0 = as fast as --connect-concurrency allows) */
    ramp: numeric('ramp', { min: 0, max: 3600 }).default(0),
    connectConcurrency: numeric('connect-concurrency', { int: true, min: 1, max: 10_000 }).default(200),
    sourceIps: z.array(z.string()).optional(),
    /** bytes of each message's text */
    payloadBytes: numeric('payload-bytes', { int: true, min: 16, max: 400 }).default(100),
    events: z.string().min(1).optional(),
    out: z.string().min(1).optional(),
    name: z.string().min(1).max(200).optional(),
    nickPrefix: z.string().regex(NICK_PREFIX, '--nick-prefix must be a letter and up to 11 letters, digits or _').optional(),
    roomPrefix: z.string().regex(ROOM_PREFIX, '--room-prefix must be 1 to 40 of A-Z a-z 0-9 _ . -').optional(),
    /** seconds to wait after the send phase for outstanding acknowledgements and deliveries */
    drainTimeout: numeric('drain-timeout', { min: 0, max: 3600 }).default(30),
    /** seconds a connection may take to connect and register */
    connectTimeout: numeric('connect-timeout', { min: 0.1, max: 3600 }).default(30),
  })
  .strict();

export type LoadOptionsInput = z.input<typeof LoadOptionsSchema>;

/** Validated options with the defaults and derived values resolved. */
export interface LoadOptions {
  target: Target[];
  driver: 'parley' | 'irc' | 'socketio' | 'ws';
  transport: 'tcp' | 'ws';
  users: number;
  rooms: number;
  membersPerRoom: number;
  /** members at positions 0 … sendersPerRoom−1 of a room send to it; ≤ membersPerRoom */
  sendersPerRoom: number;
  /** 'max', 0 (idle), or messages per second per sending user; null when --rate-total or roomRates is given */
  rate: 'max' | number | null;
  rateTotal: number | null;
  /** messages per second offered to each room (one per room), or null */
  roomRates: number[] | null;
  /** per room: ms after its first send from which its sends and acks are also counted apart; or null */
  roomSteadyFromMs: number[] | null;
  window: number;
  /** seconds of the send phase, or null with messagesPerRoom */
  duration: number | null;
  messagesPerRoom: number | null;
  ramp: number;
  connectConcurrency: number;
  sourceIps: string[];
  payloadBytes: number;
  events: string | null;
  out: string | null;
  name: string;
  nickPrefix: string;
  roomPrefix: string;
  drainTimeout: number;
  connectTimeout: number;
}

export class OptionsError extends Error {
  override readonly name = 'OptionsError';
}

/** Users that send to at least one room (a user in several rooms is counted once at most). */
export const senderCount = (o: Pick<LoadOptions, 'users' | 'rooms' | 'membersPerRoom'> & { sendersPerRoom?: number }): number =>
  Math.min(o.users, o.rooms * Math.min(o.sendersPerRoom ?? o.membersPerRoom, o.membersPerRoom));

/** Validates raw options (strings from the command line, or typed values); throws OptionsError with one line. */
export function parseLoadOptions(raw: Record<string, unknown>): LoadOptions {
  const input = { ...raw };
  for (const k of Object.keys(input)) if (input[k] === undefined) delete input[k];
  // Commander hands list options over as arrays of strings, possibly comma-separated.
  if (typeof input.target === 'string') input.target = [input.target];
  if (Array.isArray(input.target)) input.target = (input.target as unknown[]).flatMap((t) => String(t).split(',')).filter((t) => t !== '');
  if (typeof input.sourceIps === 'string') {
    try {
      input.sourceIps = expandSourceIps(input.sourceIps);
    } catch (err) {
      throw new OptionsError((err as Error).message);
    }
  }
  if (typeof input.rate === 'string' && input.rate.trim().toLowerCase() === 'max') input.rate = 'max';
  const parsed = LoadOptionsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const flag = issue?.path[0] !== undefined ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : '';
    let message = issue?.message ?? 'invalid options';
    if (issue?.code === 'unrecognized_keys') message = `unknown option ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    else if (!message.startsWith('--')) message = `${flag}: ${message}`;
    throw new OptionsError(message);
  }
  const v = parsed.data;
  if (v.rate !== undefined && v.rateTotal !== undefined) throw new OptionsError('give either --rate or --rate-total, not both');
  if (v.roomRates !== undefined && (v.rate !== undefined || v.rateTotal !== undefined)) throw new OptionsError('give either per-room rates or --rate/--rate-total, not both');
  if (v.roomRates !== undefined && v.roomRates.length !== v.rooms) throw new OptionsError(`per-room rates: ${v.roomRates.length} given for ${v.rooms} rooms (one per room)`);
  if (v.roomSteadyFromMs !== undefined && v.roomSteadyFromMs.length !== v.rooms) throw new OptionsError(`per-room steady windows: ${v.roomSteadyFromMs.length} given for ${v.rooms} rooms (one per room)`);
  if (v.duration !== undefined && v.messagesPerRoom !== undefined) throw new OptionsError('give either --duration or --messages-per-room, not both');
  const rate: 'max' | number | null = v.rateTotal !== undefined || v.roomRates !== undefined ? null : (v.rate ?? 1);
  const idle = rate === 0;
  if (idle && v.messagesPerRoom !== undefined) throw new OptionsError('--rate 0 (idle) sends nothing, so --messages-per-room cannot be met');
  if (v.rooms > 0 && v.membersPerRoom > v.users) {
    throw new OptionsError(`--members-per-room ${v.membersPerRoom} is more than --users ${v.users}: a room cannot have more members than there are users`);
  }
  if (v.rooms === 0 && !idle) throw new OptionsError('--rooms 0: users need a room to send to (use --rate 0 for idle connections)');
  const roomsPerUser = Math.ceil((v.rooms * v.membersPerRoom) / v.users);
  if (roomsPerUser > MAX_ROOMS_PER_USER) {
    throw new OptionsError(
      `${v.rooms} rooms × ${v.membersPerRoom} members over ${v.users} users puts each user in ${roomsPerUser} rooms; Parley allows ${MAX_ROOMS_PER_USER} per user (limits.channelsPerUser): add users or lower --rooms/--members-per-room`,
    );
  }
  if (v.sendersPerRoom !== undefined && v.sendersPerRoom > v.membersPerRoom) {
    throw new OptionsError(`--senders-per-room ${v.sendersPerRoom} is more than --members-per-room ${v.membersPerRoom}`);
  }
  const senders = senderCount(v);
  const roomTotal = v.roomRates?.reduce((a, b) => a + b, 0);
  const offered = roomTotal ?? (rate === null ? (v.rateTotal as number) : rate === 'max' ? 0 : rate * senders);
  if (offered > MAX_TOTAL_RATE) {
    throw new OptionsError(
      `a total of ${Math.round(offered).toLocaleString('en-US')} messages/s (${rate} × ${senders} sending users) is more than one load process can generate and check (${MAX_TOTAL_RATE.toLocaleString('en-US')}/s); lower --rate or split the users over several parley load processes`,
    );
  }
  if (v.roomRates !== undefined) {
    const perRoomSenders = Math.min(v.sendersPerRoom ?? v.membersPerRoom, v.membersPerRoom);
    const top = Math.max(0, ...v.roomRates);
    if (top / perRoomSenders > MAX_USER_RATE) throw new OptionsError(`a room rate of ${top}/s over ${perRoomSenders} senders is more than ${MAX_USER_RATE} messages/s per user`);
  } else if (rate === null && (v.rateTotal as number) / senders > MAX_USER_RATE) {
    throw new OptionsError(`--rate-total ${v.rateTotal} over ${senders} sending users is more than ${MAX_USER_RATE} messages/s per user`);
  }
  const nickPrefix = v.nickPrefix ?? randomPrefix();
  const roomPrefix = v.roomPrefix ?? `${nickPrefix}r`;
  if (nickPrefix.length + String(v.users - 1).length > 30) throw new OptionsError('--nick-prefix is too long for the number of users (nicks are at most 30 characters)');
  const longestRoom = `#${roomPrefix}${Math.max(0, v.rooms - 1)}`;
  const room = v.driver === 'parley' || v.driver === 'irc' ? `PRIVMSG ${longestRoom} :` : '';
  if (v.payloadBytes + room.length > LINE_BYTES) {
    throw new OptionsError(`--payload-bytes ${v.payloadBytes} does not fit an IRC line with target ${longestRoom} (at most ${LINE_BYTES - room.length})`);
  }
  return {
    target: v.target,
    driver: v.driver,
    transport: v.driver === 'parley' || v.driver === 'irc' ? v.transport : 'ws',
    users: v.users,
    rooms: v.rooms,
    membersPerRoom: v.membersPerRoom,
    sendersPerRoom: v.sendersPerRoom ?? v.membersPerRoom,
    rate,
    rateTotal: v.rateTotal ?? null,
    roomRates: v.roomRates ?? null,
    roomSteadyFromMs: v.roomSteadyFromMs ?? null,
    window: v.window,
    duration: v.messagesPerRoom !== undefined ? null : (v.duration ?? 10),
    messagesPerRoom: v.messagesPerRoom ?? null,
    ramp: v.ramp,
    connectConcurrency: v.connectConcurrency,
    sourceIps: v.sourceIps ?? [],
    payloadBytes: v.payloadBytes,
    events: v.events ?? null,
    out: v.out ?? null,
    name: v.name ?? `load-${new Date().toISOString().replace(/[:.]/g, '-')}`,
    nickPrefix,
    roomPrefix,
    drainTimeout: v.drainTimeout,
    connectTimeout: v.connectTimeout,
  };
}

/** host:port as written on the command line (IPv6 in brackets). */
export const formatTarget = (t: Target): string => (t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`);
