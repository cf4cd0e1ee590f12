/**
 * The lab's TLS pieces without running a lab: the front door's TLS frontends (passed through with
 * a PROXY header, no key in HAProxy), `up --tls` shaping the plan, the plan's TLS rules, and the
 * certificates the agent keeps (kept while valid for the names, a new leaf from the same CA when
 * a name is missing).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { emptyPlan, ensureCertificates, parsePlan, renderHaproxyConfig } from '@parley/agent';
import { shapePlan } from '../../packages/cli/src/lab/up.js';
import { LabError } from '../../packages/cli/src/lab/common.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

describe('the front door with TLS', () => {
  const slots = [
    { name: 's1', server: { host: '127.0.0.1', tcpPort: 4001, wsPort: 4002, tlsPort: 4003, httpsPort: 4004, ready: true } },
    { name: 's2', server: { host: '127.0.0.1', tcpPort: 5001, wsPort: 5002, ready: true } },
    { name: 's3', server: null },
  ];

  it('passes IRC over TLS and HTTPS through to the instances, with PROXY headers and checks on /readyz', () => {
    const cfg = renderHaproxyConfig({ bind: '127.0.0.1', ircPort: 6667, httpPort: 8080, tlsIrcPort: 6697, httpsPort: 8443, socket: '/run/x.sock', slots });
    assert.match(cfg, /frontend irc-tls\n  mode tcp\n  option tcplog\n  bind 127\.0\.0\.1:6697\n  default_backend irc-tls/);
    assert.match(cfg, /frontend web-tls\n  mode tcp\n  option tcplog\n  bind 127\.0\.0\.1:8443\n  default_backend web-tls/);
    assert.match(cfg, /server s1 127\.0\.0\.1:4003 send-proxy check port 4002\n/);
    assert.match(cfg, /server s1 127\.0\.0\.1:4004 send-proxy check port 4002\n/);
    // An instance without TLS stays out of the TLS backends; an empty slot is out of all.
    assert.match(cfg, /backend irc-tls[\s\S]*server s2 127\.0\.0\.1:1 send-proxy check port 5002 disabled\n/);
    assert.equal(cfg.match(/server s3 .* disabled/g)?.length, 4);
    assert.equal(cfg.match(/balance leastconn/g)?.length, 4);
    assert.doesNotMatch(cfg, /\bssl\b|\bcrt\b/, 'HAProxy holds no certificate');
  });

  it('has no TLS frontends without TLS ports', () => {
    const cfg = renderHaproxyConfig({ bind: '127.0.0.1', ircPort: 6667, httpPort: 8080, socket: '/run/x.sock', slots });
    assert.doesNotMatch(cfg, /irc-tls|web-tls/);
  });
});

describe('parley up --tls and the plan', () => {
  it('turns TLS on with the default ports, keeps it on a later up without the flag, and off with --no-tls', () => {
    const on = shapePlan(emptyPlan(), { instances: 1, shards: 1, tls: true });
    assert.deepEqual(on.tls, { stsDurationSeconds: 3600, generation: 0 });
    assert.deepEqual([on.frontDoor?.tlsIrcPort, on.frontDoor?.httpsPort], [6697, 8443]);
    assert.equal(parsePlan(JSON.stringify(on)).ok, true);
    const kept = shapePlan(structuredClone(on), { httpsPort: 9443 });
    assert.deepEqual([kept.tls !== null, kept.frontDoor?.tlsIrcPort, kept.frontDoor?.httpsPort], [true, 6697, 9443]);
    const off = shapePlan(structuredClone(on), { tls: false });
    assert.equal(off.tls, null);
    assert.deepEqual([off.frontDoor?.tlsIrcPort, off.frontDoor?.httpsPort], [undefined, undefined]);
    assert.throws(() => shapePlan(emptyPlan(), { tlsIrcPort: 7000 }), (e: Error) => e instanceof LabError && /need --tls/.test(e.message));
  });

  it('refuses TLS ports on the front door without tls, and two listeners on one port', () => {
    const errorOf = (plan: unknown): string => {
      const r = parsePlan(JSON.stringify(plan));
      return r.ok ? '' : r.error;
    };
    assert.match(errorOf({ frontDoor: { tlsIrcPort: 6697 } }), /need tls in the plan/);
    assert.match(errorOf({ tls: {}, frontDoor: { tlsIrcPort: 6667 } }), /port 6667 is planned for two front-door listeners/);
    assert.equal(errorOf({ tls: {}, frontDoor: { tlsIrcPort: 0, httpsPort: 0 } }), '', 'any free port (0) may be asked twice');
  });
});

describe('the lab certificates', () => {
  it('are kept while valid for the names, and made again from the same CA when a name is missing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-certs-'));
    dirs.push(dir);
    const tls = path.join(dir, 'tls');
    const first = await ensureCertificates(tls, { dns: ['localhost'], ips: ['127.0.0.1'] });
    assert.equal(first.made, 'none yet');
    assert.equal((await fs.stat(first.certs.caKey)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(tls)).mode & 0o777, 0o700);
    const leaf1 = await fs.readFile(first.certs.cert, 'utf8');
    const again = await ensureCertificates(tls, { dns: ['localhost'], ips: ['127.0.0.1'] });
    assert.equal(again.made, '');
    assert.equal(await fs.readFile(again.certs.cert, 'utf8'), leaf1, 'kept');
    const caBefore = await fs.readFile(first.certs.ca, 'utf8');
    const wider = await ensureCertificates(tls, { dns: ['localhost', 'chat.lab'], ips: ['127.0.0.1', '::1'] });
    assert.match(wider.made, /new names: chat\.lab, ::1/);
    const leaf = new X509Certificate(await fs.readFile(wider.certs.cert));
    assert.equal(leaf.checkHost('chat.lab'), 'chat.lab');
    assert.equal(leaf.checkIP('::1'), '::1');
    assert.equal(await fs.readFile(wider.certs.ca, 'utf8'), caBefore, 'the same CA: clients that trust it keep trusting the lab');
    assert.ok(leaf.verify(new X509Certificate(caBefore).publicKey));
  });
});
