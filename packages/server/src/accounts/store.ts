/**
 * Accounts: cluster-wide, one row per account in PostgreSQL (on the shard the account's name is
 * pinned to, see docs/architecture.md "Accounts"). The store keeps what the hashing module
 * computed; it never sees a password.
 */

/** What SCRAM-SHA-256 needs to check a proof without the password (RFC 5802 §3), base64. */
export interface ScramCredentials {
  salt: string;
  iterations: number;
  storedKey: string;
  serverKey: string;
}

export interface AccountRecord {
  /** the name as registered (display form); unique compared in ASCII lower case */
  name: string;
  /** `scrypt$N$r$p$<salt>$<hash>` (base64): what PLAIN and NickServ IDENTIFY check */
  password: string;
  scram: ScramCredentials;
  /** ms since the epoch */
  created: number;
}

/**
 * Contract: `create` is atomic cluster-wide — of several callers creating one name (in any case)
 * at once, on any instance, exactly one gets true, and the record is visible to every `get`
 * afterwards; the others get false and change nothing. `get` compares names in ASCII lower case
 * and returns the record as created. Both reject when the backend cannot be reached (they do not
 * hang). `start` is idempotent and touches no shard; `close` ends every connection.
 * Implementations: PgAccountStore, MemoryAccountStore; both are held to
 * test/contract/accounts.contract.ts.
 */
export interface AccountStore {
  start(): Promise<void>;
  close(): Promise<void>;
  create(rec: AccountRecord): Promise<boolean>;
  get(name: string): Promise<AccountRecord | null>;
}

/** The key an account is stored (and its shard pinned) under. */
export const accountKey = (name: string): string => name.toLowerCase();
