/**
 * The lab's credentials: one random password per backend user, made once per state directory in
 * `secrets/` (directory 0700, files 0600, created exclusively so two concurrent `up`s never make
 * two different ones). Processes get the *path* of a file, never a password on their command line
 * (`ps` shows command lines to every local user).
 *
 *   etcd-root      etcd's `root` user: the agent and the CLI
 *   etcd-parley    etcd's `parley` user (role `parley`: read/write on `/<prefix>/` only): instances
 *   redis-admin    Redis ACL user `admin` (every command): the agent's health checks, `parley status`
 *   redis-parley   Redis ACL user `parley` (the commands, keys and channels instances use): instances
 *   pg-parley      PostgreSQL role `parley` (owns the shard's database, no superuser): instances
 *   cluster-key    HMAC key of the cluster bus and of host cloaks (every instance)
 *
 * A password, once made, is never replaced: the template, every shard, Redis's ACL file and etcd's
 * users were made with it. A deleted file is made again, and the agent brings every backend in
 * line with the new one at its next start (etcd: root can still log in with the old one only if
 * the file is put back; see docs/security.md).
 */
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

export const SECRET_NAMES = ['etcd-root', 'etcd-parley', 'redis-admin', 'redis-parley', 'pg-parley', 'cluster-key'] as const;
export type SecretName = (typeof SECRET_NAMES)[number];

/** Backend user names the lab creates (the passwords are in the files above). */
export const LAB_USERS = {
  etcdRoot: 'root',
  etcdInstance: 'parley',
  redisAdmin: 'admin',
  redisInstance: 'parley',
  pgInstance: 'parley',
} as const;

export class SecretError extends Error {}

/** The directory of the secrets of a state directory. */
export const secretsDir = (root: string): string => path.join(root, 'secrets');
export const secretFile = (root: string, name: SecretName): string => path.join(secretsDir(root), name);

/**
 * Makes every missing secret (32 random bytes, hex) with mode 0600 in a 0700 directory, and
 * tightens the modes of what exists. Resolves to the names it made.
 */
export async function ensureSecrets(root: string): Promise<SecretName[]> {
  const dir = secretsDir(root);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const made: SecretName[] = [];
  for (const name of SECRET_NAMES) {
    const file = path.join(dir, name);
    try {
      await fs.writeFile(file, `${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
      made.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      await fs.chmod(file, 0o600);
    }
  }
  return made;
}

/**
 * The secret in `file`: its first line, trimmed. Throws SecretError with a one-line reason when the
 * file is missing, unreadable, empty, or readable by others than its owner (a password that any
 * local user can read protects nothing: refuse it rather than use it).
 */
export function readSecretFile(file: string, what = 'secret'): string {
  let st: fsSync.Stats;
  let text: string;
  try {
    st = fsSync.statSync(file);
    text = fsSync.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SecretError(`cannot read the ${what} file ${file}: ${code === 'ENOENT' ? 'it does not exist' : (err as Error).message}`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new SecretError(`the ${what} file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); make it 0600 (chmod 600 ${file})`);
  }
  const secret = text.split('\n')[0]?.trim() ?? '';
  if (secret === '') throw new SecretError(`the ${what} file ${file} is empty`);
  return secret;
}

/** A secret of a state directory. */
export function readSecret(root: string, name: SecretName): string {
  return readSecretFile(secretFile(root, name), name);
}
