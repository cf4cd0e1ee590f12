// The connection: one IrcClient at a time over the browser's WebSocket, reconnected with
// back-off (1 s doubling to 30 s, with jitter; at once when the browser comes back online).
// Every command whose replies matter carries a `label` (labeled-response): the label says which
// request, buffer or own message a reply belongs to. Own messages wait in their buffer: queued
// while offline (sent on reconnect, failed after QUEUE_MS), pending until the echo (failed after
// ECHO_MS), failed with the server's reason (retry puts them back). With credentials
// (account.ts), every connection logs in (SASL PLAIN) or registers the account before CAP END.

import type { IrcMessage } from '@parley/protocol';
import { BrowserWebSocketTransport, DEFAULT_CLIENT_CAPS, IrcClient, IrcClientError, type WelcomeInfo } from '@parley/client/browser';
import { accepted, credentials } from './credentials.js';
import { changed, state, touch, type Buffer, type Item } from './state.js';
import { guessSource, splitMessage, textBudget, action as ctcp } from './text.js';

/** What a labelled command was: routes its replies. */
export type LabelCtx =
  | { kind: 'message'; buffer: Buffer; item: Item }
  | { kind: 'command'; buffer: Buffer }
  | { kind: 'history'; buffer: Buffer; sub: 'LATEST' | 'BEFORE' | 'AFTER'; limit: number; count: number; ownTexts: string[] }
  | { kind: 'targets'; found: Array<{ name: string; time: string }> }
  /** A WHOX query for the accounts of a channel's members: its replies are not shown. */
  | { kind: 'accounts' };

export const labels = new Map<string, LabelCtx>();

/** The caps this client follows; userhost-in-names would change NAMES into nick!user@host. */
const CAPS = DEFAULT_CLIENT_CAPS.filter((c) => c !== 'userhost-in-names');

export const QUEUE_MS = 60_000;
export const ECHO_MS = 30_000;

let client: IrcClient | null = null;
let labelSeq = 0;
let backoff = 1000;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
/** The user logged out (or registration was refused): no reconnect. */
let stopped = true;

export interface ConnectionEvents {
  message(m: IrcMessage): void;
  registered(w: WelcomeInfo, first: boolean): void;
  /**
   * Registration refused (a numeric such as nick in use, a failed log-in or account registration,
   * or no SASL on the server: `reply` undefined); `retrying` while reconnecting.
   */
  refused(reply: IrcMessage | undefined, why: string, retrying: boolean, auth: boolean): void;
  closed(): void;
}

let events: ConnectionEvents | null = null;
let everRegistered = false;
/** Refusals in a row while reconnecting: the nick may still be held by our previous connection. */
let refusals = 0;

function setStatus(text: string, online: boolean): void {
  state.status = text;
  state.online = online;
  changed();
}

/** Nick-in-use refusals are retried (a few times) once registered, or from the start when `retryNick`. */
let retryNick = false;

export function start(ev: ConnectionEvents, restored: boolean): void {
  events = ev;
  retryNick = restored;
  stopped = false;
  everRegistered = false;
  refusals = 0;
  backoff = 1000;
  connect();
}

export function stop(reason: string): void {
  stopped = true;
  clearTimeout(retryTimer);
  const c = client;
  client = null;
  state.registered = false;
  if (c) void c.close(reason).catch(() => undefined);
  setStatus('disconnected', false);
}

function connect(): void {
  clearTimeout(retryTimer);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const auth = credentials();
  const c = new IrcClient({
    transport: new BrowserWebSocketTransport(url),
    nick: state.nick,
    realname: 'Parley web',
    keepHistory: false,
    caps: CAPS,
    ...(auth !== null ? { auth } : {}),
  });
  client = c;
  state.registered = false;
  setStatus(everRegistered ? 'reconnecting' : 'connecting', false);
  c.on('message', (m) => {
    if (client === c) events?.message(m);
  });
  c.on('error', () => {
    // Unparsable lines are skipped; a transport error also closes (handled below).
  });
  c.on('close', () => {
    if (client !== c) return;
    state.registered = false;
    loseInFlight();
    events?.closed();
    if (stopped) return;
    setStatus(`reconnecting in ${Math.round(backoff / 1000)} s`, false);
    schedule();
  });
  c.connect().then(
    (welcome) => {
      if (client !== c) return;
      const first = !everRegistered;
      everRegistered = true;
      refusals = 0;
      backoff = 1000;
      state.registered = true;
      state.account = welcome.account;
      if (welcome.account !== null) accepted();
      state.nick = welcome.nick;
      state.source = '';
      state.isupport = new Map(welcome.isupport);
      state.network = welcome.isupport.get('NETWORK') ?? state.network;
      setStatus(`online as ${state.nick}`, true);
      events?.registered(welcome, first);
      flushQueued();
    },
    (err: unknown) => {
      if (client !== c) return;
      const reply = err instanceof IrcClientError ? err.reply : undefined;
      const why = err instanceof Error ? err.message : String(err);
      // Refused log-ins and registrations, and a server without SASL, are the client's errors.
      const authRefused = auth !== null && (reply?.command === 'FAIL' || /^90[4-6]$/.test(reply?.command ?? '') || /^cannot (log in|register)/.test(why));
      if (!authRefused && (reply === undefined || !/^\d{3}$/.test(reply.command))) return; // a lost connection: 'close' retries
      // Reconnecting after a cut, the server may not have seen our old connection close yet.
      const retrying = (everRegistered || retryNick) && reply?.command === '433' && ++refusals <= 5;
      events?.refused(reply, why, retrying, authRefused);
      if (!retrying) {
        stopped = true;
        clearTimeout(retryTimer);
        setStatus('disconnected', false);
      }
    },
  );
}

function schedule(): void {
  clearTimeout(retryTimer);
  const delay = backoff * (0.8 + Math.random() * 0.4);
  backoff = Math.min(backoff * 2, 30_000);
  retryTimer = setTimeout(() => {
    if (!stopped) connect();
  }, delay);
}

/** Reconnect now (the browser is back online, or the user asked). */
export function reconnectNow(): void {
  if (stopped || state.registered) return;
  backoff = 1000;
  client?.destroy();
  connect();
}

/**
 * Sends a command; with `ctx`, a label routes its replies. False (nothing sent) when offline or
 * when the message cannot be put on a line (the caller shows why).
 */
export function send(command: string, params: string[], ctx?: LabelCtx): string | false {
  if (!client || !state.registered) return false;
  const tags: Record<string, string> = {};
  let label: string | undefined;
  if (ctx) {
    label = `w${(++labelSeq).toString(36)}`;
    tags['label'] = label;
  }
  try {
    client.send({ tags, source: undefined, command, params });
  } catch (err) {
    throw new Error(`not sent: ${(err as Error).message}`);
  }
  if (label !== undefined && ctx) labels.set(label, ctx);
  return label ?? '';
}

export function sendRaw(line: string): boolean {
  if (!client || !state.registered) return false;
  client.sendRaw(line);
  return true;
}

// ---- own messages ---------------------------------------------------------------------------

/** Bytes left for the text of one PRIVMSG to `target`. */
export function budget(target: string, isAction: boolean): number {
  const lineLen = Number(state.isupport.get('LINELEN') ?? '512') || 512;
  return textBudget({ lineLen, source: state.source || guessSource(state.nick) }, 'PRIVMSG', target, isAction);
}

/** The pieces `text` will be sent as. */
export function pieces(target: string, text: string, isAction: boolean): string[] {
  return splitMessage(text, budget(target, isAction));
}

/** Sends (or queues) an own message; `item` is its line in the buffer, already inserted. */
export function transmit(b: Buffer, item: Item): void {
  const out = item.out;
  if (!out) return;
  out.since = Date.now();
  delete out.reason;
  delete out.lost;
  if (!state.registered) {
    out.state = 'queued';
    touch(item);
    return changed();
  }
  try {
    const label = send('PRIVMSG', [out.target, out.action ? ctcp(out.text) : out.text], { kind: 'message', buffer: b, item });
    if (label === false) out.state = 'queued';
    else {
      out.state = 'pending';
      out.label = label;
    }
  } catch (err) {
    out.state = 'failed';
    out.reason = (err as Error).message;
  }
  touch(item);
  changed();
}

function ownItems(pred: (o: NonNullable<Item['out']>) => boolean): Array<[Buffer, Item]> {
  const r: Array<[Buffer, Item]> = [];
  for (const b of state.buffers.values()) for (const it of b.items) if (it.out && pred(it.out)) r.push([b, it]);
  return r;
}

function flushQueued(): void {
  for (const [b, it] of ownItems((o) => o.state === 'queued')) transmit(b, it);
}

/** Messages sent on a connection that closed before their echo: not known to be stored. */
function loseInFlight(): void {
  for (const [, it] of ownItems((o) => o.state === 'pending')) {
    const out = it.out as Outgoing;
    out.state = 'failed';
    out.lost = true;
    out.reason = 'connection lost before the server confirmed it';
    touch(it);
  }
  labels.clear();
  changed();
}

type Outgoing = NonNullable<Item['out']>;

/** Marks an own message refused or failed. */
export function fail(it: Item, reason: string): void {
  if (!it.out) return;
  it.out.state = 'failed';
  it.out.reason = reason;
  touch(it);
  changed();
}

// Queued messages fail after a while offline; pending ones without an echo after ECHO_MS.
setInterval(() => {
  const now = Date.now();
  for (const [, it] of ownItems((o) => o.state !== 'failed')) {
    const out = it.out as Outgoing;
    if (out.state === 'queued' && now - out.since > QUEUE_MS) fail(it, `not sent: offline for ${QUEUE_MS / 1000} s`);
    if (out.state === 'pending' && now - out.since > ECHO_MS) fail(it, `no confirmation from the server within ${ECHO_MS / 1000} s`);
  }
}, 1000);
