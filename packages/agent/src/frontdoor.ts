/**
 * Makes the front door's backend list follow the etcd registry (`/<prefix>/instances/`): an
 * instance that registers as ready gets a slot and is put in rotation; one that publishes
 * `draining`, or whose key disappears (clean exit or lease expiry), is put in maintenance. All of
 * it through HAProxy's runtime API: no reload, so no other connection is touched.
 *
 * The controller keeps the desired state of every slot and what it last pushed; a push that fails
 * is retried on the next tick, and everything is pushed again after HAProxy (re)starts.
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { etcdKeys, parseInstanceRecord, type InstanceRecord } from '@parley/contracts';
import { backendPort, backendsOf, haproxyCommand, slotName, type BackendName, type SlotConfig } from './haproxy.js';
import type { FrontDoorMember } from './statedir.js';

export interface FrontDoorOptions {
  client: Etcd3;
  prefix: string;
  slots: number;
  /** the TLS frontends HAProxy has (their backends are kept in step too) */
  tls?: { irc: boolean; https: boolean };
  log: (msg: string) => void;
  /** membership changed (for the agent's status) */
  onChange?: () => void;
}

interface Member {
  rec: InstanceRecord;
  slot: number;
}

const SYNC_EVERY_MS = 2_000;
const FULL_PUSH_EVERY_MS = 30_000;

export class FrontDoorController {
  private readonly members = new Map<string, Member>();
  private readonly pushed = new Map<number, string>();
  private socket: string | null = null;
  private watcher: Watcher | null = null;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | null = null;
  private again = false;
  private closed = false;
  private lastFull = Date.now();

  constructor(private readonly o: FrontDoorOptions) {}

  private get instancesPrefix(): string {
    return etcdKeys(this.o.prefix).instances;
  }

  /** Reads the registry and watches it. Retries until etcd answers (or close()); never rejects. */
  async start(): Promise<void> {
    let w: Watcher | undefined;
    for (;;) {
      if (this.closed) return;
      try {
        await this.reload();
        w = await this.o.client.watch().prefix(this.instancesPrefix).create();
        break;
      } catch (err) {
        this.o.log(`front door: cannot read the registry yet (${(err as Error).message}); retrying`);
        await new Promise<void>((r) => setTimeout(r, 500).unref());
      }
    }
    if (this.closed) {
      await w.cancel().catch(() => undefined);
      return;
    }
    this.watcher = w;
    w.on('put', (kv: IKeyValue) => this.onPut(kv.key.toString(), kv.value.toString()));
    w.on('delete', (kv: IKeyValue) => this.onDelete(kv.key.toString().slice(this.instancesPrefix.length)));
    // After a reconnect the watch resumes, but a full re-read closes any window.
    w.on('connected', () => void this.reload().catch(() => undefined));
    w.on('error', (err: Error) => this.o.log(`front door: registry watch error: ${err.message}`));
    this.timer = setInterval(() => {
      if (Date.now() - this.lastFull > FULL_PUSH_EVERY_MS) {
        this.lastFull = Date.now();
        this.pushed.clear();
      }
      this.sync();
    }, SYNC_EVERY_MS);
    this.timer.unref();
  }

  private async reload(): Promise<void> {
    const all = await this.o.client.getAll().prefix(this.instancesPrefix).strings();
    const seen = new Set<string>();
    for (const [key, value] of Object.entries(all)) {
      const id = this.onPut(key, value, false);
      if (id) seen.add(id);
    }
    for (const id of [...this.members.keys()]) if (!seen.has(id)) this.onDelete(id, false);
    this.changed();
  }

  /** Returns the instance id, or undefined for an unreadable record. */
  private onPut(key: string, value: string, notify = true): string | undefined {
    const r = parseInstanceRecord(value);
    if (!r.ok) {
      this.o.log(`front door: ignoring an unreadable registry entry at ${key}: ${r.error}`);
      return undefined;
    }
    const rec: InstanceRecord = r.value;
    const prev = this.members.get(rec.id);
    if (prev) {
      if (prev.rec.state !== rec.state || portsOf(prev.rec) !== portsOf(rec) || prev.rec.host !== rec.host) {
        this.o.log(`front door: ${rec.id} ${rec.state === 'ready' ? 'in rotation' : 'draining: out of rotation'} (${rec.host} ${portsOf(rec)})`);
      }
      prev.rec = rec;
    } else {
      if (rec.state !== 'ready') return rec.id; // a draining instance we never had: nothing to do
      const slot = this.freeSlot();
      if (slot < 0) {
        this.o.log(`front door: no free slot for ${rec.id} (all ${this.o.slots} in use); it gets no traffic`);
        return rec.id;
      }
      this.members.set(rec.id, { rec, slot });
      this.o.log(`front door: ${rec.id} in rotation as ${slotName(slot)} (${rec.host} ${portsOf(rec)})`);
    }
    if (notify) this.changed();
    return rec.id;
  }

  private onDelete(id: string, notify = true): void {
    const m = this.members.get(id);
    if (!m) return;
    this.members.delete(id);
    this.o.log(`front door: ${id} left the registry; ${slotName(m.slot)} in maintenance`);
    if (notify) this.changed();
  }

  private freeSlot(): number {
    const used = new Set([...this.members.values()].map((m) => m.slot));
    for (let i = 0; i < this.o.slots; i++) if (!used.has(i)) return i;
    return -1;
  }

  private changed(): void {
    this.o.onChange?.();
    this.sync();
  }

  /** The slots as HAProxy should start with them. */
  slotConfigs(): SlotConfig[] {
    const bySlot = new Map([...this.members.values()].map((m) => [m.slot, m]));
    return Array.from({ length: this.o.slots }, (_, i) => {
      const m = bySlot.get(i);
      return {
        name: slotName(i),
        server: m
          ? {
              host: m.rec.host, tcpPort: m.rec.tcpPort, wsPort: m.rec.wsPort,
              ...(m.rec.tlsPort !== undefined ? { tlsPort: m.rec.tlsPort } : {}), ...(m.rec.httpsPort !== undefined ? { httpsPort: m.rec.httpsPort } : {}),
              ready: m.rec.state === 'ready',
            }
          : null,
      };
    });
  }

  memberList(): FrontDoorMember[] {
    return [...this.members.values()]
      .sort((a, b) => a.slot - b.slot)
      .map((m) => ({
        id: m.rec.id, slot: slotName(m.slot), state: m.rec.state === 'ready' ? 'ready' : 'maint', host: m.rec.host, tcpPort: m.rec.tcpPort, wsPort: m.rec.wsPort,
        ...(m.rec.tlsPort !== undefined ? { tlsPort: m.rec.tlsPort } : {}), ...(m.rec.httpsPort !== undefined ? { httpsPort: m.rec.httpsPort } : {}),
      }));
  }

  /** HAProxy (re)started and answers on `socket`: push every slot. */
  attach(socket: string): Promise<void> {
    this.socket = socket;
    this.pushed.clear();
    this.sync();
    return this.syncing ?? Promise.resolve();
  }

  detach(): void {
    this.socket = null;
    this.pushed.clear();
  }

  /** Pushes what differs from the last push; one push at a time. */
  sync(): void {
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = this.push().finally(() => {
      this.syncing = null;
      if (this.again && !this.closed) {
        this.again = false;
        this.sync();
      }
    });
  }

  private async push(): Promise<void> {
    const socket = this.socket;
    if (!socket || this.closed) return;
    for (const s of this.slotConfigs()) {
      const i = Number(s.name.slice(1)) - 1;
      const key = JSON.stringify(s.server);
      if (this.pushed.get(i) === key) continue;
      const backends: BackendName[] = backendsOf({ tlsIrcPort: this.o.tls?.irc ? 1 : undefined, httpsPort: this.o.tls?.https ? 1 : undefined });
      const cmds: string[] = [];
      if (!s.server) {
        for (const b of backends) cmds.push(`set server ${b}/${s.name} state maint`);
      } else {
        const srv = s.server;
        // Out of rotation first, so a half-updated slot never gets a connection.
        for (const b of backends) if (!srv.ready || backendPort(srv, b) === undefined) cmds.push(`set server ${b}/${s.name} state maint`);
        for (const b of backends) {
          const port = backendPort(srv, b);
          if (port === undefined) continue; // e.g. an instance without TLS: not in the TLS backends
          cmds.push(`set server ${b}/${s.name} addr ${srv.host} port ${port}`, `set server ${b}/${s.name} check-port ${srv.wsPort}`);
        }
        for (const b of backends) if (srv.ready && backendPort(srv, b) !== undefined) cmds.push(`set server ${b}/${s.name} state ready`);
      }
      try {
        const out = await haproxyCommand(socket, cmds);
        if (/No such|Require|unknown|invalid/i.test(out)) this.o.log(`front door: haproxy said: ${out.trim().replace(/\n+/g, ' | ')}`);
        this.pushed.set(i, key);
      } catch (err) {
        // HAProxy is restarting or busy: the next tick tries again.
        this.o.log(`front door: runtime API: ${(err as Error).message}`);
        return;
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.watcher?.cancel().catch(() => undefined);
    await this.syncing?.catch(() => undefined);
  }
}

/** An instance's ports, for the log (and to notice that they changed). */
function portsOf(r: InstanceRecord): string {
  return `tcp ${r.tcpPort} ws ${r.wsPort}${r.tlsPort !== undefined ? ` tls ${r.tlsPort}` : ''}${r.httpsPort !== undefined ? ` https ${r.httpsPort}` : ''}`;
}
