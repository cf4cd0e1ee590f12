import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Esbuild from 'esbuild';
import { WEB_ROOT, buildWeb, sizeReport } from '../../packages/web/src/index.js';
import { execute, isSecret, parseInput, type CommandHost, type Where } from '../../packages/web/app/commands.js';
import { authFailure, isService, masked } from '../../packages/web/app/account.js';
import { parseLine } from '../../packages/protocol/src/index.js';
import { complete } from '../../packages/web/app/complete.js';
import { ctcpAction, linkify, mentions, retryAfterMs, splitMessage, stripFormatting, textBudget } from '../../packages/web/app/text.js';
import { Model, heat, type Tick } from '../../packages/web/app/dashboard-model.js';
import { quantileMs } from '../../packages/server/src/net/api/instances.js';
import { chooseEncoding } from '../../packages/server/src/net/static-files.js';

/*
 * The protocol package and the client core are pure (they run unchanged in a browser), and the
 * web client is built from them: no codec of its own.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const esbuild = createRequire(import.meta.url)('esbuild') as typeof Esbuild;

/** Source without comments, so that a comment mentioning `Buffer` does not count. */
function code(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

const PURE = [
  ...readdirSync(path.join(ROOT, 'packages/protocol/src')).map((f) => `packages/protocol/src/${f}`),
  ...['client.ts', 'emitter.ts', 'transport.ts', 'transport-browser.ts', 'browser.ts'].map((f) => `packages/client/src/${f}`),
];

function bundle(entry: string): Promise<Esbuild.BuildResult<{ write: false; metafile: true }>> {
  return esbuild.build({ entryPoints: [path.join(ROOT, entry)], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
}

describe('pure packages', () => {
  it('protocol and the client core use no Node built-ins', () => {
    assert.ok(PURE.length >= 10, PURE.join(' '));
    for (const f of PURE) {
      const src = code(path.join(ROOT, f));
      assert.doesNotMatch(src, /['"]node:|\brequire\(/, `${f} imports a Node module`);
      assert.doesNotMatch(src, /\bBuffer\b/, `${f} uses Buffer`);
      assert.doesNotMatch(src, /\bprocess\./, `${f} uses process`);
      assert.doesNotMatch(src, /\bNodeJS\./, `${f} uses Node types`);
      assert.doesNotMatch(src, /from ['"](ws|net|events|crypto)['"]/, `${f} imports a Node-only package`);
    }
  });

  it('bundle for the browser, and the Node entry of the client does not', async () => {
    for (const entry of ['packages/protocol/src/index.ts', 'packages/client/src/browser.ts']) {
      const r = await bundle(entry);
      const inputs = Object.keys(r.metafile.inputs);
      assert.ok(!inputs.some((i) => i.includes('node_modules')), `${entry} pulls in ${inputs.join(', ')}`);
    }
    // The check can fail: the Node entry needs node:net and ws.
    await assert.rejects(bundle('packages/client/src/index.ts'), /node:net|Could not resolve/);
  });

  it('the browser code typechecks against the DOM without Node types', async () => {
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const out = await new Promise<string>((resolve) => {
      execFile(process.execPath, [tsc, '-p', path.join(ROOT, 'packages/web/tsconfig.json'), '--noEmit'], (err, stdout) => resolve(err ? `${err.message}\n${stdout}` : ''));
    });
    assert.equal(out, '');
  });
});

describe('web build', () => {
  it('WEB_ROOT holds the pages, the style and the bundles', () => {
    const files = readdirSync(WEB_ROOT).filter((f) => !f.startsWith('.')).sort();
    assert.deepEqual(files, ['app.js', 'config.html', 'config.js', 'dashboard.css', 'dashboard.html', 'dashboard.js', 'favicon.svg', 'index.html', 'panel.css', 'style.css']);
    const index = readFileSync(path.join(WEB_ROOT, 'index.html'), 'utf8');
    assert.match(index, /src="\/app\.js"/);
    // The favicon is put into the page by the build.
    assert.match(index, /rel="icon" type="image\/svg\+xml" href="data:image\/svg\+xml,%3Csvg/);
    assert.match(readFileSync(path.join(WEB_ROOT, 'dashboard.html'), 'utf8'), /src="\/dashboard\.js"/);
    assert.match(readFileSync(path.join(WEB_ROOT, 'config.html'), 'utf8'), /src="\/config\.js"/);
    // uPlot's style sheet comes out of the dashboard's bundle.
    assert.match(readFileSync(path.join(WEB_ROOT, 'dashboard.css'), 'utf8'), /\.uplot/);
    const app = readFileSync(path.join(WEB_ROOT, 'app.js'), 'utf8');
    assert.doesNotMatch(app, /node:/);
    // The client's own codec is in the bundle (a LineError message, the CHATHISTORY caps).
    assert.match(app, /tags without a command/);
    assert.match(app, /draft\/chathistory/);
  });

  it('the web client has no codec or caps list of its own', () => {
    const dir = path.join(ROOT, 'packages/web/app');
    const app = readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && f !== 'dashboard.ts')
      .map((f) => code(path.join(dir, f)))
      .join('\n');
    assert.match(app, /from '@parley\/protocol'/);
    assert.match(app, /from '@parley\/client\/browser'/);
    assert.doesNotMatch(app, /message-tags|server-time|split\(';'\)|function parse(Line|Tags|Message)/);
  });

  it('the chat bundle stays small, and every module stays readable', () => {
    const app = sizeReport(WEB_ROOT).find((f) => f.name === 'app.js');
    assert.ok(app, 'app.js was not built');
    assert.ok(app.gzip < 25_000, `app.js is ${app.gzip} bytes gzipped`);
    // The dashboard carries uPlot (about 20 kB gzipped of it); the configuration page nothing but itself.
    const budget: Record<string, number> = { 'dashboard.js': 36_000, 'config.js': 8_000, 'dashboard.css': 2_000, 'panel.css': 3_000 };
    for (const [name, max] of Object.entries(budget)) {
      const f = sizeReport(WEB_ROOT).find((x) => x.name === name);
      assert.ok(f, `${name} was not built`);
      assert.ok(f.gzip < max && f.br <= f.gzip, `${name}: ${f.gzip} bytes gzipped, ${f.br} br (budget ${max})`);
    }
    const dir = path.join(ROOT, 'packages/web/app');
    for (const f of readdirSync(dir)) {
      const lines = readFileSync(path.join(dir, f), 'utf8').split('\n').length;
      assert.ok(lines <= 420, `${f} has ${lines} lines`);
    }
  });

  it('the nick pattern of the login form compiles as browsers compile it (the v flag)', () => {
    const index = readFileSync(path.join(ROOT, 'packages/web/public/index.html'), 'utf8');
    const pattern = /id="nick"[^>]*pattern="([^"]+)"/.exec(index)?.[1];
    assert.ok(pattern !== undefined);
    const re = new RegExp(`^(?:${pattern})$`, 'v');
    for (const ok of ['alice', 'A', '[x]', 'b\\`_^{|}-9']) assert.ok(re.test(ok), ok);
    for (const bad of ['9lives', '-x', 'a b', '#chan', '']) assert.ok(!re.test(bad), bad);
  });

  it('builds only when an input changed, and writes every output', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parley-web-test-'));
    try {
      const first = buildWeb(dir);
      assert.equal(first.built, true);
      assert.ok((first.files.get('app.js') ?? 0) > 1000);
      assert.equal(buildWeb(dir).built, false);
      assert.equal(buildWeb(dir, true).built, true);
      assert.deepEqual([...first.files.keys()].sort(), ['app.js', 'config.html', 'config.js', 'dashboard.css', 'dashboard.html', 'dashboard.js', 'favicon.svg', 'index.html', 'panel.css', 'style.css']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chat client logic', () => {
  it('splits at the byte limit on code points, preferring spaces, and loses nothing', () => {
    assert.deepEqual(splitMessage('short', 100), ['short']);
    const cjk = '漢'.repeat(100); // 300 bytes
    const parts = splitMessage(cjk, 100);
    assert.deepEqual(parts.map((p) => Buffer.byteLength(p)), [99, 99, 99, 3]);
    assert.equal(parts.join(''), cjk);
    // Never inside a surrogate pair.
    const emoji = '😀'.repeat(30); // 120 bytes
    for (const p of splitMessage(emoji, 10)) assert.equal(p, '😀😀');
    const words = 'alpha beta gamma delta epsilon zeta eta theta';
    const w = splitMessage(words, 20);
    for (const p of w) assert.ok(Buffer.byteLength(p) <= 20);
    assert.equal(w.join(' '), words);
    assert.deepEqual(w, ['alpha beta gamma', 'delta epsilon zeta', 'eta theta']);
    // What the server adds in front counts against LINELEN.
    assert.equal(textBudget({ lineLen: 512, source: 'bob!~bob@127.0.0.1' }, 'PRIVMSG', '#a', false), 512 - 2 - Buffer.byteLength(':bob!~bob@127.0.0.1 PRIVMSG #a :'));
    assert.equal(textBudget({ lineLen: 512, source: 'b!~b@h' }, 'PRIVMSG', '#a', true), textBudget({ lineLen: 512, source: 'b!~b@h' }, 'PRIVMSG', '#a', false) - 9);
  });

  it('reads actions, formatting, mentions, links and retry-after', () => {
    assert.equal(ctcpAction('\x01ACTION waves\x01'), 'waves');
    assert.equal(ctcpAction('\x01ACTION waves'), 'waves');
    assert.equal(ctcpAction('no'), null);
    assert.equal(stripFormatting('\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f'), 'bold red italic');
    assert.ok(mentions('hey Alice: look', 'alice'));
    assert.ok(!mentions('malice aforethought', 'alice'));
    assert.ok(!mentions('alice_ is not me', 'alice'));
    assert.deepEqual(linkify('see https://x.org/a?b=1. or javascript:alert(1)'), [
      { text: 'see ' },
      { text: 'https://x.org/a?b=1', href: 'https://x.org/a?b=1' },
      { text: '. or javascript:alert(1)' },
    ]);
    assert.equal(retryAfterMs('1000', 'Server busy: message not stored, retry in 1 second'), 1000);
    assert.equal(retryAfterMs('1', 'Server busy: message not stored, retry in 1 second'), 1000);
    assert.equal(retryAfterMs('250', 'Rate limited: message not stored, retry in 250 ms'), 250);
    assert.equal(retryAfterMs('40', 'slow down'), 40);
    assert.equal(retryAfterMs('soon', 'slow down'), null);
  });

  it('parses input: text, commands, // for a literal slash', () => {
    assert.deepEqual(parseInput('hello'), { kind: 'text', text: 'hello' });
    assert.deepEqual(parseInput('//me is text'), { kind: 'text', text: '/me is text' });
    assert.deepEqual(parseInput('/MSG bob  hi  there'), { kind: 'command', name: 'msg', args: 'bob  hi  there' });
    assert.deepEqual(parseInput('   '), { kind: 'empty' });
  });

  it('runs commands through the host, and never sends an unknown one', () => {
    const calls: string[] = [];
    let where: Where = { kind: 'channel', name: '#a' };
    const host: CommandHost = {
      where: () => where,
      print: (t, e) => calls.push(`${e ? 'error' : 'print'} ${t}`),
      say: (t, x, a) => calls.push(`say ${t} ${a ? 'action ' : ''}${x}`),
      join: (c) => calls.push(`join ${c.join(',')}`),
      part: (c, r) => calls.push(`part ${c} ${r}`),
      close: (n) => calls.push(`close ${n}`),
      query: (n) => calls.push(`query ${n}`),
      send: (c, p) => calls.push(`send ${c} ${JSON.stringify(p)}`),
      raw: (l) => calls.push(`raw ${l}`),
      clear: () => calls.push('clear'),
      quit: (r) => calls.push(`quit ${r}`),
      logout: () => calls.push('logout'),
    };
    const run = (line: string): string[] => {
      calls.length = 0;
      execute(host, line);
      return [...calls];
    };
    assert.deepEqual(run('hi all'), ['say #a hi all']);
    assert.deepEqual(run('/msg bob  secret  stuff'), ['query bob', 'say bob secret  stuff']);
    assert.deepEqual(run('/me waves'), ['say #a action waves']);
    assert.deepEqual(run('/j rust,#go'), ['join #rust,#go']);
    assert.deepEqual(run('/op bob carol'), ['send MODE ["#a","+oo","bob","carol"]']);
    assert.deepEqual(run('/deop #b bob'), ['send MODE ["#b","-o","bob"]']);
    assert.deepEqual(run('/mode +t'), ['send MODE ["#a","+t"]']);
    assert.deepEqual(run('/kick bob go away'), ['send KICK ["#a","bob","go away"]']);
    assert.deepEqual(run('/topic new topic here'), ['send TOPIC ["#a","new topic here"]']);
    assert.deepEqual(run('/topic'), ['send TOPIC ["#a"]']);
    assert.deepEqual(run('/away'), ['send AWAY []']);
    assert.deepEqual(run('/quote PRIVMSG #x :raw'), ['raw PRIVMSG #x :raw']);
    assert.deepEqual(run('/part bye now'), ['part #a bye now']);
    assert.deepEqual(run('/logout'), ['logout']);
    assert.deepEqual(run('/ns identify hunter22'), ['say NickServ identify hunter22']);
    assert.deepEqual(run('/nickserv help'), ['say NickServ help']);
    const unknown = run('/frob x');
    assert.equal(unknown.length, 1);
    assert.match(unknown[0] ?? '', /^error Unknown command \/frob/);
    assert.match(run('/msg bob')[0] ?? '', /^error Usage/);
    where = { kind: 'dm', name: 'bob' };
    assert.deepEqual(run('/part'), ['close bob']);
    assert.match(run('/op x')[0] ?? '', /^error Not in a channel/);
    where = { kind: 'server', name: '*' };
    assert.match(run('text in the server buffer')[0] ?? '', /^error/);
    assert.ok(run('/help').length > 15);
  });

  it('keeps lines that may carry a password out of the input history, and hides them when shown', () => {
    const chan: Where = { kind: 'channel', name: '#a' };
    for (const line of ['/msg NickServ IDENTIFY pw', '/m nickserv register pw', '/query NickServ identify pw', '/ns identify pw', '/NICKSERV ghost me', '/quote PASS pw', '/raw oper me pw', '/quote PRIVMSG NickServ :IDENTIFY pw', '/quote AUTHENTICATE abc', '/mgs NickServ IDENTIFY pw']) {
      assert.equal(isSecret(line, chan), true, line);
    }
    for (const line of ['/msg bob hi', 'hello NickServ', '/quote PRIVMSG bob :x', 'identify pw']) assert.equal(isSecret(line, chan), false, line);
    assert.equal(isSecret('IDENTIFY pw', { kind: 'dm', name: 'NickServ' }), true);
    assert.equal(isSecret('hi', { kind: 'dm', name: 'bob' }), false);
    assert.equal(masked('IDENTIFY alice hunter22'), 'IDENTIFY ••••••');
    assert.equal(masked('  HELP '), 'HELP');
    assert.ok(isService('NICKSERV') && isService('ChanServ') && !isService('bob'));
  });

  it('says why a log-in or registration was refused', () => {
    assert.match(authFailure(parseLine(':s 904 alice :SASL authentication failed'), ''), /Wrong account name or password/);
    assert.match(authFailure(parseLine(':s FAIL REGISTER ACCOUNT_EXISTS alice :Account already exists'), ''), /exists already/);
    assert.match(authFailure(parseLine(':s FAIL REGISTER WEAK_PASSWORD alice :too short'), ''), /too short/);
    assert.match(authFailure(parseLine(':s FAIL REGISTER BAD_ACCOUNT_NAME NickServ :reserved'), ''), /cannot be an account name: reserved/);
    assert.match(authFailure(parseLine(':s FAIL REGISTER TEMPORARILY_UNAVAILABLE a :down'), ''), /try again/);
    assert.equal(authFailure(undefined, 'cannot log in: the server offers no SASL PLAIN'), 'cannot log in: the server offers no SASL PLAIN');
  });

  it('completes nicks, channels and commands, and cycles on repeated Tab', () => {
    const src = { nicks: ['alice', 'Alfred', 'bob'], channels: ['#rust', '#ruby'], commands: ['join', 'me', 'msg'] };
    const a = complete('al', 2, src, null);
    assert.equal(a?.result.value, 'alice: ');
    const b = complete(a?.result.value ?? '', a?.result.cursor ?? 0, src, a?.state ?? null);
    assert.equal(b?.result.value, 'Alfred: ');
    assert.equal(complete('see #ru', 7, src, null)?.result.value, 'see #rust ');
    assert.equal(complete('/m', 2, src, null)?.result.value, '/me ');
    assert.equal(complete('hi zed', 6, src, null), null);
    // In the middle of a line: no colon, the rest of the line kept.
    assert.deepEqual(complete('ask bo now', 6, src, null)?.result, { value: 'ask bob now', cursor: 8 });
  });
});

describe('dashboard and static files', () => {
  const tick = (rooms: Tick['rooms']): Tick => ({
    t: 0, dt: 1, full: false, rooms, roomCount: rooms.length,
    totals: { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 0 }, rates: { accepted: 0, refusedQos: 0, refusedBacklog: 0, failed: 0 },
    latency: { commitP99Ms: null, fanoutP99Ms: null }, instances: [], shards: [],
  });

  it('keeps every room, resets the rates of rooms a tick does not name, filters, sorts and groups', () => {
    const m = new Model();
    m.setMeta([
      { room: '#a', shard: 0, class: 'gold', override: null, rate: 10, burst: 20 },
      { room: '#b', shard: 1, class: 'default', override: null, rate: 100, burst: 100 },
      { room: '#c', shard: null, class: 'gold', override: 'gold', rate: 10, burst: 20 },
    ]);
    m.applyTick(tick([['#a', 50, 0, 0, 0, 5, 0], ['#b', 10, 7, 1, 0, 1, 3]]));
    const all = { q: '', shard: '', cls: '', sort: 'busiest' as const, group: 'none' as const };
    assert.deepEqual(m.view(all)[0]?.rooms.map((r) => r.name), ['#a', '#b', '#c']);
    assert.deepEqual(m.view({ ...all, sort: 'refused' })[0]?.rooms.map((r) => r.name), ['#b', '#a', '#c']);
    // The next tick names only #b: #a did not move, its rate is 0 now but its counts stay.
    m.applyTick(tick([['#b', 30, 7, 1, 0, 20, 0]]));
    const a = m.rooms.get('#a');
    assert.equal(a?.rate, 0);
    assert.equal(a?.accepted, 50);
    assert.deepEqual(m.view(all)[0]?.rooms.map((r) => r.name), ['#b', '#a', '#c']);
    assert.deepEqual(m.view({ ...all, q: 'C' })[0]?.rooms.map((r) => r.name), ['#c']);
    assert.deepEqual(m.view({ ...all, shard: 'none' })[0]?.rooms.map((r) => r.name), ['#c']);
    assert.deepEqual(m.view({ ...all, cls: 'gold', sort: 'name' })[0]?.rooms.map((r) => r.name), ['#a', '#c']);
    const byShard = m.view({ ...all, group: 'shard' });
    assert.deepEqual(byShard.map((g) => [g.key, g.rooms.length, g.rate]), [['0', 1, 0], ['1', 1, 20], ['', 1, 0]]);
    assert.deepEqual(m.view({ ...all, group: 'class' }).map((g) => g.key), ['default', 'gold']);
    assert.deepEqual(m.shards(), [0, 1]);
    // A room gone from the list without counters goes; one with counters stays, unlisted.
    m.setMeta([{ room: '#b', shard: 1, class: 'default', override: null, rate: 100, burst: 100 }]);
    assert.equal(m.rooms.has('#c'), false);
    assert.equal(m.rooms.get('#a')?.listed, false);
  });

  it('colours rates on a log scale', () => {
    assert.equal(heat(0), '#2b303b');
    assert.equal(heat(1000), 'rgb(215,25,28)');
    assert.equal(heat(1e6), 'rgb(215,25,28)');
    assert.notEqual(heat(1), heat(10));
  });

  it('reads a p99 from two reads of a histogram', () => {
    const before: Array<[number, number]> = [[0.001, 10], [0.01, 10], [0.1, 10], [Infinity, 10]];
    assert.equal(quantileMs(before, before, 0.99), null);
    // 100 new observations: 98 within 1 ms, 2 within 100 ms.
    const after: Array<[number, number]> = [[0.001, 108], [0.01, 108], [0.1, 110], [Infinity, 110]];
    assert.equal(quantileMs(before, after, 0.99), 100);
    assert.equal(quantileMs(before, after, 0.5), 1);
    // Beyond the last bound: that bound.
    assert.equal(quantileMs(before, [[0.001, 10], [0.01, 10], [0.1, 10], [Infinity, 20]], 0.99), 100);
  });

  it('chooses brotli, else gzip, as Accept-Encoding allows', () => {
    assert.equal(chooseEncoding(undefined), 'identity');
    assert.equal(chooseEncoding('gzip, deflate, br, zstd'), 'br');
    assert.equal(chooseEncoding('gzip'), 'gzip');
    assert.equal(chooseEncoding('br;q=0, gzip;q=0.5'), 'gzip');
    assert.equal(chooseEncoding('*'), 'br');
    assert.equal(chooseEncoding('*;q=0, gzip'), 'gzip');
    assert.equal(chooseEncoding('identity'), 'identity');
    assert.equal(chooseEncoding('BR;Q=1'), 'br');
  });
});
