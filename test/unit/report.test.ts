import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { ResultFileError, parseResult, readResultFile } from '../../packages/cli/src/load/report-schema.js';
import type { LoadResult } from '../../packages/cli/src/load/report-schema.js';
import { sampleResult } from '../../packages/cli/src/load/report-sample.js';
import { barChart, esc, lineChart, logTicks, niceTicks, truncate } from '../../packages/cli/src/load/report-svg.js';
import { ROOM_LIMIT, buildReport, labelRuns, pct, ratio, topRooms } from '../../packages/cli/src/load/report-html.js';
import type { Run } from '../../packages/cli/src/load/report-html.js';
import { PNG_WIDTH, ReportError, registerReport, renderPng, writeReport } from '../../packages/cli/src/load/report.js';
import { qosChart, qosHeadline, qosStats } from '../../packages/cli/src/load/report-qos.js';

/* `parley report`: the result-file schema, the SVG charts, the HTML page and the command. */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-report-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileNo = 0;
/** Writes `content` (JSON unless a string) to a new file and returns its path. */
function file(content: unknown): string {
  const p = path.join(tmp, `result-${++fileNo}.json`);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

const runs = (...results: LoadResult[]): Run[] => labelRuns(results.map((result, i) => ({ file: `r${i}.json`, result })));

/** A copy of a sample result with `edit` applied to its plain-JSON form. */
function edited(edit: (r: Record<string, any>) => void, base: LoadResult = sampleResult()): unknown {
  const r = JSON.parse(JSON.stringify(base)) as Record<string, any>;
  edit(r);
  return r;
}

/** Reading `content` fails with one line that names the file; returns the line. */
function failure(content: unknown): string {
  const p = file(content);
  try {
    readResultFile(p);
  } catch (e) {
    assert.ok(e instanceof ResultFileError, String(e));
    assert.ok(e.message.startsWith(`${p}: `), e.message);
    assert.ok(!e.message.includes('\n'), `not one line: ${e.message}`);
    return e.message.slice(p.length + 2);
  }
  assert.fail('expected the file to be refused');
}

const HOSTILE = '<script>alert("x")</script> & \'q\' \u0001\u202Eevil\uD800 </svg>';

/** Width and height from a PNG's IHDR chunk. */
function pngSize(buf: Buffer): { width: number; height: number } {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

describe('result files', () => {
  it('a generated result is valid, and reading it back gives the same result', () => {
    const r = sampleResult({ refuse: 0.1, rooms: 50, seconds: 12 });
    assert.deepEqual(readResultFile(file(r)), r);
  });

  it('the generator is deterministic and its books balance', () => {
    const a = sampleResult({ seed: 7, refuse: 0.05, errorShare: 0.01 });
    assert.deepEqual(a, sampleResult({ seed: 7, refuse: 0.05, errorShare: 0.01 }));
    const t = a.totals;
    assert.equal(t.sent, t.acked + t.refused + t.errors);
    assert.equal(a.rooms.reduce((s, r) => s + r.sent, 0), t.sent);
    assert.equal(Object.values(a.refusedByCode).reduce((s, n) => s + n, 0), t.refused);
  });

  it('keys it does not know are ignored (a newer writer stays readable)', () => {
    const r = readResultFile(file(edited((x) => { x.extra = { anything: true }; x.totals.newCounter = 3; })));
    assert.equal((r as Record<string, unknown>).extra, undefined);
  });

  it('a missing file, a directory, and a file that is not JSON', () => {
    const missing = path.join(tmp, 'nope.json');
    assert.throws(() => readResultFile(missing), { message: `${missing}: cannot read: no such file` });
    assert.throws(() => readResultFile(tmp), { message: `${tmp}: cannot read: is a directory` });
    assert.match(failure('{"version": 1,'), /^not JSON: /);
    assert.match(failure(''), /^not JSON: /);
  });

  it('JSON that is not a result', () => {
    assert.equal(failure([1, 2]), 'not a parley load result (expected a JSON object)');
    assert.equal(failure('null'), 'not a parley load result (expected a JSON object)');
    assert.equal(failure({ hello: 'world' }), 'not a parley load result (no "version")');
    assert.equal(failure(edited((x) => { x.version = 2; })), 'unsupported result version 2 (this parley reads version 1)');
    assert.equal(failure(edited((x) => { x.version = '1'; })), 'unsupported result version "1" (this parley reads version 1)');
  });

  it('ill-formed fields are named by their path', () => {
    assert.match(failure(edited((x) => { x.totals.sent = '12'; })), /^totals\.sent: .*expected number/);
    assert.match(failure(edited((x) => { x.totals.acked = -1; })), /^totals\.acked: expected a count \(0 or more\)$/);
    assert.match(failure(edited((x) => { x.totals.lost = 1.5; })), /^totals\.lost: expected a whole number$/);
    assert.match(failure(edited((x) => { delete x.timeline[3].ack.p99; })), /^timeline\[3\]\.ack\.p99: /);
    assert.match(failure(edited((x) => { x.target.kind = 'xmpp'; })), /^target\.kind: /);
    assert.match(failure(edited((x) => { x.startedAt = 'yesterday'; })), /^startedAt: not a date/);
    assert.match(failure(edited((x) => { x.rooms[0].room = 5; })), /^rooms\[0\]\.room: /);
    assert.match(failure(edited((x) => { x.latency.deliver.p999 = null; })), /^latency\.deliver\.p999: /);
    assert.match(failure(edited((x) => { delete x.machine; })), /^machine: /);
  });

  it('many problems: the first three, and how many more', () => {
    const msg = failure(edited((x) => { for (const k of Object.keys(x.totals)) x.totals[k] = 'x'; }));
    assert.match(msg, /^totals\.sent: .*; totals\.acked: .*; totals\.refused: .* \(and 8 more\)$/);
  });

  it('parseResult names whatever it is given as the file', () => {
    assert.throws(() => parseResult('<stdin>', []), { message: '<stdin>: not a parley load result (expected a JSON object)' });
  });
});

describe('SVG charts', () => {
  it('escapes markup and drops characters XML cannot carry', () => {
    assert.equal(esc(`<a href="x">&'</a>`), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;');
    assert.equal(esc('a\u0000b\u0008c\td\ne\uFFFEf\uD800g\u{1F600}'), 'a\uFFFDb\uFFFDc\td\ne\uFFFDf\uFFFDg\u{1F600}');
    assert.equal(truncate('abcdef', 4), 'abc…');
    assert.equal(truncate('abc', 4), 'abc');
    assert.equal(truncate('\u{1F600}\u{1F600}\u{1F600}', 2), '\u{1F600}…');
  });

  it('round ticks', () => {
    assert.deepEqual(niceTicks(0, 97), [0, 20, 40, 60, 80, 100]);
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(0, 0), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(1, 60, 8), [0, 10, 20, 30, 40, 50, 60]);
    assert.deepEqual(logTicks(0.4, 90), [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]);
    assert.deepEqual(logTicks(0.05, 3000), [0.01, 0.1, 1, 10, 100, 1000, 10000]);
    assert.deepEqual(logTicks(3, 3), [1, 2, 5, 10]);
  });

  it('a line chart with no data still draws its frame, with no NaN', () => {
    const svg = lineChart({ title: 'empty', xLabel: 's', panels: [{ yLabel: 'n', series: [] }, { yLabel: 'n', series: [{ label: 'a', color: '#000', points: [] }] }] });
    assert.ok(!/NaN|undefined|Infinity/.test(svg), svg);
    assert.equal(svg.match(/no data/g)?.length, 2);
    pngSize(renderPng(svg));
  });

  it('nulls are gaps; a lone point is a dot; a log scale drops non-positive values', () => {
    const points: Array<[number, number | null]> = [[1, 5], [2, 6], [3, null], [4, 7], [5, null], [6, 8], [7, 9]];
    const svg = lineChart({ title: 't', xLabel: 's', panels: [{ yLabel: 'n', series: [{ label: 'a', color: '#123456', points }] }] });
    const d = /<path d="([^"]+)" fill="none" stroke="#123456"/.exec(svg)?.[1] ?? '';
    assert.equal(d.match(/M/g)?.length, 2, d);
    assert.equal(svg.match(/<circle /g)?.length, 1);
    const log = lineChart({ title: 't', xLabel: 's', panels: [{ yLabel: 'ms', scale: 'log', series: [{ label: 'a', color: '#123456', points: [[1, 0.5], [2, 0], [3, 500]] }] }] });
    assert.match(log, /\(log scale\)/);
    assert.ok(!/NaN|Infinity/.test(log));
  });

  it('a cut "others" bar does not set the scale', () => {
    const svg = barChart({ title: 't', panels: [{ categories: ['a', 'b', 'others'], groups: [{ label: 'g', color: '#111', values: [10, 20, 5000] }], valueLabel: 'n', aggregate: 2 }] });
    assert.match(svg, />20<\/text>/); // the axis ends at 20
    assert.ok(!svg.includes('>5k</text><line'), 'the axis does not reach the aggregate');
    assert.match(svg, /stroke="#ffffff" stroke-width="2.5"/); // the break mark
    assert.match(svg, />5k<\/text>/); // its value, beside the cut bar
  });

  it('hostile text is escaped and the SVG still renders', () => {
    const svg = barChart({ title: HOSTILE, panels: [{ title: HOSTILE, categories: [HOSTILE], groups: [{ label: HOSTILE, color: '#111', values: [1] }], valueLabel: HOSTILE }] });
    assert.ok(!svg.includes('<script'));
    assert.ok(!svg.includes('\u0001'));
    assert.equal(svg.match(/<\/svg>/g)?.length, 1);
    const line = lineChart({ title: HOSTILE, xLabel: HOSTILE, panels: [{ title: HOSTILE, yLabel: HOSTILE, series: [{ label: HOSTILE, color: '#111', points: [[0, 1], [1, 2]] }] }] });
    assert.ok(!line.includes('<script'));
    assert.equal(pngSize(renderPng(svg)).width, PNG_WIDTH);
    assert.equal(pngSize(renderPng(line)).width, PNG_WIDTH);
  });
});

describe('the report page', () => {
  it('the busiest rooms, and the others added up', () => {
    const r = sampleResult({ rooms: 100, refuse: 0.1 });
    const bars = topRooms(r.rooms);
    assert.equal(bars.length, ROOM_LIMIT + 1);
    const others = bars[ROOM_LIMIT];
    assert.equal(others?.room, 'others (60 rooms)');
    assert.equal(others?.rooms, 60);
    for (const k of ['sent', 'acked', 'refused', 'deliveries'] as const) {
      assert.equal(bars.reduce((s, b) => s + b[k], 0), r.rooms.reduce((s, x) => s + x[k], 0), k);
    }
    const sent = bars.slice(0, ROOM_LIMIT).map((b) => b.sent);
    assert.deepEqual(sent, [...sent].sort((a, b) => b - a));
    assert.ok((bars[ROOM_LIMIT - 1]?.sent ?? 0) >= Math.max(...r.rooms.filter((x) => !bars.some((b) => b.room === x.room)).map((x) => x.sent)));
    assert.equal(topRooms(sampleResult({ rooms: ROOM_LIMIT }).rooms).length, ROOM_LIMIT);
    // Ties: by name, with numbers in order.
    const tied = topRooms(['#r10', '#r2', '#r1'].map((room) => ({ room, sent: 1, acked: 1, refused: 0, deliveries: 0 })));
    assert.deepEqual(tied.map((b) => b.room), ['#r1', '#r2', '#r10']);
  });

  it('run labels: the name, the file when there is none, numbered when repeated', () => {
    const labels = labelRuns([
      { file: 'x/a.json', result: sampleResult({ name: 'same' }) },
      { file: 'x/b.json', result: sampleResult({ name: ' ' }) },
      { file: 'x/c.json', result: sampleResult({ name: 'same' }) },
    ]).map((r) => r.label);
    assert.deepEqual(labels, ['same', 'b.json', 'same (2)']);
  });

  it('shares are never rounded to 100% or 0% when they are not', () => {
    assert.equal(pct(242_239, 242_248), '>99.99%');
    assert.equal(pct(1, 1_000_000), '<0.01%');
    assert.equal(pct(5, 5), '100%');
    assert.equal(pct(0, 5), '0.00%');
    assert.equal(pct(1, 3), '33.33%');
    assert.equal(pct(1, 0), '–');
  });

  it('ratios against the baseline', () => {
    assert.equal(ratio(50, 100), 0.5);
    assert.equal(ratio(0, 0), 1);
    assert.equal(ratio(5, 0), null);
    assert.equal(ratio(null, 3), null);
  });

  it('one run: summary, charts over time and per room, no comparison', () => {
    const r = sampleResult({ name: 'solo', refuse: 0.05, seconds: 20, rooms: 8 });
    const rep = buildReport(runs(r));
    assert.equal(rep.title, 'Parley load report: solo');
    assert.deepEqual(rep.charts.map((c) => c.png), ['throughput.png', 'latency.png', 'rooms.png']);
    assert.ok(!rep.html.includes('Comparison'));
    const n = (v: number): string => v.toLocaleString('en-US');
    for (const v of [r.totals.sent, r.totals.acked, r.totals.refused, r.totals.expectedDeliveries]) assert.ok(rep.html.includes(`>${n(v)}<`), n(v));
    assert.ok(rep.html.includes('<span class="ok">balanced</span>'));
    assert.ok(rep.html.includes('RATE_LIMITED'));
    for (const q of ['p50', 'p90', 'p99', 'p99.9', 'max']) assert.ok(rep.html.includes(`>${q}</th>`), q);
    assert.ok(rep.html.includes(`>${r.latency.ack.p999.toFixed(1)} ms<`));
    // The charts are inline.
    for (const c of rep.charts) assert.ok(rep.html.includes(c.svg));
  });

  it('books that do not balance, lost and duplicated deliveries are flagged', () => {
    const r = sampleResult({ lost: 3, duplicated: 2 });
    r.totals.errors += 4; // errors without sends: the books are off by -4
    const { html } = buildReport(runs(r));
    assert.ok(html.includes('<span class="bad">off by -4</span>'));
    assert.ok(html.includes('<span class="bad">lost deliveries</span>'));
    assert.ok(html.includes('<span class="bad">duplicate deliveries</span>'));
    assert.ok(html.includes('<span class="bad">incomplete</span>'));
  });

  it('three runs: a comparison with ratios against the first, and overlaid charts', () => {
    const a = sampleResult({ name: 'parley', seconds: 20, rate: 1000, latencyMs: 2 });
    const b = sampleResult({ name: 'socket.io', seconds: 20, rate: 500, latencyMs: 4, kind: 'socketio', transport: 'ws', seed: 2 });
    const c = sampleResult({ name: 'ws', seconds: 10, rate: 2000, latencyMs: 1, kind: 'ws', transport: 'ws', rooms: 0, seed: 3 });
    const rep = buildReport(runs(a, b, c));
    assert.equal(rep.title, 'Parley load report: parley vs socket.io vs ws');
    assert.deepEqual(rep.charts.map((x) => x.png), ['compare.png', 'throughput.png', 'latency.png', 'rooms-1.png', 'rooms-2.png']);
    assert.ok(rep.html.includes('<h2>Comparison</h2>'));
    // ack p50 is 2 ms, 4 ms and 1 ms: twice (worse) and half (better) the baseline.
    assert.match(rep.html, /<th>ack p50<\/th><td class="n">2\.00 ms<\/td><td class="n">4\.00 ms<span class="ratio worse">×2\.00<\/span><\/td><td class="n">1\.00 ms<span class="ratio better">×0\.50<\/span><\/td>/);
    assert.ok(rep.html.includes('No per-room figures in this result.'));
    for (const label of ['parley', 'socket.io', 'ws']) {
      assert.ok(rep.charts[1]?.svg.includes(`>${label}</text>`), `throughput legend has ${label}`);
    }
    assert.ok(rep.html.includes('id="run-3"'));
  });

  it('an empty timeline and no rooms: notes instead of charts', () => {
    const r = sampleResult({ name: 'quiet', rooms: 0 });
    r.timeline = [];
    const rep = buildReport(runs(r));
    assert.deepEqual(rep.charts, []);
    assert.ok(rep.html.includes('No timeline in the result file: nothing to plot over time.'));
    assert.ok(rep.html.includes('No per-room figures in this result.'));
    // One of two runs without a timeline: the charts stay, with a note.
    const two = buildReport(runs(sampleResult({ name: 'busy' }), r));
    assert.deepEqual(two.charts.map((c) => c.png), ['compare.png', 'throughput.png', 'latency.png', 'rooms-1.png']);
    assert.ok(two.html.includes('No timeline in <bdi>quiet</bdi>.'));
  });

  it('a run of zero seconds: no rates rather than infinities', () => {
    const r = sampleResult({ seconds: 1 });
    r.durationSeconds = 0;
    const rep = buildReport(runs(r, sampleResult()));
    assert.ok(!/NaN|Infinity|undefined/.test(rep.html));
  });

  it('is self-contained and escapes every text from the files', () => {
    const r = sampleResult({ name: HOSTILE, rooms: 3, refuse: 0.1 });
    r.rooms[0]!.room = HOSTILE;
    r.options = { [HOSTILE]: HOSTILE, nested: { a: [1, HOSTILE] } };
    r.refusedByCode = { [HOSTILE]: r.totals.refused };
    r.target.addresses = [HOSTILE];
    r.machine.hostname = HOSTILE;
    const rep = buildReport(runs(r, r), { title: HOSTILE });
    for (const text of [rep.html, ...rep.charts.map((c) => c.svg)]) {
      assert.ok(!text.includes('<script'), 'no script element');
      assert.ok(!text.includes('\u0001') && !text.includes('\uD800'), 'no characters XML cannot carry');
      assert.ok(!/NaN|Infinity|undefined/.test(text));
    }
    assert.ok(rep.html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;'));
    // Nothing fetched: no scripts, stylesheets, images or fonts from anywhere; links only to the PNGs.
    assert.ok(!/<(script|link|img|iframe|object|embed)\b|\bsrc=|url\(|@import/i.test(rep.html));
    const urls = rep.html.match(/https?:\/\/[^"'\s<)]+/g) ?? [];
    assert.deepEqual([...new Set(urls)], ['http://www.w3.org/2000/svg']);
    const hrefs = [...rep.html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]);
    assert.ok(hrefs.every((h) => h?.startsWith('#') || rep.charts.some((c) => c.png === h)), hrefs.join(' '));
    for (const c of rep.charts) pngSize(renderPng(c.svg));
  });
});

describe('writing the report', () => {
  it('`report` through commander: index.html and one PNG per chart', async (t) => {
    const out = path.join(tmp, 'out-cmd');
    const files = [
      file(sampleResult({ name: 'one', refuse: 0.02 })),
      file(sampleResult({ name: 'two', seed: 2, rooms: 90 })),
      file(sampleResult({ name: 'three', seed: 3, rooms: 0 })),
    ];
    const program = new Command('parley').exitOverride();
    registerReport(program);
    const stdout: string[] = [];
    t.mock.method(process.stdout, 'write', (chunk: string | Uint8Array) => {
      stdout.push(String(chunk));
      return true;
    });
    await program.parseAsync(['report', ...files, '--out', out, '--title', 'Nightly'], { from: 'user' });
    t.mock.restoreAll();
    const pngs = ['compare.png', 'throughput.png', 'latency.png', 'rooms-1.png', 'rooms-2.png'];
    assert.deepEqual(fs.readdirSync(out).sort(), ['index.html', ...pngs].sort());
    assert.equal(stdout.join(''), `report: ${path.join(out, 'index.html')}\ncharts: ${pngs.map((p) => path.join(out, p)).join(' ')}\n`);
    const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
    assert.match(html, /<title>Nightly<\/title>/);
    for (const p of pngs) {
      const size = pngSize(fs.readFileSync(path.join(out, p)));
      assert.equal(size.width, PNG_WIDTH, p);
      assert.ok(size.height > 300, p);
    }
  });

  it('the default output directory is report/', () => {
    const program = new Command('parley');
    registerReport(program);
    const cmd = program.commands.find((c) => c.name() === 'report');
    assert.equal(cmd?.getOptionValue('out'), 'report');
  });

  it('a bad file: nothing is written', () => {
    const out = path.join(tmp, 'out-bad');
    const good = file(sampleResult());
    const bad = file(edited((x) => { x.totals.sent = -5; }));
    assert.throws(() => writeReport([good, bad], { out }), (e: Error) => e instanceof ResultFileError && e.message.startsWith(`${bad}: totals.sent: `));
    assert.ok(!fs.existsSync(out));
  });

  it('an output directory that cannot be made', () => {
    const blocker = file('x');
    assert.throws(() => writeReport([file(sampleResult())], { out: path.join(blocker, 'sub') }), (e: Error) => e instanceof ReportError && e.message.startsWith(`${path.join(blocker, 'sub')}: cannot create the output directory: `));
  });
});

describe('the QoS section', () => {
  const withQos = sampleResult({ name: 'qos', qosRooms: 30, seconds: 20 });

  it('an old result (no qos) renders as before: no QoS section, no qos.png', () => {
    const rep = buildReport(runs(sampleResult()));
    assert.ok(!rep.html.includes('QoS: per-room limits'));
    assert.ok(!rep.charts.some((c) => c.png.startsWith('qos')));
  });

  it('a result with a QoS section: the chart, the class and room tables, the run', () => {
    const rep = buildReport(runs(withQos));
    const chart = rep.charts.find((c) => c.png === 'qos.png');
    assert.ok(chart, 'qos.png');
    assert.ok(!/NaN|Infinity|undefined/.test(chart.svg));
    assert.match(rep.html, /<section id="qos"><h2>QoS: per-room limits<\/h2>/);
    assert.match(rep.html, /30 of 30 rooms within ±5% of their limit/);
    for (const name of ['bronze', 'silver', 'gold']) assert.ok(rep.html.includes(`<code>${name}</code>`), name);
    for (const r of withQos.qos!.rooms) assert.ok(rep.html.includes(r.room), r.room);
    assert.match(rep.html, /The run: 9 shards, 30 rooms, 2 instances/);
    assert.ok(!/NaN|Infinity|undefined/.test(rep.html));
    const png = renderPng(chart.svg);
    assert.equal(pngSize(png).width, PNG_WIDTH);
  });

  it('with several runs, one QoS chart per run that has a section', () => {
    const rep = buildReport(runs(sampleResult(), withQos));
    assert.deepEqual(rep.charts.filter((c) => c.png.startsWith('qos')).map((c) => c.png), ['qos-2.png']);
  });

  it('stats: within the tolerance, the worst room, per class', () => {
    const q = structuredClone(withQos.qos!);
    q.rooms[4]!.errorPct = -7.5;
    q.rooms[4]!.acceptedRate = q.rooms[4]!.rate * 0.925;
    q.rooms[7]!.errorPct = null;
    q.rooms[7]!.acceptedRate = null;
    const st = qosStats(q);
    assert.equal(st.rooms, 30);
    assert.equal(st.measured, 29);
    assert.equal(st.within, 28);
    assert.equal(st.worst?.room, q.rooms[4]!.room);
    assert.equal(st.classes.reduce((s, c) => s + c.rooms, 0), 30);
    assert.equal(st.absError?.max, 7.5);
    assert.match(qosHeadline(q, st), /^28 of 29 rooms within ±5% of their limit \(1 not measured\); worst #qos-4 \(silver, limit 5\/s\): 4\.63\/s, −7\.50%/);
  });

  it('a chart with negative errors extends its axis below zero', () => {
    const q = structuredClone(withQos.qos!);
    q.rooms[0]!.errorPct = -12;
    const svg = qosChart(q, 'x');
    assert.match(svg, />-15<\/text>|>−15<\/text>/);
  });

  it('a malformed QoS section is refused with its path', () => {
    const msg = failure(edited((x) => { x.qos.rooms[2].accepted = -1; }, withQos));
    assert.ok(msg.includes('qos.rooms[2].accepted: expected a count'), msg);
  });
});
