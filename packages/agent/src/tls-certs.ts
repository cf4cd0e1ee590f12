/**
 * A local certificate authority and a server certificate signed by it, made with the `openssl`
 * command (node:crypto makes keys but not X.509 certificates): what `parley up --tls` gives the
 * lab, and what tests use. The CA's key never leaves `dir` (mode 0600 files in a 0700 directory).
 *
 *   ca.pem        the CA certificate: what clients are told to trust
 *   ca-key.pem    its key (signs the server certificate again when the names change)
 *   server.pem    the server certificate (leaf, then the CA), for --tls-cert
 *   server-key.pem its key, for --tls-key
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface LabCertificates {
  dir: string;
  ca: string;
  caKey: string;
  cert: string;
  key: string;
}

export class OpensslError extends Error {}

/** Paths of the files `makeCertificates` writes into `dir`. */
export function certificatePaths(dir: string): LabCertificates {
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    caKey: path.join(dir, 'ca-key.pem'),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server-key.pem'),
  };
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new OpensslError(missing ? 'openssl not found: install it (Debian/Ubuntu: apt-get install openssl) or run scripts/setup' : `openssl: ${r.error.message}`);
  }
  if (r.status !== 0) throw new OpensslError(`openssl ${args[0] ?? ''} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ')}`);
}

export interface CertificateOptions {
  /** host names of the server certificate (default: localhost) */
  dns?: string[];
  /** IP addresses of the server certificate (default: 127.0.0.1, ::1) */
  ips?: string[];
  /** validity in days (default 825, the most browsers accept for a leaf) */
  days?: number;
  /** keep an existing CA (default true): clients that trust it keep trusting the new leaf */
  keepCa?: boolean;
}

/**
 * Makes (or keeps) the CA and makes a new server certificate for the given names, ECDSA P-256.
 * The new files replace the old ones by rename, so a server watching them never reads half a file.
 */
export async function makeCertificates(dir: string, o: CertificateOptions = {}): Promise<LabCertificates> {
  const p = certificatePaths(dir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const days = String(o.days ?? 825);
  const have = async (f: string) => fs.access(f).then(() => true, () => false);
  if (!(o.keepCa ?? true) || !(await have(p.ca)) || !(await have(p.caKey))) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca-key.pem.new', '-out', 'ca.pem.new',
      '-days', '3650', '-subj', '/O=Parley lab/CN=Parley lab CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
    await fs.chmod(path.join(dir, 'ca-key.pem.new'), 0o600);
    await fs.rename(path.join(dir, 'ca-key.pem.new'), p.caKey);
    await fs.rename(path.join(dir, 'ca.pem.new'), p.ca);
  }
  const san = [...(o.dns ?? ['localhost']).map((d) => `DNS:${d}`), ...(o.ips ?? ['127.0.0.1', '::1']).map((i) => `IP:${i}`)].join(',');
  await fs.writeFile(path.join(dir, 'server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${san}`,
    '',
  ].join('\n'));
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server-key.pem.new', '-out', 'server.csr',
    '-subj', `/O=Parley lab/CN=${(o.dns ?? ['localhost'])[0] ?? 'localhost'}`], dir);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server-leaf.pem',
    '-days', days, '-sha256', '-extfile', 'server.ext'], dir);
  // The chain a server sends: its leaf, then the CA (clients that trust the CA need no more).
  const chain = (await fs.readFile(path.join(dir, 'server-leaf.pem'), 'utf8')) + (await fs.readFile(p.ca, 'utf8'));
  await fs.writeFile(path.join(dir, 'server.pem.new'), chain, { mode: 0o644 });
  await fs.chmod(path.join(dir, 'server-key.pem.new'), 0o600);
  // Key first, then the certificate: a reader that sees the new certificate finds its key.
  await fs.rename(path.join(dir, 'server-key.pem.new'), p.key);
  await fs.rename(path.join(dir, 'server.pem.new'), p.cert);
  await Promise.all(['server.csr', 'server.ext', 'server-leaf.pem'].map((f) => fs.rm(path.join(dir, f), { force: true })));
  return p;
}

/**
 * The lab's certificates as the agent keeps them: the files in `dir` are kept when the server
 * certificate is signed by the CA, names every host name and address asked for, and is valid for
 * another `renewDays` (default 30); otherwise a new server certificate is made (same CA, so
 * clients that trust it keep working, and the instances reload the new files by themselves).
 * Resolves to the files and why they were made ('' when kept).
 */
export async function ensureCertificates(dir: string, o: CertificateOptions & { renewDays?: number } = {}): Promise<{ certs: LabCertificates; made: string }> {
  const p = certificatePaths(dir);
  const why = await whyRemake(p, o);
  if (why === '') return { certs: p, made: '' };
  return { certs: await makeCertificates(dir, o), made: why };
}

async function whyRemake(p: LabCertificates, o: CertificateOptions & { renewDays?: number }): Promise<string> {
  let ca: X509Certificate;
  let leaf: X509Certificate;
  try {
    await fs.access(p.caKey);
    await fs.access(p.key);
    ca = new X509Certificate(await fs.readFile(p.ca));
    // The first certificate of the chain file is the leaf.
    leaf = new X509Certificate(await fs.readFile(p.cert));
  } catch {
    return 'none yet';
  }
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) return 'not signed by the CA';
  const renewBy = Date.now() + (o.renewDays ?? 30) * 86_400_000;
  if (new Date(leaf.validTo).getTime() < renewBy) return `expires ${new Date(leaf.validTo).toISOString().slice(0, 10)}`;
  const missing = [
    ...(o.dns ?? ['localhost']).filter((d) => leaf.checkHost(d, { wildcards: false }) === undefined),
    ...(o.ips ?? ['127.0.0.1', '::1']).filter((ip) => leaf.checkIP(ip) === undefined),
  ];
  return missing.length > 0 ? `new names: ${missing.join(', ')}` : '';
}
