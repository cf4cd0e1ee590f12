import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hmac, sha256 } from './password.js';
import type { AccountRecord } from './store.js';

/** Mechanisms offered (`CAP LS 302` value of `sasl`, and 908). */
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** An AUTHENTICATE parameter is at most this long; a chunk of exactly this length means more follows. */
export const SASL_CHUNK = 400;
/** A whole client message (all its chunks, base64) may not be longer than this (905 above). */
export const SASL_MAX_BYTES = 8192;

/** The `authzid \0 authcid \0 passwd` of SASL PLAIN (RFC 4616); null when malformed. */
export function parsePlain(raw: Buffer): { authzid: string; authcid: string; password: string } | null {
  const parts = raw.toString('utf8').split('\0');
  if (parts.length !== 3) return null;
  const [authzid, authcid, password] = parts as [string, string, string];
  if (!authcid || !password) return null;
  return { authzid, authcid, password };
}

/** `=2C` and `=3D` of a SCRAM saslname (RFC 5802 §5.1); null when it has another `=`. */
function saslName(v: string): string | null {
  if (/=(?!2C|3D)/.test(v)) return null;
  return v.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function attrs(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    if (part.length < 2 || part[1] !== '=') continue;
    out.set(part[0] as string, part.slice(2));
  }
  return out;
}

export interface ScramFirst {
  /** the account name the client names (`n=`) */
  user: string;
  gs2Header: string;
  clientFirstBare: string;
  clientNonce: string;
}

/** The client-first-message; null when malformed or asking for channel binding (we offer none). */
export function parseScramFirst(msg: string): ScramFirst | null {
  // gs2-header: cbind-flag "," [ authzid ] ","
  const m = /^([ny]),(a=[^,]*)?,(.*)$/.exec(msg);
  if (!m) return null;
  const bare = m[3] ?? '';
  const a = attrs(bare);
  const user = saslName(a.get('n') ?? '');
  const nonce = a.get('r') ?? '';
  if (!user || !nonce || bare.startsWith('m=')) return null;
  if (m[2]) {
    const authz = saslName(m[2].slice(2));
    if (authz === null || (authz !== '' && authz.toLowerCase() !== user.toLowerCase())) return null;
  }
  return { user, gs2Header: msg.slice(0, msg.length - bare.length), clientFirstBare: bare, clientNonce: nonce };
}

/**
 * The server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677) for a known account:
 * `serverFirst()` answers the client-first-message, `finish()` checks the client-final-message
 * and returns the server-final-message (`v=...`), or null when the proof is wrong.
 */
export class ScramServer {
  private readonly nonce: string;
  private readonly first: string;

  constructor(
    readonly account: AccountRecord,
    private readonly client: ScramFirst,
  ) {
    this.nonce = client.clientNonce + randomBytes(18).toString('base64');
    this.first = `r=${this.nonce},s=${account.scram.salt},i=${account.scram.iterations}`;
  }

  serverFirst(): string {
    return this.first;
  }

  finish(clientFinal: string): string | null {
    const i = clientFinal.lastIndexOf(',p=');
    if (i < 0) return null;
    const withoutProof = clientFinal.slice(0, i);
    const a = attrs(withoutProof);
    if (a.get('r') !== this.nonce) return null;
    if (a.get('c') !== Buffer.from(this.client.gs2Header, 'utf8').toString('base64')) return null;
    const proof = Buffer.from(clientFinal.slice(i + 3), 'base64');
    const storedKey = Buffer.from(this.account.scram.storedKey, 'base64');
    if (proof.length !== storedKey.length) return null;
    const authMessage = `${this.client.clientFirstBare},${this.first},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const clientKey = Buffer.alloc(proof.length);
    for (let k = 0; k < proof.length; k++) clientKey[k] = (proof[k] as number) ^ (signature[k] as number);
    if (!timingSafeEqual(sha256(clientKey), storedKey)) return null;
    const serverSignature = hmac(Buffer.from(this.account.scram.serverKey, 'base64'), authMessage);
    return `v=${serverSignature.toString('base64')}`;
  }
}

/**
 * One AUTHENTICATE exchange of a connection: the mechanism chosen, the client message being
 * assembled from 400-byte chunks, and where the exchange is.
 */
export interface SaslExchange {
  mechanism: SaslMechanism;
  /** base64 chunks received of the current client message */
  buffer: string;
  /** SCRAM: the server side, once the client-first-message arrived */
  scram: ScramServer | null;
  /** SCRAM: the proof was right and the server-final sent; the client's `+` completes the log-in */
  verified: AccountRecord | null;
}
