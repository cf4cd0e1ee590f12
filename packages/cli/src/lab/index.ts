import type { Command } from 'commander';
import { die, intArg, list } from '../util.js';
import { LabError } from './common.js';
import { runAgent } from './agent-cmd.js';
import { runConfig } from './config-cmd.js';
import { runClean, runDown } from './down.js';
import { runLogs } from './logs.js';
import { runRestart, runScale } from './scale.js';
import { runStatus, SHARD_SUMMARY_OVER } from './status.js';
import { runUp, type UpOptions } from './up.js';

const env = process.env;
const DEFAULT_STATE_DIR = env.PARLEY_STATE_DIR ?? '.parley';

/** Runs a command; a failure is one line (`parley: ...`) and exit code 1. */
function run(fn: () => Promise<number | void>): Promise<void> {
  return fn().then(
    (code) => {
      if (typeof code === 'number' && code !== 0) process.exitCode = code;
    },
    (err: Error) => die(err instanceof LabError ? err.message : (err.message.split('\n')[0] ?? String(err))),
  );
}

const stateDirOption = ['--state-dir <dir>', 'where data, logs and pids live [env PARLEY_STATE_DIR]', DEFAULT_STATE_DIR] as const;

/** The single-machine lab: up, down, clean, status, logs, scale, restart, config, agent. */
export function register(program: Command): void {
  // `parley status | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  program
    .command('up')
    .description('run the whole cluster on this machine (etcd, Redis, PostgreSQL shards, instances, HAProxy front door) in the background; adopts one that runs')
    .option(...stateDirOption)
    .option('--instances <m>', 'Parley instances, 1-32 (default 2, or what runs)', intArg('--instances'))
    .option('--shards <n>', 'PostgreSQL shards, 1-256, never fewer than before (default 4, or what runs)', intArg('--shards'))
    .option('--irc-port <port>', 'front door: IRC over TCP, 0 = any free (default 6667, or as before)', intArg('--irc-port'))
    .option('--http-port <port>', 'front door: HTTP API and IRC over WebSocket, 0 = any free (default 8080, or as before)', intArg('--http-port'))
    .option('--bind <addr>', 'address the front door listens on (default 127.0.0.1, or as before)')
    .option('--tls', "TLS: a local CA and certificates in the state dir, IRC over TLS and HTTPS/WSS on every instance and at the front door (passed through), sts (kept by later ups)")
    .option('--no-tls', 'turn TLS off again')
    .option('--tls-irc-port <port>', 'front door: IRC over TLS, 0 = any free (default 6697, or as before)', intArg('--tls-irc-port'))
    .option('--https-port <port>', 'front door: HTTPS and WSS, 0 = any free (default 8443, or as before)', intArg('--https-port'))
    .option('--timeout <s>', 'how long to wait until everything is ready', intArg('--timeout'), 120)
    .action((o: UpOptions) => run(() => runUp(o)));

  program
    .command('down')
    .description('stop everything `up` started (instances drain first); data is kept')
    .option(...stateDirOption)
    .action((o: { stateDir: string }) => run(() => runDown(o)));

  program
    .command('clean')
    .description('down, then remove the state directory (data, logs)')
    .option(...stateDirOption)
    .action((o: { stateDir: string }) => run(() => runClean(o)));

  program
    .command('status')
    .description(`every process: kind, id, port, pid, state, health, restarts, connections, msgs/s (more than ${SHARD_SUMMARY_OVER} shards: summarised)`)
    .option(...stateDirOption)
    .option('--json', 'machine-readable output')
    .option('--all', `one line per shard even when there are more than ${SHARD_SUMMARY_OVER}`)
    .action((o: { stateDir: string; json?: boolean; all?: boolean }) => run(() => runStatus(o)));

  program
    .command('logs')
    .description('service logs, prefixed and coloured by service')
    .argument('[service]', 'agent, etcd, redis, pg<N>, haproxy, an instance id (i1), or a kind: server, shard')
    .option(...stateDirOption)
    .option('-f, --follow', 'keep printing new lines')
    .option('-n, --lines <n>', 'lines of each log to show first', intArg('--lines'), 20)
    .option('--no-color', 'no colours')
    .option('--raw', 'show JSON log lines as they are')
    .action((service: string | undefined, o: { stateDir: string; follow?: boolean; lines: number; color: boolean; raw?: boolean }) =>
      run(() => runLogs(service, { ...o, color: o.color === false ? false : undefined })));

  program
    .command('scale')
    .description('change the number of instances (server=K, 1-32) or add shards (shards=N); scaling down drains')
    .argument('<spec...>', 'server=K, shards=N')
    .option(...stateDirOption)
    .option('--timeout <s>', 'how long to wait', intArg('--timeout'), 120)
    .action((specs: string[], o: { stateDir: string; timeout: number }) => run(() => runScale(specs, o)));

  program
    .command('restart')
    .description('restart a service through the plan; --rolling replaces every instance, one at a time')
    .argument('[service]', 'an instance id, pg<N>, redis or haproxy')
    .option(...stateDirOption)
    .option('--rolling', 'every instance, one at a time, each ready and in the front door before the next')
    .option('--timeout <s>', 'how long to wait for each', intArg('--timeout'), 120)
    .action((service: string | undefined, o: { stateDir: string; rolling?: boolean; timeout: number }) => run(() => runRestart(service, o)));

  program
    .command('config')
    .description('the cluster configuration in etcd: get [KEY] | set JSON | edit | validate JSON | export DIR | import DIR')
    .argument('<action>', 'get | set | edit | validate | export | import')
    .argument('[value]', 'JSON (or @file) for set/validate, a key for get, a directory for export/import')
    .option('--etcd <urls>', 'etcd endpoints [env PARLEY_ETCD]', list)
    .option('--etcd-user <name>', 'with --etcd: etcd user [env PARLEY_ETCD_USER]', env.PARLEY_ETCD_USER)
    .option('--etcd-password-file <path>', "with --etcd: file with the etcd user's password [env PARLEY_ETCD_PASSWORD_FILE]", env.PARLEY_ETCD_PASSWORD_FILE)
    .option('--prefix <name>', 'cluster namespace [env PARLEY_PREFIX]', env.PARLEY_PREFIX)
    .option(...stateDirOption)
    .action((action: string, value: string | undefined, o: { etcd?: string[]; prefix?: string; stateDir: string; etcdUser?: string; etcdPasswordFile?: string }) => {
      o.etcd ??= env.PARLEY_ETCD ? list(env.PARLEY_ETCD) : undefined;
      return run(() => runConfig(action, value, o));
    });

  program
    .command('agent')
    .description("run this host's agent in the foreground: applies /<prefix>/hosts/<host>/plan from etcd (parley up starts it for you)")
    .option(...stateDirOption)
    .option('--etcd <urls>', 'etcd elsewhere (writes host.json for a new state directory)', list)
    .option('--host <name>', 'host name in the plan key (default: this machine\'s)')
    .option('--prefix <name>', 'cluster namespace (default parley)')
    .action((o: { stateDir: string; etcd?: string[]; host?: string; prefix?: string }) => run(() => runAgent(o)));
}
