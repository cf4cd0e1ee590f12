/** IRCv3 capabilities. `msgid` is a message tag, not a capability, and standard replies need none. */
export const SUPPORTED_CAPS = [
  'message-tags',
  'server-time',
  'echo-message',
  'batch',
  'labeled-response',
  'draft/chathistory',
  'sasl',
  'draft/account-registration',
  'account-tag',
  'account-notify',
  'multi-prefix',
  'userhost-in-names',
  'invite-notify',
  'away-notify',
  'setname',
  'extended-join',
  'chghost',
] as const;

export type SupportedCap = (typeof SUPPORTED_CAPS)[number];

const SUPPORTED = new Set<string>(SUPPORTED_CAPS);

export function isSupportedCap(cap: string): cap is SupportedCap {
  return SUPPORTED.has(cap);
}

/**
 * `cap cap2=value ...` (the last param of CAP LS/ACK/NEW/DEL) → name → value ('' when none). Names
 * are kept verbatim, so an ACK's '-cap' (disable) keeps its '-'. Later duplicates win.
 */
export function parseCapList(s: string): Map<string, string> {
  const caps = new Map<string, string>();
  for (const token of s.split(' ')) {
    if (token === '') continue;
    const eq = token.indexOf('=');
    if (eq === -1) caps.set(token, '');
    else caps.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return caps;
}

/**
 * IRCv3 Strict Transport Security (`sts`): an informational capability, listed in `CAP LS 302`
 * with its value and never requested (so it is not in SUPPORTED_CAPS, which clients REQ). On a
 * plain connection it names the TLS port to reconnect to; on a TLS one, how long (seconds) the
 * client keeps the policy for this host name.
 */
export const STS_CAP = 'sts';

export interface StsPolicy {
  /** the TLS port plain clients are sent to */
  port: number;
  /** seconds a client keeps the policy (0: forget it) */
  duration: number;
}

/** The `sts` value for a plain (`port=…,duration=…`) or a TLS (`duration=…`) connection. */
export function formatStsValue(p: StsPolicy, secure: boolean): string {
  return secure ? `duration=${p.duration}` : `port=${p.port},duration=${p.duration}`;
}

/** An `sts` value as keys (`port`, `duration`, `preload`, others kept); numbers are left as text. */
export function parseStsValue(value: string): Map<string, string> {
  const keys = new Map<string, string>();
  for (const kv of value.split(',')) {
    if (kv === '') continue;
    const eq = kv.indexOf('=');
    keys.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
  }
  return keys;
}
