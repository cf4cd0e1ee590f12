// Polls the instance's JSON API (/api/stats, /api/rooms) and shows it. Rates are computed from
// the difference between two polls.
const $ = (id) => document.getElementById(id);
let last = null;

function row(cells, numeric = []) {
  const tr = document.createElement('tr');
  cells.forEach((v, i) => {
    const td = document.createElement('td');
    td.textContent = String(v);
    if (numeric.includes(i)) td.className = 'num';
    tr.append(td);
  });
  return tr;
}

async function poll() {
  try {
    const [stats, rooms] = await Promise.all([fetch('/api/stats').then((r) => r.json()), fetch('/api/rooms?limit=200').then((r) => r.json())]);
    const now = Date.now();
    const i = stats.instance;
    const dt = last ? (now - last.at) / 1000 : 0;
    const rate = (k) => (last && dt > 0 ? Math.round((i[k] - last.i[k]) / dt) : '-');
    $('instances').tBodies[0].replaceChildren(...stats.cluster.instances.map((x) => row([x.id, x.serverName, x.host, x.tcpPort, x.wsPort, x.connections, x.state], [3, 4, 5])));
    $('self').tBodies[0].replaceChildren(
      row(['instance', i.id]), row(['uptime (s)', i.uptimeSeconds]), row(['connections', i.connections]), row(['users', i.users]),
      row(['messages in (per s)', `${i.messagesIn} (${rate('messagesIn')})`]), row(['stored (per s)', `${i.messagesStored} (${rate('messagesStored')})`]),
      row(['deliveries (per s)', `${i.deliveries} (${rate('deliveries')})`]), row(['cluster channels', stats.cluster.channels]), row(['shards', stats.cluster.shards]),
    );
    $('rooms').tBodies[0].replaceChildren(...rooms.rooms.map((r) => row([r.name, r.members, r.messages, r.modes, r.topic], [1, 2])));
    $('updated').textContent = `updated ${new Date(now).toLocaleTimeString()}`;
    last = { at: now, i };
  } catch (err) {
    $('updated').textContent = `error: ${err.message}`;
  }
}

poll();
setInterval(poll, 2000);
