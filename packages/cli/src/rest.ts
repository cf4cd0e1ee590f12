/** One way for the CLI to call Parley's REST API with the admin token (docs/http-api.md). */

/** What came back: the status and the body parsed as JSON (null when it is not JSON). */
export interface RestAnswer {
  status: number;
  json: unknown;
}

export interface RestCallOptions {
  /** tries in all (1 = no retry) */
  attempts: number;
  /** pause before try `attempt` (1, 2, …) */
  pauseMs: (attempt: number) => number;
  /** bound of one try */
  timeoutMs: number;
  /** whether an answer with this status is tried again (while tries remain) */
  retryStatus: (status: number) => boolean;
}

/**
 * One request with `Authorization: Bearer <token>` and a JSON body, tried again on a transport
 * failure or a status `retryStatus` names while tries remain. The last answer is returned
 * whatever its status; rejects with the last transport error when no try got an answer.
 */
export async function restCall(base: string, token: string, method: string, route: string, body: unknown, o: RestCallOptions): Promise<RestAnswer> {
  let lastError: Error = new Error('no answer');
  for (let attempt = 0; attempt < o.attempts; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, o.pauseMs(attempt)));
    let res: Response;
    try {
      res = await fetch(`${base}${route}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(o.timeoutMs),
      });
    } catch (err) {
      lastError = err as Error;
      continue;
    }
    const text = await res.text();
    if (attempt < o.attempts - 1 && o.retryStatus(res.status)) continue;
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: the caller reports it with the status
    }
    return { status: res.status, json };
  }
  throw lastError;
}
