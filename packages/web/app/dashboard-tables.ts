// The dashboard's tables (top rooms, instances, shards): rows created once and updated in place,
// text only (room names and instance ids come from users and operators).

import { compact, refused, type InstanceView, type Room, type ShardView } from './dashboard-model.js';

/** A table body whose rows are kept and rewritten, cell by cell, only where the text changed. */
export class LiveTable {
  private readonly body: HTMLTableSectionElement;

  constructor(table: HTMLTableElement, private readonly classes: string[] = []) {
    const b = table.tBodies[0];
    if (!b) throw new Error(`#${table.id} has no tbody`);
    this.body = b;
  }

  /** Row i gets `cells[i]`; a cell is text, or a function filling a fresh element once. */
  set(rows: Array<{ key: string; cells: Array<string | number | Node> }>): void {
    const trs = this.body.rows;
    while (trs.length > rows.length) this.body.deleteRow(-1);
    rows.forEach((row, i) => {
      let tr = trs[i];
      if (!tr) {
        tr = this.body.insertRow();
        row.cells.forEach((_c, j) => {
          const td = tr?.insertCell() as HTMLTableCellElement;
          const cls = this.classes[j];
          if (cls) td.className = cls;
        });
      }
      if (tr.dataset.key !== row.key) tr.dataset.key = row.key;
      row.cells.forEach((c, j) => {
        const td = tr?.cells[j];
        if (!td) return;
        if (c instanceof Node) {
          if (td.firstChild !== c) td.replaceChildren(c);
          return;
        }
        const text = String(c);
        if (td.textContent !== text) td.textContent = text;
      });
    });
  }
}

const rate = (n: number): string => (n === 0 ? '0' : n >= 100 ? String(Math.round(n)) : n.toFixed(1));

/** The bar of stored (blue) against refused (red) messages of a room, one element per row. */
class SplitBar {
  readonly el = document.createElement('span');
  private readonly ok = document.createElement('i');
  private readonly bad = document.createElement('i');
  constructor() {
    this.el.className = 'split';
    this.bad.className = 'bad';
    this.el.append(this.ok, this.bad);
  }
  set(ok: number, bad: number): void {
    const all = ok + bad;
    const w = all === 0 ? 0 : Math.max(bad > 0 ? 2 : 0, Math.round((bad / all) * 100));
    this.ok.style.width = `${all === 0 ? 0 : 100 - w}%`;
    this.bad.style.width = `${w}%`;
    this.el.title = `${ok} stored, ${bad} refused`;
  }
}

export class RoomTable {
  private readonly table: LiveTable;
  private readonly bars: SplitBar[] = [];

  constructor(el: HTMLTableElement) {
    this.table = new LiveTable(el, ['room', 'shard', 'cls', 'num limit', 'num rate', 'num refused-rate', 'num accepted', 'num refused-qos', 'num refused-backlog', 'num failed', 'bar']);
  }

  set(rooms: Room[]): void {
    this.table.set(
      rooms.map((r, i) => {
        const bar = (this.bars[i] ??= new SplitBar());
        bar.set(r.accepted, refused(r));
        return {
          key: r.name,
          cells: [
            r.name,
            r.shard === null ? '-' : r.shard,
            r.override ? `${r.cls} (own)` : r.cls || '-',
            r.limit === null ? 'none' : `${r.limit} (burst ${r.burst ?? '-'})`,
            rate(r.rate),
            rate(r.refusedRate),
            r.accepted,
            r.refusedQos,
            r.refusedBacklog,
            r.failed,
            bar.el,
          ],
        };
      }),
    );
  }
}

export function instanceRows(list: InstanceView[], now: number): Array<{ key: string; cells: Array<string | number> }> {
  return list.map((i) => {
    const s = i.stats;
    const ms = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : String(v));
    return {
      key: i.id,
      cells: [
        i.id,
        `${i.host}:${i.tcpPort} / ${i.wsPort}`,
        i.state,
        i.connections,
        s ? rate(s.messagesInPerSecond) : '-',
        s ? rate(s.storedPerSecond) : '-',
        s ? rate(s.deliveriesPerSecond) : '-',
        ms(s?.commitP99Ms),
        ms(s?.fanoutP99Ms),
        s ? `${Math.max(0, Math.round((now - s.at) / 1000))} s ago` : '-',
      ],
    };
  });
}

export function shardRows(list: ShardView[]): Array<{ key: string; cells: Array<string | number> }> {
  return list.map((s) => ({
    key: String(s.id),
    cells: [s.id, s.down ? `down${s.downReason ? `: ${s.downReason}` : ''}` : s.state, s.qos ?? 'default', compact(s.counts.accepted), compact(s.counts.refusedQos), compact(s.counts.refusedBacklog), compact(s.counts.failed)],
  }));
}
