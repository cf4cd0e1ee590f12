import { urlWithPassword } from '../secrets.js';
import pg from 'pg';
import type { ShardDirectory, ShardInfo } from '../store/directory.js';
import { StoreUnavailableError } from '../store/errors.js';
import { migrate } from '../store/migrations.js';
import { accountKey, type AccountRecord, type AccountStore } from './store.js';

export interface PgAccountStoreOptions {
  /** the message store's directory: an account is pinned like a room, under `acct:<name>` */
  directory: ShardDirectory;
  /** a query fails after this many ms, waiting for a connection included (default 5000) */
  timeoutMs?: number;
  /** the shards' password (from `--pg-password-file`); shard URLs carry none */
  password?: string;
  /** idle connections close after this many ms (default 10000) */
  idleMs?: number;
}

interface AccountRow {
  name: string;
  password: string;
  scram_salt: string;
  scram_iterations: number;
  scram_stored_key: string;
  scram_server_key: string;
  created: number;
}

/** The shard key of an account: never a channel (`#`) nor a DM (`dm:`) room key. */
export const accountRoom = (name: string): string => `acct:${accountKey(name)}`;

/**
 * Accounts in the `accounts` table (migration 3) of the shard each account's name is pinned to.
 * Log-ins are rare next to messages, so each shard gets a small pool of its own (2 connections,
 * closed when idle) instead of a share of the message store's; a shard's schema is migrated here
 * too on first use, since an account may live on a shard no message has touched yet.
 */
export class PgAccountStore implements AccountStore {
  private readonly pools = new Map<number, { pool: pg.Pool; ready: Promise<void> | null }>();
  private readonly timeoutMs: number;
  private readonly idleMs: number;
  private closed = false;

  constructor(private readonly o: PgAccountStoreOptions) {
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.idleMs = o.idleMs ?? 10_000;
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.pool.end()));
  }

  private async shard(name: string): Promise<{ info: ShardInfo; pool: pg.Pool }> {
    if (this.closed) throw new Error('account store closed');
    const info = await this.o.directory.resolve(accountRoom(name));
    let entry = this.pools.get(info.id);
    if (!entry) {
      const pool = new pg.Pool({
        connectionString: urlWithPassword(info.url, this.o.password), max: 2, idleTimeoutMillis: this.idleMs,
        connectionTimeoutMillis: this.timeoutMs, statement_timeout: this.timeoutMs, query_timeout: this.timeoutMs,
        application_name: 'parley-accounts',
      });
      // An idle connection that dies would otherwise crash the process; the next query reconnects.
      pool.on('error', () => undefined);
      entry = { pool, ready: null };
      this.pools.set(info.id, entry);
    }
    const e = entry;
    e.ready ??= migrate(e.pool).then(
      () => undefined,
      (err: unknown) => {
        e.ready = null;
        throw err;
      },
    );
    try {
      await e.ready;
    } catch (err) {
      throw new StoreUnavailableError(info.id, err);
    }
    return { info, pool: e.pool };
  }

  private async query<T extends pg.QueryResultRow>(name: string, text: string, values: unknown[]): Promise<T[]> {
    const { info, pool } = await this.shard(name);
    try {
      return (await pool.query<T>(text, values)).rows;
    } catch (err) {
      if (err instanceof pg.DatabaseError) throw err;
      throw new StoreUnavailableError(info.id, err);
    }
  }

  async create(rec: AccountRecord): Promise<boolean> {
    const rows = await this.query(
      rec.name,
      `insert into accounts (name_key, name, password, scram_salt, scram_iterations, scram_stored_key, scram_server_key, created_at)
       values ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::float8 / 1000))
       on conflict (name_key) do nothing
       returning name_key`,
      [accountKey(rec.name), rec.name, rec.password, rec.scram.salt, rec.scram.iterations, rec.scram.storedKey, rec.scram.serverKey, rec.created],
    );
    return rows.length === 1;
  }

  async get(name: string): Promise<AccountRecord | null> {
    const rows = await this.query<AccountRow>(
      name,
      `select name, password, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
              (extract(epoch from created_at) * 1000)::float8 as created
       from accounts where name_key = $1`,
      [accountKey(name)],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      name: r.name, password: r.password, created: r.created,
      scram: { salt: r.scram_salt, iterations: r.scram_iterations, storedKey: r.scram_stored_key, serverKey: r.scram_server_key },
    };
  }
}
