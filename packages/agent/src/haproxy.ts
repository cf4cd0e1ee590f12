/**
 * HAProxy as Parley's front door: the configuration it runs with (written by the agent, never by
 * hand), starting it, and its runtime API (a Unix socket) through which backend membership changes
 * without a reload, so no connection is dropped when instances come and go.
 *
 * Frontends share one set of backend slots (`s1`..`sN`): `irc` (TCP) balances IRC connections,
 * `web` (HTTP) balances the HTTP API and IRC over WebSocket; with TLS, `irc-tls` and `web-tls`
 * (TCP) pass IRC over TLS and HTTPS/WSS through to the instances' own TLS ports, so the keys stay
 * on the instances and a renewed certificate is reloaded in one place (the instances watch their
 * files); HAProxy never holds a key. Every TCP backend sends a PROXY v1 header (`send-proxy`) and
 * `web` adds `X-Forwarded-For`, so an instance sees each client's own address (the instances
 * trust both from the front door only: `--trusted-proxies`). All use least connections, and all
 * check an instance through its plain `GET /readyz` on the WebSocket port (503 while it drains;
 * with an explicit check port HAProxy sends no PROXY header with the check). A slot without an
 * instance is in maintenance.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { spawnManaged, type ManagedProcess } from './proc.js';

export interface SlotConfig {
  /** `s1`..`sN` */
  name: string;
  /** null: an empty slot (maintenance) */
  server: { host: string; tcpPort: number; wsPort: number; tlsPort?: number; httpsPort?: number; ready: boolean } | null;
}

/** The front door's backends: `irc-tls` and `web-tls` exist only with TLS. */
export type BackendName = 'irc' | 'web' | 'irc-tls' | 'web-tls';

export interface HaproxyConfigOptions {
  bind: string;
  ircPort: number;
  httpPort: number;
  /** IRC over TLS, passed through to the instances' `tlsPort`; absent: no such frontend */
  tlsIrcPort?: number;
  /** HTTPS and WSS, passed through to the instances' `httpsPort`; absent: no such frontend */
  httpsPort?: number;
  socket: string;
  slots: SlotConfig[];
}

export const slotName = (i: number): string => `s${i + 1}`;

/** The backends a configuration has. */
export function backendsOf(o: { tlsIrcPort?: number | undefined; httpsPort?: number | undefined }): BackendName[] {
  return ['irc', 'web', ...(o.tlsIrcPort !== undefined ? ['irc-tls' as const] : []), ...(o.httpsPort !== undefined ? ['web-tls' as const] : [])];
}

/** The instance port a backend routes to; undefined: the instance serves none (the slot stays in maintenance there). */
export function backendPort(s: NonNullable<SlotConfig['server']>, b: BackendName): number | undefined {
  return b === 'irc' ? s.tcpPort : b === 'web' ? s.wsPort : b === 'irc-tls' ? s.tlsPort : s.httpsPort;
}

/** Renders haproxy.cfg. Slots that hold an instance start with it; the rest are in maintenance. */
export function renderHaproxyConfig(o: HaproxyConfigOptions): string {
  const server = (s: SlotConfig, b: BackendName): string => {
    // The PROXY header on every TCP backend; `check port` sends the check to /readyz without one.
    const proxy = b === 'web' ? '' : ' send-proxy';
    const port = s.server ? backendPort(s.server, b) : undefined;
    if (!s.server || port === undefined) return `  server ${s.name} 127.0.0.1:1${proxy} check port ${s.server?.wsPort ?? 1} disabled`;
    const { host, wsPort, ready } = s.server;
    return `  server ${s.name} ${host}:${port}${proxy} check port ${wsPort}${ready ? '' : ' disabled'}`;
  };
  const tcpPair = (name: 'irc' | 'irc-tls' | 'web-tls', port: number): string[] => [
    `frontend ${name}`,
    '  mode tcp',
    '  option tcplog',
    `  bind ${o.bind}:${port}`,
    `  default_backend ${name}`,
    '',
    `backend ${name}`,
    '  mode tcp',
    '  balance leastconn',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    ...o.slots.map((s) => server(s, name)),
    '',
  ];
  return [
    '# Written by the parley agent from the host plan; changes here are overwritten.',
    '# Backend membership follows the etcd registry through the runtime API (stats socket).',
    'global',
    `  stats socket ${o.socket} mode 600 level admin`,
    '  stats timeout 30s',
    // No maxconn: HAProxy derives it from the file descriptor limit it gets.
    '  log stdout format raw local0 info',
    '',
    'defaults',
    '  log global',
    '  option dontlognull',
    '  timeout connect 3s',
    // Chat connections are long and mostly idle: the server pings every 90 s by default.
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  timeout client-fin 10s',
    '  timeout server-fin 10s',
    // A connection refused by an instance that just went away is tried on another one.
    '  retries 2',
    '  option redispatch 1',
    '  default-server inter 1s fastinter 250ms downinter 1s rise 1 fall 2',
    '',
    ...tcpPair('irc', o.ircPort),
    'frontend web',
    '  mode http',
    '  option httplog',
    `  bind ${o.bind}:${o.httpPort}`,
    '  timeout http-request 10s',
    // The client's address for the instance (it believes the last entry, from the front door only).
    '  option forwardfor',
    '  default_backend web',
    '',
    'backend web',
    '  mode http',
    '  balance leastconn',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    // A draining instance answers 503 (a WebSocket upgrade too): try another one.
    '  retry-on conn-failure empty-response 503',
    ...o.slots.map((s) => server(s, 'web')),
    '',
    ...(o.tlsIrcPort !== undefined ? tcpPair('irc-tls', o.tlsIrcPort) : []),
    ...(o.httpsPort !== undefined ? tcpPair('web-tls', o.httpsPort) : []),
  ].join('\n');
}

/** haproxy binary: $PARLEY_HAPROXY_BIN, PATH, /usr/sbin/haproxy. */
export function haproxyBinary(): string {
  const candidates = [
    process.env.PARLEY_HAPROXY_BIN,
    ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'haproxy')),
    '/usr/sbin/haproxy',
    '/usr/local/sbin/haproxy',
  ];
  for (const c of candidates) {
    if (!c) continue;
    try {
      fsSync.accessSync(c, fsSync.constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new Error('haproxy not found (looked in $PARLEY_HAPROXY_BIN, PATH and /usr/sbin); install it (Debian/Ubuntu: apt-get install haproxy) or run scripts/setup');
}

/**
 * Sends runtime API commands (joined with `;` into one request) and resolves to the answer.
 * Rejects if the socket cannot be reached within `timeoutMs`.
 */
export function haproxyCommand(socket: string, commands: string | string[], timeoutMs = 3_000): Promise<string> {
  const line = Array.isArray(commands) ? commands.join('; ') : commands;
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let out = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`haproxy runtime API at ${socket} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
    c.setEncoding('utf8');
    c.on('connect', () => c.end(`${line}\n`));
    c.on('data', (d: string) => (out += d));
    c.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

export interface StatRow {
  proxy: string;
  server: string;
  /** UP, DOWN, MAINT, "UP 1/2", OPEN (frontends), ... */
  status: string;
  /** current sessions */
  sessions: number;
  checkStatus: string;
  address: string;
}

/** `show stat` as rows. */
export async function haproxyStats(socket: string, timeoutMs = 3_000): Promise<StatRow[]> {
  const text = await haproxyCommand(socket, 'show stat', timeoutMs);
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = (lines.shift() ?? '').replace(/^# /, '').split(',');
  const col = (name: string): number => header.indexOf(name);
  const [px, sv, st, scur, chk, addr] = ['pxname', 'svname', 'status', 'scur', 'check_status', 'addr'].map(col);
  return lines.map((l) => {
    const f = l.split(',');
    return {
      proxy: f[px ?? 0] ?? '',
      server: f[sv ?? 1] ?? '',
      status: f[st ?? 17] ?? '',
      sessions: Number(f[scur ?? 4] ?? 0) || 0,
      checkStatus: f[chk ?? 36] ?? '',
      address: addr !== undefined && addr >= 0 ? (f[addr] ?? '') : '',
    };
  });
}

/** `show info` as a map (Pid, Uptime, CurrConns, ...). */
export async function haproxyInfo(socket: string, timeoutMs = 3_000): Promise<Map<string, string>> {
  const text = await haproxyCommand(socket, 'show info', timeoutMs);
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return m;
}

export interface HaproxyHandle {
  proc: ManagedProcess;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Writes the configuration and runs haproxy in the foreground (`-db`), resolving once its runtime
 * API answers with its pid. A bind failure (port in use) is an error naming the address.
 */
export async function startHaproxy(o: HaproxyConfigOptions & { cfgFile: string; logFile: string; timeoutMs?: number }): Promise<HaproxyHandle> {
  const bin = haproxyBinary();
  await fs.mkdir(path.dirname(o.cfgFile), { recursive: true });
  await fs.mkdir(path.dirname(o.socket), { recursive: true });
  await fs.writeFile(o.cfgFile, renderHaproxyConfig(o));
  await fs.rm(o.socket, { force: true });
  const check = await runCheck(bin, o.cfgFile);
  if (check) throw new Error(`haproxy configuration ${o.cfgFile} is invalid: ${check}`);
  const proc = spawnManaged({ name: 'haproxy', command: bin, args: ['-db', '-f', o.cfgFile], logFile: o.logFile });
  try {
    await proc.waitReady(async () => (await haproxyInfo(o.socket, 1_000)).get('Pid') === String(proc.pid), o.timeoutMs ?? 15_000);
  } catch (err) {
    await proc.stop('SIGKILL');
    const alerts = proc.logTail(60).split('\n').filter((l) => /ALERT/.test(l));
    const bind = alerts.map((l) => /cannot bind socket[^[]*\[([^\]]+)\]/.exec(l)?.[1]).find((x) => x);
    if (bind) throw new Error(`the front door cannot listen on ${bind}: the port is in use by another program`);
    const alert = alerts[alerts.length - 1]?.replace(/^.*\[ALERT\]\s*(\(\d+\)\s*:\s*)?/, '');
    throw alert ? new Error(`haproxy failed: ${alert}`) : err;
  }
  return {
    proc,
    pid: proc.pid,
    stop: async () => {
      await proc.stop('SIGTERM', 5_000);
    },
  };
}

/** `haproxy -c`: null if the configuration is valid, else the first alert. */
async function runCheck(bin: string, cfg: string): Promise<string | null> {
  const proc = spawnManaged({ name: 'haproxy-check', command: bin, args: ['-c', '-q', '-f', cfg], dieWithParent: false });
  const exit = await proc.exited;
  if (exit.code === 0) return null;
  const out = proc.logTail(20);
  return out.split('\n').find((l) => /ALERT/.test(l))?.replace(/^.*\[ALERT\]\s*(\(\d+\)\s*:\s*)?/, '') ?? (out.trim() || `exit code ${exit.code}`);
}
