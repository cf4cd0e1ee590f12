// Polls the instance's JSON API (/api/stats, /api/channels) and shows it as text. Rates are computed
// from the difference between two polls.

/** The fields of /api/stats and /api/channels this page shows (see docs/http-api.md). */
interface InstanceStats {
  id: string;
  uptimeSeconds: number;
  connections: number;
  users: number;
  messagesIn: number;
  messagesStored: number;
  deliveries: number;
}
interface Stats {
  instance: InstanceStats;
  cluster: {
    channels: number;
    shards: number;
    instances: { id: string; serverName: string; host: string; tcpPort: number; wsPort: number; connections: number; state: string }[];
  };
}
interface Rooms {
  rooms: { name: string; members: number; messages: number; modes: string; topic: string }[];
}

type Counter = 'messagesIn' | 'messagesStored' | 'deliveries';

function $(id: string): HTMLElement {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} is missing from the page`);
  return e;
}

function body(id: string): HTMLTableSectionElement {
  const t = $(id) as HTMLTableElement;
  const b = t.tBodies[0];
  if (b === undefined) throw new Error(`#${id} has no tbody`);
  return b;
}

let last: { at: number; i: InstanceStats } | null = null;

function row(cells: (string | number)[], numeric: number[] = []): HTMLTableRowElement {
  const tr = document.createElement('tr');
  cells.forEach((v, i) => {
    const td = document.createElement('td');
    td.textContent = String(v);
    if (numeric.includes(i)) td.className = 'num';
    tr.append(td);
  });
  return tr;
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

async function poll(): Promise<void> {
  try {
    const [stats, rooms] = await Promise.all([getJson<Stats>('/api/stats'), getJson<Rooms>('/api/channels?limit=200')]);
    const now = Date.now();
    const i = stats.instance;
    const prev = last;
    const dt = prev ? (now - prev.at) / 1000 : 0;
    const rate = (k: Counter): number | string => (prev && dt > 0 ? Math.round((i[k] - prev.i[k]) / dt) : '-');
    body('instances').replaceChildren(...stats.cluster.instances.map((x) => row([x.id, x.serverName, x.host, x.tcpPort, x.wsPort, x.connections, x.state], [3, 4, 5])));
    body('self').replaceChildren(
      row(['instance', i.id]),
      row(['uptime (s)', i.uptimeSeconds]),
      row(['connections', i.connections]),
      row(['users', i.users]),
      row(['messages in (per s)', `${i.messagesIn} (${rate('messagesIn')})`]),
      row(['stored (per s)', `${i.messagesStored} (${rate('messagesStored')})`]),
      row(['deliveries (per s)', `${i.deliveries} (${rate('deliveries')})`]),
      row(['cluster channels', stats.cluster.channels]),
      row(['shards', stats.cluster.shards]),
    );
    body('rooms').replaceChildren(...rooms.rooms.map((r) => row([r.name, r.members, r.messages, r.modes, r.topic], [1, 2])));
    $('updated').textContent = `updated ${new Date(now).toLocaleTimeString()}`;
    last = { at: now, i };
  } catch (err) {
    $('updated').textContent = `error: ${(err as Error).message}`;
  }
}

void poll();
setInterval(() => void poll(), 2000);
