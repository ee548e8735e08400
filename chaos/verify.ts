/**
 * What a phase's acknowledged writes became: read back from the log (every
 * record of the phase's rooms, decoded), the feed and tallies projections in
 * Redis, and — at the end of the run, once the archiver has stopped and the
 * embedded engine's folder is free — ClickHouse.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { REPO_ROOT, type Config } from '../core/config.ts';
import { activeVersion, liveGroupOf, type ProjectionNaming } from '../pipelines/naming.ts';
import { roomKeys } from '../pipelines/projection.ts';
import { splitPosition } from '../topics/generations.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { measureLag } from '../topics/lag.ts';
import type { Load, Observer } from './load.ts';

const exec = promisify(execFile);

export interface LogView {
  /** eventId → how many records carry it. */
  ids: Map<string, number>;
  /** clientMsgId → the event ids written with it. */
  clientMsgIds: Map<string, Set<string>>;
  /** room → comments in log order ({offset, eventId}). */
  comments: Map<string, { offset: number; eventId: string }[]>;
  /** room → sum of ReactionAdded counts. */
  reactions: Map<string, number>;
  /** room → each ReactionAdded's offset and count (to compare with the tallies up to their fence). */
  reactionsAt: Map<string, [offset: number, count: number][]>;
  records: number;
}

export async function highWatermarks(cfg: Config, topic: string): Promise<Map<number, number>> {
  const client = logClient(cfg, 'chaos-marks');
  try {
    const n = await client.partitionCount(topic);
    const out = new Map<number, number>();
    for (let p = 0; p < n; p++) out.set(p, Number((await client.watermarks(topic, p)).high));
    return out;
  } finally {
    await client.close();
  }
}

/** The phase's records: from the offsets marked at its start to the end of each partition, of its rooms only. */
export async function readLog(cfg: Config, topic: string, from: Map<number, number>, rooms: Set<string>): Promise<LogView> {
  const client = logClient(cfg, 'chaos-verify');
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topic) });
  await codec.init();
  const view: LogView = { ids: new Map(), clientMsgIds: new Map(), comments: new Map(), reactions: new Map(), reactionsAt: new Map(), records: 0 };
  try {
    for (const [p, start] of from) {
      const high = Number((await client.watermarks(topic, p)).high);
      if (high <= start) continue;
      const records = await client.readRange(topic, p, start, high - 1, { timeoutMs: 120_000 });
      for (const r of records) {
        const e = await codec.decode(r.value);
        if (!rooms.has(e.roomId)) continue;
        view.records++;
        view.ids.set(e.eventId, (view.ids.get(e.eventId) ?? 0) + 1);
        if (e.clientMsgId) {
          let s = view.clientMsgIds.get(e.clientMsgId);
          if (!s) view.clientMsgIds.set(e.clientMsgId, (s = new Set()));
          s.add(e.eventId);
        }
        if (e.payload.type === 'CommentPosted') {
          let list = view.comments.get(e.roomId);
          if (!list) view.comments.set(e.roomId, (list = []));
          list.push({ offset: Number(r.offset), eventId: e.eventId });
        } else if (e.payload.type === 'ReactionAdded') {
          view.reactions.set(e.roomId, (view.reactions.get(e.roomId) ?? 0) + e.payload.count);
          let at = view.reactionsAt.get(e.roomId);
          if (!at) view.reactionsAt.set(e.roomId, (at = []));
          at.push([Number(r.offset), e.payload.count]);
        }
      }
    }
  } finally {
    await client.close();
  }
  return view;
}

/** Waits until the processors' group has applied everything written so far (lag 0), or the deadline. */
export async function waitProcessed(cfg: Config, topic: string, naming: ProjectionNaming, timeoutMs: number): Promise<boolean> {
  return waitLag(cfg, topic, liveGroupOf(naming), timeoutMs);
}

export async function waitLag(cfg: Config, topic: string, group: string, timeoutMs: number): Promise<boolean> {
  const client = logClient(cfg, 'chaos-lag');
  const admin = client.admin();
  const deadline = Date.now() + timeoutMs;
  try {
    await admin.connect();
    for (;;) {
      try {
        const lag = await measureLag(admin, group, topic);
        if ([...lag.values()].every((x) => x === 0)) return true;
      } catch {
        // a broker coming back: ask again
      }
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect().catch(() => {});
    await client.close().catch(() => {});
  }
}

export interface ProjectionView {
  /** room → eventId → times in the feed. */
  feed: Map<string, Map<string, number>>;
  /** room → sum of the tallies' totals. */
  tallies: Map<string, number>;
  /** room → the log offset the tallies had applied when their totals were read (-1: none), read with them. */
  tallyFences: Map<string, number>;
  /** room → the feed's fence (last applied offset). */
  fences: Map<string, number>;
}

/**
 * room → the offset of the feed's newest item (-1 when empty): where a viewer
 * that was shown everything is. (Not the fence: events that change nothing in
 * the feed — reactions — move the fence without a feed notification.)
 */
export async function newestFeedOffsets(redis: Redis, naming: ProjectionNaming, rooms: string[]): Promise<Map<string, number>> {
  const fv = await activeVersion(redis, naming, 'feed');
  const out = new Map<string, number>();
  for (const room of rooms) {
    const last = await redis.zrange(roomKeys(naming.keyPrefix, 'feed', fv, room).key('z'), '-1', '-1', 'WITHSCORES');
    out.set(room, last.length === 2 ? Number(last[1]) : -1);
  }
  return out;
}

export async function readProjections(redis: Redis, naming: ProjectionNaming, rooms: string[]): Promise<ProjectionView> {
  const fv = await activeVersion(redis, naming, 'feed');
  const tv = await activeVersion(redis, naming, 'tallies');
  const out: ProjectionView = { feed: new Map(), tallies: new Map(), tallyFences: new Map(), fences: new Map() };
  for (const room of rooms) {
    const fk = roomKeys(naming.keyPrefix, 'feed', fv, room);
    const members = await redis.zrange(fk.key('z'), '0', '-1');
    const ids = new Map<string, number>();
    for (const m of members) {
      const item = JSON.parse(m) as { kind: string; eventId: string };
      if (item.kind === 'comment') ids.set(item.eventId, (ids.get(item.eventId) ?? 0) + 1);
    }
    out.feed.set(room, ids);
    const fence = await redis.hget(fk.meta, 'fence');
    out.fences.set(room, fence === null ? -1 : Number(fence));
    // The totals and the fence they go with, in one transaction: a processor still applying late
    // writes (answered after the load stopped waiting) moves both between two plain reads.
    const tk = roomKeys(naming.keyPrefix, 'tallies', tv, room);
    const res = await redis.multi().hvals(tk.key('total')).hget(tk.meta, 'fence').exec();
    const totals = (res?.[0]?.[1] as string[] | undefined) ?? [];
    const tf = res?.[1]?.[1] as string | null | undefined;
    out.tallies.set(room, totals.reduce((a, v) => a + Number(v), 0));
    out.tallyFences.set(room, tf === null || tf === undefined ? -1 : splitPosition(Number(tf)).offset);
  }
  return out;
}

export interface Row {
  fault: string;
  repeats: number;
  rate: number;
  acked: number;
  lostLog: number;
  lostFeed: number;
  lostTallies: number;
  lostClickhouse: number | undefined;
  dupLog: number;
  dupFeed: number;
  dupTallies: number;
  dupClickhouse: number | undefined;
  viewerGaps: number;
  viewerDups: number;
  resyncs: number;
  recoverySec: number[];
  refused: number;
  unknown: number;
  notes: string[];
  /** The fault could not be injected or undone as planned (the run fails). */
  failed?: boolean;
}

export const lostOf = (r: Row) => r.lostLog + r.lostFeed + r.lostTallies + (r.lostClickhouse ?? 0);
export const dupOf = (r: Row) => r.dupLog + r.dupFeed + r.dupTallies + (r.dupClickhouse ?? 0);

/** Gaps: comments of the room after the viewer's first position, never shown to it (minus what a fresh snapshot excused). */
export function viewerGaps(o: Observer, log: LogView): number {
  const list = log.comments.get(o.room) ?? [];
  let gaps = 0;
  for (const c of list) {
    if (o.startOffset === undefined || c.offset <= o.startOffset) continue;
    if (o.received.has(c.eventId)) continue;
    if (o.excused.some(([a, b]) => c.offset >= a && c.offset <= b)) continue;
    gaps++;
  }
  return gaps;
}

/** Compares what was acknowledged with the log and the projections. */
export function checkPhase(row: Row, load: Load, log: LogView, proj: ProjectionView): void {
  row.acked = load.acked.size + [...load.reactionAcks.values()].reduce((a, r) => a + r.count, 0);
  for (const c of load.acked.values()) {
    if (!log.ids.has(c.eventId)) row.lostLog++;
    if (!proj.feed.get(c.room)?.has(c.eventId)) row.lostFeed++;
  }
  for (const [eventId, r] of load.reactionAcks) if (!log.ids.has(eventId)) row.lostLog += r.count;
  for (const n of log.ids.values()) if (n > 1) row.dupLog += n - 1;
  for (const ids of log.clientMsgIds.values()) if (ids.size > 1) row.dupLog += ids.size - 1;
  row.dupLog += load.ackConflicts;
  for (const ids of proj.feed.values()) for (const n of ids.values()) if (n > 1) row.dupFeed += n - 1;
  for (const [room, total] of proj.tallies) {
    // What the log holds up to where the tallies were when read: writes that landed after the log
    // was read (the load stopped waiting for them) are in neither count.
    const fence = proj.tallyFences.get(room) ?? -1;
    const inLog = (log.reactionsAt.get(room) ?? []).reduce((a, [offset, count]) => (offset <= fence ? a + count : a), 0);
    if (total < inLog) row.lostTallies += inLog - total;
    if (total > inLog) row.dupTallies += total - inLog;
  }
  for (const o of load.observers) {
    row.viewerGaps += viewerGaps(o, log);
    row.viewerDups += o.duplicates.length;
    row.resyncs += o.resets;
  }
  // Reactions the log holds beyond those acknowledged: refused or unanswered, yet durable (a client that
  // re-sends after a refusal counts them twice). Not a duplicate of an acknowledged write; said in a note.
  const ackedReactions = [...load.reactionAcks.values()].reduce((a, r) => a + r.count, 0);
  const loggedReactions = [...log.reactions.values()].reduce((a, b) => a + b, 0);
  if (loggedReactions > ackedReactions) row.notes.push(`${loggedReactions - ackedReactions} reaction(s) in the log beyond the ${ackedReactions} acknowledged (refused or unanswered, yet durable)`);
  const degraded = load.observers.reduce((a, o) => a + o.degraded, 0);
  if (degraded) row.notes.push(`${degraded} viewer socket(s) degraded by the gateway (too slow): not counted as gaps after that`);
  const refusedBy = [...load.refused].map(([code, n]) => `${code} ${n}`).join(', ');
  if (refusedBy) row.notes.push(`refused: ${refusedBy}`);
  row.refused = [...load.refused.values()].reduce((a, b) => a + b, 0);
  row.unknown = load.unknown;
}

/**
 * Event ids in the archive (and how many rows each), read by a child process
 * (chaos/archive-ids.ts): the embedded engine's folder belongs to one process
 * at a time, and the archiver must have stopped.
 */
export async function archivedIds(env: Record<string, string>, topic: string): Promise<Map<string, number>> {
  const file = path.join(os.tmpdir(), `chaos-archive-${process.pid}-${Date.now()}.tsv`);
  try {
    await exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'chaos/archive-ids.ts'), topic, file], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
    const out = new Map<string, number>();
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const [id, n] = line.split('\t');
      if (id && n) out.set(id, Number(n));
    }
    return out;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** A phase's acknowledged writes against the archive. */
export function checkArchive(row: Row, load: Load, log: LogView, archived: Map<string, number>): void {
  row.lostClickhouse = 0;
  row.dupClickhouse = 0;
  for (const c of load.acked.values()) if (!archived.has(c.eventId)) row.lostClickhouse++;
  for (const [eventId, r] of load.reactionAcks) if (!archived.has(eventId)) row.lostClickhouse += r.count;
  // Rows of the phase's events (the log's view says which) present more than once.
  for (const id of log.ids.keys()) {
    const n = archived.get(id) ?? 0;
    if (n > 1) row.dupClickhouse += n - 1;
  }
}
