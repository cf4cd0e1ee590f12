import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OptionsError, expandSourceIps, parseLoadOptions, senderCount } from '../../packages/cli/src/load/options.js';
import { Timeline } from '../../packages/cli/src/load/stats.js';
import { leadingInt } from '../../packages/cli/src/load/drivers/driver.js';

const base = { target: ['127.0.0.1:6667'] };
const refused = (raw: Record<string, unknown>, pattern: RegExp): void => {
  assert.throws(() => parseLoadOptions({ ...base, ...raw }), (err: unknown) => err instanceof OptionsError && pattern.test(err.message) && !err.message.includes('\n'));
};

describe('parley load options', () => {
  it('takes the command line strings and fills in the defaults', () => {
    const o = parseLoadOptions({ target: ['127.0.0.1:1,[::1]:2'], users: '20', rooms: '4', membersPerRoom: '5', rate: '2.5', sourceIps: '127.0.0.2-4' });
    assert.deepEqual(o.target, [{ host: '127.0.0.1', port: 1 }, { host: '::1', port: 2 }]);
    assert.equal(o.users, 20);
    assert.equal(o.rate, 2.5);
    assert.equal(o.duration, 10);
    assert.equal(o.messagesPerRoom, null);
    assert.deepEqual(o.sourceIps, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.match(o.nickPrefix, /^l[a-z0-9]{4}$/);
    assert.equal(o.roomPrefix, `${o.nickPrefix}r`);
  });

  it('understands max, idle, a total rate and --messages-per-room', () => {
    assert.equal(parseLoadOptions({ ...base, rate: 'max' }).rate, 'max');
    assert.equal(parseLoadOptions({ ...base, rate: '0', rooms: '0' }).rate, 0);
    const t = parseLoadOptions({ ...base, rateTotal: '500' });
    assert.equal(t.rate, null);
    assert.equal(t.rateTotal, 500);
    const m = parseLoadOptions({ ...base, messagesPerRoom: '7' });
    assert.equal(m.duration, null);
    assert.equal(m.messagesPerRoom, 7);
  });

  it('lets the first --senders-per-room members of each room send, every member by default', () => {
    assert.equal(parseLoadOptions({ ...base, membersPerRoom: '5' }).sendersPerRoom, 5);
    const o = parseLoadOptions({ ...base, users: '10', rooms: '2', membersPerRoom: '5', sendersPerRoom: '1' });
    assert.equal(o.sendersPerRoom, 1);
    assert.equal(senderCount(o), 2);
    assert.equal(senderCount(parseLoadOptions({ ...base, users: '10', rooms: '2', membersPerRoom: '5' })), 10);
  });

  it('keeps the transport for IRC servers (parley, irc); the baselines speak WebSocket only', () => {
    assert.equal(parseLoadOptions({ ...base, driver: 'irc', transport: 'tcp' }).transport, 'tcp');
    assert.equal(parseLoadOptions({ ...base, driver: 'irc', transport: 'ws' }).transport, 'ws');
    assert.equal(parseLoadOptions({ ...base, driver: 'socketio', transport: 'tcp' }).transport, 'ws');
  });

  it('refuses what cannot work, in one line that names the flag', () => {
    refused({ users: '0' }, /^--users/);
    refused({ users: '2.5' }, /^--users must be a whole number/);
    refused({ users: '5', membersPerRoom: '6' }, /--members-per-room 6 is more than --users 5/);
    refused({ duration: '0' }, /^--duration/);
    refused({ rate: 'fast' }, /^--rate/);
    refused({ rate: '1', rateTotal: '5' }, /either --rate or --rate-total/);
    refused({ duration: '1', messagesPerRoom: '5' }, /either --duration or --messages-per-room/);
    refused({ users: '1000', rooms: '100', membersPerRoom: '10', rate: '1000' }, /more than one load process/);
    refused({ users: '10', rooms: '500' }, /allows 100 per user/);
    refused({ rooms: '0' }, /--rooms 0/);
    refused({ rate: '0', messagesPerRoom: '3' }, /idle/);
    refused({ target: ['nohost'] }, /^--target: 'nohost' is not host:port/);
    refused({ target: ['h:70000'] }, /not host:port/);
    refused({ payloadBytes: '8' }, /^--payload-bytes/);
    refused({ sourceIps: '127.0.0.9-127.0.0.2' }, /empty/);
    refused({ nickPrefix: '1abc' }, /--nick-prefix/);
    refused({ bogus: 1 }, /unknown option/);
    refused({ membersPerRoom: '5', sendersPerRoom: '6' }, /--senders-per-room 6 is more than --members-per-room 5/);
    refused({ sendersPerRoom: '0' }, /^--senders-per-room/);
    refused({ driver: 'inspircd' }, /^--driver must be parley, irc, socketio or ws/);
  });

  it('expands source address ranges', () => {
    assert.deepEqual(expandSourceIps('127.0.0.254-127.0.1.1'), ['127.0.0.254', '127.0.0.255', '127.0.1.0', '127.0.1.1']);
    assert.deepEqual(expandSourceIps('10.0.0.1,10.0.0.1,10.0.0.3'), ['10.0.0.1', '10.0.0.3']);
    assert.throws(() => expandSourceIps('127.0.0.1-127.0.8.1'), /more than 1024/);
  });
});

describe('load accounting helpers', () => {
  it('reads the message number at the start of a text', () => {
    assert.equal(leadingInt('123 xxx'), 123);
    assert.equal(leadingInt('0'), 0);
    assert.equal(leadingInt('x1'), -1);
    assert.equal(leadingInt(''), -1);
  });

  it('keeps one timeline entry per second, silent seconds included', () => {
    const tl = new Timeline(1000);
    tl.addSent(1000.5);
    tl.addAck(1100, 4);
    tl.addSent(3500);
    tl.addDelivery(3600, 8);
    const e = tl.finish(3700);
    assert.deepEqual(e.map((x) => [x.t, x.sent, x.acked, x.deliveries]), [[0, 1, 1, 0], [1, 0, 0, 0], [2, 1, 0, 1]]);
    // HDR histograms report a bucket's highest equivalent value (3 significant digits).
    assert.ok(Math.abs(e[0]!.ack.p50 - 4) < 0.01, String(e[0]!.ack.p50));
    assert.ok(Math.abs(e[2]!.deliver.p99 - 8) < 0.01, String(e[2]!.deliver.p99));
  });

  it('per-room rates (programmatic): one per room, not with --rate, within one process\'s reach', () => {
    const o = parseLoadOptions({ ...base, rooms: '3', users: '6', membersPerRoom: '2', roomRates: [1, 2.5, 10], messagesPerRoom: '20' });
    assert.deepEqual(o.roomRates, [1, 2.5, 10]);
    assert.equal(o.rate, null);
    assert.equal(o.rateTotal, null);
    assert.equal(parseLoadOptions({ ...base }).roomRates, null);
    refused({ rooms: '3', users: '6', membersPerRoom: '2', roomRates: [1, 2] }, /2 given for 3 rooms/);
    refused({ rooms: '2', users: '4', membersPerRoom: '2', roomRates: [1, 2], rate: '1' }, /per-room rates or --rate/);
    refused({ rooms: '2', users: '4', membersPerRoom: '2', roomRates: [1, 0] }, /more than 0/);
    refused({ rooms: '2', users: '4', membersPerRoom: '2', roomRates: [150_000, 150_000] }, /more than one load process/);
  });
});
