/**
 * Scenario (c): fan-out over 1000 rooms × 10 members (the seeds' `--messages-per-room` scenario):
 * every room gets the same number of messages, sent by its members in turn, each member keeping
 * `--window` messages in flight (closed loop: as fast as acknowledgements allow). Throughput is
 * counted from the first send to the last acknowledgement or delivery. Beside Parley, the
 * Socket.IO baseline and the bare ws server.
 *
 *   node --import tsx bench/rooms.ts [--rooms 1000] [--members-per-room 10] [--users 10000]
 *        [--messages-per-room 100] [--window 1] [--payload-bytes 100]
 *        [--systems parley,socketio,ws] [--transports ws] [--fsync on|off] [--instances 2] [--qos off|on|both]
 */
import { benchArgs, parseContenders, qosFlag, runScenario } from './lib/compare.js';

const USAGE =
  'usage: node --import tsx bench/rooms.ts [--rooms 1000] [--members-per-room 10] [--users 10000] [--messages-per-room 100] [--window 1] [--payload-bytes 100] [--systems parley,socketio,ws] [--transports ws] [--fsync on|off] [--instances 2] [--qos off|on|both]';
const a = benchArgs(
  process.argv.slice(2),
  { rooms: '1000', 'members-per-room': '10', users: '10000', 'messages-per-room': '100', window: '1', 'payload-bytes': '100', systems: 'parley,socketio,ws', transports: 'ws', fsync: 'on', instances: '2', qos: 'off' },
  USAGE,
);

async function main(): Promise<void> {
  const load = {
    users: a.users,
    rooms: a.rooms,
    membersPerRoom: a['members-per-room'],
    rate: 'max',
    window: a.window,
    messagesPerRoom: a['messages-per-room'],
    payloadBytes: a['payload-bytes'],
  };
  const total = Number(a.rooms) * Number(a['messages-per-room']);
  const rows = await runScenario({
    id: 'rooms',
    title: `(c) fan-out: ${a.rooms} rooms × ${a['members-per-room']} members, ${a['messages-per-room']} messages per room (${total.toLocaleString('en-US')} messages, ${(total * (Number(a['members-per-room']) - 1)).toLocaleString('en-US')} deliveries)`,
    describe: `parley load --users ${a.users} --rooms ${a.rooms} --members-per-room ${a['members-per-room']} --messages-per-room ${a['messages-per-room']} --rate max --window ${a.window} --payload-bytes ${a['payload-bytes']}`,
    contenders: parseContenders(a.systems!, a.transports!),
    instances: Number(a.instances),
    fsync: a.fsync === 'on',
    qos: qosFlag(a.qos),
    load,
    notes: [
      'Members alternate between the instances, so most deliveries cross instances (Parley and Socket.IO through Redis).',
      'Parley acknowledges once the message is committed in PostgreSQL; Socket.IO once it is broadcast (no database); bare ws at once (one process, no Redis).',
    ],
  });
  if (rows.some((r) => r.result.totals.lost || r.result.totals.duplicated)) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(`rooms: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
