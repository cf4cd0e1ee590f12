/**
 * `parley status`: one row per process of this host (the agent's record: pid, state, restarts, last
 * exit), each probed for health, with connections and, for instances, messages per second
 * (two samples of /api/stats one second apart).
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { withTimeout } from '@parley/contracts';
import fsSync from 'node:fs';
import { haproxyInfo, haproxyStats, LAB_USERS, readSecret, redisCommand, type AgentStatus, type ProcessStatus, type RedisAuth, type StatRow } from '@parley/agent';
import { etcdClient, openLab, registry, sleep, type InstanceView } from './common.js';

export interface StatusRow {
  kind: string;
  id: string;
  port: string;
  pid: number | null;
  state: string;
  health: string;
  healthy: boolean;
  restarts: number;
  connections: number | null;
  msgsPerSec: number | null;
  lastExit: string;
  /** for instances: where the registry says it listens and what the front door does with it */
  serverName?: string;
  tcpPort?: number;
  wsPort?: number;
  frontDoor?: string;
}

export interface StatusReport {
  stateDir: string;
  agent: AgentStatus['agent'];
  frontDoor: AgentStatus['frontDoor'];
  rows: StatusRow[];
  healthy: boolean;
}

const SAMPLE_MS = 1_000;

/**
 * Above this many shards, `status` summarises them (counts by state, the unhealthy ones listed)
 * and probes each through its postmaster.pid instead of a connection: a connection costs the shard
 * a forked backend, a thousand of them a few seconds and a GB of RAM for nothing.
 */
export const SHARD_SUMMARY_OVER = 8;

export async function collectStatus(stateDir: string, sample = true): Promise<StatusReport> {
  const lab = await openLab(stateDir);
  const st = lab.status;
  if (!st || st.agent.pid !== lab.agentPid) throw new Error(`the agent (pid ${lab.agentPid}) has not published its status yet; try again`);
  const t0 = Date.now();
  const client = etcdClient(lab.host);
  let reg: InstanceView[] = [];
  let hap: StatRow[] | null = null;
  try {
    [reg, hap] = await Promise.all([
      withTimeout(registry(client, lab.host.prefix), 2_000, 'etcd did not answer within 2 s').catch(() => [] as InstanceView[]),
      st.frontDoor ? haproxyStats(st.frontDoor.socket, 1_000).catch(() => null) : Promise.resolve(null),
    ]);
  } finally {
    client.close();
  }
  const cheap = st.processes.filter((p) => p.kind === 'shard').length > SHARD_SUMMARY_OVER;
  // Redis is asked as its admin user (the lab's ACL has no open user); shards over the agent's private socket.
  const creds: Creds = {
    pgSockets: lab.paths.pgSockets,
    ...(fsSync.existsSync(lab.paths.secret('redis-admin')) ? { redis: { username: LAB_USERS.redisAdmin, password: readSecret(lab.paths.root, 'redis-admin') } } : {}),
  };
  const first = await Promise.all(st.processes.map((p) => probe(p, st, reg, hap, creds, cheap ? lab.paths.pgData : undefined)));
  if (sample && st.processes.some((p) => p.kind === 'server')) {
    await sleep(Math.max(0, SAMPLE_MS - (Date.now() - t0)));
    const second = await Promise.all(st.processes.map((p) => (p.kind === 'server' ? serverStats(p) : Promise.resolve(null))));
    const dt = (Date.now() - t0) / 1000;
    first.forEach((row, i) => {
      const a = row.msgs;
      const b = second[i]?.messagesIn;
      if (a !== null && b !== undefined && b !== null) row.row.msgsPerSec = Math.max(0, (b - a) / dt);
    });
  }
  const agentRow: StatusRow = {
    kind: 'agent', id: 'agent', port: '-', pid: st.agent.pid, state: st.agent.state,
    health: Date.now() - st.agent.updatedAt < 10_000 ? 'ok' : 'no heartbeat',
    healthy: Date.now() - st.agent.updatedAt < 10_000, restarts: 0, connections: null, msgsPerSec: null,
    lastExit: st.agent.planError ? `plan refused: ${st.agent.planError}` : '-',
  };
  const order = ['etcd', 'redis', 'shard', 'haproxy', 'server'];
  const rows = [agentRow, ...first.map((f) => f.row).sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || natural(a.id, b.id))];
  return { stateDir: lab.paths.root, agent: st.agent, frontDoor: st.frontDoor, rows, healthy: rows.every((r) => r.healthy) };
}

function natural(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

interface Creds {
  redis?: RedisAuth;
  pgSockets: string;
}

interface Probed {
  row: StatusRow;
  msgs: number | null;
}

async function probe(p: ProcessStatus, st: AgentStatus, reg: InstanceView[], hap: StatRow[] | null, creds: Creds, pgData?: (id: number) => string): Promise<Probed> {
  const row: StatusRow = {
    kind: p.kind === 'server' ? 'server' : p.kind,
    id: p.name,
    port: portText(p),
    pid: p.pid,
    state: p.state,
    health: '-',
    healthy: false,
    restarts: p.restarts,
    connections: null,
    msgsPerSec: null,
    lastExit: exitText(p),
  };
  let msgs: number | null = null;
  if (p.state !== 'running' || p.pid === null) {
    row.health = p.state === 'backoff' && p.lastError ? `down: ${p.lastError.slice(0, 60)}` : 'down';
    return { row, msgs };
  }
  try {
    switch (p.kind) {
      case 'etcd': {
        const res = await fetch(`http://127.0.0.1:${p.ports.client}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await res.json()) as { health?: unknown };
        row.healthy = res.ok && String(body.health) === 'true';
        row.health = row.healthy ? 'ok' : 'unhealthy';
        break;
      }
      case 'redis': {
        const info = await redisInfo(p.ports.redis ?? 0, creds.redis);
        row.healthy = info !== null;
        row.health = row.healthy ? 'ok' : 'no answer';
        row.connections = Number(/connected_clients:(\d+)/.exec(info ?? '')?.[1] ?? NaN) || 0;
        break;
      }
      case 'shard': {
        if (pgData) {
          const why = await postmasterReady(pgData(Number(p.name.slice(2))), p.pid, p.ports.pg ?? 0);
          row.healthy = why === null;
          row.health = why ?? 'ok';
          break;
        }
        const c = new pg.Client({ host: creds.pgSockets, port: p.ports.pg, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1_000 });
        c.on('error', () => {});
        await c.connect();
        try {
          const r = await c.query<{ n: string }>("select count(*) as n from pg_stat_activity where backend_type = 'client backend'");
          row.connections = Math.max(0, Number(r.rows[0]?.n ?? 1) - 1);
          row.healthy = true;
          row.health = 'ok';
        } finally {
          await c.end().catch(() => {});
        }
        break;
      }
      case 'haproxy': {
        const info = await haproxyInfo(st.frontDoor?.socket ?? '', 1_000);
        const members = st.frontDoor?.members.filter((m) => m.state === 'ready') ?? [];
        const up = members.filter((m) => frontDoorProxies(st.frontDoor, m).every((px) => hap?.find((r) => r.proxy === px && r.server === m.slot)?.status.startsWith('UP'))).length;
        row.connections = Number(info.get('CurrConns') ?? 0);
        row.healthy = info.get('Pid') === String(p.pid) && up === members.length && members.length > 0;
        row.health = `${up}/${members.length} up`;
        break;
      }
      case 'server': {
        const rec = reg.find((r) => r.id === p.name);
        const ws = rec?.wsPort ?? p.ports.ws;
        row.serverName = rec?.serverName ?? String(p.info.serverName ?? '');
        row.tcpPort = rec?.tcpPort ?? p.ports.tcp;
        row.wsPort = ws;
        const res = await fetch(`http://127.0.0.1:${ws}/readyz`, { signal: AbortSignal.timeout(1_000) });
        const stats = await serverStats(p);
        msgs = stats?.messagesIn ?? null;
        row.connections = stats?.connections ?? null;
        const m = st.frontDoor?.members.find((x) => x.id === p.name);
        const slot = m ? hap?.filter((r) => r.server === m.slot && frontDoorProxies(st.frontDoor, m).includes(r.proxy)) : undefined;
        row.frontDoor = !st.frontDoor ? 'none' : !m ? 'not in rotation' : slot?.every((r) => r.status.startsWith('UP')) ? `UP (${m.slot})` : `${slot?.[0]?.status ?? '?'} (${m.slot})`;
        const registered = rec?.pid === p.pid && rec.state === 'ready';
        row.healthy = res.status === 200 && registered && (!st.frontDoor || row.frontDoor.startsWith('UP'));
        row.health = res.status === 200 ? (registered ? (st.frontDoor ? `ready, ${row.frontDoor.startsWith('UP') ? 'in rotation' : row.frontDoor}` : 'ready') : 'ready, not registered') : res.status === 503 ? 'draining' : `HTTP ${res.status}`;
        break;
      }
    }
  } catch (err) {
    row.healthy = false;
    row.health = `no answer (${(err as Error).message.slice(0, 40)})`;
  }
  return { row, msgs };
}

/** null when the data directory's postmaster.pid names `pid`, `port` and says ready; else why not. */
async function postmasterReady(dataDir: string, pid: number, port: number): Promise<string | null> {
  const text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => null);
  if (text === null) return 'no postmaster.pid';
  const lines = text.split('\n');
  if (Number(lines[0]) !== pid) return `postmaster.pid names pid ${lines[0]}`;
  if (Number(lines[3]) !== port) return `postmaster.pid names port ${lines[3]}`;
  const state = lines[7]?.trim() ?? '';
  return state === 'ready' ? null : `postmaster ${state || 'starting'}`;
}

/** One line for many shards: how many, by state and health, the port range, restarts. */
export function shardSummary(shards: StatusRow[]): string {
  const by = new Map<string, number>();
  for (const x of shards) {
    const k = x.state === 'running' ? (x.healthy ? 'running, ok' : 'running, unhealthy') : x.state;
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  const ports = shards.map((x) => Number(x.port)).filter((n) => Number.isInteger(n) && n > 0);
  const restarts = shards.reduce((a, x) => a + x.restarts, 0);
  const counts = [...by].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(', ');
  const range = ports.length ? `; ports ${Math.min(...ports)}-${Math.max(...ports)}` : '';
  return `shards: ${shards.length} (${counts})${range}; ${restarts} restart(s) in all (every shard: parley status --all)`;
}

async function serverStats(p: ProcessStatus): Promise<{ messagesIn: number; connections: number } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${p.ports.ws}/api/stats`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { instance?: { messagesIn?: number; connections?: number } };
    return { messagesIn: body.instance?.messagesIn ?? 0, connections: body.instance?.connections ?? 0 };
  } catch {
    return null;
  }
}

function portText(p: ProcessStatus): string {
  const e = Object.entries(p.ports);
  if (e.length === 0) return '-';
  if (p.kind === 'server') return [p.ports.tcp ?? '?', p.ports.ws ?? '?', ...(p.ports.tls !== undefined ? [p.ports.tls] : []), ...(p.ports.https !== undefined ? [p.ports.https] : [])].join('/');
  if (p.kind === 'haproxy') return [p.ports.irc, p.ports.http, p.ports.tlsIrc, p.ports.https].filter((x) => x !== undefined).join('/');
  if (p.kind === 'etcd') return String(p.ports.client);
  return String(e[0]![1]);
}

function exitText(p: ProcessStatus): string {
  if (!p.lastExit) return '-';
  const how = p.lastExit.signal ?? `code ${p.lastExit.code}`;
  return `${how} ${ago(p.lastExit.at)} ago`;
}

function ago(at: number): string {
  const s = Math.max(0, Math.round((Date.now() - at) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/** `INFO clients` over a raw socket; null when Redis does not answer. */
/** `INFO clients` (a bulk reply), or null when Redis does not answer or refuses. */
async function redisInfo(port: number, auth: RedisAuth | undefined): Promise<string | null> {
  const reply = await redisCommand(port, ['INFO', 'clients'], { timeoutMs: 1_000, ...(auth ? { auth } : {}) });
  return reply?.startsWith('$') ? reply : null;
}

export async function runStatus(o: { stateDir: string; json?: boolean; all?: boolean }): Promise<number> {
  const r = await collectStatus(o.stateDir);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return r.healthy ? 0 : 2;
  }
  const fd = r.frontDoor;
  const up = Math.round((Date.now() - r.agent.startedAt) / 1000);
  process.stdout.write(`Parley in ${r.stateDir}: agent pid ${r.agent.pid}, up ${up < 120 ? `${up}s` : `${Math.round(up / 60)}m`}${fd ? `; front door irc ${fd.irc}, http ${fd.http}${fd.tlsIrc ? `, irc+tls ${fd.tlsIrc}` : ''}${fd.https ? `, https ${fd.https}` : ''}` : ''}\n\n`);
  const head = ['KIND', 'ID', 'PORT', 'PID', 'STATE', 'HEALTH', 'RESTARTS', 'CONNS', 'MSGS/S', 'LAST EXIT'];
  const shards = r.rows.filter((x) => x.kind === 'shard');
  const summarise = !o.all && shards.length > SHARD_SUMMARY_OVER;
  const shown = summarise ? r.rows.filter((x) => x.kind !== 'shard') : r.rows;
  const cells = shown.map((x) => [
    x.kind, x.serverName ? `${x.id} (${x.serverName})` : x.id, x.port, x.pid === null ? '-' : String(x.pid), x.state, x.health,
    String(x.restarts), x.connections === null ? '-' : String(x.connections), x.msgsPerSec === null ? '-' : x.msgsPerSec.toFixed(1), x.lastExit,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd();
  process.stdout.write(`${line(head)}\n${cells.map(line).join('\n')}\n`);
  if (summarise) process.stdout.write(`\n${shardSummary(shards)}\n`);
  const bad = r.rows.filter((x) => !x.healthy);
  if (bad.length) {
    const listed = bad.slice(0, 50).map((x) => `${x.id} (${x.health})`).join(', ');
    process.stdout.write(`\nnot healthy: ${listed}${bad.length > 50 ? `, and ${bad.length - 50} more (parley status --json)` : ''}\n`);
  }
  return r.healthy ? 0 : 2;
}

/** The front door's backends an instance must be UP in: the TLS ones too when the front door has them and the instance serves TLS. */
export function frontDoorProxies(fd: AgentStatus['frontDoor'], m: { tlsPort?: number; httpsPort?: number }): string[] {
  return ['irc', 'web', ...(fd?.tlsIrc && m.tlsPort !== undefined ? ['irc-tls'] : []), ...(fd?.https && m.httpsPort !== undefined ? ['web-tls'] : [])];
}
