/**
 * etcd's authentication for the lab, set up by the agent each time its etcd starts (through the
 * client's Auth API; no etcdctl, no password on a command line):
 *
 *   user `root`   (role `root`: everything)        the agent and the CLI
 *   user `parley` (role `parley`: read/write on the key prefix `/<prefix>/`, nothing else)  instances
 *
 * then authentication is enabled: a request without a valid user and password is refused
 * (`etcdserver: user name is empty`). Idempotent: on an etcd whose authentication is on already,
 * it logs in as root and makes sure the `parley` user, its password and its grant are what they
 * should be (a password file made again is applied here).
 */
import { Etcd3, EtcdRoleExistsError, EtcdUserExistsError, Range } from 'etcd3';
import { withTimeout } from '@parley/contracts';
import { LAB_USERS } from './secrets.js';

export interface EtcdAuthSetup {
  endpoints: string[];
  prefix: string;
  rootPassword: string;
  instancePassword: string;
  log?: (line: string) => void;
  /** per attempt (default 10 s) */
  timeoutMs?: number;
}

export class EtcdAuthError extends Error {}

const ignore = (...kinds: Array<new (...a: never[]) => Error>) => (err: unknown): void => {
  if (!kinds.some((k) => err instanceof k)) throw err;
};

/** Whether etcd has authentication on: an anonymous read is refused only then. */
async function authEnabled(endpoints: string[]): Promise<boolean> {
  const anon = new Etcd3({ hosts: endpoints, dialTimeout: 2_000 });
  try {
    await anon.get('/').exec();
    return false;
  } catch (err) {
    const m = (err as Error).message;
    if (/user name is empty|permission denied|invalid auth token|authentication/i.test(m)) return true;
    throw err;
  } finally {
    anon.close();
  }
}

async function grantInstanceRole(client: Etcd3, prefix: string, password: string): Promise<void> {
  const role = client.role(LAB_USERS.etcdInstance);
  await role.create().catch(ignore(EtcdRoleExistsError));
  await role.grant({ permission: 'Readwrite', range: Range.prefix(`/${prefix}/`) });
  const user = client.user(LAB_USERS.etcdInstance);
  await user.create(password).catch(ignore(EtcdUserExistsError));
  await user.setPassword(password);
  await user.addRole(role);
}

export async function ensureEtcdAuth(o: EtcdAuthSetup): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const job = async (): Promise<void> => {
    if (!(await authEnabled(o.endpoints))) {
      const anon = new Etcd3({ hosts: o.endpoints, dialTimeout: 2_000 });
      try {
        await anon.role('root').create().catch(ignore(EtcdRoleExistsError));
        const root = anon.user(LAB_USERS.etcdRoot);
        await root.create(o.rootPassword).catch(ignore(EtcdUserExistsError));
        await root.setPassword(o.rootPassword);
        await root.addRole('root');
        await grantInstanceRole(anon, o.prefix, o.instancePassword);
        await anon.auth.authEnable();
      } finally {
        anon.close();
      }
      o.log?.(`etcd: authentication enabled (users ${LAB_USERS.etcdRoot}, ${LAB_USERS.etcdInstance}: read/write on /${o.prefix}/)`);
      return;
    }
    const root = new Etcd3({ hosts: o.endpoints, dialTimeout: 2_000, auth: { username: LAB_USERS.etcdRoot, password: o.rootPassword } });
    try {
      await grantInstanceRole(root, o.prefix, o.instancePassword);
    } catch (err) {
      if (/authentication failed|invalid user ID or password/i.test((err as Error).message)) {
        throw new EtcdAuthError(`etcd refuses the root password of the state directory (secrets/etcd-root was made again?); put the original file back, or start over with parley clean`);
      }
      throw err;
    } finally {
      root.close();
    }
  };
  await withTimeout(job(), timeoutMs, `etcd did not answer the authentication set-up within ${timeoutMs} ms`);
}
