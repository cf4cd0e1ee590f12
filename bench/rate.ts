/**
 * Scenario (b): 5000 connections each sending 9 messages per second (gochat's second figure),
 * open loop: the schedule does not wait for acknowledgements, so what the system cannot take shows
 * as a lower acknowledged fraction and growing latency. Each user is in one room of
 * `--members-per-room` (default 2: every user talks with one other), so each message is delivered
 * to members − 1 others. Beside Parley, the Socket.IO baseline and the bare ws server.
 *
 *   node --import tsx bench/rate.ts [--users 5000] [--rate 9] [--members-per-room 2] [--seconds 20]
 *        [--window 1000] [--payload-bytes 100] [--systems parley,socketio,ws] [--transports ws]
 *        [--fsync on|off] [--instances 2]
 */
import { benchArgs, parseContenders, runScenario } from './lib/compare.js';

const USAGE =
  'usage: node --import tsx bench/rate.ts [--users 5000] [--rate 9] [--members-per-room 2] [--seconds 20] [--window 1000] [--payload-bytes 100] [--systems parley,socketio,ws] [--transports ws] [--fsync on|off] [--instances 2]';
const a = benchArgs(
  process.argv.slice(2),
  { users: '5000', rate: '9', 'members-per-room': '2', seconds: '20', window: '1000', 'payload-bytes': '100', systems: 'parley,socketio,ws', transports: 'ws', fsync: 'on', instances: '2' },
  USAGE,
);

async function main(): Promise<void> {
  const users = Number(a.users);
  const members = Number(a['members-per-room']);
  const rooms = Math.ceil(users / members);
  const load = { users, rooms, membersPerRoom: members, rate: a.rate, window: a.window, duration: a.seconds, payloadBytes: a['payload-bytes'] };
  const rows = await runScenario({
    id: 'rate',
    title: `(b) ${users.toLocaleString('en-US')} connections each sending ${a.rate} messages/s (open loop), rooms of ${members}`,
    describe: `parley load --users ${users} --rooms ${rooms} --members-per-room ${members} --rate ${a.rate} --duration ${a.seconds} --window ${a.window} --payload-bytes ${a['payload-bytes']}`,
    contenders: parseContenders(a.systems!, a.transports!),
    instances: Number(a.instances),
    fsync: a.fsync === 'on',
    load,
    notes: [
      `Offered: ${(users * Number(a.rate)).toLocaleString('en-US')} messages/s and ${(users * Number(a.rate) * (members - 1)).toLocaleString('en-US')} deliveries/s. Connections alternate between the instances.`,
      'Parley acknowledges once the message is committed in PostgreSQL; Socket.IO once it is broadcast (no database); bare ws at once (one process, no Redis).',
    ],
  });
  if (rows.some((r) => r.result.totals.lost || r.result.totals.duplicated)) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(`rate: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
