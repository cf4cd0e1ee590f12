import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import {
  describeZodError,
  QosClassNameSchema,
  QosClassSchema,
  resolveQosClass,
  RoomPinSchema,
  ShardEntrySchema,
  zeroCounts,
  type QosClass,
  type QosCounts,
  type RoomPin,
} from '@parley/contracts';
import { lower } from '../../core/names.js';
import type { ApiContext } from './context.js';
import { ApiError, ErrorSchema, badRequest, notFound } from './errors.js';
import { ifMatchOf, parseText, readKey, readPrefix, setEtag } from './etcd.js';
import { route } from './route.js';
import { InvalidEntrySchema, QosCountsSchema, type InvalidEntry } from './schemas.js';
import type { IKeyValue } from 'etcd3';

/**
 * `/api/rooms`: every room the cluster has an entry for (`/<prefix>/rooms/<room>`: its shard pin
 * and its own QoS class), with the class that applies, its limit and its cluster-wide counters.
 * The list is built from one range read of the room entries, one of the classes, one of the
 * shards and one read of the counters, kept for at most `roomsCacheMs` (a write through this
 * instance drops it), then sorted, filtered and paged in memory: at 10,000 rooms one page costs
 * a few milliseconds once the reads are in.
 */

const RoomParams = z.object({ room: z.string().min(1).max(400) }).strict();

const SORTS = ['name', 'rate', 'refused'] as const;
type Sort = (typeof SORTS)[number];

const RoomsQuery = z
  .object({
    cursor: z.string().max(1000).optional().describe('`nextCursor` of the previous page (opaque); ask the same sort and order'),
    limit: z.coerce.number().int().min(1).max(1000).default(100).describe('rooms per page'),
    sort: z.enum(SORTS).default('name').describe('`rate`: the sustained limit (no limit sorts as the highest); `refused`: refusedQos + refusedBacklog; ties by name'),
    order: z.enum(['asc', 'desc']).default('asc'),
    shard: z.string().regex(/^(0|[1-9]\d{0,8})$/, 'a shard number: 0, 1, 2 ...').transform(Number).optional().describe('only rooms pinned to this shard'),
    class: QosClassNameSchema.optional().describe('only rooms whose applying class has this name'),
    q: z.string().min(1).max(200).optional().describe('only rooms whose name contains this text (case-insensitive)'),
  })
  .strict();

export const RoomViewSchema = z.object({
  /** the room's name as the cluster keys it (lower case) */
  room: z.string(),
  /** the shard holding its history; null until the room is first used */
  shard: z.number().int().nullable(),
  /** the class that applies: the room's own, else its shard's, else `default` */
  class: z.string(),
  /** the room's own class (`PUT /api/rooms/{room}/qos`); null = none */
  override: z.string().nullable(),
  /** a class the room or its shard names that does not exist (it counts as `default`) */
  missingClass: z.string().optional(),
  /** sustained messages per second; null = no limit (no class applies) */
  rate: z.number().nullable(),
  burst: z.number().int().nullable(),
  counts: QosCountsSchema,
  /** the etcd mod_revision of the room entry (its ETag) */
  revision: z.string(),
});
type RoomView = z.infer<typeof RoomViewSchema>;

const RoomListSchema = z.object({
  rooms: z.array(RoomViewSchema),
  /** pass as `cursor` for the next page; null on the last page */
  nextCursor: z.string().nullable(),
  /** rooms matching the filters, over all pages */
  total: z.number().int(),
  invalid: z.array(InvalidEntrySchema),
  /** the etcd revision the list was read at */
  revision: z.string(),
});

const RoomQosSchema = z.object({ class: QosClassNameSchema.nullable() }).strict();

const CursorSchema = z.object({ s: z.enum(SORTS), o: z.enum(['asc', 'desc']), k: z.number().nullable(), r: z.string() }).strict();

interface Row {
  view: RoomView;
  /** rate, or Infinity for no limit */
  rate: number;
  refused: number;
}

interface Snapshot {
  rows: Row[];
  invalid: InvalidEntry[];
  revision: string;
  sorted: Map<string, Row[]>;
}

const TAGS = ['rooms'];
const MAX_INVALID_LISTED = 20;

/** The class facts a room view needs: every class, and the class of the room's shard. */
interface Classes {
  classes: Map<string, QosClass>;
  shardClass: (shard: number | undefined) => string | undefined;
}

function roomView(room: string, pin: RoomPin, revision: string, cls: Classes, counts: QosCounts | undefined): Row {
  const shardClass = cls.shardClass(pin.shard);
  const applied = resolveQosClass(cls.classes, pin.qos, shardClass);
  const missing = [pin.qos, shardClass].find((n) => n !== undefined && !cls.classes.has(n));
  const c = counts ?? zeroCounts();
  return {
    view: {
      room,
      shard: pin.shard ?? null,
      class: applied.name,
      override: pin.qos ?? null,
      ...(missing !== undefined ? { missingClass: missing } : {}),
      rate: applied.cls?.rate ?? null,
      burst: applied.cls?.burst ?? null,
      counts: c,
      revision,
    },
    rate: applied.cls?.rate ?? Number.POSITIVE_INFINITY,
    refused: c.refusedQos + c.refusedBacklog,
  };
}

function classMap(kvs: IKeyValue[], parseKey: ApiContext['keys']['parse']): Map<string, QosClass> {
  const m = new Map<string, QosClass>();
  for (const kv of kvs) {
    const ref = parseKey(kv.key.toString());
    const r = QosClassSchema.safeParse(parseText(kv.value.toString()));
    if (ref?.kind === 'qosClass' && r.success) m.set(ref.name, r.data);
  }
  return m;
}

function shardClasses(kvs: IKeyValue[]): Map<number, string | undefined> {
  const m = new Map<number, string | undefined>();
  for (const kv of kvs) {
    const r = ShardEntrySchema.safeParse(parseText(kv.value.toString()));
    if (r.success) m.set(r.data.id, r.data.qos);
  }
  return m;
}

const cmpNum = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);
const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function comparator(sort: Sort, order: 'asc' | 'desc'): (a: { k: number; r: string }, b: { k: number; r: string }) => number {
  const sign = order === 'asc' ? 1 : -1;
  return sort === 'name' ? (a, b) => sign * cmpStr(a.r, b.r) : (a, b) => sign * (cmpNum(a.k, b.k) || cmpStr(a.r, b.r));
}

const sortKey = (row: Row, sort: Sort): number => (sort === 'rate' ? row.rate : sort === 'refused' ? row.refused : 0);

function encodeCursor(sort: Sort, order: 'asc' | 'desc', row: Row): string {
  const k = sortKey(row, sort);
  return Buffer.from(JSON.stringify({ s: sort, o: order, k: Number.isFinite(k) ? k : null, r: row.view.room })).toString('base64url');
}

function decodeCursor(text: string, sort: Sort, order: 'asc' | 'desc'): { k: number; r: string } {
  const c = CursorSchema.safeParse(parseText(Buffer.from(text, 'base64url').toString('utf8')));
  if (!c.success) throw badRequest('cursor', 'not a cursor of this API (pass nextCursor as it came)');
  if (c.data.s !== sort || c.data.o !== order) throw badRequest('cursor', `the cursor belongs to sort=${c.data.s}&order=${c.data.o}; ask the same sort and order`);
  return { k: c.data.k ?? Number.POSITIVE_INFINITY, r: c.data.r };
}

export function roomRoutes(c: ApiContext): void {
  const { app, auth, etcd, keys } = c;
  const cacheMs = c.roomsCacheMs ?? 1000;
  let cached: { p: Promise<Snapshot>; at: number } | null = null;
  c.onChanged.push(() => {
    cached = null;
  });

  async function readSnapshot(): Promise<Snapshot> {
    const [rooms, classKvs, shardKvs, counts] = await Promise.all([
      readPrefix(etcd, keys.rooms),
      readPrefix(etcd, keys.qosClasses),
      readPrefix(etcd, keys.shards),
      c.counters.rooms(),
    ]);
    const shardClass = shardClasses(shardKvs.kvs);
    const cls: Classes = { classes: classMap(classKvs.kvs, keys.parse), shardClass: (id) => (id === undefined ? undefined : shardClass.get(id)) };
    const rows: Row[] = [];
    const invalid: InvalidEntry[] = [];
    for (const kv of rooms.kvs) {
      const key = kv.key.toString();
      const ref = keys.parse(key);
      if (ref?.kind !== 'room') {
        invalid.push({ key, error: ref?.kind === 'invalid' ? ref.reason : 'not a room key' });
        continue;
      }
      const pin = RoomPinSchema.safeParse(parseText(kv.value.toString()));
      if (!pin.success) {
        invalid.push({ key, error: describeZodError(pin.error) });
        continue;
      }
      rows.push(roomView(ref.room, pin.data, kv.mod_revision, cls, counts.get(ref.room)));
    }
    return { rows, invalid, revision: rooms.revision, sorted: new Map() };
  }

  /** The cached read while it is at most `cacheMs` old (from when the read started), else a new one. */
  function snapshot(): Promise<Snapshot> {
    const now = Date.now();
    if (cached && now - cached.at <= cacheMs) return cached.p;
    const entry = { p: readSnapshot(), at: now };
    if (cacheMs > 0) cached = entry;
    // A failed read is not kept.
    entry.p.catch(() => {
      if (cached === entry) cached = null;
    });
    return entry.p;
  }

  const sortedRows = (s: Snapshot, sort: Sort, order: 'asc' | 'desc'): Row[] => {
    const id = `${sort}:${order}`;
    let rows = s.sorted.get(id);
    if (!rows) {
      const cmp = comparator(sort, order);
      rows = s.rows
        .map((row) => ({ row, key: { k: sortKey(row, sort), r: row.view.room } }))
        .sort((a, b) => cmp(a.key, b.key))
        .map((x) => x.row);
      s.sorted.set(id, rows);
    }
    return rows;
  };

  /** Every class, and the class of one shard: what a single room's view needs. */
  const classesFor = async (shard: number | undefined): Promise<Classes> => {
    const [classKvs, shardEntry] = await Promise.all([
      readPrefix(etcd, keys.qosClasses),
      shard === undefined ? Promise.resolve(null) : readKey(etcd, keys.shard(shard)),
    ]);
    const entry = shardEntry ? ShardEntrySchema.safeParse(shardEntry.value) : null;
    const shardQos = entry?.success ? entry.data.qos : undefined;
    return { classes: classMap(classKvs.kvs, keys.parse), shardClass: () => shardQos };
  };

  const oneRoom = async (room: string, pin: RoomPin, revision: string): Promise<RoomView> => {
    const [cls, counts] = await Promise.all([classesFor(pin.shard), c.counters.rooms()]);
    return roomView(room, pin, revision, cls, counts.get(room)).view;
  };

  const parsePin = (value: Record<string, unknown> | undefined, room: string): RoomPin => {
    const r = RoomPinSchema.safeParse(value);
    if (!r.success) throw new ApiError(409, `the stored entry of room ${room} is invalid: ${describeZodError(r.error)}`);
    return r.data;
  };

  route(app, auth, {
    method: 'GET',
    url: '/api/rooms',
    summary: 'Rooms with their shard, class, limit and counters (paged, sortable, filterable)',
    description: 'Fast at 10,000 rooms. The list may be up to a second old (a write through this instance is seen at once).',
    tags: TAGS,
    query: RoomsQuery,
    responses: { 200: { description: 'one page of rooms', schema: RoomListSchema, etag: true } },
    handler: async ({ query }, reply) => {
      const s = await snapshot();
      const cmp = comparator(query.sort, query.order);
      const rows = sortedRows(s, query.sort, query.order);
      const needle = query.q?.toLowerCase();
      const matches = (row: Row): boolean =>
        (query.shard === undefined || row.view.shard === query.shard) &&
        (query.class === undefined || row.view.class === query.class) &&
        (needle === undefined || row.view.room.toLowerCase().includes(needle));
      // The first row after the cursor, by binary search in the sorted rows.
      let start = 0;
      if (query.cursor !== undefined) {
        const after = decodeCursor(query.cursor, query.sort, query.order);
        let lo = 0;
        let hi = rows.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          const row = rows[mid] as Row;
          if (cmp({ k: sortKey(row, query.sort), r: row.view.room }, after) <= 0) lo = mid + 1;
          else hi = mid;
        }
        start = lo;
      }
      const page: Row[] = [];
      let total = 0;
      let more = false;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i] as Row;
        if (!matches(row)) continue;
        total++;
        if (i < start) continue;
        if (page.length < query.limit) page.push(row);
        else more = true;
      }
      const last = page[page.length - 1];
      setEtag(reply, s.revision);
      return {
        rooms: page.map((r) => r.view),
        nextCursor: more && last ? encodeCursor(query.sort, query.order, last) : null,
        total,
        invalid: s.invalid.slice(0, MAX_INVALID_LISTED),
        revision: s.revision,
      };
    },
  });

  route(app, auth, {
    method: 'GET',
    url: '/api/rooms/:room',
    summary: 'One room (its name URL-encoded: %23rust)',
    tags: TAGS,
    params: RoomParams,
    responses: {
      200: { description: 'the room', schema: RoomViewSchema, etag: true },
      404: { description: 'the cluster has no entry for this room (it was never used and has no class)', schema: ErrorSchema },
      409: { description: 'the stored entry is invalid', schema: ErrorSchema },
    },
    handler: async ({ params }, reply) => {
      const room = lower(params.room);
      const s = await readKey(etcd, keys.room(room));
      if (!s) throw notFound(`room ${room}`);
      const view = await oneRoom(room, parsePin(s.value, room), s.revision);
      setEtag(reply, s.revision);
      return view;
    },
  });

  route(app, auth, {
    method: 'PUT',
    url: '/api/rooms/:room/qos',
    summary: "Give a room its own QoS class, or clear it (null): the room then follows its shard's class",
    description: "Takes effect on every instance within a second. Only the entry's `qos` member changes: the room's shard pin is never touched. A room not used yet gets an entry holding only its class.",
    tags: TAGS,
    write: true,
    ifMatch: true,
    params: RoomParams,
    body: RoomQosSchema,
    examples: [{ class: 'default' }, { class: null }],
    responses: {
      200: { description: 'changed', schema: RoomViewSchema, etag: true },
      201: { description: 'the room had no entry; one was created with the class', schema: RoomViewSchema, etag: true },
      404: { description: 'clearing the class of a room that has no entry', schema: ErrorSchema },
      409: { description: 'the stored entry is invalid', schema: ErrorSchema },
    },
    handler: async ({ params, body, headers }, reply: FastifyReply) => {
      const room = lower(params.room);
      let pin: RoomPin = {};
      const w = await c.write(
        keys.room(room),
        ifMatchOf(headers),
        (current) => {
          if (!current && body.class === null) throw notFound(`room ${room}`);
          const next: Record<string, unknown> = current ? { ...parsePin(current.value, room) } : {};
          if (body.class === null) delete next.qos;
          else next.qos = body.class;
          pin = parsePin(next, room);
          return next;
        },
        body.class === null ? [] : [{ key: keys.qosClass(body.class), missing: () => badRequest('class', `no QoS class named "${body.class}" (create it first: PUT /api/qos/classes/${body.class})`) }],
      );
      const view = await oneRoom(room, pin, w.revision);
      setEtag(reply, w.revision);
      return reply.status(w.created ? 201 : 200).send(view);
    },
  });
}
