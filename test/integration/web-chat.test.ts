import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';
import { Proxy } from '../harness/proxy.js';
import { CONFIG_APPLIED, logTap, type LogWatch } from '../harness/logs.js';

/*
 * The chat client in real Chromium, two nicks on two instances sharing etcd, Redis and
 * PostgreSQL: what an IRC user does (commands, DMs, actions, parts, kicks), what the network
 * does to them (a cut connection, a reload, refusals), history, and the layout at desktop and
 * phone width. Screenshots go to test-artifacts/web/ (ignored by git).
 */

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/web/', import.meta.url));
const BASE_CONFIG = { flood: { linesPerSecond: 0 } };

let services: Services;
let prefix: string;
let etcd: Etcd3;
const servers: Array<{ server: ParleyServer; logs: LogWatch }> = [];
let browser: Browser;
const clients: IrcClient[] = [];
const contexts: BrowserContext[] = [];

before(async () => {
  services = await startServices();
  prefix = uniqueName('webchat');
  const db = await services.postgres!.createDatabase(prefix);
  etcd = new Etcd3({ hosts: services.etcd!.endpoint });
  // Tests post a few hundred lines at once from one client.
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(BASE_CONFIG));
  for (const id of ['w1', 'w2']) {
    const { logger, watch } = logTap();
    const server = new ParleyServer(
      InstanceOptionsSchema.parse({ id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db] }),
      logger,
    );
    await server.start();
    servers.push({ server, logs: watch });
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  for (const s of servers) await s.server.close();
  etcd?.close();
  await services?.stop();
});

const url = (i: number): string => `http://127.0.0.1:${(servers[i] as { server: ParleyServer }).server.wsPort}/`;

/** A fresh browser profile (its own localStorage). */
async function newPage(viewport = { width: 1200, height: 760 }): Promise<Page> {
  const ctx = await browser.newContext({ viewport });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.on('pageerror', (err) => console.error('page error:', err));
  return page;
}

/**
 * Logs in from the form; with `account`, registers the nick as an account (`register`) or logs in
 * to it (`login`) — a guest's direct messages end with its connection, an account's do not.
 */
async function login(page: Page, target: string, nick: string, channels: string, account?: { password: string; mode: 'register' | 'login' }): Promise<void> {
  await page.goto(target);
  await page.fill('#nick', nick);
  await page.fill('#channel', channels);
  if (account) {
    await page.fill('#password', account.password);
    await page.click(account.mode === 'register' ? '#register' : '#connect');
  } else {
    await page.click('#login button[type=submit]');
  }
  await page.waitForSelector(`#status:has-text("online as ${nick}")`);
}

/** Types a line in the input and presses Enter. */
async function type(page: Page, line: string): Promise<void> {
  await page.fill('#text', line);
  await page.press('#text', 'Enter');
}

async function ircClient(i: number, nick: string): Promise<IrcClient> {
  const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: (servers[i] as { server: ParleyServer }).server.tcpPort, nick });
  clients.push(c);
  await c.connect();
  return c;
}

const sel = (page: Page, name: string): Promise<void> => page.click(`#nav .buffer:text-is("${name}")`);

/** data-seq of every message shown in the current buffer, in order. */
const seqs = (page: Page): Promise<number[]> =>
  page.locator('#messages li[data-seq]').evaluateAll((els) => els.map((e) => Number((e as unknown as { dataset: Record<string, string> }).dataset['seq'])));

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The text of the messages `c` receives that match `pred`, and a wait until they satisfy a condition. */
function collect(c: IrcClient, pred: (m: IrcMessage) => boolean): { lines: string[]; until(done: () => boolean, what: string): Promise<void> } {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  c.on('message', (m) => {
    if (!pred(m)) return;
    lines.push(m.params[1] ?? '');
    for (const w of waiters) w();
  });
  return {
    lines,
    until(done, what) {
      if (done()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`not received within 10 s: ${what}`));
        }, 10_000);
        const check = (): void => {
          if (!done()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
  };
}

/** Waits until exactly `n` elements match `selector`. */
async function count(page: Page, selector: string, n: number): Promise<void> {
  await page.waitForFunction(`document.querySelectorAll(${JSON.stringify(selector)}).length === ${n}`);
}

/** The number in the header's live total (waits for the first figure). */
async function totalShown(page: Page): Promise<number> {
  await page.waitForSelector('#total:has-text("messages")');
  return Number(((await page.textContent('#total')) ?? '').replace(/\D/g, ''));
}

async function setConfig(config: object): Promise<void> {
  const since = servers.map((s) => s.logs.mark());
  await etcd.put(`/${prefix}/config`).value(JSON.stringify(config));
  await Promise.all(servers.map((s, i) => s.logs.waitForMsg(CONFIG_APPLIED, { since: since[i], timeoutMs: 10_000 })));
}

describe('chat client', () => {
  it('two nicks on two instances: messages, /msg, /me, completion, /op, /kick, /part, text as text', async () => {
    // A plain IRC user in the channel sees exactly what the channel gets.
    const observer = await ircClient(0, 'observer');
    await observer.request('JOIN #chat');
    const inChannel: IrcMessage[] = [];
    observer.on('message', (m) => {
      if (m.command === 'PRIVMSG' && m.params[0] === '#chat') inChannel.push(m);
    });

    const alice = await newPage();
    const bob = await newPage();
    await login(alice, url(0), 'alice', '#chat');
    await login(bob, url(1), 'bob', '#chat');
    await alice.waitForSelector('#members li:has-text("bob")');
    await bob.waitForSelector('#members li:has-text("@observer")');

    await type(alice, 'hello bob');
    await bob.waitForSelector('#messages li.message:has-text("hello bob")');
    // Alice's own line is confirmed by the echo: it carries its sequence number.
    await alice.locator('#messages li.self[data-seq]', { hasText: 'hello bob' }).waitFor();

    // Markup from the network is text: no element is made from it.
    await type(bob, '<b>bold</b> <img src=x onerror="window.pwned=1"> & <script>window.pwned=2</script>');
    await alice.waitForSelector('#messages li:has-text("<img src=x")');
    assert.equal(await alice.locator('#messages img, #messages b, #messages script').count(), 0);
    assert.equal(await alice.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);

    // /msg opens a DM: it never reaches the channel.
    await type(alice, '/msg bob secret words');
    await bob.waitForSelector('#dms .buffer:text-is("alice")');
    await sel(bob, 'alice');
    await bob.waitForSelector('#messages li.message:has-text("secret words")');
    await alice.waitForSelector('#dms li.active .buffer:text-is("bob")');
    await alice.locator('#messages li.self[data-seq]', { hasText: 'secret words' }).waitFor();
    await sel(alice, '#chat');
    await sel(bob, '#chat');

    // /me is an action; an unknown command is refused locally; // sends a slash.
    await type(alice, '/me waves');
    const action = bob.locator('#messages li.action', { hasText: 'waves' });
    await action.waitFor();
    assert.equal(await action.locator('.nick').textContent(), '* alice');
    assert.doesNotMatch((await action.textContent()) ?? '', /\x01|ACTION/);
    await type(alice, '/frobnicate now');
    await alice.waitForSelector('#messages li.error:has-text("Unknown command /frobnicate")');
    await type(alice, '//shrug is not a command');
    await bob.waitForSelector('#messages li.message:has-text("/shrug is not a command")');

    // Tab completes a nick at the start of the line.
    await alice.fill('#text', 'ob');
    await alice.press('#text', 'Tab');
    assert.equal(await alice.inputValue('#text'), 'observer: ');
    await alice.fill('#text', '');

    // Modes follow: observer (first in the channel) makes bob an operator.
    await observer.request('MODE #chat +o bob');
    await alice.waitForSelector('#members li:has-text("@bob")');
    await alice.waitForSelector('#messages li.event:has-text("observer sets mode +o bob")');

    // A kicked user keeps the channel, with a line saying so; /join brings them back.
    await type(bob, '/kick alice enough');
    await alice.waitForSelector('#messages li.error:has-text("You were kicked from #chat by bob (enough)")');
    await alice.waitForSelector('#channels li.gone .buffer:text-is("#chat")');
    await type(alice, '/join #chat');
    await alice.waitForSelector('#channels li:not(.gone) .buffer:text-is("#chat")');
    await bob.waitForSelector('#messages li.event:has-text("alice joined")');

    // /part leaves: the buffer goes, the others see it.
    await type(alice, '/part');
    await bob.waitForSelector('#messages li.event:has-text("alice left")');
    await alice.waitForSelector('#channels .buffer:text-is("#chat")', { state: 'detached' });

    // The channel got what was said in it, and nothing else.
    await seen(observer, (m) => m.command === 'PART' && m.source?.startsWith('alice!') === true);
    const texts = inChannel.map((m) => m.params[1] ?? '');
    assert.ok(texts.includes('hello bob'), texts.join(' | '));
    assert.ok(texts.includes('\x01ACTION waves\x01'), texts.join(' | '));
    assert.ok(texts.includes('/shrug is not a command'), texts.join(' | '));
    assert.ok(!texts.some((t) => t.includes('secret') || t.includes('frobnicate') || t.startsWith('/msg')), texts.join(' | '));
  });

  it('a cut connection comes back with exactly what it missed, and sends what was typed meanwhile', async () => {
    const carol = await ircClient(0, 'carol');
    await carol.request('JOIN #gap');
    await carol.request('PRIVMSG #gap :m1');
    const proxy = new Proxy((servers[1] as { server: ParleyServer }).server.wsPort);
    await proxy.start();
    try {
      const dave = await newPage();
      await login(dave, `http://127.0.0.1:${proxy.port}/`, 'dave', '#gap');
      await dave.waitForSelector('#messages li:has-text("m1")');

      const quit = carol.waitFor((m) => m.command === 'QUIT' && m.source?.startsWith('dave!') === true, 10_000);
      proxy.hold();
      proxy.cut();
      await quit;
      await dave.waitForSelector('#status:has-text("reconnecting")');
      await type(dave, 'typed while away');
      await dave.waitForSelector('#messages li.queued:has-text("typed while away")');
      // Stored while dave has no session at all: only history can bring these back.
      for (let i = 2; i <= 6; i++) await carol.request(`PRIVMSG #gap :m${i}`);
      const delivered = seen(carol, (m) => m.command === 'PRIVMSG' && m.params[1] === 'typed while away', 15_000);
      proxy.release();

      await dave.waitForSelector('#status:has-text("online as dave")', { timeout: 15_000 });
      await dave.waitForSelector('#messages li:has-text("m6")');
      await dave.locator('#messages li.self[data-seq]', { hasText: 'typed while away' }).waitFor();
      await delivered;
      // Every message once, in order, nothing missing: m1..m6, then the queued one.
      assert.deepEqual(await seqs(dave), range(1, 7));
      assert.equal(await dave.locator('#messages li.queued, #messages li.pending, #messages li.failed').count(), 0);
    } finally {
      await proxy.close();
    }
  });

  it('a reload restores the nick, channels and DMs; a new browser gets its DMs back from TARGETS', async () => {
    const frank = await ircClient(1, 'frank');
    const watcher = await ircClient(1, 'watcher');
    await watcher.request('JOIN #r1');
    let erin = await newPage();
    await login(erin, url(0), 'erin', '#r1,#r2', { password: 'erin-secret-1', mode: 'register' });
    await erin.waitForSelector('#channels .buffer:text-is("#r2")');
    await type(erin, '/msg frank hi frank');
    await seen(frank, (m) => m.command === 'PRIVMSG' && m.params[1] === 'hi frank');
    await frank.request('PRIVMSG erin :hi erin');
    await erin.waitForSelector('#messages li:has-text("hi erin")');

    await erin.reload();
    await erin.waitForSelector('#status:has-text("online as erin")', { timeout: 15_000 });
    await erin.waitForSelector('#channels .buffer:text-is("#r1")');
    await erin.waitForSelector('#channels .buffer:text-is("#r2")');
    await erin.waitForSelector('#dms li.active .buffer:text-is("frank")');
    await erin.waitForSelector('#messages li:has-text("hi erin")');
    assert.deepEqual(await erin.locator('#messages li[data-seq] .text').allTextContents(), ['hi frank', 'hi erin']);
    await erin.waitForSelector('#members li:has-text("erin")', { state: 'detached' });

    // Another browser (no saved session): the DM comes back from CHATHISTORY TARGETS.
    const gone = seen(watcher, (m) => m.command === 'QUIT' && m.source?.startsWith('erin!') === true, 10_000);
    await erin.context().close();
    await gone;
    erin = await newPage();
    await login(erin, url(1), 'erin', '#r1', { password: 'erin-secret-1', mode: 'login' });
    await erin.waitForSelector('#dms .buffer:text-is("frank")');
    await sel(erin, 'frank');
    await erin.waitForSelector('#messages li:has-text("hi erin")');
    assert.deepEqual(await erin.locator('#messages li[data-seq] .text').allTextContents(), ['hi frank', 'hi erin']);
  });

  it('scrolling up loads older history, page by page, without duplicates', async () => {
    const gina = await ircClient(1, 'gina');
    await gina.request('JOIN #long');
    for (let i = 1; i <= 250; i++) gina.send(`PRIVMSG #long :line ${i}`);
    await seen(gina, (m) => m.command === 'PRIVMSG' && m.params[1] === 'line 250', 15_000);

    const hank = await newPage();
    await login(hank, url(0), 'hank', '#long');
    await hank.waitForSelector('#messages li[data-seq="250"]');
    assert.deepEqual(await seqs(hank), range(151, 250));
    for (const first of [51, 1]) {
      await hank.hover('#messages');
      await hank.mouse.wheel(0, -100_000);
      await hank.waitForSelector(`#messages li[data-seq="${first}"]`);
    }
    await hank.waitForSelector('#messages li.start:has-text("beginning of #long")');
    assert.deepEqual(await seqs(hank), range(1, 250));
  });

  it('refusals show their reason with a retry; long messages are split at the byte limit, never cut', async () => {
    const judy = await ircClient(1, 'judy');
    await judy.request('JOIN #closed');
    await judy.request('JOIN #ref');
    const ref = collect(judy, (m) => m.command === 'PRIVMSG' && m.params[0] === '#ref');
    const got = ref.lines;
    const ivan = await newPage();
    await login(ivan, url(0), 'ivan', '#ref');
    await ivan.waitForSelector('#members li:has-text("judy")');

    // A channel with +n refuses a non-member: the line is marked refused with the reason.
    await type(ivan, '/msg #closed knock knock');
    await ivan.waitForSelector('#messages li.failed:has-text("knock knock") .reason:has-text("404")');
    await sel(ivan, '#ref');

    // A raw line over the server's limit: the server's 417, shown as an error line.
    await type(ivan, `/quote PRIVMSG #ref :${'x'.repeat(600)}`);
    await ivan.waitForSelector('#messages li.error:has-text("too long")');

    // 1200 bytes of CJK: split at the byte limit, every piece stored, nothing lost.
    const cjk = '漢字'.repeat(200);
    await ivan.fill('#text', cjk);
    const hint = (await ivan.locator('#split-hint').textContent()) ?? '';
    const parts = Number(/sent as (\d+) messages/.exec(hint)?.[1]);
    assert.ok(parts >= 3, hint);
    await ivan.press('#text', 'Enter');
    await count(ivan, '#messages li.self[data-seq]', parts);
    await ref.until(() => got.join('') === cjk, `the CJK text, got ${got.join('').length} chars`);
    for (const line of got) assert.ok(Buffer.byteLength(`:ivan!~ivan@127.0.0.1 PRIVMSG #ref :${line}\r\n`) <= 512);

    // The shard's backlog limit at 1: a burst of pieces is partly refused with RATE_LIMITED.
    const words = Array.from({ length: 12 }, (_, i) => `part${i}-${'y'.repeat(300)}`);
    await setConfig({ ...BASE_CONFIG, limits: { storeBacklog: 1 } });
    try {
      // Twelve words that fit one per line: the split falls between them.
      await type(ivan, words.join(' '));
      await ivan.waitForSelector('#messages li.failed .reason:has-text("RATE_LIMITED")');
      assert.match((await ivan.locator('#messages li.failed .reason').first().textContent()) ?? '', /retry after 1\.0 s/);
    } finally {
      await setConfig(BASE_CONFIG);
    }
    await count(ivan, '#messages li.pending', 0);
    const refused = await ivan.locator('#messages li.failed', { hasText: 'part' }).count();
    assert.ok(refused >= 1);
    // Retry sends them again; the echoes confirm them.
    for (let i = 0; i < refused; i++) await ivan.locator('#messages li.failed', { hasText: 'part' }).first().locator('button.retry').click();
    await count(ivan, '#messages li.failed, #messages li.pending', 0);
    for (const w of words) await ref.until(() => got.includes(w), w.slice(0, 6));
    assert.equal(got.filter((t) => t.startsWith('part')).length, 12);
  });

  it('layout: desktop and phone width, long words wrap, mentions and unread counts, the live total', async () => {
    const leo = await ircClient(1, 'leo');
    await leo.request('JOIN #layout');
    await leo.request('TOPIC #layout :Parley layout check — topics, actions, mentions and very long words');
    const kate = await newPage();
    await login(kate, url(0), 'kate', '#layout');
    await kate.waitForSelector('#members li:has-text("@leo")');
    const total0 = await totalShown(kate);
    await leo.request('PRIVMSG #layout :Welcome! Docs at https://example.org/parley and the dashboard is one click away.');
    await leo.request('PRIVMSG #layout :\x01ACTION pours coffee\x01');
    await leo.request(`PRIVMSG #layout :${'unbroken'.repeat(40)}`);
    await leo.request('PRIVMSG #layout :kate: can you check the phone layout?');
    await type(kate, 'On it — resizing now.');
    await kate.waitForSelector('#messages li.mention:has-text("kate: can you")');
    await kate.locator('#messages li.self[data-seq]', { hasText: 'On it' }).waitFor();
    // A DM while looking at the channel: counted as unread and as a mention, in the title too.
    await leo.request('PRIVMSG kate :psst, the build is green');
    await kate.waitForSelector('#dms li.has-mention .badge.mention:text-is("1")');
    assert.match(await kate.title(), /^\(1\) \[1\] #layout · Parley$/);
    // The total of stored messages grows as messages are stored (fetched every 2 s).
    await kate.waitForFunction(`Number(document.getElementById('total').textContent.replace(/\\D/g, '')) >= ${total0 + 5}`, undefined, { timeout: 10_000 });

    const noOverflow = async (): Promise<void> => {
      // Evaluated in the page (a string: this file is compiled without the DOM types).
      const o = (await kate.evaluate(`(() => {
        const box = document.getElementById('messages');
        const send = document.querySelector('#send button').getBoundingClientRect();
        return { page: document.documentElement.scrollWidth - window.innerWidth, box: box.scrollWidth - box.clientWidth, sendRight: send.right, width: window.innerWidth };
      })()`)) as { page: number; box: number; sendRight: number; width: number };
      assert.ok(o.page <= 0 && o.box <= 0 && o.sendRight <= o.width, JSON.stringify(o));
    };
    await noOverflow();
    assert.equal(await kate.isVisible('#nav'), true);
    assert.equal(await kate.isVisible('#members-panel'), true);
    await kate.screenshot({ path: path.join(ARTIFACTS, 'chat-desktop.png') });

    await kate.setViewportSize({ width: 390, height: 760 });
    await noOverflow();
    assert.equal(await kate.isVisible('#nav'), false);
    assert.equal(await kate.isVisible('#members-panel'), false);
    await kate.screenshot({ path: path.join(ARTIFACTS, 'chat-phone.png') });
    await kate.click('#toggle-nav');
    await kate.waitForSelector('#nav', { state: 'visible' });
    await kate.screenshot({ path: path.join(ARTIFACTS, 'chat-phone-buffers.png') });
    // Choosing a buffer closes the panel.
    await sel(kate, 'leo');
    await kate.waitForSelector('#nav', { state: 'hidden' });
    await kate.waitForSelector('#messages li:has-text("psst")');
    assert.match(await kate.title(), /^leo · Parley$/);
    // Keyboard: Alt+Up goes back to the channel, Ctrl+K jumps by name.
    await kate.press('#text', 'Alt+ArrowUp');
    await kate.waitForSelector('#title:text-is("#layout")');
    await kate.press('#text', 'Control+k');
    await kate.fill('#switch-input', 'le');
    await kate.waitForSelector('#switch-list button.first:text-is("leo")');
    await kate.press('#switch-input', 'Enter');
    await kate.waitForSelector('#title:text-is("leo")');
  });
});

