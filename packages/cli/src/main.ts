#!/usr/bin/env node
import { Command } from 'commander';
import { describeZodError } from '@parley/contracts';
import { InstanceOptionsSchema, ParleyServer, StartupError } from '@parley/server';
import { die, intArg, list } from './util.js';
import { register as registerLab } from './lab/index.js';
import { register as registerLoad } from './load/index.js';
import { register as registerProvision } from './provision/index.js';
import { register as registerDemo } from './demo/index.js';

const env = process.env;

const program = new Command('parley')
  .description('Parley: horizontally scalable IRC-compatible chat on etcd, Redis and PostgreSQL')
  // Errors are one line (`parley: ...`) and a non-zero exit; `--help` shows the usage.
  .configureOutput({ outputError: (str, write) => write(`parley: ${str.replace(/^error: /, '')}`) });

program
  .command('server')
  .description('run one Parley instance (IRC over TCP and WebSocket, HTTP API)')
  .option('--id <id>', 'instance id in the registry (default: host-pid-random)', env.PARLEY_ID)
  .option('--server-name <name>', 'IRC server name', env.PARLEY_SERVER_NAME)
  .option('--host <addr>', 'address to listen on', env.PARLEY_HOST)
  .option('--advertise-host <addr>', 'address announced in the registry', env.PARLEY_ADVERTISE_HOST)
  .option('--tcp-port <port>', 'IRC over TCP port (0 = any free)', intArg('--tcp-port'), env.PARLEY_TCP_PORT ? Number(env.PARLEY_TCP_PORT) : undefined)
  .option('--ws-port <port>', 'HTTP and IRC-over-WebSocket port (0 = any free)', intArg('--ws-port'), env.PARLEY_WS_PORT ? Number(env.PARLEY_WS_PORT) : undefined)
  .option('--etcd <urls>', 'etcd endpoints, comma-separated [env PARLEY_ETCD]', list)
  .option('--redis <url>', 'Redis URL', env.PARLEY_REDIS)
  .option('--prefix <name>', 'cluster namespace in etcd and Redis', env.PARLEY_PREFIX)
  .option('--pg <url>', 'PostgreSQL shard URL, registered as shard 0, 1, ... (repeatable) [env PARLEY_PG]', list)
  .option('--pg-pool-size <n>', 'connections per shard', intArg('--pg-pool-size'), env.PARLEY_PG_POOL_SIZE ? Number(env.PARLEY_PG_POOL_SIZE) : undefined)
  .option('--pg-idle-seconds <n>', "a shard's connections unused this long are closed (0 = never)", intArg('--pg-idle-seconds'), env.PARLEY_PG_IDLE_SECONDS ? Number(env.PARLEY_PG_IDLE_SECONDS) : undefined)
  .option('--lease-seconds <n>', 'registry lease: how fast a dead instance is noticed', intArg('--lease-seconds'), env.PARLEY_LEASE_SECONDS ? Number(env.PARLEY_LEASE_SECONDS) : undefined)
  .option('--etcd-timeout-seconds <n>', 'how long to wait for etcd at start', intArg('--etcd-timeout-seconds'), env.PARLEY_ETCD_TIMEOUT_SECONDS ? Number(env.PARLEY_ETCD_TIMEOUT_SECONDS) : undefined)
  .option('--admin-token-file <path>', 'file with the token the HTTP API write routes require (none: writes answer 403)', env.PARLEY_ADMIN_TOKEN_FILE)
  .option('--redis-password-file <path>', 'file with the Redis password of the user in --redis (redis://USER@host:port)', env.PARLEY_REDIS_PASSWORD_FILE)
  .option('--pg-password-file <path>', "file with the PostgreSQL password of the user in the shards' URLs", env.PARLEY_PG_PASSWORD_FILE)
  .option('--etcd-user <name>', 'etcd user (with --etcd-password-file)', env.PARLEY_ETCD_USER)
  .option('--etcd-password-file <path>', "file with the etcd user's password (none: etcd without authentication)", env.PARLEY_ETCD_PASSWORD_FILE)
  .option('--cluster-key-file <path>', 'file with the cluster key: bus payloads carry its HMAC, others are dropped (every instance the same file)', env.PARLEY_CLUSTER_KEY_FILE)
  .option('--tls-cert <path>', 'PEM certificate of the TLS listeners (reloaded when it changes)', env.PARLEY_TLS_CERT)
  .option('--tls-key <path>', 'PEM private key of --tls-cert', env.PARLEY_TLS_KEY)
  .option('--tls-port <port>', 'IRC over TLS port (6697; 0 = any free)', intArg('--tls-port'), env.PARLEY_TLS_PORT ? Number(env.PARLEY_TLS_PORT) : undefined)
  .option('--https-port <port>', 'HTTPS and WSS port (0 = any free)', intArg('--https-port'), env.PARLEY_HTTPS_PORT ? Number(env.PARLEY_HTTPS_PORT) : undefined)
  .option('--no-sts', 'with --tls-port: no `sts` capability (by default plain IRC clients are told to use TLS)')
  .option('--sts-port <port>', 'the TLS port `sts` names, e.g. the front door\'s (default: --tls-port\'s)', intArg('--sts-port'), env.PARLEY_STS_PORT ? Number(env.PARLEY_STS_PORT) : undefined)
  .option('--sts-duration <s>', 'seconds clients keep the STS policy (default 604800, a week)', intArg('--sts-duration'), env.PARLEY_STS_DURATION ? Number(env.PARLEY_STS_DURATION) : undefined)
  .option('--trusted-proxies <addrs>', 'front door addresses whose PROXY header / X-Forwarded-For name the client, comma-separated [env PARLEY_TRUSTED_PROXIES]', list)
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent', env.PARLEY_LOG_LEVEL)
  .action(async (o: Record<string, unknown>) => {
    // List options: the command line replaces the environment rather than adding to it.
    o.etcd ??= env.PARLEY_ETCD ? list(env.PARLEY_ETCD) : undefined;
    o.pg ??= env.PARLEY_PG ? list(env.PARLEY_PG) : undefined;
    o.trustedProxies ??= env.PARLEY_TRUSTED_PROXIES ? list(env.PARLEY_TRUSTED_PROXIES) : undefined;
    const parsed = InstanceOptionsSchema.safeParse(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
    if (!parsed.success) die(`invalid option: ${describeZodError(parsed.error)}`);
    const server = new ParleyServer(parsed.data);
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      server.log.info({ signal: sig }, 'shutting down');
      const t = setTimeout(() => process.exit(1), 10_000);
      t.unref();
      server.close().then(() => process.exit(0), () => process.exit(1));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    try {
      await server.start();
    } catch (err) {
      if (err instanceof StartupError) die(err.message);
      die(`start failed: ${(err as Error).stack ?? String(err)}`);
    }
  });

registerLab(program);
registerLoad(program);
registerProvision(program);
registerDemo(program);

program.parseAsync(process.argv).catch((err: Error) => die(err.message));
