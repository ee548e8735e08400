/**
 * One phase of the chaos run: the load on, one fault injected (repeated),
 * the load off, then the acknowledged writes checked against the log and the
 * projections (ClickHouse at the end of the world: checkArchiveOf).
 */
import { archiverGroup } from '../pipelines/naming.ts';
import { DESCRIPTIONS, HELD, inject, type FaultName, type Servers } from './faults.ts';
import { Load, type Tick } from './load.ts';
import { archivedIds, checkArchive, checkPhase, highWatermarks, newestFeedOffsets, readLog, readProjections, waitLag, waitProcessed, type LogView, type Row } from './verify.ts';
import type { ChaosWorld } from './world.ts';

export interface PhaseOptions {
  /** Seconds of load per fault (at least). */
  seconds: number;
  repeats: number;
  /** Comments per second offered, all rooms together. */
  rate: number;
  reactionRate: number;
  rooms: number;
  log(m: string): void;
}

export const RECOVERY_DEADLINE_MS = 90_000;

/** A frozen processor: 30 s, shorter when the phase is. Servers down: a third of the phase, at most 10 s. */
export const holdOf = (f: FaultName, seconds: number) => (f === 'processor-stop' ? Math.min(30, Math.max(12, seconds / 2)) : Math.min(10, Math.max(4, seconds / 5))) * 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Phase {
  fault: FaultName;
  row: Row;
  ticks: Tick[];
  t0: number;
  marks: { at: number; what: string }[];
  load: Load;
  log: LogView;
  world: ChaosWorld;
}

export async function runPhase(fault: FaultName, world: ChaosWorld, servers: Servers, o: PhaseOptions): Promise<Phase> {
  const { seconds, repeats, rate, reactionRate, log } = o;
  const rooms = Array.from({ length: o.rooms }, (_, i) => `${fault}-r${i}`);
  const from = await highWatermarks(world.cfg, world.topic);
  const load = new Load({ urls: world.urls, rooms, rate, reactionRate, httpShare: 0.25, token: (u) => world.token(u), log });
  const row: Row = {
    fault,
    repeats,
    rate: 0,
    acked: 0,
    lostLog: 0,
    lostFeed: 0,
    lostTallies: 0,
    lostClickhouse: undefined,
    dupLog: 0,
    dupFeed: 0,
    dupTallies: 0,
    dupClickhouse: undefined,
    viewerGaps: 0,
    viewerDups: 0,
    resyncs: 0,
    recoverySec: [],
    refused: 0,
    unknown: 0,
    notes: [],
  };
  const marks: { at: number; what: string }[] = [];
  log(`${fault}: ${DESCRIPTIONS[fault]}`);
  await load.start();
  const t0 = Date.now();
  log(`${fault}: load on (${rate} comments/s + ${reactionRate} reactions/s offered over ${rooms.length} rooms; ${load.observers.length} viewers and pollers)`);
  const progress = setInterval(() => {
    const last = load.ticks.slice(-5);
    const acked = last.reduce((a, t) => a + t.acked, 0) / Math.max(1, last.length);
    const delivered = last.reduce((a, t) => a + t.delivered, 0) / Math.max(1, last.length);
    log(`  ${fault}: ${acked.toFixed(0)} writes/s acked, ${delivered.toFixed(0)} deliveries/s to WebSocket viewers, p99 ${last.at(-1)?.p99.toFixed(0) ?? '-'} ms`);
  }, 10_000);
  try {
    await sleep(Math.min(8_000, (seconds * 1000) / 6));
    for (let rep = 0; rep < repeats; rep++) {
      const hold = HELD.has(fault) ? holdOf(fault, seconds) : 0;
      log(`${fault} #${rep + 1}: injecting`);
      const at = Date.now();
      const r = await inject(fault, { world, servers, load, holdMs: hold, rep, log });
      marks.push({ at, what: r.what });
      const deadline = Date.now() + RECOVERY_DEADLINE_MS;
      while (load.recoveryMs() === undefined && Date.now() < deadline) await sleep(50);
      const ms = load.recoveryMs();
      row.recoverySec.push(ms === undefined ? Infinity : ms / 1000);
      log(`${fault} #${rep + 1}: ${r.what}; ${ms === undefined ? `viewers did not see new writes within ${RECOVERY_DEADLINE_MS / 1000} s` : `viewers saw new writes after ${(ms / 1000).toFixed(2)} s`}`);
      if (r.after) {
        await r.after();
        log(`${fault} #${rep + 1}: restored`);
      }
      await sleep(Math.min(5_000, (seconds * 1000) / 10));
    }
    const rest = seconds * 1000 - (Date.now() - t0);
    if (rest > 0) await sleep(rest);
  } catch (err) {
    // The fault could not be injected or its part not brought back: said in the row, and the run fails; what was acknowledged is still checked.
    row.failed = true;
    row.notes.push(`fault step failed: ${(err as Error).message.split('\n')[0]}`);
    log(`${fault}: fault step failed: ${(err as Error).stack ?? err}`);
  } finally {
    clearInterval(progress);
  }
  const elapsed = (Date.now() - t0) / 1000;
  log(`${fault}: load off after ${elapsed.toFixed(0)} s; waiting for the answers of writes in flight`);
  await load.stopWriting();
  const dead = world.dead();
  if (dead.length) row.notes.push(`exited on their own during the phase: ${dead.join(', ')}`);
  row.rate = Math.round(load.acked.size / elapsed);
  if (!(await waitProcessed(world.cfg, world.topic, { keyPrefix: world.env.REDIS_KEY_PREFIX!, groupPrefix: world.env.PIPELINES_GROUP_PREFIX! }, 120_000))) row.notes.push('processors still behind after 120 s');
  const redis = servers.redis();
  try {
    // Viewers catch up with the projections (or the deadline passes: what they miss counts as gaps).
    const naming = { keyPrefix: world.env.REDIS_KEY_PREFIX!, groupPrefix: world.env.PIPELINES_GROUP_PREFIX! };
    const deadline = Date.now() + 30_000;
    for (;;) {
      const newest = await newestFeedOffsets(redis, naming, rooms);
      const behind = load.observers.filter((o) => (o.last?.offset ?? -1) < (newest.get(o.room) ?? -1));
      if (behind.length === 0 || Date.now() > deadline) break;
      await sleep(200);
    }
    // The projections first, then the log: everything they applied is in the log by then, and the
    // tallies are compared with the log up to their fence (checkPhase).
    const proj = await readProjections(redis, naming, rooms);
    const logView = await readLog(world.cfg, world.topic, from, new Set(rooms)).catch(async (err: unknown) => {
      // Once, after a pause: a broker or the registry just restarted may not answer yet.
      log(`${fault}: reading the log failed (${(err as Error).message}); once more in 5 s`);
      await sleep(5000);
      return readLog(world.cfg, world.topic, from, new Set(rooms));
    });
    checkPhase(row, load, logView, proj);
    logView.comments.clear(); // the archive check needs the ids only
    log(
      `${fault}: ${row.acked} acknowledged (${row.rate} comments/s driven), lost log/feed/tallies ${row.lostLog}/${row.lostFeed}/${row.lostTallies}, ` +
        `duplicated ${row.dupLog}/${row.dupFeed}/${row.dupTallies}, viewers' gaps ${row.viewerGaps} dups ${row.viewerDups} (resyncs ${row.resyncs}), refused ${row.refused}, unanswered ${row.unknown}` +
        (load.skipped ? `, ${load.skipped} not sent (writers saturated)` : ''),
    );
    if (load.skipped) row.notes.push(`${load.skipped} writes not sent (writers saturated: the offered rate was more than the system took)`);
    if (row.notes.length) log(`${fault}: ${row.notes.join('; ')}`);
    return { fault, row, ticks: load.ticks, t0, marks, load, log: logView, world };
  } finally {
    await load.close();
    redis.disconnect();
  }
}

/** The archive of a world, once its archiver has caught up and stopped. */
export async function checkArchiveOf(world: ChaosWorld, phases: Phase[], log: (m: string) => void): Promise<void> {
  if (!world.archiver) return;
  const caught = await waitLag(world.cfg, world.topic, archiverGroup(world.env.PIPELINES_GROUP_PREFIX!), 120_000);
  if (!caught) log('archiver still behind after 120 s: what it misses counts as lost');
  await world.stopArchiver();
  const archived = await archivedIds(world.env, world.topic);
  log(`ClickHouse holds ${archived.size} events of ${world.topic}`);
  for (const p of phases) checkArchive(p.row, p.load, p.log, archived);
}

