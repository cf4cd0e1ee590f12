// The password kept for reconnects. It lives in memory, and in sessionStorage once the server
// has accepted it, never in localStorage. A reconnect or a reload must log in again before
// CAP END (SASL needs the password: the server hands out no token), so it has to survive a
// reload; sessionStorage does, but belongs to this one tab and is dropped when the tab closes,
// while localStorage stays on disk indefinitely and is shared by every tab of the origin (a
// password there would outlive the session, e.g. on a shared computer). The non-secret rest of
// the session (nick, channels, the account's name) stays in localStorage (state.ts).

export interface Credentials {
  /** 'register' until the server created the account; 'login' from then on. */
  mode: 'login' | 'register';
  account: string;
  password: string;
}

const KEY = 'parley.auth';
let creds: Credentials | null = null;

/** The credentials for the next connection, or null for a guest. */
export function credentials(): Credentials | null {
  return creds;
}

/** Credentials typed in the login form: kept in memory until the server accepts them. */
export function useCredentials(c: Credentials | null): void {
  creds = c;
}

/** The server accepted them (900): reconnects log in, and a reload of this tab too. */
export function accepted(): void {
  if (creds === null) return;
  creds = { ...creds, mode: 'login' };
  try {
    sessionStorage.setItem(KEY, JSON.stringify({ account: creds.account, password: creds.password }));
  } catch {
    // Storage disabled: reconnects still log in (memory); a reload asks for the password again.
  }
}

/** What this tab kept: log in with it again after a reload. */
export function restoreCredentials(): Credentials | null {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as { account?: unknown; password?: unknown } | null;
    if (v === null || typeof v.account !== 'string' || typeof v.password !== 'string' || v.account === '') return null;
    creds = { mode: 'login', account: v.account, password: v.password };
    return creds;
  } catch {
    return null;
  }
}

export function forgetCredentials(): void {
  creds = null;
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing kept
  }
}

