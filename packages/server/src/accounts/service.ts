import { validNick } from '../core/names.js';
import type { ClusterConfig } from '../config.js';
import { checkPassword, hashPassword, passwordProblem, scramCredentials } from './password.js';
import type { AccountRecord, AccountStore } from './store.js';

/** Nicks of the server's own pseudo-users: nobody may use or register them. */
export const SERVICE_NICKS: ReadonlySet<string> = new Set(['nickserv']);

export const isServiceNick = (nick: string): boolean => SERVICE_NICKS.has(nick.toLowerCase());

export type RegisterResult = 'ok' | 'exists' | 'bad-name' | 'weak' | 'unacceptable';

/**
 * Registration and password checks over an AccountStore. An account name is a valid nick (a
 * registered account reserves the nick of the same name) and never a service's nick.
 */
export class AccountService {
  constructor(readonly store: AccountStore) {}

  validName(limits: ClusterConfig['limits'], name: string): boolean {
    return validNick(limits, name) && !isServiceNick(name);
  }

  async register(limits: ClusterConfig['limits'], name: string, password: string): Promise<RegisterResult> {
    if (!this.validName(limits, name)) return 'bad-name';
    const problem = passwordProblem(password);
    if (problem) return problem;
    if (await this.store.get(name)) return 'exists';
    const [hash, scram] = await Promise.all([hashPassword(password), scramCredentials(password)]);
    const created = await this.store.create({ name, password: hash, scram, created: Date.now() });
    return created ? 'ok' : 'exists';
  }

  get(name: string): Promise<AccountRecord | null> {
    return this.store.get(name);
  }

  /** The account when `password` is its password; null for an unknown account or a wrong password. */
  async check(name: string, password: string): Promise<AccountRecord | null> {
    const rec = await this.store.get(name);
    if (!rec) return null;
    return (await checkPassword(password, rec.password)) ? rec : null;
  }
}
