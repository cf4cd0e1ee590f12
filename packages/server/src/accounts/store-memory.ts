import { accountKey, type AccountRecord, type AccountStore } from './store.js';

/** The accounts of one cluster in memory: share one instance between the nodes of a unit test. */
export class MemoryAccountStore implements AccountStore {
  private readonly rows = new Map<string, AccountRecord>();
  private closed = false;

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
  }

  async create(rec: AccountRecord): Promise<boolean> {
    if (this.closed) throw new Error('account store closed');
    const key = accountKey(rec.name);
    if (this.rows.has(key)) return false;
    this.rows.set(key, { ...rec, scram: { ...rec.scram } });
    return true;
  }

  async get(name: string): Promise<AccountRecord | null> {
    if (this.closed) throw new Error('account store closed');
    const r = this.rows.get(accountKey(name));
    return r ? { ...r, scram: { ...r.scram } } : null;
  }
}
