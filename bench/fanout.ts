/**
 * Fan-out: one sender at full speed to one room whose members are spread over two real
 * `parley server` instances (real etcd, Redis and PostgreSQL, fsync on by default), measured by
 * the `parley load` engine like every other scenario.
 *
 *   node --import tsx bench/fanout.ts [--seconds 10] [--window 1000] [--members 10]
 *        [--transport tcp|ws] [--fsync on|off] [--systems parley] [--instances 2]
 *
 * Member 0 is the sender, on the first instance; the others alternate between the instances and
 * only receive. The sender keeps --window messages in flight (a channel message is echoed only
 * once it is durable in PostgreSQL). With --systems parley,inspircd,socketio the same load runs
 * against the peers too.
 *
 * The same run by hand: parley load --users 10 --rooms 1 --members-per-room 10 --senders-per-room 1 --rate max --window 1000 --duration 10
 */
import { benchArgs, parseContenders, runScenario } from './lib/compare.js';

const USAGE =
  'usage: node --import tsx bench/fanout.ts [--seconds 10] [--window 1000] [--members 10] [--transport tcp|ws] [--fsync on|off] [--systems parley] [--instances 2]';
const a = benchArgs(process.argv.slice(2), { seconds: '10', window: '1000', members: '10', transport: 'tcp', fsync: 'on', systems: 'parley', instances: '2' }, USAGE);

async function main(): Promise<void> {
  if (a.transport !== 'tcp' && a.transport !== 'ws') throw new Error(`--transport must be tcp or ws, not '${a.transport}'`);
  if (a.fsync !== 'on' && a.fsync !== 'off') throw new Error(`--fsync must be on or off, not '${a.fsync}'`);
  const members = Number(a.members);
  if (!Number.isInteger(members) || members < 2) throw new Error(`--members must be a whole number of at least 2, not '${a.members}'`);
  const load = { users: members, rooms: 1, membersPerRoom: members, sendersPerRoom: 1, rate: 'max', window: a.window, duration: a.seconds, payloadBytes: 100 };
  const rows = await runScenario({
    id: 'fanout',
    title: `fan-out: one sender, ${a.window} messages in flight, one room of ${members} members over ${a.instances} instances`,
    describe: `parley load --users ${members} --rooms 1 --members-per-room ${members} --senders-per-room 1 --rate max --window ${a.window} --duration ${a.seconds} --payload-bytes 100`,
    contenders: parseContenders(a.systems!, a.transport!).filter((c) => c.kind !== 'socketio' || a.transport === 'ws'),
    instances: Number(a.instances),
    fsync: a.fsync === 'on',
    load,
    notes: [
      'Parley acknowledges with the echo once the message is committed in PostgreSQL; members on the sender\'s instance get it from that instance, the others through Redis.',
    ],
  });
  const g = (r: (typeof rows)[number]) => r.result.generator;
  if (rows.some((r) => r.result.totals.lost || r.result.totals.duplicated || g(r).outOfOrder || g(r).msgidMismatches || g(r).deliveredNotAcked || !g(r).drained)) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(`fanout: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
