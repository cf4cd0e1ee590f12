/**
 * Channel modes and owned channels on two real instances (etcd, Redis with the Lua scripts,
 * PostgreSQL): every rule is set on one instance and enforced for a client of the other, as RFC
 * 2812 and modern.ircdocs.horse describe them; a founder regains ops after everyone left.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InstanceOptionsSchema, ParleyServer } from '@parley/server';
import { pino } from 'pino';
import { startServices, uniqueName, type Services } from '../harness/index.js';
import { Raw, escapeRe } from '../harness/raw.js';

let services: Services;
const servers: ParleyServer[] = [];
const raws: Raw[] = [];

before(async () => {
  services = await startServices();
  const prefix = uniqueName('modes');
  const pg = [await services.postgres!.createDatabase(`${prefix}_0`)];
  for (const id of ['m1', 'm2']) {
    const s = new ParleyServer(
      InstanceOptionsSchema.parse({ id, prefix, tcpPort: 0, wsPort: 0, etcd: [services.etcd!.endpoint], redis: services.redis!.url, pg }),
      pino({ level: 'silent' }),
    );
    await s.start();
    servers.push(s);
  }
});

after(async () => {
  for (const r of raws) r.end();
  for (const s of servers) await s.close();
  await services?.stop();
});

/** A registered raw client of instance `i`. */
async function user(i: number, prefix: string): Promise<{ r: Raw; nick: string }> {
  const r = new Raw(servers[i]!.tcpPort);
  raws.push(r);
  const nick = uniqueName(prefix).slice(0, 24);
  await r.register(nick);
  return { r, nick };
}

/** Sends a line and waits for `re` in what arrives after it. */
async function expect(r: Raw, line: string, re: RegExp): Promise<string> {
  const from = r.data.length;
  r.send(`${line}\r\n`);
  await r.until(new RegExp(`[\\s\\S]{${from}}[\\s\\S]*?${re.source}`));
  return r.data.slice(from);
}

describe('channel modes across two real instances', () => {
  it('+b/+e, +k, +l, +i with INVITE, +m/+v and +s behave on the other instance', async () => {
    const chan = `#${uniqueName('rm').slice(0, 30)}`;
    const c = escapeRe(chan);
    const a = await user(0, 'ra');
    const b = await user(1, 'rb');
    await expect(a.r, `JOIN ${chan}`, new RegExp(` 366 ${a.nick} ${c} `));

    await expect(a.r, `MODE ${chan} +b ${b.nick}`, new RegExp(`MODE ${c} \\+b ${b.nick}!\\*@\\*`));
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 474 ${b.nick} ${c} `));
    await expect(a.r, `MODE ${chan} +e *!~u@*`, /MODE \S+ \+e/);
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 366 ${b.nick} ${c} `));
    await expect(b.r, `PART ${chan}`, new RegExp(`PART ${c}`));
    await expect(a.r, `MODE ${chan} -be+k ${b.nick} *!~u@* key1`, /MODE \S+ -be\+k/);
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 475 ${b.nick} ${c} `));
    await expect(b.r, `JOIN ${chan} key1`, new RegExp(` 366 ${b.nick} ${c} `));
    await expect(b.r, `PART ${chan}`, new RegExp(`PART ${c}`));
    await expect(a.r, `MODE ${chan} -k+l key1 1`, /MODE \S+ -k\+l \* 1/);
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 471 ${b.nick} ${c} `));
    await expect(a.r, `MODE ${chan} -l+i`, /MODE \S+ -l\+i/);
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 473 ${b.nick} ${c} `));
    const invited = b.r.until(new RegExp(`:${a.nick}!\\S+ INVITE ${b.nick} ${c}`));
    await expect(a.r, `INVITE ${b.nick} ${chan}`, new RegExp(` 341 ${a.nick} ${b.nick} :?${c}`));
    await invited;
    await expect(b.r, `JOIN ${chan}`, new RegExp(` 366 ${b.nick} ${c} `));

    // +m on instance 1: b (instance 2) is refused until voiced; a gets b's message once voiced.
    await expect(a.r, `MODE ${chan} +m`, /MODE \S+ \+m/);
    await b.r.until(new RegExp(`MODE ${c} \\+m`));
    await expect(b.r, `PRIVMSG ${chan} :muted`, new RegExp(` 404 ${b.nick} ${c} `));
    await expect(a.r, `MODE ${chan} +v ${b.nick}`, /MODE \S+ \+v/);
    await b.r.until(new RegExp(`MODE ${c} \\+v ${b.nick}`));
    const heard = a.r.until(/PRIVMSG \S+ :voiced now/);
    b.r.send(`PRIVMSG ${chan} :voiced now\r\n`);
    await heard;
    assert.doesNotMatch(a.r.data, /:muted/);

    // +s: hidden from LIST of an outsider on the other instance.
    const o = await user(1, 'ro');
    await expect(o.r, 'LIST', / 323 /);
    assert.match(o.r.data, new RegExp(` 322 ${o.nick} ${c} `));
    await expect(a.r, `MODE ${chan} +s`, /MODE \S+ \+s/);
    const listed = await expect(o.r, 'LIST', / 323 /);
    assert.doesNotMatch(listed, new RegExp(` 322 ${o.nick} ${c} `));
    await expect(o.r, `NAMES ${chan}`, new RegExp(` 366 ${o.nick} ${c} `));
    assert.doesNotMatch(o.r.data, / 353 /);
  });

  it('ChanServ: the founder regains ops after everyone left; the first one back is not op; modes and topic stay', async () => {
    const chan = `#${uniqueName('own').slice(0, 30)}`;
    const c = escapeRe(chan);
    const f = await user(0, 'fo');
    await expect(f.r, 'REGISTER * * :founder-password', / 900 /);
    await expect(f.r, `JOIN ${chan}`, new RegExp(` 366 ${f.nick} ${c} `));
    await expect(f.r, `PRIVMSG ChanServ :REGISTER ${chan}`, /NOTICE \S+ :\S+ is now registered/);
    await expect(f.r, `TOPIC ${chan} :survives`, /TOPIC \S+ :survives/);
    await expect(f.r, `MODE ${chan} +k door`, /MODE \S+ \+k door/);
    await expect(f.r, `PART ${chan}`, new RegExp(`PART ${c}`));

    const g = await user(1, 'gu');
    await expect(g.r, `JOIN ${chan}`, new RegExp(` 475 ${g.nick} ${c} `));
    const back = await expect(g.r, `JOIN ${chan} door`, new RegExp(` 366 ${g.nick} ${c} `));
    assert.match(back, / 332 \S+ \S+ :survives/);
    assert.match(back, new RegExp(` 353 ${g.nick} = ${c} :${g.nick}\\r\\n`), 'not an operator');
    const opped = g.r.until(new RegExp(`MODE ${c} \\+o ${f.nick}`));
    await expect(f.r, `JOIN ${chan}`, new RegExp(` 366 ${f.nick} ${c} `));
    await opped;
  });
});
