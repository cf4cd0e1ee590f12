import fs from 'node:fs/promises';
import path from 'node:path';
import { startEtcd, startPostgres, startRedis, type EtcdHandle, type PgHandle, type RedisHandle } from '@parley/agent';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';

export interface UpOptions {
  stateDir: string;
  tcpPort: number;
  wsPort: number;
}

/** What `up` wrote about the running cluster, for the other commands. */
export interface ClusterFile {
  etcd: string;
  redis: string;
  pg: string[];
  tcpPort: number;
  wsPort: number;
  pid: number;
}

export const clusterFile = (stateDir: string): string => path.join(stateDir, 'cluster.json');

/**
 * The single-machine cluster of this release: etcd, Redis and one PostgreSQL shard as child
 * processes with their data in the state directory (kept between runs), and one Parley instance
 * in this process. Ctrl-C stops everything.
 */
export async function runUp(o: UpOptions): Promise<void> {
  const dir = path.resolve(o.stateDir);
  await fs.mkdir(path.join(dir, 'logs'), { recursive: true });
  const existing = await fs.readFile(clusterFile(dir), 'utf8').then((t) => JSON.parse(t) as ClusterFile, () => null);
  if (existing && isAlive(existing.pid)) {
    throw new Error(`Parley is already running from ${dir} (pid ${existing.pid}); IRC on port ${existing.tcpPort}, web on ${existing.wsPort}`);
  }
  const log = (s: string) => process.stdout.write(`${s}\n`);
  let etcd: EtcdHandle | undefined;
  let redis: RedisHandle | undefined;
  let pg: PgHandle | undefined;
  let server: ParleyServer | undefined;
  const stopAll = async () => {
    // The server gets 10 s to say goodbye to its clients (a backend may be down); then the services stop anyway.
    await Promise.race([server?.close().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await Promise.allSettled([etcd?.stop(), redis?.stop(), pg?.stop()]);
    await fs.rm(clusterFile(dir), { force: true });
  };
  try {
    log(`starting etcd, Redis and PostgreSQL in ${dir} ...`);
    [etcd, redis, pg] = await Promise.all([
      startEtcd({ dataDir: path.join(dir, 'etcd'), logFile: path.join(dir, 'logs', 'etcd.log') }),
      startRedis({ dir: path.join(dir, 'redis'), logFile: path.join(dir, 'logs', 'redis.log') }),
      startPostgres({ dataDir: path.join(dir, 'pg0', 'data'), logFile: path.join(dir, 'logs', 'pg0.log') }),
    ]);
    const dbUrl = await pg.createDatabase('parley').catch((err: Error) => {
      if (/already exists/.test(err.message)) return pg!.url.replace(/\/postgres$/, '/parley');
      throw err;
    });
    const opts = InstanceOptionsSchema.parse({
      etcd: [etcd.endpoint], redis: redis.url, pg: [dbUrl], tcpPort: o.tcpPort, wsPort: o.wsPort, logLevel: 'warn', id: 'local-1',
    });
    server = new ParleyServer(opts);
    await server.start();
    const info: ClusterFile = { etcd: etcd.endpoint, redis: redis.url, pg: [dbUrl], tcpPort: server.tcpPort, wsPort: server.wsPort, pid: process.pid };
    await fs.writeFile(clusterFile(dir), JSON.stringify(info, null, 2));
    log('');
    log('Parley is up.');
    log(`  IRC (TCP):        irc://127.0.0.1:${server.tcpPort}      e.g. irssi -c 127.0.0.1 -p ${server.tcpPort}`);
    log(`  IRC (WebSocket):  ws://127.0.0.1:${server.wsPort}/`);
    log(`  HTTP API:         http://127.0.0.1:${server.wsPort}/api/stats   /api/rooms   /metrics   /healthz`);
    log(`  etcd:             ${etcd.endpoint}   (parley config get --state-dir ${o.stateDir})`);
    log(`  logs:             ${path.join(dir, 'logs')}`);
    log('Press Ctrl-C to stop.');
  } catch (err) {
    await stopAll();
    throw err;
  }
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  log('stopping ...');
  await stopAll();
  log('stopped.');
  process.exit(0);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
