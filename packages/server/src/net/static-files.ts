import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyReply } from 'fastify';
import { WEB_ROOT, compressed } from '@parley/web';

/*
 * The browser client, the dashboard and the configuration page (@parley/web's WEB_ROOT): a
 * handful of static files, read and compressed once at start, sent as the client's
 * Accept-Encoding allows and revalidated by ETag.
 */

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export interface StaticFile {
  name: string;
  type: string;
  identity: Buffer;
  gzip: Buffer;
  br: Buffer;
  /** the content's hash: one ETag per encoding, `"<hash>"`, `"<hash>-gzip"`, `"<hash>-br"` */
  hash: string;
}

/** Paths served besides `/<file name>`. */
const ALIASES: Record<string, string[]> = { 'index.html': ['/'], 'dashboard.html': ['/dashboard'], 'config.html': ['/config'] };

/** Every file of WEB_ROOT by the paths it is served at. */
export function staticFiles(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const name of readdirSync(WEB_ROOT)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const identity = readFileSync(path.join(WEB_ROOT, name));
    const file = { name, type, identity, ...compressed(identity), hash: createHash('sha256').update(identity).digest('base64url').slice(0, 22) };
    files.set(`/${name}`, file);
    for (const alias of ALIASES[name] ?? []) files.set(alias, file);
  }
  return files;
}

type Encoding = 'br' | 'gzip' | 'identity';

/**
 * The encoding to send for an `Accept-Encoding` header (RFC 9110 12.5.3): brotli, else gzip,
 * else none, each only when the client accepts it with a non-zero q (`*` stands for those it
 * does not name); identity unless the client refuses it too, which it cannot really.
 */
export function chooseEncoding(header: string | undefined): Encoding {
  if (!header) return 'identity';
  const q = new Map<string, number>();
  for (const part of header.split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    if (!token) continue;
    const qp = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const value = qp === undefined ? 1 : Number(qp.slice(2));
    q.set(token, Number.isFinite(value) ? value : 0);
  }
  const accepts = (e: string): boolean => (q.get(e) ?? q.get('*') ?? 0) > 0;
  if (accepts('br')) return 'br';
  if (accepts('gzip')) return 'gzip';
  return 'identity';
}

/** Sends `file` in the best encoding the client accepts, or 304 when its `If-None-Match` names it. */
export function sendStatic(file: StaticFile, acceptEncoding: string | undefined, ifNoneMatch: string | undefined, reply: FastifyReply): FastifyReply {
  let enc = chooseEncoding(acceptEncoding);
  // A tiny file can come out larger compressed.
  if (enc !== 'identity' && file[enc].length >= file.identity.length) enc = 'identity';
  const etag = `"${file.hash}${enc === 'identity' ? '' : `-${enc}`}"`;
  void reply.header('vary', 'Accept-Encoding').header('cache-control', 'no-cache').header('etag', etag);
  if (ifNoneMatch !== undefined && matches(ifNoneMatch, file.hash)) return reply.status(304).send();
  if (enc !== 'identity') void reply.header('content-encoding', enc);
  return reply.type(file.type).send(file[enc]);
}

/** `If-None-Match` names this content in any encoding (a weak comparison, RFC 9110 13.1.2), or is `*`. */
function matches(header: string, hash: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
    return tag === hash || tag === `${hash}-gzip` || tag === `${hash}-br`;
  });
}
