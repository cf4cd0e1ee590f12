import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApiError } from './errors.js';

/** The admin token file cannot be used; `message` is one line for the operator. */
export class AdminTokenError extends Error {
  override name = 'AdminTokenError';
}

/**
 * Reads the admin token from `file` (its content without surrounding white space). Throws
 * AdminTokenError when the file is missing, unreadable or empty.
 */
export function readAdminToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message.split('\n')[0];
    throw new AdminTokenError(`cannot read the admin token file ${file}: ${why}`);
  }
  const token = text.trim();
  if (token === '') throw new AdminTokenError(`the admin token file ${file} is empty`);
  if (/\s/.test(token)) throw new AdminTokenError(`the admin token in ${file} contains white space; expected one word`);
  return token;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * Who may write through the API: a request carrying `Authorization: Bearer <token>`. Without a
 * configured token every write is refused (403) rather than open. The comparison takes the same
 * time whatever the presented token is (equal-length digests, `timingSafeEqual`).
 */
export class AdminAuth {
  private readonly expected: Buffer | null;

  constructor(token: string | null) {
    this.expected = token === null ? null : digest(token);
  }

  /** Throws the 403 or 401 ApiError unless `authorization` carries the admin token. */
  check(authorization: string | undefined): void {
    if (this.expected === null) throw new ApiError(403, 'writes are disabled: no admin token configured');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) throw new ApiError(401, authorization ? 'Authorization is not "Bearer <admin token>"' : 'this route needs Authorization: Bearer <admin token>');
    if (!timingSafeEqual(digest(m[1] as string), this.expected)) throw new ApiError(401, 'wrong admin token');
  }
}
