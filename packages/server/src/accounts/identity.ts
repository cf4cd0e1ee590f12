/**
 * Who a direct conversation belongs to. A DM room key is `dm:<x>,<y>` (sorted) where each side is
 * an identity, never a nick: `a.<account>` for a logged-in user (lower case), `g.<conn>` for a
 * guest, `<conn>` being a random id of that one connection. A nick cannot contain '.', so these
 * keys never equal the nick-keyed rooms (`dm:alice,bob`) of earlier versions, which nobody can
 * read any more; and a guest's conversations are readable only by the connection that had them.
 */
import { lower } from '../core/names.js';

export interface Identified {
  account?: string | null;
  conn?: string;
}

export function identityOf(u: Identified, fallback: string): string {
  if (u.account) return `a.${lower(u.account)}`;
  return `g.${u.conn || fallback}`;
}

export function dmKey(a: string, b: string): string {
  return a < b ? `dm:${a},${b}` : `dm:${b},${a}`;
}

/** The other side of a DM room key, or null when `me` is not one of its sides. */
export function otherSide(room: string, me: string): string | null {
  const [a, b] = room.slice(3).split(',');
  if (a === me) return b ?? null;
  if (b === me) return a ?? null;
  return null;
}

/** The account of an `a.` identity, or null for a guest. */
export function accountOfIdentity(id: string): string | null {
  return id.startsWith('a.') ? id.slice(2) : null;
}

/** The connection id of a `g.` identity, or null for an account. */
export function connOfIdentity(id: string): string | null {
  return id.startsWith('g.') ? id.slice(2) : null;
}

/** The identity of a user as the cluster state knows it (a `conn` is always given by current instances). */
export function identityOfUser(u: Identified & { inst: string; nick: string; signon: number }): string {
  return identityOf(u, `${u.inst}/${u.nick.toLowerCase()}/${u.signon}`);
}
