import { InvalidArgumentError, type Command } from 'commander';
import { die, intArg } from '../util.js';
import { LabError } from '../lab/common.js';
import { ResultFileError } from '../load/report-schema.js';
import { ReportError } from '../load/report.js';
import { DemoError } from './api.js';
import { ClassesError } from './classes.js';
import { runDemoQos, type DemoQosOptions } from './qos.js';

const numberArg = (name: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};

/** `parley demo qos`: the demonstrations that put the whole system through one scenario. */
export function register(program: Command): void {
  const demo = program.command('demo').description('demonstrations in one command: demo qos');
  demo
    .command('qos')
    .description('a lab with many shards and rooms, each room under a QoS class, offered more than its limit; reports each room\'s accepted rate against its limit (HTML report with charts), with the time, memory and disk of the run')
    .option('--shards <n>', 'shards to provision (classes by range)', intArg('--shards'), 1000)
    .option('--rooms <n>', 'rooms, each with its own class (the mix of the classes file)', intArg('--rooms'), 1000)
    .option('--messages-per-room <n>', 'messages sent to every room', intArg('--messages-per-room'), 150)
    .option('--rate-multiple <x>', "each room is offered this multiple of its limit", numberArg('--rate-multiple'), 2)
    .option('--classes <file>', 'QoS classes and their shares: {"bronze":{"rate":1,"burst":5,"share":0.5},...} (default: bronze 1/s, silver 2/s, gold 5/s)')
    .option('--instances <n>', 'instances of a lab the demo starts', intArg('--instances'), 2)
    .option('--tolerance <pct>', 'a room is within its limit when its accepted rate is within this many percent', numberArg('--tolerance'), 5)
    .option('--out <dir>', 'where result.json, index.html and the PNG charts go', 'qos-demo')
    .option('--state-dir <dir>', 'the lab: one running there is used (and left running), else one is started there (and removed at the end)', '.parley-demo')
    .option('--timeout <s>', 'how long the lab and the shards may take to be ready', intArg('--timeout'), 900)
    .option('--keep', 'leave the lab it started running (parley clean --state-dir DIR removes it)', false)
    .option('--no-warmup', 'no warm-up (by default 2 messages per room first, so that rooms are pinned and shard connections open before the measured load)')
    .action((o: DemoQosOptions) =>
      runDemoQos(o).then(
        (code) => {
          process.exitCode = code;
        },
        (err: Error) => {
          const known = err instanceof DemoError || err instanceof LabError || err instanceof ClassesError || err instanceof ReportError || err instanceof ResultFileError;
          die(known ? err.message : (err.message.split('\n')[0] ?? String(err)));
        },
      ),
    );
}
