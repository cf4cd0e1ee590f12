/**
 * Scenario (a): one user sending to itself as fast as acknowledgements allow (gochat reported
 * 40k frames/s for this on a quad-core i7). The user is the only member of one room and keeps
 * `--window` messages in flight; each acknowledgement (Parley: the echo, sent once the message is
 * durable in PostgreSQL) lets it send the next. Beside Parley over TCP and WebSocket, the same
 * load against the Socket.IO baseline and the bare ws server.
 *
 *   node --import tsx bench/self.ts [--seconds 10] [--window 1000] [--payload-bytes 100]
 *        [--systems parley,socketio,ws] [--transports tcp,ws] [--fsync on|off] [--instances 2] [--qos off|on|both]
 *
 * The same run by hand: parley load --users 1 --rooms 1 --members-per-room 1 --rate max --window 1000 --duration 10
 */
import { benchArgs, parseContenders, qosFlag, runScenario } from './lib/compare.js';

const USAGE = 'usage: node --import tsx bench/self.ts [--seconds 10] [--window 1000] [--payload-bytes 100] [--systems parley,socketio,ws] [--transports tcp,ws] [--fsync on|off] [--instances 2] [--qos off|on|both]';
const a = benchArgs(process.argv.slice(2), { seconds: '10', window: '1000', 'payload-bytes': '100', systems: 'parley,socketio,ws', transports: 'tcp,ws', fsync: 'on', instances: '2', qos: 'off' }, USAGE);

async function main(): Promise<void> {
  const load = { users: 1, rooms: 1, membersPerRoom: 1, rate: 'max', window: a.window, duration: a.seconds, payloadBytes: a['payload-bytes'] };
  const rows = await runScenario({
    id: 'self',
    title: '(a) one user sending to itself as fast as acknowledgements allow',
    describe: `parley load --users 1 --rooms 1 --members-per-room 1 --rate max --window ${a.window} --duration ${a.seconds} --payload-bytes ${a['payload-bytes']}`,
    contenders: parseContenders(a.systems!, a.transports!),
    instances: Number(a.instances),
    fsync: a.fsync === 'on',
    qos: qosFlag(a.qos),
    load,
    notes: [
      'Parley acknowledges a message with its echo once it is committed in PostgreSQL; Socket.IO acks after the broadcast (published to Redis, no database); bare ws echoes at once.',
      'Each acknowledged message is 2 frames (or lines) on the wire: the message and its echo. The user connects to the first instance.',
    ],
  });
  if (rows.some((r) => r.result.totals.lost || r.result.totals.duplicated)) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(`self: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
