import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';
import { Proxy } from '../harness/proxy.js';

/* The browser client in real Chromium against a real instance, chatting with a plain IRC client. */

let services: Services;
let server: ParleyServer;
let browser: Browser;
const clients: IrcClient[] = [];

before(async () => {
  services = await startServices();
  const prefix = uniqueName('web');
  const db = await services.postgres!.createDatabase(prefix);
  server = new ParleyServer(
    InstanceOptionsSchema.parse({ id: 'w1', prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db], logLevel: 'silent' }),
    pino({ level: 'silent' }),
  );
  await server.start();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  for (const c of clients) c.destroy();
  await browser?.close();
  await server?.close();
  await services?.stop();
});

async function login(nick: string, channel: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.wsPort}/`);
  await page.fill('#nick', nick);
  await page.fill('#channel', channel);
  await page.click('button[type=submit]');
  await page.waitForSelector(`#status:has-text("online as ${nick}")`);
  await page.waitForSelector(`#members li:has-text("${nick}")`);
  return page;
}

describe('browser client', () => {
  it('chats with an IRC client, shows history and the dashboard', async () => {
    const irc = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: server.tcpPort, nick: 'ircuser' });
    clients.push(irc);
    await irc.connect();
    await irc.request('JOIN #web');
    await irc.request('PRIVMSG #web :before the browser came');

    const page = await login('browser1', '#web');
    // History loaded on join.
    await page.waitForSelector('#messages li:has-text("before the browser came")');
    // Browser -> IRC.
    await page.fill('#text', 'hello from chromium');
    await page.click('#send button');
    const got = await seen(irc, (m) => m.command === 'PRIVMSG' && m.params[1] === 'hello from chromium');
    assert.equal(got.source?.split('!')[0], 'browser1');
    // The echo (stored) replaces the pending entry and carries the sequence number.
    const li = page.locator('#messages li', { hasText: 'hello from chromium' });
    await li.and(page.locator('[data-seq="2"]')).waitFor();
    assert.equal(await li.count(), 1);
    // IRC -> browser.
    await irc.request('PRIVMSG #web :hello browser');
    await page.waitForSelector('#messages li:has-text("hello browser")');

    // A malformed nick is refused with the server's reply, not a crash.
    const bad = await browser.newPage();
    await bad.goto(`http://127.0.0.1:${server.wsPort}/`);
    await bad.locator('#nick').evaluate((el: { removeAttribute(name: string): void }) => el.removeAttribute('pattern'));
    await bad.fill('#nick', 'ircuser');
    await bad.click('button[type=submit]');
    await bad.waitForSelector('#login-error:has-text("in use")');

    const dash = await browser.newPage();
    await dash.goto(`http://127.0.0.1:${server.wsPort}/dashboard.html`);
    await dash.waitForSelector('#rooms td:has-text("#web")');
    await dash.waitForSelector('#instances td:has-text("w1")');
  });

  it('reconnects and fetches what it missed from history, in order; shows text as text', async () => {
    const irc = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: server.tcpPort, nick: 'ircuser2' });
    clients.push(irc);
    await irc.connect();
    await irc.request('JOIN #gap');
    await irc.request('PRIVMSG #gap :first');

    // The page is loaded through a TCP proxy, so its WebSocket goes through it too: the test can
    // cut every connection, and hold new ones until it lets them through.
    const proxy = new Proxy(server.wsPort);
    await proxy.start();
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${proxy.port}/`);
      await page.fill('#nick', 'browser2');
      await page.fill('#channel', '#gap');
      await page.click('button[type=submit]');
      await page.waitForSelector('#messages li:has-text("first")');
      await irc.request('PRIVMSG #gap :second');
      await page.waitForSelector('#messages li:has-text("second")');

      const quit = irc.waitFor((m) => m.command === 'QUIT' && m.source?.split('!')[0] === 'browser2', 10_000);
      proxy.hold();
      proxy.cut();
      await quit;
      await page.waitForSelector('#status:has-text("reconnecting")');
      // Stored while the page has no session at all: it can only come back through CHATHISTORY.
      await irc.request('PRIVMSG #gap :third, while you were away');
      await irc.request('PRIVMSG #gap :<img src=x onerror="window.pwned=1"> fourth');
      proxy.release();

      await page.waitForSelector('#status:has-text("online as browser2")');
      await page.waitForSelector('#messages li:has-text("third, while you were away")');
      await page.waitForSelector('#messages li:has-text("fourth")');
      // Every message once, in sequence order.
      const seqs = await page.locator('#messages li[data-seq]').evaluateAll((els) => els.map((e) => Number((e as unknown as { dataset: Record<string, string> }).dataset['seq'])));
      assert.deepEqual(seqs, [1, 2, 3, 4]);
      // Markup from the network is shown as text: no element was created from it.
      assert.equal(await page.locator('#messages img').count(), 0);
      assert.equal(await page.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);
      await page.close();
    } finally {
      await proxy.close();
    }
  });
});

