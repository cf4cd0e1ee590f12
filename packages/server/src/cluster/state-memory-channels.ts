import { maskMatches } from './masks.js';
import { setOf, type MemoryClusterData } from './state-memory-data.js';
import { channelInfo } from './state-records.js';
import {
  MAX_LIST_ENTRIES,
  type AccessLevel, type ChannelRegistration, type InviteResult, type JoinCheck, type JoinResult,
  type KickResult, type ListEntry, type ListMode, type ModeChange, type ModeResult, type PartResult,
  type RegisterChannelResult, type TopicResult,
} from './state.js';

/*
 * The channel operations of MemoryClusterState on the data of one cluster, each the twin of its
 * Lua script in state-redis-scripts.ts (same checks, in the same order, same results). Each runs
 * synchronously: MemoryClusterState calls it alone on an event-loop turn, which makes it atomic.
 */

const LIST_MODES = ['b', 'e', 'I'] as const;

const listKey = (chanKey: string, m: ListMode): string => `${chanKey} ${m}`;

/** The `join` script: the channel's rules, the invite used up, a registered channel recreated, the joiner's status. */
export function joinChannel(d: MemoryClusterData, chanKey: string, chanName: string, nick: string, maxChannels: number, check: JoinCheck | undefined, now: number): JoinResult {
  const key = nick.toLowerCase();
  if (d.members.get(chanKey)?.has(key)) return { kind: 'already' };
  if ((d.userChans.get(key)?.size ?? 0) >= maxChannels) return { kind: 'too-many' };
  let channel = d.chans.get(chanKey);
  const reg = d.regs.get(chanKey);
  const acct = (check?.account ?? '').toLowerCase();
  let level = '';
  if (reg && acct) level = reg.founder === acct ? 'op' : d.access.get(chanKey)?.get(acct) ?? '';
  const rules = channel ?? (reg ? { modes: 'nt', key: '', limit: 0, ...reg.saved } : null);
  const invites = d.invites.get(chanKey);
  if (check && rules && level !== 'op') {
    const listed = (m: ListMode): boolean => [...(d.lists.get(listKey(chanKey, m))?.values() ?? [])].some((e) => maskMatches(e.mask, check.source, acct || null));
    if (rules.limit > 0 && (d.members.get(chanKey)?.size ?? 0) >= rules.limit) return { kind: 'full' };
    if (rules.key && check.key !== rules.key) return { kind: 'bad-key' };
    const invited = (invites?.has(key) ?? false) || listed('I');
    if (rules.modes.includes('i') && !invited) return { kind: 'invite-only' };
    if (!invited && listed('b') && !listed('e')) return { kind: 'banned' };
  }
  invites?.delete(key);
  const created = !channel;
  let op = false;
  if (!channel) {
    channel = reg
      ? { name: reg.name, topic: '', topicBy: '', topicAt: 0, modes: 'nt', key: '', limit: 0, ...reg.saved, created: now }
      : { name: chanName, topic: '', topicBy: '', topicAt: 0, modes: 'nt', created: now, key: '', limit: 0 };
    op = !reg;
    d.chans.set(chanKey, channel);
  }
  if (level === 'op') op = true;
  const voice = level === 'voice';
  let ms = d.members.get(chanKey);
  if (!ms) d.members.set(chanKey, (ms = new Map()));
  ms.set(key, { nick, op, voice });
  setOf(d.userChans, key).add(chanKey);
  return { kind: 'joined', created, op, voice, channel: channelInfo(channel) };
}

export function partChannel(d: MemoryClusterData, chanKey: string, nick: string): PartResult {
  const key = nick.toLowerCase();
  if (!d.members.get(chanKey)?.delete(key)) return d.chans.has(chanKey) ? 'not-on-channel' : 'no-channel';
  d.userChans.get(key)?.delete(chanKey);
  dropIfEmpty(d, chanKey);
  return 'ok';
}

export function kickMember(d: MemoryClusterData, chanKey: string, by: string, target: string): KickResult {
  if (!d.chans.has(chanKey)) return 'no-channel';
  const ms = d.members.get(chanKey);
  const kicker = ms?.get(by.toLowerCase());
  if (!ms || !kicker) return 'not-on-channel';
  if (!kicker.op) return 'not-op';
  const t = target.toLowerCase();
  if (!ms.delete(t)) return 'target-not-on-channel';
  d.userChans.get(t)?.delete(chanKey);
  dropIfEmpty(d, chanKey);
  return 'ok';
}

export function setTopic(d: MemoryClusterData, chanKey: string, nick: string, topic: string, setter: string, at: number): TopicResult {
  const ch = d.chans.get(chanKey);
  if (!ch) return 'no-channel';
  const m = d.members.get(chanKey)?.get(nick.toLowerCase());
  if (!m) return 'not-on-channel';
  if (ch.modes.includes('t') && !m.op) return 'not-op';
  ch.topic = topic;
  ch.topicBy = setter;
  ch.topicAt = at;
  return 'ok';
}

/** The `modes` script: flags, member statuses, list entries, key and limit, in the order given. */
export function setModes(d: MemoryClusterData, chanKey: string, nick: string | null, changes: ModeChange[], setter: string, at: number): ModeResult {
  const ch = d.chans.get(chanKey);
  if (!ch) return { kind: 'no-channel' };
  const ms = d.members.get(chanKey);
  if (nick !== null && !ms?.get(nick.toLowerCase())?.op) return { kind: 'not-op' };
  const applied: ModeChange[] = [];
  const missing: string[] = [];
  const full: string[] = [];
  const flag = (m: string, on: boolean): void => {
    const has = ch.modes.includes(m);
    if (on && !has) ch.modes += m;
    else if (!on && has) ch.modes = ch.modes.split(m).join('');
  };
  for (const c of changes) {
    if (c.mode === 'o' || c.mode === 'v') {
      const t = (c.nick ?? '').toLowerCase();
      const m = ms?.get(t);
      if (!m) {
        missing.push(t);
      } else if ((c.mode === 'o' ? m.op : m.voice) !== c.add) {
        if (c.mode === 'o') m.op = c.add;
        else m.voice = c.add;
        applied.push({ add: c.add, mode: c.mode, nick: m.nick });
      }
    } else if (c.mode === 'b' || c.mode === 'e' || c.mode === 'I') {
      const lk = listKey(chanKey, c.mode);
      let list = d.lists.get(lk);
      const mask = c.arg ?? '';
      const field = mask.toLowerCase();
      if (c.add) {
        if (list?.has(field)) continue;
        if ((list?.size ?? 0) >= MAX_LIST_ENTRIES) {
          full.push(mask);
          continue;
        }
        if (!list) d.lists.set(lk, (list = new Map()));
        list.set(field, { mode: c.mode, mask, setBy: setter, setAt: at });
        applied.push({ add: true, mode: c.mode, arg: mask });
      } else {
        const e = list?.get(field);
        if (!e) continue;
        list?.delete(field);
        applied.push({ add: false, mode: c.mode, arg: e.mask });
      }
    } else if (c.mode === 'k') {
      if (c.add) {
        ch.key = c.arg ?? '';
        flag('k', true);
        applied.push({ add: true, mode: 'k', arg: ch.key });
      } else if (ch.key) {
        ch.key = '';
        flag('k', false);
        applied.push({ add: false, mode: 'k', arg: '*' });
      }
    } else if (c.mode === 'l') {
      if (c.add) {
        const n = Number(c.arg);
        if (ch.limit !== n) {
          ch.limit = n;
          flag('l', true);
          applied.push({ add: true, mode: 'l', arg: c.arg ?? '' });
        }
      } else if (ch.modes.includes('l')) {
        ch.limit = 0;
        flag('l', false);
        applied.push({ add: false, mode: 'l' });
      }
    } else if (ch.modes.includes(c.mode) !== c.add) {
      flag(c.mode, c.add);
      applied.push({ add: c.add, mode: c.mode });
    }
  }
  return { kind: 'ok', applied, missing, full };
}

export function listModes(d: MemoryClusterData, chanKey: string): ListEntry[] {
  return LIST_MODES.flatMap((m) => [...(d.lists.get(listKey(chanKey, m))?.values() ?? [])].map((e) => ({ ...e })));
}

export function invite(d: MemoryClusterData, chanKey: string, by: string, target: string): InviteResult {
  const ch = d.chans.get(chanKey);
  if (!ch) return 'no-channel';
  const ms = d.members.get(chanKey);
  const inviter = ms?.get(by.toLowerCase());
  if (!inviter) return 'not-on-channel';
  const t = target.toLowerCase();
  if (ms?.has(t)) return 'already-on';
  if (ch.modes.includes('i') && !inviter.op) return 'not-op';
  setOf(d.invites, chanKey).add(t);
  return 'ok';
}

export function registerChannel(d: MemoryClusterData, chanKey: string, nick: string, account: string, at: number): RegisterChannelResult {
  const ch = d.chans.get(chanKey);
  if (!ch) return 'no-channel';
  if (!d.members.get(chanKey)?.get(nick.toLowerCase())?.op) return 'not-op';
  if (d.regs.has(chanKey)) return 'exists';
  d.regs.set(chanKey, { founder: account.toLowerCase(), registered: at, name: ch.name, saved: null });
  return 'ok';
}

export function registration(d: MemoryClusterData, chanKey: string): ChannelRegistration | null {
  const reg = d.regs.get(chanKey);
  if (!reg) return null;
  return { founder: reg.founder, registeredAt: reg.registered, access: Object.fromEntries(d.access.get(chanKey) ?? []) };
}

export function setAccess(d: MemoryClusterData, chanKey: string, account: string, level: AccessLevel | null): boolean {
  if (!d.regs.has(chanKey)) return false;
  let a = d.access.get(chanKey);
  if (!a) d.access.set(chanKey, (a = new Map()));
  if (level) a.set(account.toLowerCase(), level);
  else a.delete(account.toLowerCase());
  return true;
}

export function dropRegistration(d: MemoryClusterData, chanKey: string): boolean {
  if (!d.regs.delete(chanKey)) return false;
  d.access.delete(chanKey);
  if (!d.chans.has(chanKey)) dropLists(d, chanKey);
  return true;
}

/**
 * A channel exists while it has members (the Lua scripts' dropIfEmpty); a registered one keeps
 * its modes, topic and lists for when someone joins again.
 */
export function dropIfEmpty(d: MemoryClusterData, chanKey: string): void {
  if ((d.members.get(chanKey)?.size ?? 0) > 0) return;
  const reg = d.regs.get(chanKey);
  const ch = d.chans.get(chanKey);
  if (reg && ch) reg.saved = { topic: ch.topic, topicBy: ch.topicBy, topicAt: ch.topicAt, modes: ch.modes, key: ch.key, limit: ch.limit };
  else if (!reg) dropLists(d, chanKey);
  d.members.delete(chanKey);
  d.chans.delete(chanKey);
  d.invites.delete(chanKey);
}

function dropLists(d: MemoryClusterData, chanKey: string): void {
  for (const m of LIST_MODES) d.lists.delete(listKey(chanKey, m));
}
