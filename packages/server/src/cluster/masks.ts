/**
 * Ban, exception and invite masks, and connection bans: `nick!user@host` globs (`*` any run, `?`
 * one character, compared in ASCII lower case) and the `$a:<account glob>` extban (`$a` alone: any
 * logged-in user). The same rules exist twice: here for the memory state and the handlers, and as
 * Lua (`LUA_MASKS`) for the Redis scripts; test/contract/state.contract.ts holds both to them.
 */

/** Longest mask accepted; longer ones are refused before they reach the state. */
export const MAX_MASK_LEN = 100;

/**
 * The canonical form of a mask as a user typed it: `nick` → `nick!*@*`, `nick!user` →
 * `nick!user@*`, `user@host` → `*!user@host`; runs of `*` collapse to one (so matching stays
 * linear enough). Extbans are kept as typed. Null for an empty or over-long mask or one with a
 * space or comma.
 */
export function normalizeMask(raw: string): string | null {
  if (!raw || raw.length > MAX_MASK_LEN || /[\s,]/.test(raw)) return null;
  if (raw.startsWith('$')) return /^\$a(:[^:]+)?$/.test(raw) ? raw : null;
  let m = raw;
  const bang = m.indexOf('!');
  const at = m.indexOf('@');
  if (bang === -1 && at === -1) m = `${m}!*@*`;
  else if (bang === -1) m = `*!${m}`;
  else if (at === -1) m = `${m}@*`;
  return m.replace(/\*+/g, '*');
}

/** `glob` (with `*` and `?`) matches all of `s`; both compared in ASCII lower case. */
export function globMatch(glob: string, s: string): boolean {
  const g = glob.toLowerCase();
  const t = s.toLowerCase();
  // Iterative wildcard matching with one backtrack point: linear for globs with a single `*` run
  // between literals, never exponential.
  let gi = 0;
  let ti = 0;
  let star = -1;
  let mark = 0;
  while (ti < t.length) {
    const c = g[gi];
    if (c === '?' || (c !== undefined && c !== '*' && c === t[ti])) {
      gi++;
      ti++;
    } else if (c === '*') {
      star = gi++;
      mark = ti;
    } else if (star !== -1) {
      gi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (g[gi] === '*') gi++;
  return gi === g.length;
}

/** A list entry's mask matches a user (`source` = `nick!user@host`, `account` null for a guest). */
export function maskMatches(mask: string, source: string, account: string | null): boolean {
  if (mask.startsWith('$a')) {
    if (!account) return false;
    return mask.length <= 3 ? true : globMatch(mask.slice(3), account);
  }
  return globMatch(mask, source);
}

/**
 * The same two functions in Lua for the Redis scripts (ASCII lower case; `?` is one byte, which
 * is one character for the ASCII of nicks, user names, IP hosts and account names).
 */
export const LUA_MASKS = `
local function globmatch(g, s)
  g = string.lower(g); s = string.lower(s)
  local gi, si, star, mark = 1, 1, 0, 1
  local gl, sl = #g, #s
  while si <= sl do
    local c = string.sub(g, gi, gi)
    if c == '?' or (gi <= gl and c ~= '*' and c == string.sub(s, si, si)) then
      gi = gi + 1; si = si + 1
    elseif c == '*' then
      star = gi; gi = gi + 1; mark = si
    elseif star ~= 0 then
      gi = star + 1; mark = mark + 1; si = mark
    else
      return false
    end
  end
  while string.sub(g, gi, gi) == '*' do gi = gi + 1 end
  return gi > gl
end
local function maskmatch(mask, source, acct)
  if string.sub(mask, 1, 2) == '$a' then
    if acct == '' then return false end
    if #mask <= 3 then return true end
    return globmatch(string.sub(mask, 4), acct)
  end
  return globmatch(mask, source)
end
`;
