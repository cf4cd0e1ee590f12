/**
 * Message ids. A room message's msgid carries the room's sequence number, `<roomTag>-<seq>`, so a
 * client can spot a gap and fill it with CHATHISTORY. Other events get `e-<16 hex>` ids, which can
 * never be mistaken for a room id (a room tag is 8 hex chars, so its '-' is at index 8, not 1).
 *
 * Pure: random bytes come from Web Crypto (`globalThis.crypto`, in Node 20 and every browser).
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a 32-bit over the UTF-8 bytes of the canonical room key (the caller case-folds it), as 8
 * lowercase hex chars. Stable across processes and languages, not collision-proof: it scopes a
 * sequence number, the room itself comes from the message's target.
 */
export function roomTag(room: string): string {
  let h = FNV_OFFSET;
  for (let i = 0; i < room.length; i++) {
    let c = room.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const lo = c <= 0xdbff ? room.charCodeAt(i + 1) : NaN;
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else {
        c = 0xfffd; // lone surrogate: what TextEncoder (and Buffer.from) encodes
      }
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
    } else {
      if (c < 0x10000) {
        h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
      } else {
        h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
      }
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** `${roomTag(room)}-${seq}`; seq must be a non-negative safe integer. */
export function formatMsgid(room: string, seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid sequence number: ${seq}`);
  return roomTag(room) + '-' + seq;
}

const MSGID = /^([0-9a-f]{8})-(0|[1-9][0-9]{0,15})$/;

/** The room tag and sequence number of a room msgid; null for event ids and anything malformed. */
export function parseMsgid(msgid: string): { tag: string; seq: number } | null {
  if (msgid.length > 25) return null;
  const m = MSGID.exec(msgid);
  if (m === null) return null;
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(seq)) return null;
  return { tag: m[1] as string, seq };
}

/** True for ids made by `eventMsgid`. */
export function isEventMsgid(msgid: string): boolean {
  return msgid.length === 18 && msgid.startsWith('e-');
}

const POOL_SIZE = 4096;
const ID_BYTES = 8;
const pool = new Uint8Array(POOL_SIZE);
let poolOffset = POOL_SIZE;
const HEX: string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** `e-` + 16 random hex chars for events outside room history; random bytes are drawn in pools. */
export function eventMsgid(): string {
  if (poolOffset + ID_BYTES > POOL_SIZE) {
    globalThis.crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const p = pool;
  const o = poolOffset;
  poolOffset = o + ID_BYTES;
  return (
    'e-' +
    HEX[p[o] as number] +
    HEX[p[o + 1] as number] +
    HEX[p[o + 2] as number] +
    HEX[p[o + 3] as number] +
    HEX[p[o + 4] as number] +
    HEX[p[o + 5] as number] +
    HEX[p[o + 6] as number] +
    HEX[p[o + 7] as number]
  );
}
