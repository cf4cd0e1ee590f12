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
import { EventEmitter } from 'node:events';
import { watch } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { parseMsgid, type IrcMessage } from '@parley/protocol';
import { IrcClient, IrcClientError } from '@parley/client';
import { etcdKeys, parseInstanceRecord, withTimeout, type InstanceRecord } from '@parley/contracts';
import { freePort, pidAlive, readStatus, sameProcess, statePaths, type AgentStatus } from '@parley/agent';
import { etcdClient, openLab, readPlan, waitConverged } from '../../packages/cli/src/lab/common.js';
import { seen } from '../harness/irc.js';
import { runCli, ok, type CliResult } from '../harness/cli.js';

const parley = (args: string[], timeoutMs = 120_000, dir = stateDir): Promise<CliResult> => runCli([...args, '--state-dir', dir], { timeoutMs });

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');



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

/**
 * Resolves with the agent's status once it satisfies `pred`. The agent rewrites status.json on
 * every change of a process (and every 2 s); each rewrite is an fs event that triggers a check.
 */
function agentStatus(what: string, timeoutMs: number, pred: (st: AgentStatus) => boolean): Promise<AgentStatus> {
  const paths = statePaths(stateDir);
  const watcher = watch(path.dirname(paths.statusFile));
  const found = new Promise<AgentStatus>((resolve, reject) => {
    let checking: Promise<void> | null = null;
    let again = false;
    const check = (): void => {
      if (checking) {
        again = true;
        return;
      }
      checking = (async () => {
        do {
          again = false;
          const st = await readStatus(paths);
          if (st && pred(st)) return resolve(st);
        } while (again);
      })().catch(reject).finally(() => (checking = null));
    };
    watcher.on('change', (_type, name) => {
      if (name === path.basename(paths.statusFile)) check();
    });
    watcher.on('error', reject);
    check();
  });
  return withTimeout(found, timeoutMs, `timed out waiting for ${what}`).finally(() => watcher.close());
}

/** Every registration written from now on, as etcd's watch reports it. */
async function watchRegistry(client: Etcd3, prefix: string): Promise<{ until(what: string, timeoutMs: number, pred: (puts: InstanceRecord[]) => boolean): Promise<void>; close(): Promise<void> }> {
  const puts: InstanceRecord[] = [];
  const events = new EventEmitter();
  const w = await client.watch().prefix(etcdKeys(prefix).instances).create();
  w.on('put', (kv) => {
    const r = parseInstanceRecord(kv.value.toString());
    if (r.ok) puts.push(r.value);
    events.emit('put');
  });
  return {
    until: (what, timeoutMs, pred) => {
      let onPut = (): void => undefined;
      const done = new Promise<void>((resolve) => {
        onPut = () => {
          if (pred(puts)) resolve();
        };
        events.on('put', onPut);
        onPut();
      });
      return withTimeout(done, timeoutMs, `timed out waiting for ${what}`).finally(() => events.off('put', onPut));
    },
    close: () => w.cancel(),
  };
}

/** The lab runs what its plan says (the CLI's own wait: agent, registry, front door all agree). */
async function converged(timeoutMs: number): Promise<void> {
  const lab = await openLab(stateDir);
  const client = etcdClient(lab.host);
  try {
    const { plan } = await readPlan(client, lab.host);
    await waitConverged(lab, client, plan, 0, timeoutMs);
  } finally {
    client.close();
  }
}

let stateDir: string;
let ircPort: number;
let httpPort: number;
let downDone = false;
const clients: IrcClient[] = [];

/**
 * Connects through the front door. A taken nick (a ghost of a killed instance keeps it until its
 * lease expires) gets a suffix; a connection the front door handed to an instance that was just
 * going away is tried again at once. Each attempt ends on an event (welcome, refusal, close),
 * and there are at most `attempts` of them.
 */
async function connect(nick: string, attempts = 4): Promise<IrcClient> {
  let n = 0;
  const failures: string[] = [];
  for (let i = 0; i < attempts; i++) {
    const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: ircPort, nick: n === 0 ? nick : `${nick}_${n}`, connectTimeoutMs: 10_000 });
    c.on('error', () => undefined);
    clients.push(c);
    try {
      await c.connect();
      return c;
    } catch (err) {
      c.destroy();
      failures.push((err as Error).message);
      if (err instanceof IrcClientError && err.reply?.command === '433') n++;
    }
  }
  throw new Error(`${nick} could not connect through the front door: ${failures.join('; ')}`);
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
    const lab = await openLab(stateDir);
    const etcd = etcdClient(lab.host);
    const reg = await watchRegistry(etcd, lab.host.prefix);
    const restarted = reg.until('the agent to restart the killed instance and it to register', 30_000, (puts) => puts.some((r) => r.id === victimId && r.pid !== before.pid && r.state === 'ready'));
    restarted.catch(() => undefined); // awaited below; a failure meanwhile is not unhandled
    process.kill(before.pid, 'SIGKILL');
    await closed;
    // The others keep talking while ann is away: each message acknowledged (echoed).
    for (let i = 0; i < 5; i++) {
      await b.request(`PRIVMSG #lab :while ann is away ${i}`);
      await c.request(`PRIVMSG #lab :also away ${i}`);
    }
    try {
      await restarted;
    } finally {
      await reg.close();
      etcd.close();
    }
    await converged(30_000);
    const back = (await status()).rows.find((r) => r.id === victimId)!;
    assert.equal(back.state, 'running');
    assert.notEqual(back.pid, before.pid);
    assert.ok(back.restarts >= 1, `restarts: ${back.restarts}`);
    assert.ok(back.healthy, back.health);
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
    const acks = new EventEmitter();
    /** Resolves once `n` messages are acknowledged (each acknowledgement is an event). */
    const untilAcked = (n: number, what: string, timeoutMs: number): Promise<void> => {
      let onAck = (): void => undefined;
      const done = new Promise<void>((resolve) => {
        onAck = () => {
          if (sent.length >= n) resolve();
        };
        acks.on('ack', onAck);
        onAck();
      });
      return withTimeout(done, timeoutMs, `timed out waiting for ${what} (${sent.length} of ${n})`).finally(() => acks.off('ack', onAck));
    };
    let sender = await connect('snd');
    let reconnects = 0;
    let stop = false;
    await sender.request('JOIN #lab');
    // One message in flight at a time: the next goes out when the last is acknowledged (echoed
    // with its msgid) or refused, or the connection closed under it.
    const loop = (async () => {
      let i = 0;
      while (!stop) {
        if (sender.closed) {
          reconnects++;
          sender = await connect(`snd${reconnects}`);
          await sender.request('JOIN #lab').catch(() => undefined);
          continue;
        }
        const reply = await sender.request(`PRIVMSG #lab :rolling ${i++}`).catch(() => [] as IrcMessage[]);
        const id = reply.find(isChat)?.tags.msgid;
        if (id) {
          sent.push(id);
          acks.emit('ack');
        }
      }
    })();
    // The sender failing (it could not reconnect) ends a wait at once, with its reason.
    const senderGone = loop.then(() => {
      throw new Error('the sender stopped');
    });
    senderGone.catch(() => undefined);
    await Promise.race([untilAcked(10, 'the sender to get acknowledgements', 10_000), senderGone]);
    const r = await parley(['restart', '--rolling']);
    const countAtEnd = sent.length;
    await Promise.race([untilAcked(countAtEnd + 20, 'acknowledgements after the rolling restart', 20_000), senderGone]);
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
    const oneLine = (r: CliResult, re: RegExp): void => {
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
    const restarted = await agentStatus('every killed process to be running again', 60_000, (st) =>
      victims.every((n) => {
        const p = st.processes.find((x) => x.name === n);
        return p !== undefined && p.state === 'running' && p.restarts >= 1 && p.pid !== before.find((r) => r.id === n)!.pid;
      }),
    );
    // etcd is back: each instance proves its etcd client works again (after etcd came back it may
    // refuse calls for a moment: its circuit breaker) by rewriting its registration, which it
    // does every 5 s.
    const lab = await openLab(stateDir);
    const etcd = etcdClient(lab.host);
    const ids = restarted.processes.filter((p) => p.kind === 'server').map((p) => p.name);
    try {
      const reg = await watchRegistry(etcd, lab.host.prefix);
      try {
        await reg.until(`${ids.join(', ')} to write their registrations again`, 30_000, (puts) => ids.every((id) => puts.some((r) => r.id === id && r.state === 'ready')));
      } finally {
        await reg.close();
      }
    } finally {
      etcd.close();
    }
    await converged(60_000);
    const st = await status();
    assert.ok(st.healthy, `not healthy: ${JSON.stringify(st.rows.filter((r) => !r.healthy))}`);
    // Still a working cluster: connect through the (new) front door, talk, read history.
    const x = await connect('xena');
    const y = await connect('yuri');
    const room = '#after';
    await x.request(`JOIN ${room}`);
    await y.request(`JOIN ${room}`);
    const sentMsg = await x.request(`PRIVMSG ${room} :still alive`);
    const id = sentMsg.find((m) => m.command === 'PRIVMSG')?.tags.msgid;
    assert.ok(id, `PRIVMSG was not acknowledged: ${JSON.stringify(sentMsg)}`);
    await seen(y, (m) => m.command === 'PRIVMSG' && m.tags.msgid === id, 5_000);
    const hist = await y.request(`CHATHISTORY LATEST ${room} * 10`);
    assert.ok(hist.some((m) => m.tags.msgid === id), 'the message is in history');
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
