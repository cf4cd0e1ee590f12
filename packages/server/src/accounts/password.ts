import { createHash, createHmac, pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { ScramCredentials } from './store.js';

const scryptAsync = promisify(scrypt) as (pw: Buffer, salt: Buffer, len: number, o: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;
const pbkdf2Async = promisify(pbkdf2);

/** scrypt cost (RFC 7914: N=2^14, r=8, p=1 is ~50 ms and 16 MiB here); kept in each hash, so it can grow later. */
const SCRYPT = { N: 16384, r: 8, p: 1 } as const;
const KEY_BYTES = 32;
/** RFC 7677's minimum iteration count for SCRAM-SHA-256. */
export const SCRAM_ITERATIONS = 4096;

export const MIN_PASSWORD_BYTES = 8;
export const MAX_PASSWORD_BYTES = 300;

const b64 = (b: Buffer): string => b.toString('base64');

/** `scrypt$N$r$p$<salt>$<hash>` with a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p } = SCRYPT;
  const key = await scryptAsync(Buffer.from(password, 'utf8'), salt, KEY_BYTES, { N, r, p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${r}$${p}$${b64(salt)}$${b64(key)}`;
}

/** True when `password` matches `stored` (constant-time); false for a malformed hash. */
export async function checkPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((x) => Number.isInteger(x) && x > 0)) return false;
  const salt = Buffer.from(parts[4] ?? '', 'base64');
  const want = Buffer.from(parts[5] ?? '', 'base64');
  if (want.length === 0) return false;
  const got = await scryptAsync(Buffer.from(password, 'utf8'), salt, want.length, { N, r, p, maxmem: 256 * 1024 * 1024 });
  return timingSafeEqual(got, want);
}

export const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
export const hmac = (key: Buffer, text: string | Buffer): Buffer => createHmac('sha256', key).update(text).digest();

/** SCRAM-SHA-256 keys (RFC 5802 §3) for a fresh salt; the password is not kept. */
export async function scramCredentials(password: string, iterations = SCRAM_ITERATIONS): Promise<ScramCredentials> {
  const salt = randomBytes(16);
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt: b64(salt), iterations, storedKey: b64(sha256(clientKey)), serverKey: b64(hmac(salted, 'Server Key')) };
}

/** Why a new password is refused, or null when it is acceptable. */
export function passwordProblem(password: string): 'weak' | 'unacceptable' | null {
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes > MAX_PASSWORD_BYTES) return 'unacceptable';
  if (bytes < MIN_PASSWORD_BYTES) return 'weak';
  return null;
}
