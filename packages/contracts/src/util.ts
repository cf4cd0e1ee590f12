import type { z } from 'zod';

const MAX_ISSUES = 3;

/**
 * A zod error as one line a human can act on: `limits.lineBytes: Too small: ...; rooms[0].room:
 * ...`, `(root)` for the value itself, at most `maxIssues` issues and then `(and N more)`.
 */
export function describeZodError(err: z.ZodError, maxIssues = MAX_ISSUES): string {
  const parts = err.issues.slice(0, maxIssues).map((i) => `${pathText(i.path)}: ${oneLine(i.message)}`);
  const more = err.issues.length - maxIssues;
  return parts.join('; ') + (more > 0 ? ` (and ${more} more)` : '');
}

function pathText(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path.map((p, n) => (typeof p === 'number' ? `[${p}]` : `${n > 0 ? '.' : ''}${String(p)}`)).join('');
}

const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim();

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** Parses JSON text and validates it; the error is one line (`not JSON: ...` or the schema's). */
export function parseJson<S extends z.ZodType>(schema: S, text: string): Parsed<z.output<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: describeZodError(r.error) };
}

/** The error a `withTimeout` rejects with when the time is up (unless the caller makes its own). */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/**
 * Settles like `promise`, or rejects after `ms` with `TimeoutError(message)` (or the error that
 * `message()` makes). The timer is unref'ed and cleared either way; the promise itself is not
 * cancelled, and a rejection it has after the timeout counts as handled.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string | (() => Error)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(typeof message === 'string' ? new TimeoutError(message) : message()), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
