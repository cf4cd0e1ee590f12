// The configuration page: the QoS classes, the shards' classes, the rooms' own classes and the
// cluster configuration, read and written through the REST API (docs/http-api.md). Every write
// carries the revision the page read (If-Match), so an edit over someone else's change is refused
// (412) and shown with a reload instead of overwriting it. Everything is in etcd: every instance
// applies a change within a second, whichever one served the page.

import { api, clearErrors, el, field, notice, numberInput, optionalNumber, select, setToken, showFailure, token } from './config-api.js';
import { configForm, readConfigForm } from './config-form.js';

interface QosClass {
  name: string;
  rate: number;
  burst: number;
  shardWriteBudget?: number;
  poolSize?: number;
  postgres?: Record<string, unknown>;
  description?: string;
  revision: string;
}
interface Shard {
  id: number;
  url: string;
  state: 'active' | 'draining';
  qos: string | null;
  poolSize: number | null;
  down: boolean;
  revision: string;
}
interface RoomView {
  room: string;
  shard: number | null;
  class: string;
  override: string | null;
  rate: number | null;
  burst: number | null;
  revision: string;
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

const classesBox = $('classes-box');
const shardsBox = $('shards-box');
const roomsBox = $('rooms-box');
const configBox = $('config-box');
let classNames: string[] = [];

const quoted = (rev: string): string => `"${rev}"`;
const required = (input: HTMLInputElement): number | null => (input.value.trim() === '' ? null : Number(input.value));

// ---- the token
const tokenInput = $<HTMLInputElement>('token');
function showToken(): void {
  const has = token() !== null;
  $('status').textContent = has ? 'token set' : 'read only';
  $('status').className = has ? 'status online' : 'status';
}
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken(tokenInput.value.trim() || null);
  tokenInput.value = '';
  showToken();
});
$('forget').addEventListener('click', () => {
  setToken(null);
  showToken();
});

// ---- QoS classes
async function loadClasses(): Promise<void> {
  const a = await api<{ classes: QosClass[] }>('GET', '/api/qos/classes');
  if (!a.ok) return notice(classesBox, 'bad', `QoS classes: ${a.body.error}`);
  classNames = a.body.classes.map((c) => c.name);
  const rows = a.body.classes.map((c) => classRow(c));
  rows.push(classRow(null));
  $<HTMLTableElement>('classes').tBodies[0]?.replaceChildren(...rows);
}

/** One class as an editable row; `null`: the row that creates a new class. */
function classRow(c: QosClass | null): HTMLTableRowElement {
  const name = el('input', { value: c?.name ?? '', placeholder: 'new class name', readOnly: c !== null, className: 'name' });
  const rate = numberInput(c?.rate);
  const burst = numberInput(c?.burst, '1');
  const budget = numberInput(c?.shardWriteBudget);
  const pool = numberInput(c?.poolSize, '1');
  const desc = el('input', { value: c?.description ?? '', className: 'wide' });
  const save = el('button', { type: 'button', className: 'primary' }, c ? 'Save' : 'Create');
  const tr = el('tr', {}, ...[field(null, name, 'name'), field(null, rate, 'rate'), field(null, burst, 'burst'), field(null, budget, 'shardWriteBudget'), field(null, pool, 'poolSize'), field(null, desc, 'description')].map((f) => el('td', {}, f)));
  tr.dataset.class = c?.name ?? '';
  const actions = el('td', {}, save);
  tr.append(actions);
  save.addEventListener('click', () => {
    void (async () => {
      clearErrors(classesBox);
      const n = name.value.trim();
      if (!n) return showFailure(classesBox, tr, { status: 400, body: { error: 'name: give the class a name', statusCode: 400, field: 'name' } }, 'New class', () => void loadClasses());
      const body: Record<string, unknown> = { rate: required(rate), burst: required(burst) };
      const b = optionalNumber(budget);
      if (b !== undefined) body.shardWriteBudget = b;
      const p = optionalNumber(pool);
      if (p !== undefined) body.poolSize = p;
      if (desc.value.trim()) body.description = desc.value.trim();
      // Settings this page does not edit are sent back as they are.
      if (c?.postgres) body.postgres = c.postgres;
      // A new class is created only if no class of that name exists ("0").
      const a = await api<QosClass>('PUT', `/api/qos/classes/${encodeURIComponent(n)}`, { body, ifMatch: quoted(c?.revision ?? '0') });
      if (!a.ok) {
        if (a.status === 412 && !c) return notice(classesBox, 'bad', `A class named ${n} exists already: edit its row instead.`, () => void loadClasses());
        return showFailure(classesBox, tr, a, `Class ${n}`, () => void loadClasses());
      }
      await loadClasses();
      notice(classesBox, 'good', `Class ${n} ${a.status === 201 ? 'created' : 'saved'} (revision ${a.etag ?? '?'}); every instance applies it within a second.`);
      void loadShards();
      refreshClassSelect();
    })();
  });
  if (c) {
    const del = el('button', { type: 'button', className: 'danger' }, 'Delete');
    del.addEventListener('click', () => {
      if (del.dataset.armed !== '1') {
        del.dataset.armed = '1';
        del.textContent = 'Really delete?';
        return;
      }
      void (async () => {
        clearErrors(classesBox);
        const a = await api('DELETE', `/api/qos/classes/${encodeURIComponent(c.name)}`, { ifMatch: quoted(c.revision) });
        if (!a.ok) return showFailure(classesBox, tr, a, `Class ${c.name}`, () => void loadClasses());
        await loadClasses();
        notice(classesBox, 'good', `Class ${c.name} deleted; rooms and shards naming it fall back to default.`);
        refreshClassSelect();
      })();
    });
    actions.append(' ', del);
  }
  return tr;
}

const classOptions = (none: string): Array<[string, string]> => [['', none], ...classNames.map((n): [string, string] => [n, n])];

// ---- shards
async function loadShards(): Promise<void> {
  const a = await api<{ shards: Shard[] }>('GET', '/api/shards');
  if (!a.ok) return notice(shardsBox, 'bad', `Shards: ${a.body.error}`);
  $<HTMLTableElement>('shards').tBodies[0]?.replaceChildren(...a.body.shards.map(shardRow));
}

function shardRow(s: Shard): HTMLTableRowElement {
  const state = select([['active', 'active'], ['draining', 'draining (takes no new rooms)']], s.state);
  const cls = select(classOptions('(default)'), s.qos ?? '');
  const pool = numberInput(s.poolSize, '1');
  const save = el('button', { type: 'button', className: 'primary' }, 'Save');
  const tr = el('tr', {}, el('td', {}, String(s.id), s.down ? ' (down here)' : ''), el('td', {}, s.url), el('td', {}, field(null, state, 'state')), el('td', {}, field(null, cls, 'qos')), el('td', {}, field(null, pool, 'poolSize')), el('td', {}, save));
  tr.dataset.shard = String(s.id);
  save.addEventListener('click', () => {
    void (async () => {
      clearErrors(shardsBox);
      const body = { state: state.value, qos: cls.value || null, poolSize: optionalNumber(pool) ?? null };
      const a = await api<Shard>('PATCH', `/api/shards/${s.id}`, { body, ifMatch: quoted(s.revision) });
      if (!a.ok) return showFailure(shardsBox, tr, a, `Shard ${s.id}`, () => void loadShards());
      await loadShards();
      notice(shardsBox, 'good', `Shard ${s.id} saved (revision ${a.etag ?? '?'}).`);
    })();
  });
  return tr;
}

// ---- rooms' own classes
const roomName = $<HTMLInputElement>('room-name');
const roomClass = $<HTMLSelectElement>('room-class');
let looked: { room: string; etag: string | null } | null = null;

function refreshClassSelect(): void {
  const chosen = roomClass.value;
  roomClass.replaceChildren(...classOptions('(none: follow its shard)').map(([v, l]) => el('option', { value: v }, l)));
  roomClass.value = classNames.includes(chosen) ? chosen : '';
}

const roomKey = (): string => {
  const r = roomName.value.trim();
  return r.startsWith('#') || r.startsWith('&') ? r : `#${r}`;
};

async function lookUp(): Promise<void> {
  clearErrors(roomsBox);
  const room = roomKey();
  const a = await api<RoomView>('GET', `/api/rooms/${encodeURIComponent(room)}`);
  if (!a.ok) {
    looked = { room, etag: null };
    $('room-info').textContent = a.status === 404 ? `${room} has no entry yet: giving it a class creates one.` : a.body.error;
    return;
  }
  looked = { room, etag: a.etag };
  const v = a.body;
  roomClass.value = v.override ?? '';
  $('room-info').textContent = `${v.room}: shard ${v.shard ?? '- (not pinned yet)'}, class ${v.class}${v.override ? ' (its own)' : ''}, limit ${v.rate === null ? 'none' : `${v.rate} msg/s, burst ${v.burst}`}`;
}

async function applyRoom(room: string, cls: string | null, ifMatch: string | null): Promise<void> {
  clearErrors(roomsBox);
  const a = await api<RoomView>('PUT', `/api/rooms/${encodeURIComponent(room)}/qos`, { body: { class: cls }, ifMatch });
  if (!a.ok) return showFailure(roomsBox, $('room-form'), a, `Room ${room}`, () => void lookUp());
  looked = { room, etag: a.etag };
  notice(roomsBox, 'good', `${a.body.room}: class ${a.body.class}${a.body.override ? ' (its own)' : ''}, limit ${a.body.rate === null ? 'none' : `${a.body.rate} msg/s`}; every instance applies it within a second.`);
  void loadOverrides();
}

$('room-look').addEventListener('click', () => void lookUp());
$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = roomKey();
  void applyRoom(room, roomClass.value || null, looked?.room === room ? looked.etag : null);
});

/** The rooms that have a class of their own (every page of the room list; at most 200 shown). */
async function loadOverrides(): Promise<void> {
  const found: RoomView[] = [];
  let cursor: string | null = null;
  do {
    const a: Awaited<ReturnType<typeof api<{ rooms: RoomView[]; nextCursor: string | null }>>> = await api('GET', `/api/rooms?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    if (!a.ok) return notice(roomsBox, 'bad', `Rooms: ${a.body.error}`);
    for (const r of a.body.rooms) if (r.override !== null) found.push(r);
    cursor = a.body.nextCursor;
  } while (cursor !== null && found.length < 200);
  const rows = found.slice(0, 200).map((r) => {
    const clear = el('button', { type: 'button' }, 'Clear');
    clear.addEventListener('click', () => void applyRoom(r.room, null, `"${r.revision}"`));
    return el('tr', {}, el('td', {}, r.room), el('td', {}, r.class), el('td', {}, r.shard === null ? '-' : String(r.shard)), el('td', { className: 'num' }, r.rate === null ? 'none' : String(r.rate)), el('td', {}, clear));
  });
  $<HTMLTableElement>('overrides').tBodies[0]?.replaceChildren(...rows);
  $('overrides-count').textContent = found.length === 0 ? 'No room has a class of its own.' : `${found.length >= 200 ? 'The first 200' : found.length} rooms with a class of their own:`;
}

// ---- the cluster configuration
let configEtag: string | null = null;
async function loadConfig(): Promise<void> {
  const a = await api<Record<string, unknown>>('GET', '/api/config');
  const form = $<HTMLFormElement>('config-form');
  if (!a.ok) return notice(configBox, 'bad', `Configuration: ${a.body.error}`);
  configEtag = a.etag;
  clearErrors(configBox);
  const save = el('button', { type: 'submit', className: 'primary' }, 'Save configuration');
  const reload = el('button', { type: 'button' }, 'Discard changes');
  reload.addEventListener('click', () => void loadConfig());
  form.replaceChildren(...configForm(a.body), el('div', { className: 'actions' }, save, reload, el('span', { className: 'muted' }, `revision ${configEtag ?? '?'}`)));
}
$('config-form').addEventListener('submit', (e) => {
  e.preventDefault();
  void (async () => {
    clearErrors(configBox);
    const form = $<HTMLFormElement>('config-form');
    const read = readConfigForm(form);
    if (!('value' in read)) return showFailure(configBox, form, { status: 400, body: { error: read.error, statusCode: 400, field: read.field } }, 'The configuration', () => void loadConfig());
    const a = await api<Record<string, unknown>>('PUT', '/api/config', { body: read.value, ifMatch: configEtag ?? '"0"' });
    if (!a.ok) return showFailure(configBox, form, a, 'The configuration', () => void loadConfig());
    await loadConfig();
    notice(configBox, 'good', `Configuration saved (revision ${a.etag ?? '?'}); every instance applies it within a second.`);
  })();
});

showToken();
void Promise.all([loadClasses().then(refreshClassSelect), loadConfig()]).then(() => Promise.all([loadShards(), loadOverrides()]));
