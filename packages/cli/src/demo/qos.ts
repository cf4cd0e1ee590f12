/**
 * `parley demo qos`: the QoS demonstration in one command. It starts a lab (or uses the one
 * running in --state-dir), creates a mix of QoS classes through the REST API, provisions the
 * shards with classes by range (`parley provision shards --qos-from`), gives every room its own
 * class (`PUT /api/rooms/{room}/qos`, so the mix of rooms is exact whatever shard each room is
 * hashed to), sends the same number of messages to every room at a multiple of its limit with the
 * load engine, reads the cluster's counters per room (`GET /api/rooms`), and reports each room's
 * accepted rate against its limit (terminal summary, result JSON, `parley report` HTML with the
 * QoS chart and tables), with the time, memory and disk of the whole run. Then it removes what it
 * started, unless --keep.
 *
 * The accepted rate of a room is (accepted − burst) ÷ (last send − first send): a room that starts
 * with a full bucket and is offered more than its limit gets its burst at once and then exactly
 * its rate (GCRA), so what is left after the burst, over the time the room was sent to, is the
 * sustained rate the cluster let through. The ±1 message of the bucket's granularity is ±1/(rate ×
 * window) of it (≈1.3% for 75 messages above the burst).
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stateDirKind, statePaths, readStatus, type AgentStatus } from '@parley/agent';
import { LabError, fmtDuration, openLab, type Lab } from '../lab/common.js';
import { runClean, stopLab } from '../lab/down.js';
import { runUp } from '../lab/up.js';
import { runProvisionShards } from '../provision/shards.js';
import { driverFor, progressLine } from '../load/cli.js';
import { parseLoadOptions, MAX_ROOMS_PER_USER } from '../load/options.js';
import type { LoadResult } from '../load/result.js';
import type { QosSection } from '../load/report-schema.js';
import { fmtBytes, qosHeadline, qosStats } from '../load/report-qos.js';
import { writeReport } from '../load/report.js';
import { runLoad } from '../load/run.js';
import { DemoApi, DemoError, type RoomView } from './api.js';
import { apportion, blockClass, DEFAULT_CLASSES, readClasses, type DemoClass } from './classes.js';
import { MemorySampler, diskUsage, pssOfTrees, usedMemory } from './usage.js';

export interface DemoQosOptions {
  shards: number;
  rooms: number;
  messagesPerRoom: number;
  rateMultiple: number;
  classes?: string;
  stateDir: string;
  keep: boolean;
  instances: number;
  out: string;
  timeout: number;
  tolerance: number;
  /** two messages per room before the measured load (see runDemoQos) */
  warmup: boolean;
}

export const DEMO_LIMITS = { shards: 5_000, rooms: 10_000, instances: 32 } as const;

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const note = (s: string): void => void process.stderr.write(`${s}\n`);

/** Checks the options before anything starts; one line for the first problem. */
export function checkDemoOptions(o: DemoQosOptions): void {
  const int = (name: string, v: number, min: number, max: number): void => {
    if (!Number.isInteger(v) || v < min || v > max) throw new DemoError(`${name} must be an integer from ${min} to ${max.toLocaleString('en-US')}, got ${v}`);
  };
  int('--shards', o.shards, 1, DEMO_LIMITS.shards);
  int('--rooms', o.rooms, 1, DEMO_LIMITS.rooms);
  int('--messages-per-room', o.messagesPerRoom, 10, 1_000_000);
  int('--instances', o.instances, 1, DEMO_LIMITS.instances);
  int('--timeout', o.timeout, 10, 86_400);
  if (!Number.isFinite(o.rateMultiple) || o.rateMultiple <= 1 || o.rateMultiple > 100) throw new DemoError(`--rate-multiple must be a number above 1 (so QoS has something to refuse) and at most 100, got ${o.rateMultiple}`);
  if (!Number.isFinite(o.tolerance) || o.tolerance <= 0 || o.tolerance > 100) throw new DemoError(`--tolerance must be a percentage above 0 and at most 100, got ${o.tolerance}`);
}

interface Phase {
  name: string;
  seconds: number;
}

export async function runDemoQos(o: DemoQosOptions): Promise<number> {
  checkDemoOptions(o);
  const classes = o.classes !== undefined ? await readClasses(o.classes) : [...DEFAULT_CLASSES];
  const t0 = Date.now();
  const phases: Phase[] = [];
  let mark = Date.now();
  const phase = (name: string): void => {
    const now = Date.now();
    phases.push({ name, seconds: (now - mark) / 1000 });
    mark = now;
  };
  const memory = new MemorySampler();
  const load0 = os.loadavg();
  const notes: string[] = [];

  // ---- the lab --------------------------------------------------------------------------------
  const paths = statePaths(o.stateDir);
  const kindBefore = stateDirKind(paths.root);
  let lab: Lab | null = null;
  if (kindBefore === 'parley') lab = await openLab(o.stateDir).catch((err: unknown) => (err instanceof LabError && /not running/.test(err.message) ? null : Promise.reject(err)));
  /** what to do with the lab at the end: remove it (we made it), stop it (we started it), or leave it */
  const owned: 'clean' | 'stop' | 'none' = lab ? 'none' : kindBefore === 'parley' ? 'stop' : 'clean';
  if (lab) say(`using the lab running in ${paths.root} (it is left running; what the demo adds stays)`);
  else {
    if (kindBefore !== 'missing' && kindBefore !== 'empty' && kindBefore !== 'parley') throw new DemoError(`${paths.root} is not a Parley state directory; choose another --state-dir`);
    say(`starting a lab in ${paths.root} (${o.instances} instance(s); front door on free ports) ...`);
  }
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    if (signals > 1) {
      note(`parley demo qos: interrupted twice; the lab may still run: parley clean --state-dir ${o.stateDir}`);
      process.exit(130);
    }
    note('parley demo qos: interrupted: stopping the load, then cleaning up (Ctrl-C again to quit at once)');
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let result: LoadResult | null = null;
  let section: QosSection | null = null;
  let cleanupError: string | null = null;
  try {
    if (!lab) {
      await runUp({ stateDir: o.stateDir, instances: o.instances, shards: 1, ircPort: 0, httpPort: 0, timeout: Math.min(o.timeout, 600) });
      lab = await openLab(o.stateDir);
    }
    phase('lab start');
    const status = lab.status ?? (await readStatus(lab.paths));
    const front = status?.frontDoor;
    if (!front) throw new DemoError('the lab has no front door to reach its REST API and IRC port through');
    const token = (await fs.readFile(lab.paths.adminToken, 'utf8').catch(() => {
      throw new DemoError(`no admin token in ${lab!.paths.adminToken} (parley up makes it)`);
    })).trim();
    const api = new DemoApi(`http://${front.http}`, token);

    // ---- classes and shards -------------------------------------------------------------------
    for (const c of classes) await api.putClass(c.name, c.cls);
    const shardCounts = apportion(o.shards, classes.map((c) => c.share));
    const ranges: Array<{ from: number; to: number; class: string }> = [];
    let from = 0;
    classes.forEach((c, i) => {
      const n = shardCounts[i]!;
      if (n > 0) ranges.push({ from, to: from + n - 1, class: c.name });
      from += n;
    });
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-demo-'));
    const qosFrom = path.join(tmp, 'shards.json');
    await fs.writeFile(qosFrom, JSON.stringify({ ranges }));
    say(`classes: ${classes.map((c, i) => `${c.name} ${c.cls.rate}/s burst ${c.cls.burst} (${shardCounts[i]} shards)`).join(', ')}`);
    phase('classes');
    const usedBeforeShards = usedMemory();
    try {
      // Provisioning is idempotent: when a step of it fails (a REST call that found an instance
      // busy, a shard slow to start), running it again picks up where it stopped.
      for (let attempt = 1; ; attempt++) {
        try {
          await runProvisionShards({ stateDir: o.stateDir, count: o.shards, qosFrom, timeout: o.timeout, progress: true });
          break;
        } catch (err) {
          if (attempt >= 3 || ac.signal.aborted) throw err;
          note(`parley demo qos: provisioning stopped (${(err as Error).message}); running it again (attempt ${attempt + 1} of 3)`);
          notes.push(`provisioning was run ${attempt + 1} times: ${(err as Error).message}`);
        }
      }
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
    phase('provision shards');
    memory.sample();
    const afterProvision = await shardTrees(lab);
    const peakAfterProvision = memory.peak;
    say(`provisioned ${o.shards} shards in ${fmtDuration(phases[phases.length - 1]!.seconds * 1000)}: shards' PSS ${fmtBytes(afterProvision.bytes)} in ${afterProvision.processes} processes; machine's used memory ${usedBeforeShards !== null ? `${fmtBytes(usedBeforeShards)} before, ` : ''}${fmtBytes(peakAfterProvision)} at the peak`);

    // ---- rooms ----------------------------------------------------------------------------------
    const roomCounts = apportion(o.rooms, classes.map((c) => c.share));
    const classOfRoom = (r: number): DemoClass => classes[blockClass(roomCounts, r)]!;
    const runId = crypto.randomBytes(3).toString('hex');
    const roomPrefix = `qd${runId}-`;
    const roomName = (r: number): string => `#${roomPrefix}${r}`;
    await inParallel(o.rooms, 16, (r) => api.setRoomClass(roomName(r), classOfRoom(r).name));
    say(`rooms: ${o.rooms} (#${roomPrefix}0 … #${roomPrefix}${o.rooms - 1}), each given its class: ${classes.map((c, i) => `${c.name} ×${roomCounts[i]}`).join(', ')}`);
    phase('room classes');

    // ---- the load -------------------------------------------------------------------------------
    const roomRates = Array.from({ length: o.rooms }, (_, r) => classOfRoom(r).cls.rate * o.rateMultiple);
    const flood = await api.floodLimit();
    const topRate = Math.max(...roomRates);
    // Each member stays at half the per-connection flood limit or below (2 members at least).
    const members = Math.max(2, flood > 0 ? Math.ceil(topRate / (flood * 0.5)) : 2);
    const users = o.rooms * members;
    if (Math.ceil((o.rooms * members) / users) > MAX_ROOMS_PER_USER) throw new DemoError('too many rooms per user');

    // Warm-up: two messages per room from two members (so, through the front door, most likely
    // from both instances): every room is pinned and every instance has connected to the shards it
    // writes to before the measured sends start, so a thousand first connections do not all
    // happen in their first second. It runs once the measured load's users have joined (just
    // before its sends), so the shard connections it opened are still open when the sends start
    // (instances close a shard's connections after --pg-idle-seconds, 60 by default, unused).
    // Its counts are taken off the measured ones, and its two tokens are back in every bucket
    // before the measured sends start.
    let baseline = new Map<string, RoomView['counts']>();
    let countersUsable = true;
    let warmEnd = Date.now();
    const warmUp = async (): Promise<void> => {
      const warmOpts = parseLoadOptions({
        target: [front.irc],
        users: o.rooms * 2,
        rooms: o.rooms,
        membersPerRoom: 2,
        rateTotal: Math.min(200, o.rooms * 2),
        messagesPerRoom: 2,
        nickPrefix: `w${runId}`,
        roomPrefix,
        name: 'demo qos warm-up',
        connectConcurrency: 100,
        drainTimeout: 60,
      });
      say(`warm-up: 2 messages per room at ${warmOpts.rateTotal}/s in all (pins every room, opens the instances' shard connections)`);
      const warm = await runLoad(warmOpts, driverFor(warmOpts), { signal: ac.signal, onWarning: (line) => note(`  warm-up warning: ${line}`) });
      warmEnd = Date.now();
      if (ac.signal.aborted) throw new DemoError('interrupted during the warm-up');
      const wt = warm.totals;
      say(`warm-up: ${wt.acked} of ${wt.sent} acknowledged${wt.refused ? `, ${wt.refused} refused (${Object.entries(warm.refusedByCode).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}${wt.errors ? `, ${wt.errors} errors` : ''}`);
      if (wt.acked < wt.sent) notes.push(`warm-up: ${wt.sent - wt.acked} of its ${wt.sent} messages were not acknowledged`);
      try {
        baseline = new Map((await settledCounters(api, roomPrefix, warm)).map((v) => [v.room.toLowerCase(), v.counts]));
      } catch (err) {
        countersUsable = false;
        notes.push(`the cluster's counters could not be read after the warm-up (${(err as Error).message}): accepted and refused are the load tool's (acknowledged, refused)`);
      }
    };
    // A room offered m × its rate spends its burst in burst ÷ ((m − 1) × rate) s; its steady window
    // starts half a second plus a tenth of its sending time after that.
    const steadyFrom = Array.from({ length: o.rooms }, (_, r) => {
      const c = classOfRoom(r).cls;
      const sending = o.messagesPerRoom / (o.rateMultiple * c.rate);
      return (c.burst / ((o.rateMultiple - 1) * c.rate) + 0.5 + 0.1 * sending) * 1000;
    });
    const opts = parseLoadOptions({
      target: [front.irc],
      users,
      rooms: o.rooms,
      membersPerRoom: members,
      roomRates,
      roomSteadyFromMs: steadyFrom,
      messagesPerRoom: o.messagesPerRoom,
      window: 1000,
      nickPrefix: `q${runId}`,
      roomPrefix,
      name: `demo qos: ${o.shards} shards, ${o.rooms} rooms`,
      connectConcurrency: 100,
      drainTimeout: 60,
    });
    const slowest = Math.min(...roomRates);
    say(`load: ${users} users (${members} per room) through ${front.irc}; ${o.messagesPerRoom} messages per room at ${o.rateMultiple}× its limit (${Math.round(roomRates.reduce((a, b) => a + b, 0)).toLocaleString('en-US')}/s offered at first; the slowest rooms take ${fmtDuration((o.messagesPerRoom / slowest) * 1000)})`);
    let lastLine = 0;
    const phaseEnded: Partial<Record<string, string>> = { join: 'load: connect', send: 'buckets refill', drain: 'load: send', done: 'load: drain' };
    result = await runLoad(opts, driverFor(opts), {
      signal: ac.signal,
      onPhase: (p) => {
        const ended = phaseEnded[p];
        if (ended !== undefined) phase(ended);
      },
      // The users have joined: warm up, then wait for the warm-up's tokens to come back at each
      // room's rate once the instances have handed in the debits of what they admitted on their
      // fast path (within a second), so every room starts with a full bucket.
      beforeSend: async () => {
        phase('load: join');
        if (o.warmup) {
          await warmUp();
          phase('warm-up');
        }
        await sleepUntil(warmEnd + 1_000 + (2 / (slowest / o.rateMultiple)) * 1000 + 250);
      },
      onProgress: (p) => {
        if (Date.now() - lastLine < 5_000) return;
        lastLine = Date.now();
        note(`  ${progressLine(p)}`);
      },
      onWarning: (line) => note(`  warning: ${line}`),
    });
    memory.sample();
    // The load's own result is kept at once, whatever happens next.
    await fs.mkdir(o.out, { recursive: true });
    await fs.writeFile(path.join(o.out, 'load-result.json'), `${JSON.stringify(result, null, 2)}\n`);
    if (ac.signal.aborted) throw new DemoError(`interrupted (the load's result is in ${path.join(o.out, 'load-result.json')})`);

    // ---- the cluster's counters -----------------------------------------------------------------
    const views = await (countersUsable ? settledCounters(api, roomPrefix, result) : Promise.resolve([] as RoomView[])).catch((err: Error) => {
      notes.push(`the cluster's counters could not be read (${err.message}): accepted and refused are the load tool's (acknowledged, refused)`);
      return [] as RoomView[];
    });
    const afterLoad = await shardTrees(lab);
    const st2 = await readStatus(lab.paths);
    const servers = pssOfTrees((st2?.processes ?? []).filter((p) => p.kind === 'server' && p.pid !== null).map((p) => p.pid!), false);
    const others = pssOfTrees((st2?.processes ?? []).filter((p) => ['redis', 'etcd', 'haproxy'].includes(p.kind) && p.pid !== null).map((p) => p.pid!), false);
    const shardDisk = await diskUsage(Array.from({ length: o.shards }, (_, i) => lab!.paths.pgData(i)));
    const stateDisk = await diskUsage([lab.paths.root]);
    phase('counters and usage');
    memory.stop();

    // ---- the QoS section ------------------------------------------------------------------------
    const byName = new Map(views.map((v) => [v.room.toLowerCase(), v]));
    const missing: string[] = [];
    const measured = result.rooms.map((lr, r) => {
      const c = classOfRoom(r);
      const v = byName.get(lr.room.toLowerCase());
      if (!v) missing.push(lr.room);
      const base = baseline.get(lr.room.toLowerCase());
      const counts = v ? minus(v.counts, base) : { accepted: lr.acked, refusedQos: lr.refused, refusedBacklog: 0, failed: 0 };
      const rate = v?.rate ?? c.cls.rate;
      const burst = v?.burst ?? c.cls.burst;
      const offered = lr.offeredRate ?? roomRates[r]!;
      const window = lr.firstSentMs !== undefined && lr.lastSentMs !== undefined ? (lr.lastSentMs - lr.firstSentMs) / 1000 : 0;
      // The steady window: from the first send after the burst was spent to the last send, each
      // send standing for 1/offered s. There the bucket is empty and lets one message through
      // every 1/rate s, whatever state it started in.
      const steady = lr.steady !== undefined && lr.lastSentMs !== undefined ? { seconds: (lr.lastSentMs - lr.steady.fromMs) / 1000 + 1 / offered, ...lr.steady } : null;
      const steadyRate = steady !== null && steady.sent >= 2 ? steady.acked / steady.seconds : null;
      // The whole window: a full bucket offered more than its rate lets burst + ⌊rate × window⌋
      // through; the half message puts the floor's average loss back.
      const wholeRate = window > 0 ? Math.max(0, counts.accepted - burst + 0.5) / window : null;
      return {
        room: lr.room,
        class: v?.class ?? c.name,
        shard: v?.shard ?? null,
        rate,
        burst,
        sent: lr.sent,
        offeredRate: lr.offeredRate ?? roomRates[r]!,
        windowSeconds: round(window, 3),
        steadySeconds: steady === null ? null : round(steady.seconds, 3),
        steadySent: steady?.sent ?? 0,
        steadyAccepted: steady?.acked ?? 0,
        acceptedRateWhole: wholeRate === null ? null : round(wholeRate, 4),
        accepted: counts.accepted,
        refusedQos: counts.refusedQos,
        refusedBacklog: counts.refusedBacklog,
        failed: counts.failed,
        acked: lr.acked,
        refused: lr.refused,
        steadyRate,
        wholeRate,
      };
    });
    // One method for the whole run: the steady window when every room's has enough messages to
    // measure (20 sends), else the whole window (short runs, such as the tests').
    const useSteady = measured.every((m) => m.steadySent >= MIN_STEADY_SENDS);
    const qosRooms = measured.map(({ steadyRate, wholeRate, ...m }) => {
      const acceptedRate = useSteady ? steadyRate : wholeRate;
      return {
        ...m,
        acceptedRate: acceptedRate === null ? null : round(acceptedRate, 4),
        errorPct: acceptedRate === null ? null : round(((acceptedRate - m.rate) / m.rate) * 100, 3),
      };
    });
    if (missing.length && views.length) notes.push(`${missing.length} room(s) not listed by GET /api/rooms (their counts are the load tool's): ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}`);
    const load1 = os.loadavg();
    notes.push(`machine: ${os.cpus().length} cores, ${fmtBytes(os.totalmem())} RAM, shared with other work; load average ${load0[0]!.toFixed(1)} at the start, ${load1[0]!.toFixed(1)} at the end of the load`);
    notes.push(`load generator: CPU ${result.generator.cpuPercent.toFixed(0)}% of one core, event-loop delay p99 ${result.generator.eventLoopDelayMs.p99.toFixed(1)} ms, schedule lag p99 ${result.generator.scheduleLagMs.p99.toFixed(1)} ms`);
    notes.push('memory "machine" figures are the whole machine (MemTotal − MemAvailable), so they include whatever else ran meanwhile; PSS figures are Parley\'s own processes');
    if (owned === 'none') notes.push('the lab was already running: its start is not in the time, and its shards may include earlier ones');
    const memoryRows = [
      ...(memory.baseline !== null ? [{ label: 'machine used before the demo', bytes: memory.baseline }] : []),
      ...(usedBeforeShards !== null ? [{ label: 'machine used before provisioning', bytes: usedBeforeShards }] : []),
      { label: 'machine used, peak while provisioning', bytes: peakAfterProvision },
      { label: 'machine used, peak over the run', bytes: memory.peak },
      { label: `shards, PSS after provisioning (${afterProvision.processes} processes)`, bytes: afterProvision.bytes },
      { label: `shards, PSS after the load (${afterLoad.processes} processes, with the instances' connections)`, bytes: afterLoad.bytes },
      { label: `instances, PSS (${servers.processes})`, bytes: servers.bytes },
      { label: 'Redis, etcd and HAProxy, PSS', bytes: others.bytes },
    ];
    section = {
      method: useSteady
        ? `Accepted rate = the messages accepted (acknowledged) among those sent in the room's steady window ÷ that window: from 0.5 s plus a tenth of its sending time after its burst was spent (burst ÷ ((multiple − 1) × rate) after its first send) to its last send, each send standing for 1/offered s; there the bucket is empty and lets one message through every 1/rate s, whatever state it started in. One message either way is ±1/(rate × window). For comparison, "whole window" = (accepted − burst + ½) ÷ (last send − first send), from the cluster's counter (GET /api/rooms, less the warm-up's): a full bucket lets burst + ⌊rate × window⌋ through.`
        : `Accepted rate = (accepted − burst + ½) ÷ (last send − first send) of each room ("whole window"; some room's steady window had fewer than ${MIN_STEADY_SENDS} sends), "accepted" being the cluster's counter (GET /api/rooms, less the warm-up's): a room that starts with a full bucket and is offered more than its rate gets burst + ⌊rate × window⌋ (GCRA); the ½ puts back the floor's average. One message either way is ±1/(rate × window).`,
      tolerancePct: o.tolerance,
      rateMultiple: o.rateMultiple,
      classes: classes.map((c, i) => ({ name: c.name, rate: c.cls.rate, burst: c.cls.burst, rooms: roomCounts[i]!, shards: shardCounts[i]! })),
      rooms: qosRooms,
      run: {
        shards: o.shards,
        instances: (st2?.processes ?? []).filter((p) => p.kind === 'server').length,
        phases,
        memory: memoryRows,
        disk: [
          { label: `shards' data directories (${o.shards})`, bytes: shardDisk },
          { label: 'the whole state directory', bytes: stateDisk },
        ],
        notes,
      },
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    memory.stop();
    if (!o.keep && owned !== 'none') {
      const tc = Date.now();
      try {
        if (owned === 'clean') await runClean({ stateDir: o.stateDir });
        else await stopLab(paths, { quiet: true });
      } catch (err) {
        cleanupError = (err as Error).message;
      }
      phases.push({ name: owned === 'clean' ? 'clean (parley clean)' : 'stop (parley down)', seconds: (Date.now() - tc) / 1000 });
    } else if (owned !== 'none') {
      say(`--keep: the lab keeps running in ${paths.root} (parley clean --state-dir ${o.stateDir} removes it)`);
    }
  }
  if (cleanupError !== null) note(`parley demo qos: cleaning up failed: ${cleanupError} (parley clean --state-dir ${o.stateDir})`);

  // ---- result, report, summary ------------------------------------------------------------------
  const full: LoadResult = { ...result!, qos: section! };
  await fs.mkdir(o.out, { recursive: true });
  const resultFile = path.join(o.out, 'result.json');
  await fs.writeFile(resultFile, `${JSON.stringify(full, null, 2)}\n`);
  const written = writeReport([resultFile], { out: o.out, title: `Parley QoS demonstration: ${o.shards} shards, ${o.rooms} rooms` });
  printSummary(full, section!, Date.now() - t0);
  say(`result: ${resultFile}`);
  say(`report: ${written[0]}  (QoS chart: ${written.find((f) => f.endsWith('qos.png')) ?? '–'})`);
  const t = full.totals;
  const books = t.sent === t.acked + t.refused + t.errors && t.lost === 0 && t.duplicated === 0;
  if (!books) note(`parley demo qos: the load's books do not balance (lost ${t.lost}, duplicated ${t.duplicated}, errors ${t.errors})`);
  return books && cleanupError === null ? 0 : 2;
}

const round = (v: number, d: number): number => Number(v.toFixed(d));

/** Sends a steady window needs before the run is measured over steady windows. */
const MIN_STEADY_SENDS = 20;

const minus = (a: RoomView['counts'], b: RoomView['counts'] | undefined): RoomView['counts'] =>
  b === undefined ? a : { accepted: a.accepted - b.accepted, refusedQos: a.refusedQos - b.refusedQos, refusedBacklog: a.refusedBacklog - b.refusedBacklog, failed: a.failed - b.failed };

const sleepUntil = async (t: number): Promise<void> => {
  const ms = t - Date.now();
  if (ms > 0) await new Promise((res) => setTimeout(res, ms));
};

/** PSS of every shard's process tree (postmaster and its children: the instances' backends too). */
async function shardTrees(lab: Lab): Promise<{ bytes: number; processes: number }> {
  const st: AgentStatus | undefined = await readStatus(lab.paths);
  return pssOfTrees((st?.processes ?? []).filter((p) => p.kind === 'shard' && p.pid !== null).map((p) => p.pid!));
}

async function inParallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}

/**
 * The rooms' cluster counters once they account for every answer the load tool got: instances
 * write their counts every 200 ms and the room list is cached for up to a second, so this reads
 * again (every 300 ms, for at most 10 s) until the counted outcomes reach what was answered.
 */
async function settledCounters(api: DemoApi, prefix: string, r: LoadResult): Promise<RoomView[]> {
  const answered = r.totals.acked + r.totals.refused;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const views = await api.rooms(prefix);
    const counted = views.reduce((s, v) => s + v.counts.accepted + v.counts.refusedQos + v.counts.refusedBacklog + v.counts.failed, 0);
    if (counted >= answered || Date.now() > deadline) return views;
    await new Promise((res) => setTimeout(res, 300));
  }
}

function printSummary(r: LoadResult, q: QosSection, ms: number): void {
  const st = qosStats(q);
  const pad = (s: string, n: number, left = false): string => (left ? s.padEnd(n) : s.padStart(n));
  const fix = (v: number | null, d = 2): string => (v === null ? '-' : v.toFixed(d));
  const sgn = (v: number | null): string => (v === null ? '-' : `${v >= 0 ? '+' : '-'}${Math.abs(v).toFixed(2)}%`);
  say('');
  say(`QoS per room: ${q.rooms.length} rooms offered ${q.rateMultiple}× their limit; ${r.totals.sent.toLocaleString('en-US')} messages sent, ${r.totals.acked.toLocaleString('en-US')} accepted, ${r.totals.refused.toLocaleString('en-US')} refused (${Object.entries(r.refusedByCode).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})`);
  const head = ['class', 'limit/s', 'burst', 'rooms', 'shards', `within ±${q.tolerancePct}%`, 'mean acc/s', 'min acc/s', 'max acc/s', 'mean err', 'worst room', 'worst err'];
  const rows = st.classes.map((c) => [c.name, fix(c.rate), String(c.burst), String(c.rooms), String(c.shards), `${c.within}/${c.measured}`, fix(c.meanRate, 3), fix(c.minRate, 3), fix(c.maxRate, 3), sgn(c.meanErrorPct), c.worst?.room ?? '-', sgn(c.worst?.errorPct ?? null)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  say(head.map((h, i) => pad(h, widths[i]!, i === 0 || i === 10)).join('  '));
  for (const row of rows) say(row.map((c, i) => pad(c, widths[i]!, i === 0 || i === 10)).join('  '));
  say(qosHeadline(q, st));
  const run = q.run;
  if (run) {
    say(`time: ${run.phases.map((p) => `${p.name} ${fix(p.seconds, 1)} s`).join(', ')}; in all ${fmtDuration(ms)}`);
    say(`memory: ${run.memory.map((m) => `${m.label} ${fmtBytes(m.bytes)}`).join('; ')}`);
    say(`disk: ${run.disk.map((m) => `${m.label} ${fmtBytes(m.bytes)}`).join('; ')}`);
  }
}
