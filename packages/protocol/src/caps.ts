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
