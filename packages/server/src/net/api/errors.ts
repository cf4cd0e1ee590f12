import { z } from 'zod';

/**
 * The one JSON error shape of the HTTP API: `{error, statusCode}`, plus `field` (the dotted path
 * of the offending query parameter, route parameter, header or body member) on a 400, and `etag`
 * (the resource's current revision) on a 412.
 */
export const ErrorSchema = z.object({
  error: z.string(),
  statusCode: z.number().int(),
  field: z.string().optional(),
  etag: z.string().optional(),
});

export type ErrorBody = z.infer<typeof ErrorSchema>;

/** An error a route answers on purpose; anything else is a 500 without its message. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly extra: { field?: string; etag?: string } = {},
  ) {
    super(message);
  }

  body(): ErrorBody {
    return { error: this.message, statusCode: this.statusCode, ...this.extra };
  }
}

export const notFound = (what: string): ApiError => new ApiError(404, `${what} does not exist`);
export const badRequest = (field: string, message: string): ApiError => new ApiError(400, `${field}: ${message}`, { field });

/** The part of a request a zod issue is about: route parameters, query, headers or body. */
export type RequestPart = 'params' | 'query' | 'headers' | 'body';

/**
 * The first issue of a failed parse as a 400 naming its field. An unknown key is named itself
 * (`limits.foo`), not its parent; the value as a whole is `(root)`.
 */
export function zodError(err: z.ZodError, part: RequestPart): ApiError {
  const issue = err.issues[0];
  if (!issue) return new ApiError(400, `invalid ${part}`, { field: '(root)' });
  let path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) path = [...path, issue.keys[0]];
  const field = path.length > 0 ? path.join('.') : '(root)';
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more)` : '';
  const where = part === 'query' ? 'query parameter ' : part === 'params' ? 'path parameter ' : part === 'headers' ? 'header ' : '';
  return new ApiError(400, `${where}${field}: ${issue.message}${more}`, { field });
}
