/**
 * A throwaway Parley cluster for trying `parley load` by hand: real etcd, Redis and PostgreSQL on
 * free loopback ports, the flood limit off, and N `parley server` instances. Prints the targets;
 * Ctrl-C stops and removes everything.
 *
 *   node --import tsx bench/cluster.ts [--instances 2] [--fsync on|off]
 */
import { parseArgs } from 'node:util';
import { startServices, type Services } from '../test/harness/index.js';
import { startParley, type System } from './lib/systems.js';

const { values } = parseArgs({ options: { instances: { type: 'string', default: '2' }, fsync: { type: 'string', default: 'off' } } });
const n = Number(values.instances);
if (!Number.isInteger(n) || n < 1 || n > 50) {
  console.error('cluster: --instances must be 1 to 50');
  process.exit(1);
}

let services: Services | undefined;
let system: System | undefined;
const stop = async (): Promise<void> => {
  await system?.stop();
  await services?.stop();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

async function main(): Promise<void> {
  services = await startServices({ pgFsync: values.fsync === 'on' });
  system = await startParley(services, n);
  console.log(`Parley: ${n} instances (flood limit off), services in ${services.dir}`);
  console.log(`  --transport tcp --target ${system.targets('tcp').join(',')}`);
  console.log(`  --transport ws  --target ${system.targets('ws').join(',')}`);
  console.log(`  server pids ${system.serverPids.join(' ')}; Ctrl-C stops everything`);
  setInterval(() => undefined, 1 << 30);
}

main().catch(async (err: unknown) => {
  console.error(`cluster: ${err instanceof Error ? err.message : String(err)}`);
  await system?.stop();
  await services?.stop();
  process.exit(1);
});
