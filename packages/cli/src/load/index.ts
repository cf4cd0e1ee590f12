import type { Command } from 'commander';
import { die } from '../util.js';
import { loadCommand } from './cli.js';
import { OptionsError, parseLoadOptions } from './options.js';
import { registerReport } from './report.js';

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** `load` and `report` (issue: load tool, benchmark scenarios and reports). */
export function register(program: Command): void {
  program
    .command('load')
    .description('drive a running Parley with simulated IRC users; measure acknowledgements, deliveries, loss and latency')
    .option('--target <host:port,...>', 'IRC ports (--transport tcp) or WebSocket ports (ws) of the front door or instances; connections go round-robin (default 127.0.0.1:6667, or :8080 for ws)', collect)
    .option('--transport <tcp|ws>', 'IRC over TCP, or over WebSocket (IRCv3 binding)', 'tcp')
    .option('--users <n>', 'connections, one user each', '100')
    .option('--rooms <n>', 'channels; room r has the --members-per-room users from r*members (mod users)', '10')
    .option('--members-per-room <n>', 'members of each room', '10')
    .option('--senders-per-room <n>', 'the first n members of each room send to it, the others only receive (default: every member)')
    .option('--rate <n|max|0>', 'messages per second per user; max = as fast as acknowledgements allow; 0 = connect, join and stay idle (default 1)')
    .option('--rate-total <n>', 'messages per second over all users (instead of --rate)')
    .option('--window <n>', 'unacknowledged messages a user may have in flight', '1000')
    .option('--duration <s>', 'seconds of sending (default 10)')
    .option('--messages-per-room <n>', 'send exactly this many messages to each room, then stop (instead of --duration)')
    .option('--ramp <s>', 'seconds over which to open the connections (default 0: as fast as --connect-concurrency allows)')
    .option('--connect-concurrency <n>', 'connections being opened at once', '200')
    .option('--source-ips <range>', 'bind connections round-robin to these local addresses, e.g. 127.0.0.2-127.0.0.9 (about 28k connections per address)')
    .option('--payload-bytes <n>', 'bytes of each message text', '100')
    .option('--events <file>', 'write every message event as CSV')
    .option('--out <file>', 'write the result as JSON (input of parley report)')
    .option('--name <name>', 'name of the run in the result')
    .option('--nick-prefix <p>', 'nicks are <p><n> (default: random)')
    .option('--room-prefix <p>', 'rooms are #<p><n> (default: <nick prefix>r)')
    .option('--drain-timeout <s>', 'seconds to wait for outstanding acknowledgements and deliveries after sending', '30')
    .option('--connect-timeout <s>', 'seconds a connection may take to connect and register', '30')
    .option('--driver <parley|irc|socketio|ws>', 'what the targets are: Parley, another IRC server (irc: a benchmark peer such as InspIRCd), or a benchmark baseline (bench/baselines)', 'parley')
    .action(async (raw: Record<string, unknown>) => {
      if (raw.target === undefined) {
        if (raw.driver !== 'parley') die('--target: give the baseline server host:port');
        raw.target = [raw.transport === 'ws' ? '127.0.0.1:8080' : '127.0.0.1:6667'];
      }
      let opts;
      try {
        opts = parseLoadOptions(raw);
      } catch (err) {
        if (err instanceof OptionsError) die(err.message);
        throw err;
      }
      process.exit(await loadCommand(opts));
    });

  registerReport(program);
}
