/** IRCv3 server-time values: `YYYY-MM-DDThh:mm:ss.sssZ`, always UTC with milliseconds. */

let lastMs = NaN;
let lastText = '';

/** Throws RangeError for a time that is not a finite number or falls outside years 0000–9999. */
export function formatServerTime(ms: number): string {
  // Messages arrive in bursts within the same millisecond; one cached entry saves the formatting.
  if (ms === lastMs) return lastText;
  const text = new Date(ms).toISOString();
  if (text.length !== 24) throw new RangeError(`time out of range for server-time: ${ms}`);
  lastMs = ms;
  lastText = text;
  return text;
}

const SERVER_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Milliseconds since the epoch, or null unless `s` is exactly a valid `YYYY-MM-DDThh:mm:ss.sssZ`. */
export function parseServerTime(s: string): number | null {
  if (s.length !== 24 || !SERVER_TIME.test(s)) return null;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) return null;
  // Date.parse rolls some impossible dates over (Feb 30); a round trip rejects them.
  if (new Date(ms).toISOString() !== s) return null;
  return ms;
}
