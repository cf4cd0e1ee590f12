/**
 * The `sts` capability (IRCv3 STS) on chat nodes with in-memory backends: shown in `CAP LS 302`
 * only when the node has a policy (the server sets one when it serves IRC over TLS), with the
 * port on plain connections and without it on TLS ones, never over WebSocket nor to `CAP LS`
 * without 302, and never REQ-able.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatStsValue, parseCapList, parseStsValue, SUPPORTED_CAPS } from '@parley/protocol';
import type { ChatNode } from '../../packages/server/src/core/node.js';
import type { Session, Transport } from '../../packages/server/src/core/session.js';
import { TestCluster } from './support/core.js';

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start(2);
  cluster.node(0).sts = { port: 6697, duration: 3600 };
});
after(() => cluster.close());

/** A connection of a chosen kind; `ask` sends one line and resolves to the CAP reply it gets. */
function connect(node: ChatNode, kind: 'tcp' | 'ws', secure: boolean): { ask(line: string): Promise<{ sub: string; caps: Map<string, string> }> } {
  let waiting: ((line: string) => void) | null = null;
  const transport: Transport = {
    kind, secure, remoteAddress: '127.0.0.1',
    writeLines: (ls) => {
      for (const l of ls) if (/ CAP \* /.test(l)) waiting?.(l);
    },
    bufferedBytes: () => 0,
    close: () => undefined,
    destroy: () => undefined,
  };
  const session: Session = node.connect(transport);
  return {
    ask: (line) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no CAP reply to ${line}`)), 2000);
      waiting = (l) => {
        clearTimeout(timer);
        waiting = null;
        const m = / CAP \* (\S+) :(.*)$/.exec(l);
        resolve({ sub: m?.[1] ?? '', caps: parseCapList(m?.[2] ?? '') });
      };
      node.onLine(session, line);
    }),
  };
}

const ls = async (node: ChatNode, kind: 'tcp' | 'ws', secure: boolean, line = 'CAP LS 302'): Promise<Map<string, string>> =>
  (await connect(node, kind, secure).ask(line)).caps;

describe('the sts capability', () => {
  it('formats and parses the values', () => {
    assert.equal(formatStsValue({ port: 6697, duration: 60 }, false), 'port=6697,duration=60');
    assert.equal(formatStsValue({ port: 6697, duration: 60 }, true), 'duration=60');
    assert.deepEqual([...parseStsValue('port=6697,duration=60,preload')], [['port', '6697'], ['duration', '60'], ['preload', '']]);
    assert.equal(SUPPORTED_CAPS.includes('sts' as never), false, 'sts is informational: clients never REQ it');
  });

  it('plain IRC: CAP LS 302 names the TLS port and the duration', async () => {
    const caps = await ls(cluster.node(0), 'tcp', false);
    assert.equal(caps.get('sts'), 'port=6697,duration=3600');
    assert.equal(caps.get('sasl'), 'PLAIN,SCRAM-SHA-256', 'the other capabilities are still there, with their values');
  });

  it('IRC over TLS: only the duration', async () => {
    assert.equal((await ls(cluster.node(0), 'tcp', true)).get('sts'), 'duration=3600');
  });

  it('not without 302 (no values), not over WebSocket, not on a node without a policy; REQ sts is refused', async () => {
    assert.equal((await ls(cluster.node(0), 'tcp', false, 'CAP LS')).has('sts'), false);
    assert.equal((await ls(cluster.node(0), 'ws', false)).has('sts'), false);
    assert.equal((await ls(cluster.node(0), 'ws', true)).has('sts'), false);
    assert.equal((await ls(cluster.node(1), 'tcp', false)).has('sts'), false);
    const req = await connect(cluster.node(0), 'tcp', false).ask('CAP REQ :sts');
    assert.equal(req.sub, 'NAK');
  });

  it('a policy can be taken away (the node then shows none)', async () => {
    cluster.node(1).sts = { port: 7000, duration: 0 };
    assert.equal((await ls(cluster.node(1), 'tcp', false)).get('sts'), 'port=7000,duration=0');
    cluster.node(1).sts = null;
    assert.equal((await ls(cluster.node(1), 'tcp', false)).has('sts'), false);
  });
});
