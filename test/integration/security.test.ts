/**
 * A locked-down lab, tried as another local user. `parley up` (1 instance, 1 shard) in a temp state
 * directory whose parent every user may enter, then, as the OS user `nobody` (runuser):
 *
 * - the state directory, the secret files, the admin token, the logs and the Redis append-only
 *   file cannot be read; nothing in the tree is open to others (modes checked file by file), and no
 *   process's command line carries a secret;
 * - PostgreSQL refuses the superuser over TCP, the `parley` role without or with a wrong password,
 *   and the private socket; with the password (from the file, as root would read it) the role
 *   works but cannot run programs (COPY TO PROGRAM) nor reach other databases;
 * - Redis refuses every command without a login (NOAUTH) and a wrong password; the instances' user
 *   may touch its own keys and topics only, and no admin command;
 * - etcd refuses an unauthenticated read and write (`user name is empty`); the instances' user may
 *   read and write under `/<prefix>/` only;
 *
 * and the instances still work: two clients register through the front door and chat (messages
 * stored on the shard through the SCRAM login, read back with CHATHISTORY), and `parley status`
 * (which logs in to Redis and reaches the shard over the socket) is healthy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import type { IrcMessage } from '@parley/protocol';
import { IrcClient } from '@parley/client';
import { etcdKeys } from '@parley/contracts';
import { freePort, readStatus, sameProcess, SECRET_NAMES, statePaths, type StatePaths } from '@parley/agent';
import { seen } from '../harness/irc.js';
import { runCli, ok, type CliResult, runProgram } from '../harness/cli.js';

const parley = (args: string[], timeoutMs = 120_000): Promise<CliResult> => runCli([...args, '--state-dir', stateDir], { timeoutMs });

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');




/**
 * Runs a program as the OS user `nobody`, in `/`, with nothing of our environment but PATH and
 * what `env` adds (a password handed over explicitly, as someone who had read the file would).
 */
function asNobody(command: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runProgram('runuser', ['-u', 'nobody', '--', command, ...args], {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', HOME: '/nonexistent', ...env },
    timeoutMs: 20_000,
  });
}

const said = (r: CliResult): string => `${r.stdout}${r.stderr}`;

let parent: string;
let stateDir: string;
let paths: StatePaths;
let ircPort: number;
let httpPort: number;
let ports: { redis: number; pg: number; etcd: number };
let secrets: Record<string, string>;
const clients: IrcClient[] = [];

before(async () => {
  assert.equal(process.getuid?.(), 0, 'this test runs commands as the user nobody (runuser): run it as root, as CI does');
  parent = await fs.mkdtemp(path.join(process.env.PARLEY_TEST_TMPDIR || os.tmpdir(), 'parley-sec-'));
  // Every user may enter the parent: what keeps `nobody` out must be the state directory itself.
  await fs.chmod(parent, 0o755);
  stateDir = path.join(parent, 'lab');
  paths = statePaths(stateDir);
  ircPort = await freePort();
  httpPort = await freePort();
});

after(async () => {
  for (const c of clients) c.destroy();
  await parley(['down'], 90_000).catch(() => undefined);
  const st = await readStatus(statePaths(stateDir)).catch(() => undefined);
  for (const p of [...(st?.processes ?? []).map((x) => ({ pid: x.pid, ticks: x.startTicks })), { pid: st?.agent.pid ?? null, ticks: st?.agent.startTicks ?? null }]) {
    if (sameProcess(p.pid, p.ticks)) {
      try {
        process.kill(p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (!process.env.PARLEY_KEEP_TEST_DIR) await fs.rm(parent, { recursive: true, force: true, maxRetries: 3 });
  else console.error(`[security.test] kept ${parent}`);
});

describe('a lab locked down against other local users', { timeout: 240_000 }, () => {
  it('parley up makes the credentials and starts everything with them', async () => {
    const out = ok(await parley(['up', '--instances', '1', '--shards', '1', '--irc-port', String(ircPort), '--http-port', String(httpPort)]), 'up');
    assert.match(out, /Parley is up: 1 instance\(s\), 1 shard\(s\)/);
    assert.ok(out.includes(`credentials:        ${paths.secrets}/`), out);
    secrets = Object.fromEntries(SECRET_NAMES.map((n) => [n, fsSync.readFileSync(paths.secret(n), 'utf8').trim()]));
    for (const [n, v] of Object.entries(secrets)) assert.match(v, /^[0-9a-f]{64}$/, `${n} is 32 random bytes in hex`);
    assert.equal(new Set(Object.values(secrets)).size, SECRET_NAMES.length, 'every user has a password of its own');
    const picked = JSON.parse(await fs.readFile(paths.portsFile, 'utf8')) as Record<string, number>;
    const host = JSON.parse(await fs.readFile(paths.hostFile, 'utf8')) as { etcd: { clientPort: number } };
    ports = { redis: picked.redis!, pg: picked.pg0!, etcd: host.etcd.clientPort };
  });

  it('nothing in the state directory is open to others: secrets 0600 in 0700, data and log directories 0700', async () => {
    const pgGid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    const mode = (p: string): number => fsSync.statSync(p).mode & 0o777;
    assert.equal(mode(paths.secrets), 0o700);
    for (const n of SECRET_NAMES) assert.equal(mode(paths.secret(n)), 0o600, n);
    assert.equal(mode(paths.adminToken), 0o600);
    for (const dir of [paths.logs, paths.etcdData, paths.redisDir, paths.pgData(0), paths.haproxyDir]) assert.equal(mode(dir), 0o700, dir);
    const logs = await fs.readdir(paths.logs);
    assert.ok(logs.includes('i1.log') && logs.includes('redis.log') && logs.includes('agent.log'), logs.join(' '));
    for (const f of logs) assert.equal(mode(path.join(paths.logs, f)), 0o600, f);
    // PostgreSQL (its own OS user) passes through these, by its group; nobody else may.
    const passages = new Set([paths.root, paths.run, path.join(paths.root, 'pg'), path.dirname(paths.pgData(0))]);
    const open: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fs.readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        const st = await fs.lstat(p);
        if (st.isSymbolicLink()) continue;
        const m = st.mode & 0o777;
        if ((m & 0o007) !== 0) open.push(`${m.toString(8)} ${p} (others)`);
        else if ((m & 0o070) !== 0 && !(passages.has(p) && m === 0o710 && st.gid === pgGid)) open.push(`${m.toString(8)} ${p} (group ${st.gid})`);
        if (st.isDirectory()) await walk(p);
      }
    };
    const rootMode = mode(paths.root);
    assert.ok(rootMode === 0o700 || (rootMode === 0o710 && fsSync.statSync(paths.root).gid === pgGid), `state dir mode ${rootMode.toString(8)}`);
    await walk(paths.root);
    assert.deepEqual(open, [], 'files or directories open to others');
  });

  it('as nobody: the state directory, the secrets, the token, the logs and the AOF cannot be read', async () => {
    const ls = await asNobody('ls', [paths.root]);
    assert.notEqual(ls.code, 0);
    assert.match(said(ls), /Permission denied/);
    const aof = path.join(paths.redisDir, 'appendonlydir');
    const files = [...SECRET_NAMES.map((n) => paths.secret(n)), paths.adminToken, paths.log('i1'), paths.log('agent'), paths.hostFile, path.join(aof, (await fs.readdir(aof)).find((f) => f.endsWith('.aof'))!)];
    for (const f of files) {
      const r = await asNobody('cat', [f]);
      assert.notEqual(r.code, 0, `nobody read ${f}`);
      assert.match(said(r), /Permission denied/, f);
    }
  });

  it('no process command line carries a secret (ps shows them to everyone)', async () => {
    const leaks: string[] = [];
    for (const pid of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      for (const [n, v] of Object.entries(secrets)) if (cmd.includes(v)) leaks.push(`${n} in pid ${pid}: ${cmd.split('\0').join(' ').slice(0, 200)}`);
    }
    assert.deepEqual(leaks, []);
    const st = await readStatus(paths);
    const i1 = st!.processes.find((p) => p.name === 'i1')!;
    const args = (await fs.readFile(`/proc/${i1.pid}/cmdline`, 'utf8')).split('\0');
    for (const flag of ['--redis-password-file', '--pg-password-file', '--etcd-password-file']) assert.ok(args.includes(flag), `i1 runs with ${flag}: ${args.join(' ')}`);
  });

  it('PostgreSQL: as nobody, no superuser over TCP, no parley without its password, no socket', async () => {
    const psql = (user: string, db: string, sql: string, env: Record<string, string> = {}): Promise<CliResult> =>
      asNobody('psql', ['-w', '-X', '-h', '127.0.0.1', '-p', String(ports.pg), '-U', user, '-d', db, '-Atc', sql], env);
    const su = await psql('postgres', 'postgres', 'select 1');
    assert.notEqual(su.code, 0);
    assert.match(said(su), /no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres"/);
    const none = await psql('parley', 'parley', 'select 1');
    assert.notEqual(none.code, 0);
    assert.match(said(none), /no password supplied/);
    const wrong = await psql('parley', 'parley', 'select 1', { PGPASSWORD: 'not-the-password' });
    assert.notEqual(wrong.code, 0);
    assert.match(said(wrong), /password authentication failed for user "parley"/);
    const sock = await asNobody('psql', ['-w', '-X', '-h', paths.pgSockets, '-p', String(ports.pg), '-U', 'postgres', '-d', 'postgres', '-Atc', 'select 1']);
    assert.notEqual(sock.code, 0);
    assert.match(said(sock), /Permission denied/);
    // With the password the role works, and is no more than the owner of its database.
    const pw = { PGPASSWORD: secrets['pg-parley']! };
    const me = await psql('parley', 'parley', "select current_user || ' ' || rolsuper::text || ' ' || (select pg_get_userbyid(datdba) from pg_database where datname = 'parley') from pg_roles where rolname = current_user", pw);
    assert.equal(me.code, 0, said(me));
    assert.equal(me.stdout.trim(), 'parley false parley');
    const program = await psql('parley', 'parley', "copy (select 1) to program 'id'", pw);
    assert.notEqual(program.code, 0);
    assert.match(said(program), /must be superuser or have privileges of the pg_execute_server_program role/);
    const other = await psql('parley', 'postgres', 'select 1', pw);
    assert.notEqual(other.code, 0);
    assert.match(said(other), /permission denied for database "postgres"/);
  });

  it('Redis: as nobody, nothing without a login; the instances\' user only on its keys and topics', async () => {
    const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => asNobody('redis-cli', ['-p', String(ports.redis), '--no-auth-warning', ...args], env);
    const anon = await cli(['GET', 'parley:x']);
    assert.match(said(anon), /NOAUTH Authentication required/);
    const pub = await cli(['PUBLISH', 'parley:t:#lab', 'forged']);
    assert.match(said(pub), /NOAUTH Authentication required/);
    const wrong = await cli(['--user', 'parley', '--pass', 'not-the-password', 'PING']);
    assert.match(said(wrong), /WRONGPASS/);
    const asParley = (...args: string[]): Promise<CliResult> => cli(['--user', 'parley', ...args], { REDISCLI_AUTH: secrets['redis-parley']! });
    assert.match((await asParley('PING')).stdout, /PONG/);
    assert.match((await asParley('EXISTS', 'parley:sec-test')).stdout, /^0/);
    assert.match((await asParley('PUBLISH', 'parley:t:sec-test', 'x')).stdout, /^\d+/);
    const denied: Array<[string[], RegExp]> = [
      [['GET', 'other:x'], /no permissions to access one of the keys/],
      [['PUBLISH', 'other', 'x'], /no permissions to access one of the channels/],
      [['SUBSCRIBE', 'parley:other'], /no permissions to access one of the channels/],
      [['CONFIG', 'GET', 'dir'], /no permissions to run the 'config\|get' command/],
      [['FLUSHALL'], /no permissions to run the 'flushall' command/],
      [['KEYS', 'parley:*'], /no permissions to run the 'keys' command/],
      [['ACL', 'LIST'], /no permissions to run the 'acl\|list' command/],
      [['SCRIPT', 'FLUSH'], /no permissions to run the 'script\|flush' command/],
      [['CLIENT', 'LIST'], /no permissions to run the 'client\|list' command/],
      [['SHUTDOWN'], /no permissions to run the 'shutdown' command/],
    ];
    for (const [args, why] of denied) assert.match(said(await asParley(...args)), why, args.join(' '));
  });

  it('etcd: as nobody, unauthenticated reads and writes are refused; the instances\' user stays under its prefix', async () => {
    const gateway = (route: string, body: Record<string, string>): Promise<CliResult> =>
      asNobody(process.execPath, ['-e', `fetch(${JSON.stringify(`http://127.0.0.1:${ports.etcd}${route}`)}, { method: 'POST', body: ${JSON.stringify(JSON.stringify(body))} }).then((r) => r.text()).then((t) => console.log(t), (e) => { console.error(String(e)); process.exit(1); })`]);
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const get = await gateway('/v3/kv/range', { key: b64('/parley/config'), range_end: b64('/parley0') });
    assert.equal(get.code, 0, said(get));
    assert.match(get.stdout, /user name is empty/);
    const put = await gateway('/v3/kv/put', { key: b64('/parley/hosts/evil/plan'), value: b64('{}') });
    assert.match(put.stdout, /user name is empty/);
    const badLogin = await gateway('/v3/auth/authenticate', { name: 'parley', password: 'not-the-password' });
    assert.match(badLogin.stdout, /authentication failed/);

    const inst = new Etcd3({ hosts: `http://127.0.0.1:${ports.etcd}`, auth: { username: 'parley', password: secrets['etcd-parley']! } });
    try {
      const keys = etcdKeys('parley');
      const registered = await inst.getAll().prefix(keys.instances).keys();
      assert.ok(registered.includes(keys.instance('i1')), registered.join(' '));
      await assert.rejects(inst.get('/elsewhere').string(), /permission denied/);
      await assert.rejects(inst.put('/elsewhere').value('x').exec(), /permission denied/);
    } finally {
      inst.close();
    }
  });

  it('the instances work with their credentials: clients chat through the front door, history comes from the shard', async () => {
    const connect = async (nick: string): Promise<IrcClient> => {
      const c = new IrcClient({ transport: 'tcp', host: '127.0.0.1', port: ircPort, nick, connectTimeoutMs: 10_000 });
      c.on('error', () => undefined);
      clients.push(c);
      await c.connect();
      return c;
    };
    const a = await connect('ann');
    const b = await connect('ben');
    const isChat = (m: IrcMessage): boolean => m.command === 'PRIVMSG' && m.params[0] === '#sec' && m.tags.msgid !== undefined;
    await a.request('JOIN #sec');
    await b.request('JOIN #sec');
    const hi = await a.request('PRIVMSG #sec :hi ben');
    const id = hi[0]?.tags.msgid;
    assert.ok(id, 'the message is acknowledged with its msgid (stored on the shard)');
    await seen(b, (m) => isChat(m) && m.tags.msgid === id);
    const history = (await b.request('CHATHISTORY LATEST #sec * 10')).filter(isChat);
    assert.deepEqual(history.map((m) => m.params[1]), ['hi ben']);

    const st = ok(await parley(['status', '--json']), 'status');
    const report = JSON.parse(st) as { healthy: boolean; rows: Array<{ kind: string; healthy: boolean; health: string; connections: number | null }> };
    assert.ok(report.healthy, JSON.stringify(report.rows.filter((r) => !r.healthy)));
    assert.ok((report.rows.find((r) => r.kind === 'redis')?.connections ?? 0) > 0, 'status logged in to Redis');
    assert.match(ok(await parley(['config', 'get']), 'config get'), /"networkName"/);
  });
});
