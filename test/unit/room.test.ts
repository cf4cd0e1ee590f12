import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalRoom } from '../../packages/server/src/core/room.js';
import { Outgoing, addTags } from '../../packages/server/src/core/outgoing.js';
import { Cap } from '../../packages/server/src/core/caps.js';
import { Session, type Transport } from '../../packages/server/src/core/session.js';

/** A session whose output is captured synchronously. */
function session(caps: number): { s: Session; lines: string[] } {
  const lines: string[] = [];
  const t: Transport = { kind: 'tcp', remoteAddress: '127.0.0.1', writeLines: (l) => lines.push(...l), bufferedBytes: () => 0, close: () => undefined };
  const s = new Session(t, { scheduleFlush: (x) => x.flush() }, 10);
  s.caps = caps;
  return { s, lines };
}

const msg = (seq: number) => new Outgoing(`:a!u@h PRIVMSG #r :m${seq}`, '2026-01-01T00:00:00.000Z', `tag-${seq}`, '');

describe('LocalRoom', () => {
  it('delivers in sequence order, holding messages that arrive ahead of a gap', () => {
    const room = new LocalRoom('#r', '#r', () => undefined);
    const { s, lines } = session(0);
    room.members.add(s);
    room.startAt(0);
    room.accept(2, msg(2), null, null);
    room.accept(3, msg(3), null, null);
    assert.deepEqual(lines, [], 'held while 1 is missing');
    room.accept(1, msg(1), null, null);
    assert.deepEqual(lines, ['m1', 'm2', 'm3'].map((t) => `:a!u@h PRIVMSG #r :${t}`));
    room.dispose();
  });

  it('never drops a late message and releases a gap after the wait', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const room = new LocalRoom('#r', '#r', () => undefined);
    const { s, lines } = session(0);
    room.members.add(s);
    room.startAt(5);
    room.accept(8, msg(8), null, null);
    assert.equal(lines.length, 0);
    t.mock.timers.tick(249);
    assert.equal(lines.length, 0, 'still waiting for the gap');
    t.mock.timers.tick(1);
    assert.equal(lines.length, 1, 'released after the reorder wait');
    room.accept(6, msg(6), null, null);
    assert.equal(lines.length, 2, 'a late message is still delivered');
    room.dispose();
  });

  it("writes the sender's echo in room order and skips the sender otherwise", () => {
    const room = new LocalRoom('#r', '#r', () => undefined);
    const a = session(Cap.MessageTags | Cap.EchoMessage);
    const b = session(Cap.ServerTime);
    room.members.add(a.s);
    room.members.add(b.s);
    room.startAt(0);
    room.accept(2, msg(2), a.s, 'ECHO2');
    room.accept(1, msg(1), null, null);
    assert.deepEqual(a.lines, ['@time=2026-01-01T00:00:00.000Z;msgid=tag-1 :a!u@h PRIVMSG #r :m1', 'ECHO2']);
    assert.deepEqual(b.lines, ['@time=2026-01-01T00:00:00.000Z :a!u@h PRIVMSG #r :m1', '@time=2026-01-01T00:00:00.000Z :a!u@h PRIVMSG #r :m2']);
    room.dispose();
  });
});

describe('Outgoing', () => {
  it('serialises each variant once and shares it', () => {
    const o = new Outgoing(':x PRIVMSG #r :hi', 'T', 'id-1', '+draft/reply=5');
    assert.equal(o.lineFor(Cap.MessageTags), '@time=T;msgid=id-1;+draft/reply=5 :x PRIVMSG #r :hi');
    assert.equal(o.lineFor(Cap.MessageTags), o.lineFor(Cap.MessageTags | Cap.ServerTime));
    assert.equal(o.lineFor(Cap.ServerTime), '@time=T :x PRIVMSG #r :hi');
    assert.equal(o.lineFor(0), ':x PRIVMSG #r :hi');
    assert.equal(o.lineWith(0, 'batch=b1'), '@batch=b1 :x PRIVMSG #r :hi');
    assert.equal(addTags('@a=1 :x PING', 'label=q'), '@label=q;a=1 :x PING');
    assert.equal(addTags(':x PING', 'label=q'), '@label=q :x PING');
  });
});
