import { readFileSync } from 'node:fs';

/**
 * Backend credentials of an instance come from files named in its options (`--redis-password-file`,
 * `--pg-password-file`, `--etcd-password-file`), never from the command line, which every local
 * user can read in `ps`. They are read once at start.
 */
export class SecretFileError extends Error {}

/** The secret in `file`: its first line, trimmed; a one-line SecretFileError when it cannot be had. */
export function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message.split('\n')[0];
    throw new SecretFileError(`cannot read the ${what} file ${file}: ${why}`);
  }
  const secret = text.split('\n')[0]?.trim() ?? '';
  if (secret === '') throw new SecretFileError(`the ${what} file ${file} is empty`);
  return secret;
}

/**
 * `url` with `password` in it, for a connection made in this process only (never logged, never
 * stored: etcd and the logs keep the URL without it). A URL that carries a password already keeps
 * its own; without a password, the URL is returned as it is.
 */
export function urlWithPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  if (u.password !== '') return url;
  u.password = password;
  return u.toString();
}

/** `url` with its password (if any) replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
