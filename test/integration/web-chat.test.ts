import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';
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

async function login(page: Page, target: string, nick: string, channels: string): Promise<void> {
  await page.goto(target);
  await page.fill('#nick', nick);
  await page.fill('#channel', channels);
  await page.click('#login button[type=submit]');
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
});
