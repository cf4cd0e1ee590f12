/**
 * `parley scale server=K` and `parley restart`: both only change this host's plan in etcd (the
 * instance list, or a process's `generation`) and wait until the agent has applied it and the front
 * door shows the result. Removing or restarting an instance is a SIGTERM: it drains (leaves the
 * front door, tells its clients to reconnect, releases their nicks), so its clients resume on the
 * others through the front door.
 */
import { LabError, MAX_INSTANCES, MAX_SHARDS, etcdClient, fmtDuration, openLab, readPlan, updatePlan, waitConverged } from './common.js';
import { resizeInstances } from './up.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);

const SERVER_WORDS = new Set(['server', 'servers', 'instance', 'instances']);
const SHARD_WORDS = new Set(['shard', 'shards', 'pg']);

export function parseScaleSpec(spec: string): { what: 'server' | 'shard'; count: number } {
  const m = /^([A-Za-z-]+)=(.*)$/.exec(spec);
  if (!m) throw new LabError(`cannot read '${spec}': write it as server=K (e.g. parley scale server=3)`);
  const word = m[1]!.toLowerCase();
  const what = SERVER_WORDS.has(word) ? 'server' : SHARD_WORDS.has(word) ? 'shard' : null;
  if (!what) throw new LabError(`cannot scale '${m[1]}': only server=K (instances) and shards=N can be scaled`);
  const max = what === 'server' ? MAX_INSTANCES : MAX_SHARDS;
  const raw = m[2]!.trim();
  const count = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(count) || count < 1 || count > max) throw new LabError(`${what}=${raw}: the count must be an integer from 1 to ${max}`);
  return { what, count };
}

export async function runScale(specs: string[], o: { stateDir: string; timeout: number }): Promise<void> {
  if (specs.length === 0) throw new LabError('say what to scale, e.g. parley scale server=3');
  const wanted = specs.map(parseScaleSpec);
  const lab = await openLab(o.stateDir);
  const client = etcdClient(lab.host);
  const t0 = Date.now();
  try {
    const before = (await readPlan(client, lab.host)).plan;
    if (before.instances.length === 0 && !before.frontDoor) throw new LabError('this host has no plan with instances yet; run parley up first');
    const { plan, revision, changed } = await updatePlan(client, lab.host, (p) => {
      for (const w of wanted) {
        if (w.what === 'server') p.instances = resizeInstances(p, w.count);
        else {
          if (w.count < p.shards.length) throw new LabError(`cannot go from ${p.shards.length} shards to ${w.count}: rooms are pinned to their shard (history would be lost)`);
          for (let id = 0; p.shards.length < w.count; id++) if (!p.shards.some((s) => s.id === id)) p.shards.push({ id, port: 0, database: 'parley', generation: 0 });
        }
      }
      return p;
    });
    const added = plan.instances.filter((i) => !before.instances.some((b) => b.id === i.id)).map((i) => i.id);
    const removed = before.instances.filter((b) => !plan.instances.some((i) => i.id === b.id)).map((b) => b.id);
    if (!changed) say(`nothing to change: ${plan.instances.length} instance(s), ${plan.shards.length} shard(s)`);
    else {
      const parts = [added.length ? `adding ${added.join(', ')}` : '', removed.length ? `draining ${removed.join(', ')}` : '', plan.shards.length !== before.shards.length ? `shards ${before.shards.length} → ${plan.shards.length}` : ''].filter(Boolean);
      say(`scaling: ${before.instances.length} → ${plan.instances.length} instance(s)${parts.length ? ` (${parts.join('; ')})` : ''}`);
    }
    await waitConverged(lab, client, plan, revision, o.timeout * 1000);
    say(`${plan.instances.length} instance(s) ready and in the front door, ${plan.shards.length} shard(s) (${fmtDuration(Date.now() - t0)})`);
  } finally {
    client.close();
  }
}

export async function runRestart(service: string | undefined, o: { stateDir: string; rolling?: boolean; timeout: number }): Promise<void> {
  if (o.rolling && service) throw new LabError('restart --rolling replaces every instance; do not name a service with it');
  if (!o.rolling && !service) throw new LabError('say --rolling (every instance, one at a time) or name a service, e.g. parley restart i2');
  const lab = await openLab(o.stateDir);
  const client = etcdClient(lab.host);
  const t0 = Date.now();
  try {
    const { plan } = await readPlan(client, lab.host);
    const targets = o.rolling ? plan.instances.map((i) => i.id) : [service!];
    if (targets.length === 0) throw new LabError('no instances to restart');
    for (const name of targets) {
      const known = name === 'redis' ? plan.redis : name === 'haproxy' ? plan.frontDoor : /^pg\d+$/.test(name) ? plan.shards.find((s) => `pg${s.id}` === name) : plan.instances.find((i) => i.id === name);
      if (name === 'etcd' || name === 'agent') throw new LabError(`${name} is not part of the plan; restart it with parley down and parley up`);
      if (!known) throw new LabError(`unknown service '${name}' (in the plan: ${[...plan.redis ? ['redis'] : [], ...plan.shards.map((s) => `pg${s.id}`), ...plan.frontDoor ? ['haproxy'] : [], ...plan.instances.map((i) => i.id)].join(', ')})`);
    }
    for (const name of targets) {
      const t1 = Date.now();
      const before = (await openLab(o.stateDir)).status?.processes.find((p) => p.name === name)?.pid ?? null;
      say(`restarting ${name}${before ? ` (pid ${before})` : ''} ...`);
      const { plan: next, revision } = await updatePlan(client, lab.host, (p) => {
        if (name === 'redis' && p.redis) p.redis.generation++;
        else if (name === 'haproxy' && p.frontDoor) p.frontDoor.generation++;
        else {
          const s = p.shards.find((x) => `pg${x.id}` === name);
          if (s) s.generation++;
          const i = p.instances.find((x) => x.id === name);
          if (i) i.generation++;
        }
        return p;
      });
      const done = await waitConverged(lab, client, next, revision, o.timeout * 1000);
      const after = done.status.processes.find((p) => p.name === name)?.pid ?? null;
      if (after === before) throw new LabError(`${name} was not restarted (pid still ${after})`);
      say(`  ${name}: pid ${before ?? '-'} → ${after}, ready${next.frontDoor && next.instances.some((i) => i.id === name) ? ' and in the front door' : ''} (${fmtDuration(Date.now() - t1)})`);
    }
    say(`restarted ${targets.length === 1 ? targets[0] : `${targets.length} instances one at a time`} in ${fmtDuration(Date.now() - t0)}`);
  } finally {
    client.close();
  }
}
