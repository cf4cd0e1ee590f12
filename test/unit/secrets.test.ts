/**
 * The lab's credentials without running anything: secret files (made once, 0600 in 0700, refused
 * when others can read them), passwords added to connection URLs only in memory and redacted in
 * messages, the Redis ACL rules and the shards' pg_hba.conf.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { aclPasswordHash, ensureSecrets, labAclUsers, readSecret, readSecretFile, renderShardHba, SECRET_NAMES, secretFile } from '@parley/agent';
import { readSecretFile as serverReadSecret, redactUrl, urlWithPassword } from '../../packages/server/src/secrets.js';

let dir: string;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-secrets-'));
});

after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('secret files', () => {
  it('are made once each, 32 random bytes in hex, 0600 in a 0700 directory', async () => {
    assert.deepEqual(await ensureSecrets(dir), [...SECRET_NAMES]);
    const first = SECRET_NAMES.map((n) => readSecret(dir, n));
    for (const s of first) assert.match(s, /^[0-9a-f]{64}$/);
    assert.equal(new Set(first).size, SECRET_NAMES.length);
    assert.equal((await fs.stat(path.join(dir, 'secrets'))).mode & 0o777, 0o700);
    for (const n of SECRET_NAMES) assert.equal((await fs.stat(secretFile(dir, n))).mode & 0o777, 0o600);
    assert.deepEqual(await ensureSecrets(dir), [], 'nothing made again');
    assert.deepEqual(SECRET_NAMES.map((n) => readSecret(dir, n)), first, 'the passwords are kept');
  });

  it('a secret others can read is refused, with the fix in the message; a missing or empty one too', async () => {
    const f = secretFile(dir, 'redis-parley');
    await fs.chmod(f, 0o644);
    assert.throws(() => readSecretFile(f, 'redis-parley'), /readable by others \(mode 644\); make it 0600/);
    await ensureSecrets(dir); // tightens it again
    assert.equal((await fs.stat(f)).mode & 0o777, 0o600);
    assert.throws(() => readSecretFile(path.join(dir, 'none'), 'x'), /cannot read the x file .*: it does not exist/);
    const empty = path.join(dir, 'empty');
    await fs.writeFile(empty, '\n', { mode: 0o600 });
    assert.throws(() => readSecretFile(empty, 'x'), /is empty/);
    assert.throws(() => serverReadSecret(empty, 'Redis password'), /the Redis password file .* is empty/);
    assert.throws(() => serverReadSecret(path.join(dir, 'none'), 'etcd password'), /cannot read the etcd password file .*: no such file/);
  });
});

describe('passwords in URLs', () => {
  it('are added only where the URL has none, and redacted in messages', () => {
    assert.equal(urlWithPassword('postgres://parley@127.0.0.1:5432/parley', 'p4ss'), 'postgres://parley:p4ss@127.0.0.1:5432/parley');
    assert.equal(urlWithPassword('redis://parley@127.0.0.1:6379', 'p4ss'), 'redis://parley:p4ss@127.0.0.1:6379');
    assert.equal(urlWithPassword('postgres://u:own@h:1/d', 'other'), 'postgres://u:own@h:1/d');
    assert.equal(urlWithPassword('redis://127.0.0.1:6379', undefined), 'redis://127.0.0.1:6379');
    assert.equal(urlWithPassword('redis://h:1', 'a b/c'), 'redis://:a%20b%2Fc@h:1');
    assert.equal(redactUrl('redis://parley:p4ss@127.0.0.1:6379'), 'redis://parley:***@127.0.0.1:6379');
    assert.equal(redactUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
  });
});

describe('backend rules', () => {
  it('Redis: default off; instances on their keys and topics, without admin or dangerous commands; no password in clear', () => {
    const [def, admin, inst] = labAclUsers('px', { admin: 'A', parley: 'P' });
    assert.match(def!, /^default off /);
    assert.equal(admin, `admin on #${aclPasswordHash('A')} ~* &* +@all`);
    assert.match(inst!, new RegExp(`^parley on #${aclPasswordHash('P')} resetkeys ~px:\\* resetchannels &px:t:\\* -@all `));
    assert.match(inst!, /-@dangerous -@admin -@scripting \+eval \+evalsha/);
    for (const u of [def, admin, inst]) assert.ok(!/ >/.test(u!), 'passwords only as hashes');
  });

  it('PostgreSQL: the superuser over the socket only, the parley role over TCP with SCRAM, nothing else', () => {
    const lines = renderShardHba().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).map((l) => l.split(/\s+/).join(' '));
    assert.deepEqual(lines, ['local all postgres trust', 'host all parley 127.0.0.1/32 scram-sha-256']);
  });
});
