/**
 * The lab end to end, through the real CLI: `parley up` (agent, etcd, Redis, 2 shards, 2
 * instances, HAProxy) in a temp state directory on free ports → status healthy → two IRC clients
 * through the front door land on different instances and chat → `scale server=3` → a new client
 * reaches the third → kill -9 an instance: the agent restarts it, its client reconnects through
 * the front door and fetches every acknowledged message → `restart --rolling` while a client sends
 * throughout: every acknowledged message is in history → bad input gets one clear line → killing
 * etcd, Redis, a shard and HAProxy is survived → `down`: no process left.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMsgid, type IrcMessage } from '@parley/protocol';
import { IrcClient, IrcClientError } from '@parley/client';
import { freePort, pidAlive, readStatus, sameProcess, statePaths } from '@parley/agent';
import { seen } from '../harness/irc.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const loader = `file://${path.join(root, 'node_modules/tsx/dist/loader.mjs')}`;
const cliMain = path.join(root, 'packages/cli/src/main.ts');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (asynchronously: clients keep running meanwhile). */
function parley(args: string[], timeoutMs = 120_000, dir = stateDir): Promise<Result> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PARLEY_')) env[k] = v;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', loader, cliMain, ...args, '--state-dir', dir], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(r: Result, what: string): string {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface Row {
  kind: string;
  id: string;
  pid: number | null;
  state: string;
  health: string;
  healthy: boolean;
  restarts: number;
  serverName?: string;
}

const everyPid = new Set<number>();

async function status(): Promise<{ healthy: boolean; rows: Row[] }> {
  const r = await parley(['status', '--json']);
  assert.ok(r.code === 0 || r.code === 2, `status failed (exit ${r.code}): ${r.stderr}`);
  const report = JSON.parse(r.stdout) as { healthy: boolean; rows: Row[] };
  for (const row of report.rows) if (row.pid) everyPid.add(row.pid);
  return report;
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let stateDir: string;
let ircPort: number;
let httpPort: number;
let downDone = false;
const clients: IrcClient[] = [];

/** Connects through the front door, retrying while the cluster settles; a taken nick gets a suffix. */
async function connect(nick: string, timeoutMs = 20_000): Promise<IrcClient> {
  let n = 0;
  return until(`${nick} to connect through the front door`, timeoutMs, async () => {
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: ircPort, nick: n === 0 ? nick : `${nick}_${n}`, connectTimeoutMs: 5_000 });
    c.on('error', () => undefined);
    clients.push(c);
    try {
      await c.connect();
      return c;
    } catch (err) {
      c.destroy();
      if (err instanceof IrcClientError && err.reply?.command === '433') n++;
      throw err;
    }
  });
}

const isChat = (m: IrcMessage): boolean => m.command === 'PRIVMSG' && m.params[0] === '#lab' && m.tags.msgid !== undefined;

/** Every message of #lab after `from` (exclusive), paging through CHATHISTORY. */
async function historyAfter(c: IrcClient, from: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = from;
  for (;;) {
    const page = (await c.request(`CHATHISTORY AFTER #lab msgid=${cursor} 1000`)).filter(isChat).map((m) => m.tags.msgid!);
    out.push(...page);
    if (page.length < 1000) return out;
    cursor = page[page.length - 1]!;
  }
}

const seqOf = (msgid: string): number => parseMsgid(msgid)!.seq;

before(async () => {
  stateDir = await fs.mkdtemp(path.join(process.env.PARLEY_TEST_TMPDIR || os.tmpdir(), 'parley-lab-'));
  ircPort = await freePort();
  httpPort = await freePort();
});

after(async () => {
  for (const c of clients) c.destroy();
  if (!downDone) await parley(['down'], 90_000).catch(() => undefined);
  // Whatever is still alive of what the agent recorded is killed, by pid.
  const st = await readStatus(statePaths(stateDir)).catch(() => undefined);
  const leftovers = [...(st?.processes ?? []).map((p) => ({ pid: p.pid, ticks: p.startTicks })), { pid: st?.agent.pid ?? null, ticks: st?.agent.startTicks ?? null }];
  for (const p of leftovers) {
    if (sameProcess(p.pid, p.ticks)) {
      try {
        process.kill(p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (!process.env.PARLEY_KEEP_TEST_DIR) await fs.rm(stateDir, { recursive: true, force: true, maxRetries: 3 });
  else console.error(`[lab.test] kept ${stateDir}`);
});

describe('parley up → scale → kill -9 → rolling restart → down', { timeout: 240_000 }, () => {
  const acked: string[] = [];
  const record = (c: IrcClient): void => {
    c.on('message', (m) => {
      if (isChat(m) && m.source?.startsWith(`${c.nick}!`)) acked.push(m.tags.msgid!);
    });
  };
  let a: IrcClient;
  let b: IrcClient;
  let c: IrcClient;

  it('up --instances 2 --shards 2 starts everything and prints where it is', async () => {
    const t0 = Date.now();
    const out = ok(await parley(['up', '--instances', '2', '--shards', '2', '--irc-port', String(ircPort), '--http-port', String(httpPort)]), 'up');
    assert.match(out, /Parley is up: 2 instance\(s\), 2 shard\(s\)/);
    assert.ok(out.includes(`irc://127.0.0.1:${ircPort}`), out);
    assert.ok(out.includes(`ws://127.0.0.1:${httpPort}/`), out);
    console.error(`[lab.test] up took ${Date.now() - t0} ms`);
    ok(await parley(['config', 'set', '{"flood":{"linesPerSecond":0}}']), 'config set');
  });

  it('status: every process healthy', async () => {
    const st = await status();
    const kinds = st.rows.map((r) => r.kind).sort();
    assert.deepEqual(kinds, ['agent', 'etcd', 'haproxy', 'redis', 'server', 'server', 'shard', 'shard']);
    assert.ok(st.healthy, `not healthy: ${JSON.stringify(st.rows.filter((r) => !r.healthy))}`);
  });

  it('two IRC clients through the front door land on different instances and chat', async () => {
    a = await connect('ann');
    b = await connect('ben');
    assert.match(a.serverName, /^i\d\.parley\.local$/);
    assert.notEqual(a.serverName, b.serverName, 'leastconn spreads two clients over two instances');
    record(a);
    record(b);
    await a.request('JOIN #lab');
    await b.request('JOIN #lab');
    const hi = await a.request('PRIVMSG #lab :hi ben');
    await seen(b, (m) => isChat(m) && m.tags.msgid === hi[0]?.tags.msgid);
    const re = await b.request('PRIVMSG #lab :hi ann');
    await seen(a, (m) => isChat(m) && m.tags.msgid === re[0]?.tags.msgid);
  });

  it('scale server=3: a new client reaches the third instance', async () => {
    const out = ok(await parley(['scale', 'server=3']), 'scale');
    assert.match(out, /3 instance\(s\) ready and in the front door/);
    c = await connect('cid');
    const third = ['i1', 'i2', 'i3'].map((i) => `${i}.parley.local`).find((n) => n !== a.serverName && n !== b.serverName);
    assert.equal(c.serverName, third);
    record(c);
    await c.request('JOIN #lab');
    const m = await c.request('PRIVMSG #lab :third here');
    await seen(a, (x) => isChat(x) && x.tags.msgid === m[0]?.tags.msgid);
    const st = await status();
    assert.ok(st.healthy, JSON.stringify(st.rows.filter((r) => !r.healthy)));
  });

  it('kill -9 an instance: the agent restarts it; its client reconnects and fetches every acknowledged message', async () => {
    const victimName = a.serverName;
    const victimId = victimName.split('.')[0]!;
    const before = (await status()).rows.find((r) => r.id === victimId)!;
    assert.ok(before.pid);
    const lastSeen = [...a.messages].reverse().find(isChat)!.tags.msgid!;
    const closed = new Promise<void>((r) => a.once('close', () => r()));
    process.kill(before.pid, 'SIGKILL');
    await closed;
    // The others keep talking while ann is away: each message acknowledged (echoed).
    for (let i = 0; i < 5; i++) {
      await b.request(`PRIVMSG #lab :while ann is away ${i}`);
      await c.request(`PRIVMSG #lab :also away ${i}`);
    }
    const back = await until('the agent to restart the killed instance', 30_000, async () => {
      const row = (await status()).rows.find((r) => r.id === victimId);
      return row && row.pid !== before.pid && row.healthy && row.restarts >= 1 ? row : undefined;
    });
    assert.equal(back.state, 'running');
    const a2 = await connect('ann');
    record(a2);
    await a2.request('JOIN #lab');
    const got = new Set(await historyAfter(a2, lastSeen));
    const missing = acked.filter((id) => seqOf(id) > seqOf(lastSeen) && !got.has(id));
    assert.deepEqual(missing, [], 'every acknowledged message after the last one ann saw is in history');
    assert.ok(got.size >= 10, `history after ${lastSeen} has ${got.size} messages`);
    a = a2;
  });

  it('restart --rolling while a client sends throughout: nothing acknowledged is lost', async () => {
    const sent: string[] = [];
    let sender = await connect('snd');
    let reconnects = 0;
    let stop = false;
    const track = (s: IrcClient): void => {
      s.on('message', (m) => {
        if (isChat(m) && m.source?.startsWith(`${s.nick}!`)) sent.push(m.tags.msgid!);
      });
    };
    track(sender);
    await sender.request('JOIN #lab');
    const loop = (async () => {
      let i = 0;
      while (!stop) {
        if (sender.closed) {
          reconnects++;
          sender = await connect(`snd${reconnects}`, 30_000);
          track(sender);
          await sender.request('JOIN #lab').catch(() => undefined);
          continue;
        }
        sender.send(`PRIVMSG #lab :rolling ${i++}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await until('the sender to get acknowledgements', 10_000, async () => (sent.length >= 10 ? true : undefined));
    const r = await parley(['restart', '--rolling']);
    const countAtEnd = sent.length;
    await until('acknowledgements after the rolling restart', 20_000, async () => (sent.length >= countAtEnd + 20 ? true : undefined));
    stop = true;
    await loop;
    ok(r, 'restart --rolling');
    assert.match(r.stdout, /restarted 3 instances one at a time/);
    assert.ok(reconnects >= 1, 'the sender was told to reconnect at least once');
    // Let the last in-flight messages be acknowledged or refused, then read everything back.
    await sender.close();
    const reader = await connect('rdr');
    await reader.request('JOIN #lab');
    const first = sent[0]!;
    const got = new Set(await historyAfter(reader, first));
    got.add(first);
    const missing = sent.filter((id) => !got.has(id));
    assert.deepEqual(missing, [], `all ${sent.length} acknowledged messages (across ${reconnects} reconnects) are in history`);
    console.error(`[lab.test] rolling restart: ${sent.length} messages acknowledged, ${reconnects} reconnect(s), all in history`);
    const st = await status();
    assert.ok(st.healthy, JSON.stringify(st.rows.filter((x) => !x.healthy)));
  });

  it('bad input: one clear line, exit 1, nothing started', async () => {
    const oneLine = (r: Result, re: RegExp): void => {
      assert.equal(r.code, 1, `exit ${r.code}: ${r.stdout}${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, re);
    };
    oneLine(await parley(['logs', 'nope']), /^parley: unknown service 'nope' \(known: agent, etcd, redis, pg0, pg1, haproxy, i1, i2, i3/);
    oneLine(await parley(['scale', 'server=0']), /^parley: server=0: the count must be an integer from 1 to 32$/);
    oneLine(await parley(['scale', 'server=many']), /^parley: server=many: the count must be an integer from 1 to 32$/);
    oneLine(await parley(['restart', 'nope']), /^parley: unknown service 'nope'/);
    const other = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-lab-other-'));
    try {
      oneLine(await parley(['up', '--irc-port', String(ircPort), '--http-port', '0'], 60_000, other), new RegExp(`^parley: port ${ircPort} \\(IRC front door\\) is in use by another program`));
      assert.deepEqual(await fs.readdir(other), [], 'nothing was started or written');
      await fs.writeFile(path.join(other, 'stray.txt'), 'not parley');
      oneLine(await parley(['up'], 60_000, other), /is not a Parley state directory/);
      oneLine(await parley(['clean'], 60_000, other), /^parley: refusing to remove .*: it does not look like a Parley state directory/);
      await fs.rm(path.join(other, 'stray.txt'));
      await fs.writeFile(path.join(other, 'parley-state.json'), '{"kind":"parley-state","version":1}');
      await fs.writeFile(path.join(other, 'host.json'), '{"version":1,');
      oneLine(await parley(['status'], 60_000, other), /^parley: corrupt state directory .*host\.json/);
      oneLine(await parley(['up', '--http-port', '0', '--irc-port', '0'], 60_000, other), /^parley: corrupt state directory .*host\.json/);
    } finally {
      await fs.rm(other, { recursive: true, force: true });
    }
  });

  it('killing etcd, Redis, a shard or HAProxy is survived: the agent restarts each, status shows it', async () => {
    for (const cl of clients) cl.destroy();
    const victims = ['etcd', 'redis', 'pg1', 'haproxy'];
    const before = (await status()).rows;
    for (const name of victims) process.kill(before.find((r) => r.id === name)!.pid!, 'SIGKILL');
    const after = await until('every killed process to be back and the cluster healthy', 60_000, async () => {
      const st = await status();
      const back = victims.every((n) => {
        const row = st.rows.find((r) => r.id === n);
        return row && row.restarts >= 1 && row.pid !== before.find((r) => r.id === n)!.pid;
      });
      return back && st.healthy ? st : undefined;
    });
    assert.ok(after.healthy);
    // Still a working cluster: connect through the (new) front door, talk, read history. An
    // instance's etcd client may refuse calls for a few seconds after etcd came back (its circuit
    // breaker), so a new room is tried until one works end to end.
    const x = await connect('xena', 30_000);
    const y = await connect('yuri', 30_000);
    let n = 0;
    await until('a new room to work end to end', 30_000, async () => {
      const room = `#after${++n}`;
      const jx = await x.request(`JOIN ${room}`);
      const jy = await y.request(`JOIN ${room}`);
      if (jx[0]?.command !== 'JOIN' || jy[0]?.command !== 'JOIN') return undefined;
      const sentMsg = await x.request(`PRIVMSG ${room} :still alive`);
      const id = sentMsg[0]?.command === 'PRIVMSG' ? sentMsg[0].tags.msgid : undefined;
      if (!id) return undefined;
      await seen(y, (m) => m.command === 'PRIVMSG' && m.tags.msgid === id, 5_000);
      const hist = await y.request(`CHATHISTORY LATEST ${room} * 10`);
      return hist.some((m) => m.tags.msgid === id) ? true : undefined;
    });
  });

  it('down: no process left', async () => {
    await status();
    for (const cl of clients) cl.destroy();
    const out = ok(await parley(['down'], 90_000), 'down');
    downDone = true;
    assert.match(out, /no process left/);
    assert.ok(everyPid.size >= 9, `pids seen: ${[...everyPid].join(' ')}`);
    const alive = [...everyPid].filter((pid) => pidAlive(pid));
    assert.deepEqual(alive, [], 'no recorded process is still running');
  });
});
