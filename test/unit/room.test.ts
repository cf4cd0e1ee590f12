import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalRoom, REORDER_WAIT_MS, type RoomEvents } from '../../packages/server/src/core/room.js';
import { Outgoing, addTags } from '../../packages/server/src/core/outgoing.js';
import { Cap } from '../../packages/server/src/core/caps.js';
import { Session, type Transport } from '../../packages/server/src/core/session.js';

/** A session whose output is captured synchronously. */
function session(caps: number): { s: Session; lines: string[] } {
  const lines: string[] = [];
  const t: Transport = {
    kind: 'tcp', remoteAddress: '127.0.0.1', writeLines: (l) => lines.push(...l), bufferedBytes: () => 0,
    close: () => undefined, destroy: () => undefined,
  };
  const s = new Session(t, { scheduleFlush: (x) => x.flush() }, 10);
  s.caps = caps;
  return { s, lines };
}

const msg = (seq: number) => new Outgoing(`:a!u@h PRIVMSG #r :m${seq}`, 0, '2026-01-01T00:00:00.000Z', `tag-${seq}`, '');
const text = (...seqs: number[]) => seqs.map((n) => `:a!u@h PRIVMSG #r :m${n}`);

/** Room events that release a gap at once (no store), recording the gaps asked for. */
function events(): RoomEvents & { gaps: [number, number][] } {
  const gaps: [number, number][] = [];
  return { gaps, delivered: () => undefined, gap: (room, from, to) => { gaps.push([from, to]); room.release(); } };
}

describe('LocalRoom', () => {
  it('delivers in sequence order, holding messages that arrive ahead of a gap', () => {
    const room = new LocalRoom('#r', '#r', events());
    const { s, lines } = session(0);
    room.members.add(s);
    room.startAt(0);
    room.accept(2, msg(2), null, null);
    room.accept(3, msg(3), null, null);
    assert.deepEqual(lines, [], 'held while 1 is missing');
    room.accept(1, msg(1), null, null);
    assert.deepEqual(lines, text(1, 2, 3));
    room.dispose();
  });

  it('asks for the missing range after the wait, releases what is held, and still delivers a late message once', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const ev = events();
    const room = new LocalRoom('#r', '#r', ev);
    const { s, lines } = session(0);
    room.members.add(s);
    room.startAt(5);
    room.accept(8, msg(8), null, null);
    assert.equal(lines.length, 0);
    t.mock.timers.tick(REORDER_WAIT_MS - 1);
    assert.equal(lines.length, 0, 'still waiting for the gap');
    t.mock.timers.tick(1);
    assert.deepEqual(ev.gaps, [[6, 7]], 'the gap is asked for');
    assert.deepEqual(lines, text(8), 'released after the reorder wait');
    room.accept(6, msg(6), null, null);
    room.accept(6, msg(6), null, null);
    assert.deepEqual(lines, text(8, 6), 'a late message is delivered, once');
    room.dispose();
  });

  it('delivers what a gap fill brings in order before what was held', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const room = new LocalRoom('#r', '#r', {
      delivered: () => undefined,
      gap: (r, from, to) => {
        for (let q = from; q <= to; q++) r.accept(q, msg(q), null, null);
        r.release();
      },
    });
    const { s, lines } = session(0);
    room.members.add(s);
    room.startAt(0);
    room.accept(3, msg(3), null, null);
    room.accept(4, msg(4), null, null);
    t.mock.timers.tick(REORDER_WAIT_MS);
    assert.deepEqual(lines, text(1, 2, 3, 4));
    room.accept(2, msg(2), null, null);
    assert.deepEqual(lines, text(1, 2, 3, 4), 'a message that comes after its fill is not delivered twice');
    room.dispose();
  });

  it('never delivers a sequence number twice, but the sender still gets its echo', () => {
    const room = new LocalRoom('#r', '#r', events());
    const a = session(Cap.EchoMessage);
    const b = session(0);
    room.members.add(a.s);
    room.members.add(b.s);
    room.startAt(0);
    room.accept(1, msg(1), null, null); // filled from the store first
    room.accept(1, msg(1), a.s, 'ECHO1'); // then the sender's own commit
    assert.deepEqual(b.lines, text(1));
    assert.deepEqual(a.lines, [...text(1), 'ECHO1'], 'the acknowledgement is never lost');
    room.dispose();
  });

  it("writes the sender's echo in room order and skips the sender otherwise", () => {
    const room = new LocalRoom('#r', '#r', events());
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
    const o = new Outgoing(':x PRIVMSG #r :hi', 0, 'T', 'id-1', '+draft/reply=5');
    const full = o.lineFor(Cap.MessageTags);
    assert.equal(full, '@time=T;msgid=id-1;+draft/reply=5 :x PRIVMSG #r :hi');
    for (let i = 0; i < 100; i++) {
      assert.equal(o.lineFor(Cap.MessageTags | (i % 2 ? Cap.ServerTime : 0)), full);
      assert.equal(o.lineFor(Cap.ServerTime), '@time=T :x PRIVMSG #r :hi');
      assert.equal(o.lineFor(0), ':x PRIVMSG #r :hi');
    }
    assert.equal(o.builds, 2, 'two tagged variants, each built once for 300 recipients');
    assert.equal(o.lineWith(0, 'batch=b1'), '@batch=b1 :x PRIVMSG #r :hi');
    assert.equal(addTags('@a=1 :x PING', 'label=q'), '@label=q;a=1 :x PING');
    assert.equal(addTags(':x PING', 'label=q'), '@label=q :x PING');
  });
});
