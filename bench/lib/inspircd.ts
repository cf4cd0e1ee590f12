/**
 * The InspIRCd peer: Debian's `inspircd` (C++, one process, no persistence) started with its own
 * configuration in a temp dir, on two free loopback ports (plain IRC, and WebSocket through its
 * `websocket` module), in the foreground (`--nofork`), with the flood limits out of the way and the
 * IRCv3 modules the load engine needs to count an acknowledgement per message: echo-message (the
 * echo is the acknowledgement) and labeled-response (the echo carries the message's label).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface InspircdProcess {
  pid: number;
  tcpPort: number;
  wsPort: number;
  version: string;
  /** Stops it (SIGTERM, SIGKILL after 5 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * IRCv3 modules of InspIRCd 3: `cap` negotiates; `ircv3_ctctags` offers message-tags (without it a
 * client's `label` tag is dropped), `ircv3_batch` and `ircv3_labeledresponse` put the label on the
 * echo, `ircv3_echomessage` sends the echo, `ircv3_msgid` gives every message a msgid (the engine
 * checks that every member saw the same one, in order), `sha1` is what `websocket` hashes with.
 */
export const INSPIRCD_MODULES = ['cap', 'ircv3', 'ircv3_batch', 'ircv3_ctctags', 'ircv3_echomessage', 'ircv3_labeledresponse', 'ircv3_msgid', 'ircv3_servertime', 'sha1', 'websocket'];

const INSTALL_HINT = 'InspIRCd is not installed: apt-get install inspircd (Debian 12 ships 3.15), or set INSPIRCD=/path/to/inspircd';

/** The binary: $INSPIRCD, else `inspircd` on the PATH or in /usr/sbin. */
export function inspircdBinary(): string {
  const given = process.env.INSPIRCD;
  if (given !== undefined && given !== '') {
    if (!fs.existsSync(given)) throw new Error(`INSPIRCD=${given}: no such file`);
    return given;
  }
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    if (dir === '') continue;
    const p = path.join(dir, 'inspircd');
    if (fs.existsSync(p)) return p;
  }
  throw new Error(INSTALL_HINT);
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/**
 * The configuration: one connect class for everyone with no flood penalty that can bite (fakelag
 * off, a threshold no benchmark reaches), send and receive queues of 64 MiB, no clone limits, 1000
 * channels per user, no DNS or ident lookups, no ping timeouts during a run.
 */
export function inspircdConfig(dir: string, tcpPort: number, wsPort: number): string {
  return [
    '<server name="inspircd.bench" description="Parley benchmark peer" network="Bench" id="001">',
    '<admin name="bench" nick="bench" email="bench@localhost">',
    `<bind address="127.0.0.1" port="${tcpPort}" type="clients">`,
    `<bind address="127.0.0.1" port="${wsPort}" type="clients" hook="websocket">`,
    ...INSPIRCD_MODULES.map((m) => `<module name="${m}">`),
    '<websocket defaultmode="text">',
    '<wsorigin allow="*">',
    '<connect name="bench" allow="*" maxchans="1000" timeout="60" pingfreq="3600" hardsendq="64M" softsendq="64M" recvq="64M"' +
      ' threshold="1000000" commandrate="1000000000" fakelag="no" localmax="1000000" globalmax="1000000" resolvehostnames="no" useident="no" limit="1000000">',
    '<channels users="1000" opers="1000">',
    '<dns server="127.0.0.1" timeout="1">',
    `<pid file="${path.join(dir, 'inspircd.pid')}">`,
    `<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="${path.join(dir, 'inspircd.log')}">`,
    `<files motd="${path.join(dir, 'motd.txt')}">`,
    '<performance softlimit="100000" somaxconn="4096" clonesonconnect="no" quietbursts="yes">',
    '<security hideserver="" maxtargets="20">',
    '<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes" pingwarning="15">',
    '',
  ].join('\n');
}

/** Starts InspIRCd; resolves once it says it is running on both ports. */
export async function startInspircd(): Promise<InspircdProcess> {
  const bin = inspircdBinary();
  const version = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
  let lastError: Error | undefined;
  // Free ports are picked before InspIRCd binds them; another process may take one in between.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-inspircd-'));
    const [tcpPort, wsPort] = [await freePort(), await freePort()];
    fs.writeFileSync(path.join(dir, 'motd.txt'), 'Parley benchmark peer\n');
    const conf = path.join(dir, 'inspircd.conf');
    fs.writeFileSync(conf, inspircdConfig(dir, tcpPort, wsPort));
    // It refuses to run as root unless told to; the bench runs as whoever runs it.
    const args = ['--config', conf, '--nofork', ...(process.getuid?.() === 0 ? ['--runasroot'] : [])];
    const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    children.set(child, dir);
    child.once('exit', () => children.delete(child));
    try {
      await running(child);
      const pid = child.pid ?? -1;
      return { pid, tcpPort, wsPort, version, stop: once(async () => stopInspircd(child, dir)) };
    } catch (err) {
      lastError = err as Error;
      await stopInspircd(child, dir);
      if (!/bind/i.test(lastError.message)) break;
    }
  }
  throw lastError ?? new Error('InspIRCd did not start');
}

/** Running InspIRCd processes and their temp dirs: a bench that exits without stopping them (a second Ctrl-C) still kills them. */
const children = new Map<ChildProcess, string>();
process.on('exit', () => {
  for (const [c, dir] of children) {
    c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Waits for "now running"; rejects with its output when it exits first, or when a port failed to bind. */
function running(child: ChildProcess): Promise<void> {
  let out = '';
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`InspIRCd did not start within 20 s:\n${out.slice(-2000)}`)), 20_000);
    const onData = (c: string): void => {
      out += c;
      if (/failed to bind|could not bind/i.test(out)) {
        clearTimeout(t);
        reject(new Error(`InspIRCd could not bind its ports:\n${out.slice(-2000)}`));
      } else if (/is now running/.test(out)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`InspIRCd exited (${sig ?? code}) before running:\n${out.slice(-2000)}`));
    });
    child.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

async function stopInspircd(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const k = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(k);
  }
  if (process.env.PARLEY_KEEP_TEST_DIR !== '1') fs.rmSync(dir, { recursive: true, force: true });
}

function once(f: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= f());
}
