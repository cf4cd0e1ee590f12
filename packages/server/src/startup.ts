import type { Logger } from 'pino';
import type { InstanceOptions } from './config.js';
import { AdminTokenError, readAdminToken } from './net/api/index.js';
import { TlsConfigError, TlsFiles } from './net/tls.js';
import { readSecretFile, SecretFileError } from './secrets.js';

/** A startup problem the operator must fix; `main` prints its message as one line. */
export class StartupError extends Error {}

/** The first line of an error's message (at most 300 characters), for a StartupError. */
export function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0]?.slice(0, 300) ?? m;
}

/** What an instance reads from files at start. */
export interface StartupFiles {
  /** the REST API's admin token (--admin-token-file); null: every write through the API is refused */
  adminToken: string | null;
  /** backend credentials (never from the command line); the URLs logged and stored stay without them */
  secrets: { redis?: string; pg?: string; etcd?: string };
  /** --cluster-key-file: the file's first line, as text, so every instance given the same file derives the same key */
  clusterKey: Buffer | null;
  /** the TLS certificate and key, watched for changes once `watch()`ed; null: no TLS listener */
  tlsFiles: TlsFiles | null;
}

/**
 * Reads the admin token, the backend passwords, the cluster key and the TLS certificate the
 * options name; a missing or bad file (or --tls-port/--https-port without a certificate) is a
 * StartupError. `tlsChanged` gets each new certificate and key pair.
 */
export function readStartupFiles(o: InstanceOptions, log: Logger, tlsChanged: (pair: { cert: Buffer; key: Buffer }) => void): StartupFiles {
  let adminToken: string | null = null;
  try {
    adminToken = o.adminTokenFile === undefined ? null : readAdminToken(o.adminTokenFile);
  } catch (err) {
    if (err instanceof AdminTokenError) throw new StartupError(err.message);
    throw err;
  }
  let secrets: StartupFiles['secrets'];
  try {
    secrets = {
      ...(o.redisPasswordFile !== undefined ? { redis: readSecretFile(o.redisPasswordFile, 'Redis password') } : {}),
      ...(o.pgPasswordFile !== undefined ? { pg: readSecretFile(o.pgPasswordFile, 'PostgreSQL password') } : {}),
      ...(o.etcdPasswordFile !== undefined ? { etcd: readSecretFile(o.etcdPasswordFile, 'etcd password') } : {}),
    };
  } catch (err) {
    if (err instanceof SecretFileError) throw new StartupError(err.message);
    throw err;
  }
  let clusterKey: Buffer | null = null;
  let tlsFiles: TlsFiles | null = null;
  try {
    if (o.clusterKeyFile !== undefined) clusterKey = Buffer.from(readSecretFile(o.clusterKeyFile, 'cluster key'));
    if ((o.tlsPort !== undefined || o.httpsPort !== undefined) && (o.tlsCert === undefined || o.tlsKey === undefined)) {
      throw new StartupError('--tls-port and --https-port need --tls-cert and --tls-key');
    }
    if (o.tlsCert !== undefined && o.tlsKey !== undefined) {
      tlsFiles = new TlsFiles({ certFile: o.tlsCert, keyFile: o.tlsKey, log, changed: tlsChanged });
    }
  } catch (err) {
    if (err instanceof SecretFileError || err instanceof TlsConfigError) throw new StartupError(err.message);
    throw err;
  }
  return { adminToken, secrets, clusterKey, tlsFiles };
}
