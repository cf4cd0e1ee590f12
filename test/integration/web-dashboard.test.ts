import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { chromium, type Browser, type Page } from 'playwright-core';
import { IrcClient } from '@parley/client';
import type { IrcMessage } from '@parley/protocol';
import { etcdKeys } from '@parley/contracts';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { RedisQosCounters } from '../../packages/server/src/qos/counters.js';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { logTap, type LogWatch } from '../harness/logs.js';

/*
 * The dashboard, the configuration page and the static files, in real Chromium against two real
 * instances (etcd, Redis, PostgreSQL from the harness). Screenshots go to test-artifacts/web/.
 */

/** What the page functions below see (the tests typecheck without the DOM library). */
interface Elem {
  textContent: string | null;
  value?: string;
  clientHeight?: number;
}
interface PageScope {
  parleyDashboard: { frames: number[]; ticks: number; rooms: number };
  document: { querySelector(s: string): Elem | null };
}

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/web/', import.meta.url));
const TOKEN = 'dashboard-test-token';

let services: Services;
let prefix: string;
let tmp: string;
let etcd: Etcd3;
let redis: Redis;
let browser: Browser;
const servers: Array<{ server: ParleyServer; logs: LogWatch }> = [];
const clients: IrcClient[] = [];

const srv = (i: number): ParleyServer => (servers[i] as { server: ParleyServer }).server;
const logsOf = (i: number): LogWatch => (servers[i] as { logs: LogWatch }).logs;
const url = (i: number, p: string): string => `http://127.0.0.1:${srv(i).wsPort}${p}`;

async function call(method: string, p: string, body?: unknown): Promise<{ status: number; body: unknown; etag: string | null }> {
  const res = await fetch(url(0, p), {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null, etag: res.headers.get('etag') };
}

before(async () => {
  services = await startServices();
  prefix = uniqueName('dash');
  const db = await services.postgres!.createDatabase(prefix);
  tmp = mkdtempSync(path.join(os.tmpdir(), 'parley-dash-'));
  const tokenFile = path.join(tmp, 'admin-token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  for (const id of ['d1', 'd2']) {
    const { logger, watch } = logTap('info');
    const server = new ParleyServer(
      InstanceOptionsSchema.parse({ id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db], adminTokenFile: tokenFile }),
      logger,
    );
    servers.push({ server, logs: watch });
    await server.start();
  }
  etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  redis = new Redis(services.redis!.url);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  for (const c of clients) c.destroy();
  await browser?.close();
  for (const s of servers) await s.server.close();
  redis?.disconnect();
  etcd?.close();
  await services?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function ircOn(i: number, nick: string, rooms: string[]): Promise<IrcClient> {
  const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: srv(i).tcpPort, nick });
  clients.push(c);
  await c.connect();
  for (const r of rooms) await c.request(`JOIN ${r}`);
  return c;
}

/** Sends `n` messages to `room` at once; resolves with how many were stored and refused (RATE_LIMITED). */
function burst(c: IrcClient, room: string, n: number, tag: string): Promise<{ stored: number; refused: number }> {
  return new Promise((resolve, reject) => {
    const t = { stored: 0, refused: 0 };
    const timer = setTimeout(() => reject(new Error(`${tag}: ${n} sent, ${t.stored} stored, ${t.refused} refused`)), 10_000);
    const on = (m: IrcMessage): void => {
      if (m.command === 'PRIVMSG' && m.params[0] === room && m.params[1]?.startsWith(tag) && m.source?.startsWith(`${c.nick}!`)) t.stored++;
      else if (m.command === 'FAIL' && m.params[1] === 'RATE_LIMITED' && m.params[2] === room) t.refused++;
      else return;
      if (t.stored + t.refused === n) {
        clearTimeout(timer);
        c.off('message', on);
        resolve(t);
      }
    };
    c.on('message', on);
    for (let k = 0; k < n; k++) c.send(`PRIVMSG ${room} :${tag} ${k}`);
  });
}

/** The number in a cell of the dashboard's room table, once it is at least `min`. */
async function cellAtLeast(page: Page, room: string, cell: string, min: number): Promise<number> {
  const sel = `#rooms tr[data-key="${room}"] td.${cell}`;
  const h = await page.waitForFunction(
    ([s, least]) => {
      const t = (globalThis as unknown as PageScope).document.querySelector(s)?.textContent;
      const n = t ? Number(t) : Number.NaN;
      return n >= least ? n : false;
    },
    [sel, min] as const,
    { timeout: 10_000 },
  );
  return (await h.jsonValue()) as number;
}

async function openDashboard(i: number): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(url(i, '/dashboard'));
  await page.waitForSelector('#status:has-text("live")');
  return page;
}

describe('static files', () => {
  it('are compressed as Accept-Encoding allows, with a content ETag and 304, and their sizes logged at start', async () => {
    const plain = await fetch(url(0, '/dashboard.js'), { headers: { 'accept-encoding': 'identity' } });
    const body = Buffer.from(await plain.arrayBuffer());
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.match(plain.headers.get('content-type') ?? '', /text\/javascript/);
    assert.equal(plain.headers.get('cache-control'), 'no-cache');
    assert.equal(plain.headers.get('vary'), 'Accept-Encoding');
    const etag = plain.headers.get('etag');
    assert.match(etag ?? '', /^"[\w-]{22}"$/);

    // fetch() decodes what it gets: node's http client hands over the bytes as sent.
    const raw = (p: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }> =>
      new Promise((resolve, reject) => {
        http.get(url(0, p), { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
          res.on('error', reject);
        }).on('error', reject);
      });
    const br = await raw('/dashboard.js', { 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(br.headers.vary, 'Accept-Encoding');
    assert.equal(br.headers.etag, `${etag?.slice(0, -1)}-br"`);
    assert.ok(brotliDecompressSync(br.bytes).equals(body));
    assert.ok(br.bytes.length < body.length / 2, `${br.bytes.length} of ${body.length}`);
    const gz = await raw('/dashboard.js', { 'accept-encoding': 'gzip;q=1, br;q=0' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.ok(gunzipSync(gz.bytes).equals(body));
    const none = await raw('/dashboard.js', {});
    assert.equal(none.headers['content-encoding'], undefined);
    assert.ok(none.bytes.equals(body));

    // Revalidation: the same content in any encoding is not sent again.
    for (const inm of [etag ?? '', br.headers.etag ?? '', `W/${etag}`, `"other", ${gz.headers.etag}`]) {
      const r = await fetch(url(0, '/dashboard.js'), { headers: { 'if-none-match': inm, 'accept-encoding': 'br' } });
      assert.equal(r.status, 304, inm);
      assert.equal((await r.arrayBuffer()).byteLength, 0);
    }
    assert.equal((await fetch(url(0, '/dashboard.js'), { headers: { 'if-none-match': '"stale"' } })).status, 200);

    for (const [p, marker] of [['/dashboard', 'src="/dashboard.js"'], ['/config', 'src="/config.js"'], ['/', 'src="/app.js"']] as const) {
      const r = await fetch(url(1, p));
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type') ?? '', /text\/html/);
      assert.ok((await r.text()).includes(marker), p);
    }

    const logged = logsOf(0).entries.find((e) => e.msg === 'web files') as { files?: Array<{ name: string; bytes: number; gzip: number; br: number }> } | undefined;
    assert.ok(logged?.files, 'the sizes are logged once at start');
    const js = logged.files.find((f) => f.name === 'dashboard.js');
    assert.ok(js && js.br < js.gzip && js.gzip < js.bytes, JSON.stringify(js));
    console.log(`web files: ${logged.files.map((f) => `${f.name} ${f.bytes} B (gzip ${f.gzip}, br ${f.br})`).join('; ')}`);
  });
});

describe('dashboard', () => {
  it('shows every instance from the registry, a room counting up under load, and refusals over its QoS limit', async () => {
    const page = await openDashboard(0);
    // Both instances, each with its own record (the page is served by d1).
    await page.waitForSelector('#instances tr[data-key="d1"]');
    await page.waitForSelector('#instances tr[data-key="d2"]');

    const irc = await ircOn(1, 'loader', ['#dl1', '#dl2', '#dl3']);
    await page.fill('#q', '#dl1');
    for (const r of ['#dl1', '#dl2', '#dl3']) assert.deepEqual(await burst(irc, r, 5, 'warm'), { stored: 5, refused: 0 });
    const first = await cellAtLeast(page, '#dl1', 'accepted', 5);
    assert.ok(first >= 5);
    await burst(irc, '#dl1', 7, 'more');
    const later = await cellAtLeast(page, '#dl1', 'accepted', first + 7);
    assert.ok(later > first, `${first} → ${later}`);

    // A class with a low rate, given to one room through the API; the sending instance applies it.
    const mark = logsOf(1).mark();
    assert.equal((await call('PUT', '/api/qos/classes/trickle', { rate: 1, burst: 2 })).status, 201);
    assert.equal((await call('PUT', `/api/rooms/${encodeURIComponent('#dlim')}/qos`, { class: 'trickle' })).status, 201);
    await logsOf(1).waitFor((e) => e.msg === 'room qos changed' && e.room === '#dlim' && e.class === 'trickle', 'room qos changed', { since: mark });
    await irc.request('JOIN #dlim');
    const sent = await burst(irc, '#dlim', 12, 'flood');
    assert.ok(sent.refused > 0, JSON.stringify(sent));
    await page.fill('#q', '#dlim');
    const refused = await cellAtLeast(page, '#dlim', 'refused-qos', sent.refused);
    assert.equal(refused, sent.refused);
    assert.equal(await page.textContent('#rooms tr[data-key="#dlim"] td.accepted'), String(sent.stored));
    assert.match((await page.textContent('#rooms tr[data-key="#dlim"] td.limit')) ?? '', /^1 \(burst 2\)$/);
    assert.match((await page.textContent('#rooms tr[data-key="#dlim"] td.cls')) ?? '', /trickle \(own\)/);
    // The cluster's refusals appear in the summary.
    const total = Number(await page.textContent('#c-refused-total'));
    assert.ok(total >= sent.refused, String(total));
    await page.close();
  });

  it('renders 1000 rooms and reports the time of an update', async () => {
    const keys = etcdKeys(prefix);
    // A second shard entry (the same database; no message goes to it) and a second class, for groups.
    assert.equal((await call('PUT', '/api/qos/classes/gold', { rate: 50, burst: 100, description: 'paying rooms' })).status, 201);
    assert.ok([200, 201].includes((await call('PUT', '/api/shards/1', { url: `${(await etcdShard0Url())}`, qos: 'gold' })).status));
    const N = 1000;
    const name = (i: number): string => `#room${String(i).padStart(4, '0')}`;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) => i + k).map((j) => etcd.put(keys.room(name(j))).value(JSON.stringify({ shard: j % 2, ...(j % 7 === 0 ? { qos: 'trickle' } : {}) }))),
      );
    }
    const counters = new RedisQosCounters(redis, prefix, { flushMs: 60_000 });
    // A skewed load: a few hot rooms, a long tail, some refusing.
    const round = (r: number): void => {
      for (let j = 0; j < N; j++) {
        const hot = j % 97 === 0 ? 400 : j % 13 === 0 ? 40 : j % 3 === 0 ? 2 : 0;
        if (hot) counters.add(name(j), j % 2, 'accepted', hot + r);
        if (j % 7 === 0) counters.add(name(j), j % 2, 'refusedQos', 3 + (j % 5));
      }
    };
    round(0);
    await counters.flush();

    const page = await openDashboard(1);
    await page.waitForFunction((n) => (globalThis as unknown as PageScope).parleyDashboard.rooms >= n, N, { timeout: 15_000 });
    // Each round changes the counters of a third of the rooms; the page must draw the next ticks.
    for (let r = 1; r <= 6; r++) {
      round(r);
      await counters.flush();
      const ticks = await page.evaluate(() => (globalThis as unknown as PageScope).parleyDashboard.ticks);
      await page.waitForFunction((t) => (globalThis as unknown as PageScope).parleyDashboard.ticks >= t + 1, ticks, { timeout: 5000 });
    }
    await counters.close();
    const frames = await page.evaluate(() => (globalThis as unknown as PageScope).parleyDashboard.frames.slice());
    assert.ok(frames.length >= 6, `${frames.length} updates measured`);
    const sorted = [...frames].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const max = sorted.at(-1) ?? 0;
    console.log(`dashboard update at ${await page.evaluate(() => (globalThis as unknown as PageScope).parleyDashboard.rooms)} rooms: median ${median.toFixed(1)} ms, max ${max.toFixed(1)} ms over ${frames.length} updates`);
    assert.ok(median < 50, `median update ${median} ms`);
    // The busiest room is first in the table, and the heat map is as tall as 1000 cells need.
    assert.equal(await page.textContent('#rooms tbody tr:first-child td.room'), name(0));
    const h = await page.evaluate(() => (globalThis as unknown as PageScope).document.querySelector('#grid')?.clientHeight ?? 0);
    assert.ok(h > 200, `canvas ${h}px`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-1000.png'), fullPage: true });
    // The first screen, for the README (docs/img/dashboard.png).
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), clip: { x: 0, y: 0, width: 1400, height: 740 } });
    // Grouped by shard, filtered by class.
    await page.selectOption('#f-group', 'shard');
    await page.selectOption('#f-class', 'trickle');
    // The filter applies on the page's next render: wait for the count to drop below the total.
    await page.waitForFunction((total) => {
      const text = (globalThis as unknown as PageScope).document.querySelector('#shown')?.textContent ?? '';
      const m = /^(\d+) of/.exec(text);
      return m !== null && Number(m[1]) < total;
    }, N);
    const shown = (await page.textContent('#shown')) ?? '';
    assert.match(shown, /^(\d+) of/);
    const n = Number(/^(\d+)/.exec(shown)?.[1]);
    assert.ok(n >= Math.floor(N / 7) && n <= Math.ceil(N / 7) + 2, shown);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-grouped.png'), fullPage: false });
    await page.close();
  });
});

/** The URL of shard 0 as registered (with its password, if any, as the test database has none). */
async function etcdShard0Url(): Promise<string> {
  const v = JSON.parse((await etcd.get(etcdKeys(prefix).shard(0)).string()) ?? '{}') as { url?: string };
  assert.ok(v.url);
  return v.url;
}

describe('configuration page', () => {
  async function openConfig(i: number): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1300, height: 1100 } });
    await page.goto(url(i, '/config'));
    await page.fill('#token', TOKEN);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('#status:has-text("token set")');
    await page.waitForSelector('#classes tr[data-class=""]');
    await page.waitForSelector('#config-form fieldset');
    return page;
  }

  it('changes a limit and the refusals follow, on every instance; a bad value is shown at its field', async () => {
    const page = await openConfig(0);
    // A new class with a low limit, created on the page.
    const row = page.locator('#classes tr[data-class=""]');
    await row.locator('[data-field="name"]').fill('cfgslow');
    await row.locator('[data-field="rate"]').fill('1');
    await row.locator('[data-field="burst"]').fill('0');
    await row.locator('button', { hasText: 'Create' }).click();
    // burst 0 is refused by the API, and the page says so next to the field.
    await page.waitForSelector('#classes tr[data-class=""] input.invalid[data-field="burst"]');
    assert.match((await row.locator('.field-error').nth(2).textContent()) ?? '', />=1|too small/i);
    await row.locator('[data-field="burst"]').fill('1');
    await row.locator('button', { hasText: 'Create' }).click();
    await page.waitForSelector('#classes tr[data-class="cfgslow"]');

    const marks = [logsOf(0).mark(), logsOf(1).mark()];
    await page.fill('#room-name', '#cfgroom');
    await page.selectOption('#room-class', 'cfgslow');
    await page.click('#room-form button[type=submit]');
    await page.waitForSelector('#rooms-box .notice.good');
    // Both instances apply it (it is in etcd): the one that served the page and the other.
    await Promise.all([0, 1].map((i) => logsOf(i).waitFor((e) => e.msg === 'room qos changed' && e.room === '#cfgroom' && e.class === 'cfgslow', 'room qos changed', { since: marks[i] })));
    const irc = await ircOn(1, 'cfguser', ['#cfgroom']);
    const slow = await burst(irc, '#cfgroom', 8, 'slow');
    assert.ok(slow.refused > 0, JSON.stringify(slow));

    // The limit raised on the page: the other instance applies it, and nothing is refused.
    const mark = logsOf(1).mark();
    const cls = page.locator('#classes tr[data-class="cfgslow"]');
    await cls.locator('[data-field="rate"]').fill('1000');
    await cls.locator('[data-field="burst"]').fill('1000');
    await cls.locator('button', { hasText: 'Save' }).click();
    await page.waitForSelector('#classes-box .notice.good:has-text("cfgslow saved")');
    await logsOf(1).waitFor((e) => e.msg === 'qos class changed' && e.class === 'cfgslow' && e.rate === 1000, 'qos class changed', { since: mark });
    assert.deepEqual(await burst(irc, '#cfgroom', 8, 'fast'), { stored: 8, refused: 0 });

    // The cluster configuration: a value out of range is shown at its field, a good one saved.
    await page.fill('#config-form [data-field="limits.lineBytes"]', '10');
    await page.click('#config-form button[type=submit]');
    await page.waitForSelector('#config-form input.invalid[data-field="limits.lineBytes"]');
    await page.fill('#config-form [data-field="limits.lineBytes"]', '512');
    await page.fill('#config-form [data-field="flood.burst"]', '300');
    await page.click('#config-form button[type=submit]');
    await page.waitForSelector('#config-box .notice.good');
    const stored = (await call('GET', '/api/config')).body as { flood: { burst: number } };
    assert.equal(stored.flood.burst, 300);
    await page.close();
  });

  it('shows a stale edit (412) with a reload', async () => {
    const page = await openConfig(1);
    await page.waitForSelector('#classes tr[data-class="cfgslow"]');
    // Someone else changes the class after the page read it.
    assert.equal((await call('PUT', '/api/qos/classes/cfgslow', { rate: 7, burst: 7 })).status, 200);
    const row = page.locator('#classes tr[data-class="cfgslow"]');
    await row.locator('[data-field="rate"]').fill('2');
    await row.locator('button', { hasText: 'Save' }).click();
    const stale = page.locator('#classes-box .notice.bad');
    await stale.waitFor();
    assert.match((await stale.textContent()) ?? '', /changed by someone else/);
    // Nothing was overwritten.
    assert.equal(((await call('GET', '/api/qos/classes/cfgslow')).body as { rate: number }).rate, 7);
    await page.screenshot({ path: path.join(ARTIFACTS, 'config.png'), fullPage: true });
    await stale.locator('button.reload').click();
    await page.waitForFunction(() => (globalThis as unknown as PageScope).document.querySelector('#classes tr[data-class="cfgslow"] [data-field="rate"]')?.value === '7');
    await page.close();
  });
});

describe('live feed', () => {
  it('streams rooms and ticks to a plain HTTP client, and ends the stream when its instance shuts down', async () => {
    const res = await fetch(url(1, '/api/live'), { headers: { accept: 'text/event-stream' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const dec = new TextDecoder();
    let text = '';
    // The stream starts with the room list and a full tick.
    while (!/event: tick\ndata: .*\n\n/.test(text)) {
      const { value, done } = await reader.read();
      assert.equal(done, false, `stream ended early: ${text.slice(0, 300)}`);
      text += dec.decode(value, { stream: true });
    }
    assert.match(text, /^retry: 2000\n\n/);
    const rooms = JSON.parse(/event: rooms\ndata: (.*)\n\n/.exec(text)?.[1] ?? 'null') as { rooms: Array<{ room: string }> };
    assert.ok(rooms.rooms.some((r) => r.room === '#room0999'));
    const tick = JSON.parse(/event: tick\ndata: (.*)\n\n/.exec(text)?.[1] ?? 'null') as { full: boolean; instances: Array<{ id: string; stats?: unknown }> };
    assert.equal(tick.full, true);
    assert.deepEqual(tick.instances.map((i) => i.id), ['d1', 'd2']);
    assert.ok(tick.instances.every((i) => i.stats !== undefined));
    // Shutdown ends the stream (the server does not wait for it).
    await srv(1).close();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
  });
});
