/**
 * The statements of the group committer and the server answers it tells apart.
 */
import pg from 'pg';

export const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected
export const MAX_ATTEMPTS = 5;
/** raised by the `batches` trigger when a batch reaches COMMIT after its deadline */
export const DEADLINE_PASSED = 'PR001';
export const QUERY_CANCELED = '57014'; // statement_timeout

/**
 * One round trip per batch. Rooms are upserted in sorted order (so two writers lock them in the
 * same order and cannot deadlock), each room's counter moves by its row count, each input row
 * gets the next seq of its room in input order, and all rows of a room share the room's new
 * `last_ts` (the batch clock, or the previous batch's time if that is later). The counter update
 * and the inserts commit together, so a seq is never skipped nor reused by any instance.
 * A `dm:` room's participants are recorded by the batch that creates the room. The `batches`
 * row ($7, deadline $8 in ms on the shard's clock) makes COMMIT fail once the deadline passed.
 */
export const APPEND_SQL = `
with input as (
  select t.ord, t.room, t.source, t.command, t.target, t.body, t.tags::jsonb as tags
  from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
       with ordinality as t(room, source, command, target, body, tags, ord)
),
per_room as (
  select room, count(*)::bigint as n from input group by room
),
bumped as (
  insert into rooms as r (room, last_seq, last_ts)
  select p.room, p.n, date_trunc('milliseconds', clock_timestamp())
  from per_room p
  order by p.room
  on conflict (room) do update
    set last_seq = r.last_seq + excluded.last_seq,
        last_ts  = greatest(r.last_ts, excluded.last_ts)
  returning r.room, r.last_seq, r.last_ts
),
numbered as (
  select i.ord, i.room, i.source, i.command, i.target, i.body, i.tags, b.last_ts as ts,
         b.last_seq - p.n + row_number() over (partition by i.room order by i.ord) as seq
  from input i
  join per_room p on p.room = i.room
  join bumped b on b.room = i.room
),
inserted as (
  insert into messages (room, seq, ts, source, command, target, body, tags)
  select room, seq, ts, source, command, target, body, tags from numbered
),
dm as (
  insert into dm_members (nick, room)
  select distinct nick, b.room
  from bumped b
  join per_room p on p.room = b.room
  cross join lateral unnest(string_to_array(substr(b.room, 4), ',')) as nick
  where b.last_seq = p.n and b.room like 'dm:%'
  on conflict do nothing
),
batch as (
  insert into batches (id, deadline) values ($7::uuid, to_timestamp($8::float8 / 1000))
)
select seq::float8 as seq, (extract(epoch from ts) * 1000)::float8 as time
from numbered
order by ord`;

/**
 * Marks every listed batch id as aborted unless that batch committed. A batch still in progress
 * (a backend thawing after a freeze) is waited for by the unique index, so the answer is final:
 * the ids returned are fenced (never committed, and never will), the others committed.
 */
export const FENCE_SQL = `
insert into batches (id, deadline, aborted)
select unnest($1::uuid[]), 'infinity', true
on conflict (id) do nothing
returning id::text as id`;


/** SQLSTATEs that mean the server is going away or refusing work: treat the shard as down. */
export function isUnavailableCode(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('08') || code.startsWith('53') || /^57P0[1-5]$/.test(code));
}

/**
 * Whether `err` (or a cause) is node-postgres giving up on opening a connection in time
 * (`connectionTimeoutMillis` of a client or a pool): a shard that is slow to accept connections,
 * which a hung one also is; not a refusal.
 */
export function isConnectTimeout(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (/timeout expired|timeout exceeded when trying to connect|due to connection timeout/.test(e.message)) return true;
  }
  return false;
}

/** The server's answer in `err` or its causes (a migration failure arrives wrapped twice), if any. */
export function serverAnswer(err: unknown): pg.DatabaseError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof pg.DatabaseError) return e;
  }
  return undefined;
}
