import type { Command } from 'commander';
import { die, intArg } from '../util.js';
import { LabError } from '../lab/common.js';
import { runProvisionShards, type ProvisionOptions } from './shards.js';

const DEFAULT_STATE_DIR = process.env.PARLEY_STATE_DIR ?? '.parley';

/** `parley provision shards`: many PostgreSQL shards on a host of the lab. */
export function register(program: Command): void {
  const provision = program.command('provision').description('add resources to a running cluster: provision shards --count N');
  provision
    .command('shards')
    .description('make shards 0..N-1 exist on a host (the agent creates, starts and supervises them; each is registered through the REST API); a larger N only adds')
    .requiredOption('--count <n>', 'shards wanted in all, 1-5000', intArg('--count'))
    .option('--base-port <p>', 'shard <id> listens on P + id (refused if any of those ports is in use); default: a free range from 20000 up', intArg('--base-port'))
    .option('--qos <class>', 'QoS class of every shard 0..N-1 (its postgres settings go into their postgresql.conf)')
    .option('--qos-from <file>', 'JSON mapping of shard ranges to classes: {"default":"bronze","ranges":[{"from":0,"to":99,"class":"gold"}]}')
    .option('--host <name>', "host whose plan gets the shards (default: this state directory's)")
    .option('--api <url>', "the REST API (default: the front door's HTTP address)")
    .option('--state-dir <dir>', 'where data, logs and pids live [env PARLEY_STATE_DIR]', DEFAULT_STATE_DIR)
    .option('--timeout <s>', 'how long to wait until every shard is ready', intArg('--timeout'), 600)
    .option('--no-progress', 'a line every few seconds instead of the live bar')
    .action((o: ProvisionOptions) =>
      runProvisionShards(o).catch((err: Error) => die(err instanceof LabError ? err.message : (err.message.split('\n')[0] ?? String(err)))),
    );
}
