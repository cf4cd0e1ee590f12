/**
 * `parley agent`: the per-host agent in the foreground (`parley up` starts it in the background).
 * It needs the state directory's host.json, which `up` writes; on a host whose etcd runs
 * elsewhere, `--etcd URLS` writes one that points there.
 */
import { Agent, defaultHostName, initStateDir, writeJsonAtomic, type HostFile } from '@parley/agent';
import { LabError, cliMain, readHostFile, tsxLoader } from './common.js';

export interface AgentCmdOptions {
  stateDir: string;
  etcd?: string[];
  host?: string;
  prefix?: string;
}

export async function runAgent(o: AgentCmdOptions): Promise<void> {
  const paths = await initStateDir(o.stateDir);
  const existing = await readHostFile(paths);
  if (!existing) {
    if (!o.etcd?.length) throw new LabError(`no host file in ${paths.root}: run parley up (which writes it and starts the agent), or pass --etcd URLS`);
    const host: HostFile = { version: 1, host: o.host ?? defaultHostName(), prefix: o.prefix ?? 'parley', etcd: { managed: false, endpoints: o.etcd } };
    await writeJsonAtomic(paths.hostFile, host);
  } else if (o.etcd?.length || o.host || o.prefix) {
    throw new LabError(`${paths.hostFile} exists already; --etcd, --host and --prefix only apply to a new state directory`);
  }
  const agent = new Agent({ stateDir: paths.root, serverCommand: [process.execPath, '--import', tsxLoader, cliMain, 'server'] });
  // The agent is the parent of the whole host: a stray rejection must not take it all down.
  process.on('unhandledRejection', (err) => {
    process.stdout.write(`${new Date().toISOString()} unhandled rejection (continuing): ${(err as Error)?.stack ?? String(err)}\n`);
  });
  const stop = (): void => {
    void agent.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // `parley clean`: the data goes next, so the shards need not stop cleanly.
  process.on('SIGUSR2', () => void agent.stop({ discard: true }).then(() => process.exit(0)));
  process.on('SIGHUP', () => undefined);
  try {
    await agent.start();
  } catch (err) {
    throw new LabError((err as Error).message);
  }
  await agent.done;
}
