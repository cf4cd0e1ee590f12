import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { describeZodError, etcdKeys, QosClassSchema, RoomPinSchema, type EtcdKeys } from '@parley/contracts';
import type { QosDirectory } from './directory.js';

/**
 * Feeds a QosDirectory from etcd: loads `/<prefix>/qos/classes/` and `/<prefix>/rooms/` and
 * watches both from the revision they were read at, so a class or a room's override changed in
 * etcd takes effect here as soon as the watch delivers it (milliseconds). Every class change is
 * logged ('qos class changed' with the name and the etcd revision), in the tick it takes effect,
 * and so is a room override change ('room qos changed'). An invalid class entry is logged and
 * treated as absent (rooms that name it fall back as for a missing class).
 *
 * After a reconnection the etcd client resumes the watches from their last revision; the classes
 * (a few keys) are also read again then.
 */
export class EtcdQosFeed {
  private readonly keys: EtcdKeys;
  private watchers: Watcher[] = [];
  private starting: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly client: Etcd3, prefix: string, private readonly directory: QosDirectory, private readonly log: Logger) {
    this.keys = etcdKeys(prefix);
  }

  /** Loads both prefixes and starts watching. Idempotent. */
  start(): Promise<void> {
    this.starting ??= this.load().catch((err: unknown) => {
      this.starting = null;
      throw new Error(`etcd: cannot load the QoS classes and rooms: ${(err as Error).message}`, { cause: err });
    });
    return this.starting;
  }

  private async load(): Promise<void> {
    const [classes, rooms] = await Promise.all([
      this.client.getAll().prefix(this.keys.qosClasses).exec(),
      this.client.getAll().prefix(this.keys.rooms).exec(),
    ]);
    for (const kv of classes.kvs) this.putClass(kv, false);
    for (const kv of rooms.kvs) this.putRoom(kv, false);
    const cw = await this.client.watch().prefix(this.keys.qosClasses).startRevision(next(classes.header.revision)).create();
    cw.on('put', (kv) => this.putClass(kv, true));
    cw.on('delete', (kv) => this.deleteClass(kv));
    cw.on('connected', () => this.rereadClasses());
    cw.on('error', (err: Error) => this.log.warn({ err: err.message }, 'qos class watch error'));
    const rw = await this.client.watch().prefix(this.keys.rooms).startRevision(next(rooms.header.revision)).create();
    rw.on('put', (kv) => this.putRoom(kv, true));
    rw.on('delete', (kv) => this.deleteRoom(kv));
    rw.on('error', (err: Error) => this.log.warn({ err: err.message }, 'room entry watch error'));
    this.watchers.push(cw, rw);
    if (this.closed) await this.close();
  }

  private nameOf(kv: IKeyValue): string | undefined {
    const ref = this.keys.parse(kv.key.toString());
    return ref?.kind === 'qosClass' ? ref.name : undefined;
  }

  private putClass(kv: IKeyValue, live: boolean): void {
    const name = this.nameOf(kv);
    if (name === undefined) return;
    const parsed = QosClassSchema.safeParse(safeJson(kv.value.toString()));
    if (!parsed.success) {
      this.directory.deleteClass(name);
      this.log.warn({ class: name, error: describeZodError(parsed.error), revision: Number(kv.mod_revision) }, 'invalid qos class ignored');
      return;
    }
    this.directory.putClass(name, parsed.data);
    if (live) this.log.info({ class: name, revision: Number(kv.mod_revision), rate: parsed.data.rate, burst: parsed.data.burst }, 'qos class changed');
  }

  private deleteClass(kv: IKeyValue): void {
    const name = this.nameOf(kv);
    if (name === undefined) return;
    this.directory.deleteClass(name);
    this.log.info({ class: name, revision: Number(kv.mod_revision), deleted: true }, 'qos class changed');
  }

  private rereadClasses(): void {
    this.client.getAll().prefix(this.keys.qosClasses).exec().then(
      (res) => {
        const seen = new Set<string>();
        for (const kv of res.kvs) {
          const name = this.nameOf(kv);
          if (name !== undefined) seen.add(name);
          this.putClass(kv, false);
        }
        for (const name of [...this.directory.classes.keys()]) if (!seen.has(name)) this.directory.deleteClass(name);
      },
      (err: Error) => this.log.warn({ err: err.message }, 'qos class re-read failed'),
    );
  }

  private roomOf(kv: IKeyValue): string | undefined {
    const ref = this.keys.parse(kv.key.toString());
    return ref?.kind === 'room' ? ref.room : undefined;
  }

  private putRoom(kv: IKeyValue, live: boolean): void {
    const room = this.roomOf(kv);
    if (room === undefined) return;
    const parsed = RoomPinSchema.safeParse(safeJson(kv.value.toString()));
    if (!parsed.success) {
      this.log.warn({ room, error: describeZodError(parsed.error) }, 'invalid room entry ignored by QoS');
      return;
    }
    const before = this.directory.override(room);
    this.directory.putRoom(room, parsed.data);
    if (live && before !== parsed.data.qos) this.log.info({ room, class: parsed.data.qos ?? null, revision: Number(kv.mod_revision) }, 'room qos changed');
  }

  private deleteRoom(kv: IKeyValue): void {
    const room = this.roomOf(kv);
    if (room !== undefined) this.directory.putRoom(room, undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    const ws = this.watchers;
    this.watchers = [];
    await Promise.allSettled(ws.map((w) => w.cancel()));
  }
}

const next = (revision: string): string => String(BigInt(revision) + 1n);

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
