import type { Command } from 'commander';
import { die, intArg, list } from '../util.js';
import { runUp } from './up.js';
import { runConfig } from './config-cmd.js';

const env = process.env;

/** The single-machine lab: `up` and `config`. */
export function register(program: Command): void {
  program
    .command('up')
    .description('run Parley on this machine: etcd, Redis, PostgreSQL and one server, in the foreground')
    .option('--state-dir <dir>', 'where data, logs and pids live', env.PARLEY_STATE_DIR ?? '.parley')
    .option('--tcp-port <port>', 'IRC over TCP port', intArg('--tcp-port'), 6667)
    .option('--ws-port <port>', 'HTTP and WebSocket port', intArg('--ws-port'), 8080)
    .action(async (o: { stateDir: string; tcpPort: number; wsPort: number }) => {
      await runUp(o).catch((err: Error) => die(err.message));
    });

  program
    .command('config')
    .description('read or change the cluster configuration in etcd')
    .argument('<action>', 'get | set | validate')
    .argument('[value]', 'JSON for set (or @file)')
    .option('--etcd <urls>', 'etcd endpoints [env PARLEY_ETCD]', list)
    .option('--prefix <name>', 'cluster namespace', env.PARLEY_PREFIX ?? 'parley')
    .option('--state-dir <dir>', 'state directory of a local `parley up` (to find its etcd)', env.PARLEY_STATE_DIR ?? '.parley')
    .action(async (action: string, value: string | undefined, o: { etcd?: string[]; prefix: string; stateDir: string }) => {
      o.etcd ??= env.PARLEY_ETCD ? list(env.PARLEY_ETCD) : undefined;
      await runConfig(action, value, o).catch((err: Error) => die(err.message));
    });
}
