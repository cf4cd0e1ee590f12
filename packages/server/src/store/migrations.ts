import type pg from 'pg';

/** One schema step. Versions are applied in ascending order and never edited once released. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The shard schema.
 *
 * - `rooms` holds each room's counter. `last_seq` is also the room's message count (seqs are
 *   gap-free from 1 and messages are never deleted), and `last_ts` keeps time non-decreasing per
 *   room when instance clocks or commit order disagree.
 * - `messages(room, seq)` is the history; `(room, ts, seq)` serves time selectors and `targets`
 *   without a sort (ts is non-decreasing in seq within a room, so both orders agree).
 * - `dm_members(nick, room)` lists the participants of each `dm:a,b` room; the append statement
 *   fills it in the transaction that creates the room, so `targets(…, dmNick)` is an index lookup.
 * - `batches(id)` gets one row per append batch, in the batch's transaction. Its deferred trigger
 *   runs at COMMIT and aborts the transaction once the batch's `deadline` has passed on the
 *   shard's clock, so a batch the instance gave up on cannot commit later (a shard frozen and
 *   thawed, a statement stuck in a socket buffer). The id is also the batch's idempotency key:
 *   after a batch's outcome was lost, the instance inserts an `aborted` row with the same id, which
 *   either conflicts (the batch committed) or makes sure it never will. Rows are pruned after an
 *   hour (`created_at`).
 * - `accounts(name_key)` holds the accounts pinned to this shard (see accounts/store-pg.ts).
 */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'rooms, messages, dm_members',
    sql: `
      create table rooms (
        room       text primary key,
        last_seq   bigint not null,
        last_ts    timestamptz not null,
        created_at timestamptz not null default now()
      );
      create table messages (
        room    text not null,
        seq     bigint not null,
        ts      timestamptz not null,
        source  text not null,
        command text not null,
        target  text not null,
        body    text not null,
        tags    jsonb null,
        primary key (room, seq)
      );
      create index messages_room_ts on messages (room, ts, seq);
      create table dm_members (
        nick text not null,
        room text not null,
        primary key (nick, room)
      );
    `,
  },
  {
    version: 2,
    name: 'batches: commit deadline and batch ids',
    sql: `
      create table batches (
        id         uuid primary key,
        deadline   timestamptz not null,
        aborted    boolean not null default false,
        created_at timestamptz not null default now()
      );
      create function parley_commit_deadline() returns trigger language plpgsql as $fn$
      begin
        if not new.aborted and clock_timestamp() > new.deadline then
          raise exception 'commit deadline % passed', new.deadline using errcode = 'PR001';
        end if;
        return null;
      end
      $fn$;
      create constraint trigger batches_commit_deadline after insert on batches
        deferrable initially deferred
        for each row execute function parley_commit_deadline();
    `,
  },
  {
    version: 3,
    name: 'accounts',
    // One row per account, on the shard its name is pinned to (`acct:<name>`, accounts/store-pg.ts);
    // the table exists on every shard. Passwords only as an scrypt hash and SCRAM-SHA-256 keys.
    sql: `
      create table accounts (
        name_key         text primary key,
        name             text not null,
        password         text not null,
        scram_salt       text not null,
        scram_iterations integer not null,
        scram_stored_key text not null,
        scram_server_key text not null,
        created_at       timestamptz not null default now()
      );
    `,
  },
];

/** Arbitrary constant: the advisory lock every instance takes while migrating a shard. */
const MIGRATION_LOCK_KEY = 0x7061726c; // "parl"

/**
 * Applies the migrations that `schema_migrations` does not list yet, all in one transaction held
 * under a transaction-scoped advisory lock, so instances that start together on the same shard
 * take turns and the later ones find nothing to do. Returns the versions applied by this call.
 */
export async function migrate(pool: pg.Pool, list: readonly Migration[] = migrations): Promise<number[]> {
  const client = await pool.connect();
  let released = false;
  try {
    await client.query('begin');
    await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`
      create table if not exists schema_migrations (
        version    integer primary key,
        name       text not null,
        applied_at timestamptz not null default now()
      )`);
    const done = await client.query<{ version: number }>('select version from schema_migrations');
    const have = new Set(done.rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (have.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('insert into schema_migrations (version, name) values ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('commit');
    return applied;
  } catch (err) {
    // A failed rollback means the connection is broken: drop it from the pool rather than reuse it.
    try {
      await client.query('rollback');
    } catch {
      client.release(true);
      released = true;
    }
    throw new Error(`schema migration failed: ${(err as Error).message}`, { cause: err });
  } finally {
    if (!released) client.release();
  }
}
