import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { Etcd3, IKeyValue } from 'etcd3';
import { jsonObject } from '@parley/contracts';
import { ApiError, badRequest, notFound } from './errors.js';
import { IF_MATCH_HEADER } from './route.js';

/**
 * Strongly consistent writes of single etcd keys for the API. A resource's revision is its etcd
 * `mod_revision` (a decimal string; "0" = the key does not exist), sent as `ETag: "<revision>"`.
 * Every write is a compare-and-swap on the revision it was computed from: with `If-Match` that is
 * the client's revision (a mismatch is 412 carrying the current one); without, it is the revision
 * read just before, retried when another writer got in between (last writer wins, but a
 * read-modify-write never loses the other writer's fields).
 */

const ATTEMPTS = 10;

export const etagOf = (revision: string): string => `"${revision}"`;

/** The revision an `If-Match` header asks for, or undefined without one. `*` = "exists". */
export function ifMatchOf(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers[IF_MATCH_HEADER];
  if (raw === undefined) return undefined;
  const text = (Array.isArray(raw) ? raw.join(',') : raw).trim();
  if (text === '*') return '*';
  const m = /^(?:W\/)?"?(0|[1-9]\d{0,18})"?$/.exec(text);
  if (!m) throw badRequest('If-Match', `expected an ETag of this API ("<revision>"), got ${JSON.stringify(text.slice(0, 40))}`);
  return m[1] as string;
}

export function setEtag(reply: FastifyReply, revision: string): void {
  void reply.header('etag', etagOf(revision));
}

export interface Stored {
  /** the value as a JSON object; undefined when it is not one */
  value: Record<string, unknown> | undefined;
  text: string;
  revision: string;
}

export async function readKey(client: Etcd3, key: string): Promise<Stored | null> {
  const kv = (await client.get(key).exec()).kvs[0];
  return kv ? stored(kv) : null;
}

const stored = (kv: IKeyValue): Stored => {
  const text = kv.value.toString();
  return { value: jsonObject(text), text, revision: kv.mod_revision };
};

/** A key that must exist for a write to succeed (checked in the same transaction). */
export interface Requirement {
  key: string;
  /** the error when it does not exist */
  missing: () => ApiError;
}

export interface Written {
  value: Record<string, unknown>;
  /** the key did not exist before */
  created: boolean;
  /** the new mod_revision of the key */
  revision: string;
}

/**
 * Writes `change(current)` to `key` (current = the stored JSON object, undefined when absent or
 * not an object). `change` may throw an ApiError (404 when the resource must exist, 400 ...).
 * `requires` keys are compared in the same transaction (e.g. the QoS class a room is given).
 */
export async function writeKey(
  client: Etcd3,
  key: string,
  ifMatch: string | undefined,
  change: (current: Stored | null) => Record<string, unknown>,
  requires: Requirement[] = [],
): Promise<Written> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const current = await readKey(client, key);
    const revision = current?.revision ?? '0';
    if (ifMatch === '*' && !current) throw new ApiError(412, `If-Match: * but ${key} does not exist`, { etag: etagOf('0') });
    if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== revision) throw stale(revision);
    const value = change(current);
    let txn = client.if(key, 'Mod', '==', revision);
    for (const r of requires) txn = txn.and(r.key, 'Version', '>', 0);
    const res = await txn
      .then(client.put(key).value(JSON.stringify(value)))
      .else(...requires.map((r) => client.get(r.key)))
      .commit();
    if (res.succeeded) return { value, created: current === null, revision: res.header.revision };
    res.responses.forEach((op, i) => {
      const r = requires[i];
      if (r && op.response_range.kvs.length === 0) throw r.missing();
    });
    // The key changed since it was read: with If-Match that is a stale write; otherwise read again.
    if (ifMatch !== undefined) {
      const now = await readKey(client, key);
      throw stale(now?.revision ?? '0');
    }
  }
  throw new ApiError(409, `${key} keeps changing under us; tried ${ATTEMPTS} times`);
}

/** Deletes `key` (404 when absent; 412 when If-Match is not its revision). */
export async function deleteKey(client: Etcd3, key: string, ifMatch: string | undefined, what: string): Promise<void> {
  const expected = ifMatch === undefined || ifMatch === '*' ? null : ifMatch;
  const res = expected === null
    ? await client.if(key, 'Version', '>', 0).then(client.delete().key(key)).commit()
    : await client.if(key, 'Mod', '==', expected).then(client.delete().key(key)).else(client.get(key)).commit();
  if (res.succeeded) return;
  const kv = res.responses[0]?.response_range.kvs[0];
  if (!kv) throw notFound(what);
  throw stale(kv.mod_revision);
}

const stale = (current: string): ApiError =>
  new ApiError(412, `the resource changed: If-Match is not its current revision ${current}; read it again`, { etag: etagOf(current) });

/** Every key under `prefix` and the revision of the read (the ETag of a list). */
export async function readPrefix(client: Etcd3, prefix: string, revision?: string): Promise<{ kvs: IKeyValue[]; revision: string }> {
  let q = client.getAll().prefix(prefix);
  if (revision !== undefined) q = q.revision(revision);
  const res = await q.exec();
  return { kvs: res.kvs, revision: res.header.revision };
}

/** JSON text as a value; undefined when it is not JSON (the schema then names the problem). */
export function parseText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

