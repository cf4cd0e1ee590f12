import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { IrcClient } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';

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
});
