import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient, type AccountAuth } from '@parley/client';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { pino } from 'pino';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { seen } from '../harness/irc.js';

/*
 * Accounts in the chat client, in real Chromium against two instances sharing etcd, Redis and
 * PostgreSQL (the account store lives on the shards): registering from the login form, DMs
 * between accounts, a reload that logs in again by SASL before CAP END and gets the DMs back,
 * refusals said next to the password field, the password kept in sessionStorage and never in
 * localStorage nor in the input history, account-notify in the member list, and a guest who
 * takes a logged-out account's nick reading none of its DMs.
 */

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/web/', import.meta.url));

let services: Services;
const servers: ParleyServer[] = [];
let browser: Browser;
const clients: IrcClient[] = [];
const contexts: BrowserContext[] = [];

before(async () => {
  services = await startServices();
  const prefix = uniqueName('webacct');
  const db = await services.postgres!.createDatabase(prefix);
  for (const id of ['wa1', 'wa2']) {
    const server = new ParleyServer(
      InstanceOptionsSchema.parse({ id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg: [db] }),
      pino({ level: 'silent' }),
    );
    await server.start();
    servers.push(server);
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
  for (const s of servers) await s.close();
  await services?.stop();
});

const url = (i: number): string => `http://127.0.0.1:${(servers[i] as ParleyServer).wsPort}/`;

async function newPage(ctx?: BrowserContext): Promise<Page> {
  let context = ctx;
  if (context === undefined) {
    context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    contexts.push(context);
  }
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err));
  return page;
}

/** Fills the login form and presses Connect / Log in, or Register. */
async function submit(page: Page, nick: string, password: string, channels: string, button: 'connect' | 'register'): Promise<void> {
  await page.fill('#nick', nick);
  await page.fill('#password', password);
  await page.fill('#channel', channels);
  await page.click(`#${button}`);
}

async function type(page: Page, line: string): Promise<void> {
  await page.fill('#text', line);
  await page.press('#text', 'Enter');
}

async function ircClient(i: number, nick: string, auth?: AccountAuth): Promise<IrcClient> {
  const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: (servers[i] as ParleyServer).tcpPort, nick, ...(auth ? { auth } : {}) });
  clients.push(c);
  await c.connect();
  return c;
}

const sel = (page: Page, name: string): Promise<void> => page.click(`#nav .buffer:text-is("${name}")`);
const dmTexts = (page: Page): Promise<string[]> => page.locator('#messages li[data-seq] .text').allTextContents();
const quitOf = (nick: string) => (m: IrcMessage): boolean => m.command === 'QUIT' && m.source?.startsWith(`${nick}!`) === true;
/** What the page keeps in localStorage and sessionStorage, as JSON text. */
const storage = (page: Page): Promise<{ local: string; session: string }> =>
  page.evaluate('({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }) })');

/** Waits for `selector`; on a timeout the error says what the page shows. */
async function shown(page: Page, selector: string, timeout = 10_000): Promise<void> {
  try {
    await page.waitForSelector(selector, { timeout });
  } catch (err) {
    const view = await page.evaluate('document.body.innerText').catch(() => '(page gone)');
    throw new Error(`${selector} not shown within ${timeout} ms; the page shows:\n${String(view)}`);
  }
}

describe('accounts in the chat client', () => {
  it('registers from the page; DMs between accounts; a reload logs in again by SASL and the DMs come back', async () => {
    const PASSWORD = 'alice-secret-1';
    const bob = await ircClient(1, 'bob', { mode: 'register', account: 'bob', password: 'bob-secret-1' });
    assert.equal(bob.account, 'bob');
    await bob.request('JOIN #acct');

    let alice = await newPage();
    await alice.goto(url(0));
    await submit(alice, 'alice', PASSWORD, '#acct', 'register');
    await shown(alice, '#account:text-is("logged in as alice")');
    await shown(alice, '#status:has-text("online as alice")');
    assert.equal(await alice.isVisible('#logout'), true);

    // WHOX on joining, then account-notify: the member list says who is logged in.
    await shown(alice, '#members button[title="Message bob (logged in as bob)"]');
    const gus = await ircClient(0, 'gus');
    await gus.request('JOIN #acct');
    await shown(alice, '#members button[title="Message gus"]');
    gus.send('PRIVMSG NickServ :REGISTER gus-secret-1');
    await shown(alice, '#members button[title="Message gus (logged in as gus)"]');

    await type(alice, '/msg bob hello bob from alice');
    await seen(bob, (m) => m.command === 'PRIVMSG' && m.params[1] === 'hello bob from alice' && m.tags['account'] === 'alice');
    await bob.request('PRIVMSG alice :hi alice from bob');
    await shown(alice, '#messages li:has-text("hi alice from bob")');

    // A line to NickServ carries a password: shown masked, never recalled with ↑, never stored.
    await type(alice, `/msg NickServ IDENTIFY alice ${PASSWORD}`);
    await shown(alice, '#messages li.notice:has-text("already logged in as alice")');
    await shown(alice, '#messages li.info:has-text("→ NickServ: IDENTIFY ••••••")');
    await alice.press('#text', 'ArrowUp');
    assert.equal(await alice.inputValue('#text'), '/msg bob hello bob from alice');
    await alice.fill('#text', '');
    assert.ok(!(await alice.locator('body').innerText()).includes(PASSWORD));
    const kept = await storage(alice);
    assert.ok(!kept.local.includes(PASSWORD), 'the password is not in localStorage');
    assert.ok(kept.session.includes(PASSWORD), 'the password is in sessionStorage, for reloads');

    // A reload logs in again (SASL before CAP END): the conversation is the account's, so it is back.
    await alice.reload();
    await shown(alice, '#account:text-is("logged in as alice")', 15_000);
    await sel(alice, 'bob');
    await shown(alice, '#messages li:has-text("hi alice from bob")');
    assert.deepEqual(await dmTexts(alice), ['hello bob from alice', 'hi alice from bob']);
    const whois = await bob.request('WHOIS alice');
    assert.ok(whois.some((m) => m.command === '330' && m.params[2] === 'alice'), whois.map((m) => m.command).join(' '));

    // A new tab of the same browser has the session but not the password: it asks for it.
    const gone = seen(bob, quitOf('alice'), 10_000);
    const ctx = alice.context();
    await alice.close();
    await gone;
    const tab = await newPage(ctx);
    await tab.goto(url(0)); // the same origin: the same localStorage
    await shown(tab, '#password-error:has-text("Type the password of alice")');
    assert.equal(await tab.inputValue('#nick'), 'alice');
    await tab.close();

    // Another browser (nothing stored): log in, and TARGETS + LATEST bring the DM back.
    alice = await newPage();
    await alice.goto(url(1));
    await submit(alice, 'alice', PASSWORD, '', 'connect');
    await shown(alice, '#account:text-is("logged in as alice")');
    await shown(alice, '#dms .buffer:text-is("bob")');
    await sel(alice, 'bob');
    await shown(alice, '#messages li:has-text("hi alice from bob")');
    assert.deepEqual(await dmTexts(alice), ['hello bob from alice', 'hi alice from bob']);
  });

  it('a wrong password, an existing account and a weak password are said next to the password field', async () => {
    const carol = await ircClient(0, 'carol', { mode: 'register', account: 'carol', password: 'carol-secret-1' });
    await carol.close();

    const page = await newPage();
    await page.goto(url(1));
    await submit(page, 'carol', 'not-her-password', '#x', 'connect');
    await shown(page, '#password-error:has-text("Wrong account name or password")');
    assert.equal(await page.isVisible('#login'), true);
    assert.equal(await page.isVisible('#chat'), false);
    await page.screenshot({ path: path.join(ARTIFACTS, 'accounts-login-error.png') });

    await submit(page, 'carol', 'another-password', '#x', 'register');
    await shown(page, '#password-error:has-text("This account exists already")');
    await submit(page, 'newcomer', 'short', '#x', 'register');
    await shown(page, '#password-error:has-text("too short")');
    await submit(page, 'newcomer', '', '#x', 'register');
    await shown(page, '#password-error:has-text("Choose a password")');
    // Nothing refused was kept anywhere.
    const kept = await storage(page);
    for (const pw of ['not-her-password', 'another-password', 'short']) assert.ok(!`${kept.local} ${kept.session}`.includes(pw), pw);

    // The right one logs in.
    await submit(page, 'carol', 'carol-secret-1', '#x', 'connect');
    await shown(page, '#account:text-is("logged in as carol")');
  });

  it('after a log-out, a guest who takes the nick reads none of its DMs', async () => {
    const frank = await ircClient(1, 'frank', { mode: 'register', account: 'frank', password: 'frank-secret-1' });
    await frank.request('JOIN #watch');
    const page = await newPage();
    await page.goto(url(0));
    await submit(page, 'dave', 'dave-secret-1', '#watch', 'register');
    await shown(page, '#account:text-is("logged in as dave")');
    await frank.request('PRIVMSG dave :for dave only');
    await shown(page, '#dms .buffer:text-is("frank")');
    await sel(page, 'frank');
    await shown(page, '#messages li:has-text("for dave only")');

    const gone = seen(frank, quitOf('dave'), 10_000);
    await Promise.all([page.waitForEvent('load'), page.click('#logout')]);
    await gone;
    await shown(page, '#login:not([hidden])');
    const kept = await storage(page);
    assert.equal(kept.session, '{}');
    assert.ok(!kept.local.includes('parley.session'), kept.local);

    // Dave's nick, no password: a guest. The conversation with frank belongs to the account dave.
    await submit(page, 'dave', '', '#watch', 'connect');
    await shown(page, '#status:has-text("online as dave")');
    await shown(page, '#account:text-is("guest")');
    assert.equal(await page.isVisible('#logout'), false);
    await type(page, '/query frank');
    await shown(page, '#messages li.start:has-text("beginning of frank")');
    assert.deepEqual(await dmTexts(page), []);
    // TARGETS was answered before that page (one connection, in order): it listed nothing else.
    assert.deepEqual(await page.locator('#dms .buffer').allTextContents(), ['frank']);
    assert.ok(!(await page.locator('#messages').innerText()).includes('for dave only'));
  });
});
