/**
 * Where everything of one cluster lives in etcd. Every key of a cluster starts with `/<prefix>/`
 * (`--prefix`, default `parley`); this is the only place that spells the layout. A new kind of key
 * (e.g. QoS classes under `qos/classes/<name>`) is one more member of `EtcdKeys` and one more case
 * of `KeyRef` and `parseKey`.
 */

export interface EtcdKeys {
  /** `/<prefix>/`: every key of the cluster (export and import walk it) */
  readonly root: string;
  /** `/<prefix>/config`: the cluster configuration (`ClusterConfigSchema`) */
  readonly config: string;
  /** `/<prefix>/instances/`: the registry, one leased `InstanceRecord` per running instance */
  readonly instances: string;
  instance(id: string): string;
  /** `/<prefix>/shards/`: the shard map, one `ShardEntry` per PostgreSQL shard */
  readonly shards: string;
  shard(id: number): string;
  /** `/<prefix>/rooms/`: one `RoomPin` per room that was ever resolved */
  readonly rooms: string;
  /** the room's name URL-encoded (`#rust` → `/parley/rooms/%23rust`), so any name is one segment */
  room(name: string): string;
  /** `/<prefix>/qos/classes/`: one `QosClass` per name */
  readonly qosClasses: string;
  qosClass(name: string): string;
  /** `/<prefix>/hosts/`: per-host data */
  readonly hosts: string;
  /** `/<prefix>/hosts/<host>/plan`: what that host's agent runs (`HostPlanSchema`) */
  hostPlan(host: string): string;
  /** What a key of this cluster is; undefined for a key outside `root`. */
  parse(key: string): KeyRef | undefined;
}

/** A key of the cluster, decoded. `invalid` is a key in a known place that cannot be decoded. */
export type KeyRef =
  | { kind: 'config' }
  | { kind: 'instance'; id: string }
  | { kind: 'shard'; id: number }
  | { kind: 'room'; room: string }
  | { kind: 'hostPlan'; host: string }
  | { kind: 'qosClass'; name: string }
  | { kind: 'invalid'; reason: string }
  | { kind: 'other' };

/** A canonical shard number: `0`, `7`, `12`, not `07`, `-1` or `1e3`. */
const SHARD_NUMBER = /^(0|[1-9]\d{0,8})$/;

/**
 * The key layout of the cluster named `prefix`. Accepts the name (`parley`) or the server's
 * path form (`/parley`, `/parley/`): leading and trailing slashes are ignored.
 */
export function etcdKeys(prefix: string): EtcdKeys {
  const name = prefix.replace(/^\/+|\/+$/g, '');
  if (name === '' || name.includes('/')) throw new Error(`invalid etcd prefix "${prefix}": expected one name such as parley`);
  const root = `/${name}/`;
  const instances = `${root}instances/`;
  const shards = `${root}shards/`;
  const rooms = `${root}rooms/`;
  const hosts = `${root}hosts/`;
  const qosClasses = `${root}qos/classes/`;
  return {
    root,
    config: `${root}config`,
    instances,
    instance: (id) => instances + id,
    shards,
    shard: (id) => shards + String(id),
    rooms,
    room: (room) => rooms + encodeURIComponent(room),
    qosClasses,
    qosClass: (name) => qosClasses + name,
    hosts,
    hostPlan: (host) => `${hosts}${host}/plan`,
    parse: (key) => (key.startsWith(root) ? parseRelative(key.slice(root.length)) : undefined),
  };
}

function parseRelative(rel: string): KeyRef {
  const segs = rel.split('/');
  const [head, second] = segs;
  if (segs.length === 1 && head === 'config') return { kind: 'config' };
  if (segs.length === 2 && second !== undefined && second !== '') {
    if (head === 'instances') return { kind: 'instance', id: second };
    if (head === 'shards') {
      return SHARD_NUMBER.test(second)
        ? { kind: 'shard', id: Number(second) }
        : { kind: 'invalid', reason: `"${second}" is not a shard number (0, 1, 2, ...)` };
    }
    if (head === 'rooms') {
      try {
        return { kind: 'room', room: decodeURIComponent(second) };
      } catch {
        return { kind: 'invalid', reason: `"${second}" is not a URL-encoded room name` };
      }
    }
  }
  if (segs.length === 3 && head === 'hosts' && second && segs[2] === 'plan') return { kind: 'hostPlan', host: second };
  if (segs.length === 3 && head === 'qos' && second === 'classes' && segs[2]) return { kind: 'qosClass', name: segs[2] };
  return { kind: 'other' };
}
