/**
 * Test streams and expectations for the projection int tests: a realistic
 * mix of room events (texts from the real chat logs in ../shared/data when
 * present, generated otherwise), the projections computed in memory by the
 * same pure code, and a dump of what Redis holds, to compare exactly.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { REPO_ROOT } from '../core/config.ts';
import type { RedisClient } from '../core/redis.ts';
import { fieldsRead, FieldsView, foldRoom, HISTORY_SUFFIX, roomKeys, userKeys, type FoldResult, type PositionedEvent, type Projection, type RoomKeys, type RoomMeta } from '../pipelines/projection.ts';
import { MemoryStore } from '../pipelines/store.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';

export const SHARED_DATA = path.resolve(REPO_ROOT, '..', 'shared', 'data');

/** Up to `n` real comment texts from the Bilibili log, or undefined when the data is absent. */
export function realTexts(n: number): string[] | undefined {
  const file = path.join(SHARED_DATA, 'bilibili_asoul_live.jsonl.gz');
  if (!fs.existsSync(file)) return undefined;
  const lines = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n');
  const out: string[] = [];
  for (const l of lines) {
    if (!l) continue;
    const t = (JSON.parse(l) as { text: string }).text.trim();
    if (t) out.push(t.slice(0, 200));
    if (out.length >= n) break;
  }
  return out;
}

/**
 * The densest 3 minutes of the busiest room of the Bilibili log, as comments
 * with their original timing (event time `startMs` + the offset into the
 * stream, video offset = that offset), in log order; undefined when the data
 * is absent.
 */
export function busiestStretch(roomId: string, startMs: number): RoomEvent[] | undefined {
  const file = path.join(SHARED_DATA, 'bilibili_asoul_live.jsonl.gz');
  if (!fs.existsSync(file)) return undefined;
  const rows = zlib
    .gunzipSync(fs.readFileSync(file))
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { room: string; offset_ms: number; user: string | null; text: string })
    .filter((r) => r.room === 'bili:2020.12.12 嘉然 首播' && r.offset_ms >= 0 && r.text.trim());
  let best = 0;
  let bestCount = 0;
  for (let i = 0, j = 0; i < rows.length; i++) {
    while (rows[j]!.offset_ms < rows[i]!.offset_ms - 180_000) j++;
    if (i - j > bestCount) [best, bestCount] = [j, i - j];
  }
  return rows.slice(best, best + bestCount).map((r, i) =>
    makeEvent({
      roomId,
      eventId: `0194${String(i).padStart(4, '0')}-0000-7000-8000-${String(i).padStart(12, '0')}`,
      actor: { userId: r.user ?? 'anon', role: 'viewer' },
      occurredAt: startMs + r.offset_ms,
      videoOffsetMs: r.offset_ms,
      payload: comment(r.text.slice(0, 200)),
    }),
  );
}

/** Deterministic pseudo-random numbers (mulberry32), so a failing stream can be regenerated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A mixed stream over `rooms` rooms: mostly comments and reactions, with deletes, pins, settings and mutes. */
export function mixedStream(opts: { rooms: string[]; count: number; seed?: number; startMs?: number }): RoomEvent[] {
  const rnd = prng(opts.seed ?? 42);
  const texts = realTexts(Math.min(opts.count, 5000)) ?? Array.from({ length: 500 }, (_, i) => `generated comment ${i} ${'x'.repeat(i % 40)}`);
  const posted = new Map<string, string[]>();
  const events: RoomEvent[] = [];
  let t = opts.startMs ?? 1_767_225_600_000;
  for (let i = 0; i < opts.count; i++) {
    const roomId = opts.rooms[Math.floor(rnd() * opts.rooms.length)]!;
    t += Math.floor(rnd() * 120); // busy: several events per second
    const user = `u${Math.floor(rnd() * 50)}`;
    const viewer = { userId: user, role: 'viewer' as const };
    const mod = { userId: 'mod', role: 'moderator' as const };
    const ids = posted.get(roomId) ?? [];
    const r = rnd();
    let e: RoomEvent;
    if (r < 0.6 || ids.length === 0) {
      e = makeEvent({ roomId, actor: rnd() < 0.05 ? mod : viewer, occurredAt: t, videoOffsetMs: i * 100, payload: comment(texts[i % texts.length]!, { color: Math.floor(rnd() * 0xffffff) }) });
      ids.push(e.eventId);
      posted.set(roomId, ids);
    } else if (r < 0.85) {
      e = makeEvent({ roomId, actor: viewer, occurredAt: t, payload: { type: 'ReactionAdded', emoji: ['heart', 'fire', 'laugh', 'clap'][Math.floor(rnd() * 4)]!, count: 1 + Math.floor(rnd() * 5) } });
    } else if (r < 0.92) {
      e = makeEvent({ roomId, actor: mod, occurredAt: t, payload: { type: 'CommentDeleted', targetEventId: ids[Math.floor(rnd() * ids.length)]!, deletedBy: 'mod', reason: 'test' } });
    } else if (r < 0.96) {
      const target = ids[Math.floor(rnd() * ids.length)]!;
      e = makeEvent({ roomId, actor: mod, occurredAt: t, payload: rnd() < 0.7 ? { type: 'CommentPinned', targetEventId: target, untilMs: t + 60_000, text: 'pinned' } : { type: 'CommentUnpinned', targetEventId: target } });
    } else if (r < 0.98) {
      e = makeEvent({ roomId, actor: mod, occurredAt: t, payload: { type: 'RoomSettingsChanged', slowModeSec: Math.floor(rnd() * 10), emoteOnly: rnd() < 0.2, extra: {} } });
    } else {
      e = makeEvent({ roomId, actor: { userId: 'moderation', role: 'system' }, occurredAt: t, payload: { type: 'UserMuted', userId: user, untilMs: t + 30_000, kind: rnd() < 0.5 ? 'shadow' : 'visible', reason: 'test' } });
    }
    events.push(e);
  }
  return events;
}

export interface Snapshot {
  [key: string]: unknown;
}

/**
 * Projects positioned events in memory: the expected Redis content, keyed like
 * Redis. With `history`, each room's history record too (where its events
 * start and end in the log; written while ROOM_IDLE_TTL_SEC is on).
 */
export function expectedSnapshot(projection: Projection<unknown>, keyPrefix: string, version: number, events: PositionedEvent[], opts: { history?: boolean } = {}): Snapshot {
  const store = new MemoryStore();
  const metas = new Map<string, RoomMeta<unknown>>();
  const byRoom = new Map<string, PositionedEvent[]>();
  for (const e of events) byRoom.set(e.event.roomId, [...(byRoom.get(e.event.roomId) ?? []), e]);
  const snap: Snapshot = {};
  for (const [room, list] of byRoom) {
    const keys = roomKeys(keyPrefix, projection.name, version, room);
    const r = foldRoom(projection, metas.get(room) ?? { fence: undefined, state: projection.initial() }, [...list].sort((a, b) => a.offset - b.offset), keys);
    store.exec(r.cmds);
    metas.set(room, r.meta);
    snap[keys.meta] = { fence: String(r.meta.fence), state: r.meta.state };
    if (opts.history) snap[keys.key(HISTORY_SUFFIX)] = { first: String(Math.min(...list.map((e) => e.offset))), last: String(r.meta.fence) };
  }
  for (const [k, z] of store.zsets) if (z.size > 0) snap[k] = store.sortedMembers(k);
  for (const [k, h] of store.hashes) if (h.size > 0) snap[k] = Object.fromEntries([...h].sort());
  for (const [k, v] of store.strings) snap[k] = v;
  return snap;
}

/** What the runner's load script reads from Redis for a batch (the fields its events read), read from a MemoryStore. */
export function loadFields(store: MemoryStore, p: Projection<unknown>, keys: RoomKeys, fields: string[]): FieldsView | undefined {
  if (!p.users) return undefined;
  const k = userKeys(keys, p.users);
  const loaded = new Map<string, [string, number | undefined]>();
  for (const f of fields) {
    const v = store.hashes.get(k.key)?.get(f);
    if (v !== undefined) loaded.set(f, [v, store.zsets.get(k.index)?.get(f)]);
  }
  return new FieldsView(k.key, k.index, { fields: loaded });
}

/**
 * One room's events folded batch by batch the way the runner does it: per
 * batch, the per-user fields its events read are loaded from the store, the
 * batch is folded, and its commands applied to the store.
 */
export function foldInBatches<S>(p: Projection<S>, keys: RoomKeys, batches: PositionedEvent[][], store = new MemoryStore(), meta: RoomMeta<S> = { fence: undefined, state: p.initial() }): { store: MemoryStore; meta: RoomMeta<S>; results: FoldResult<S>[] } {
  const results: FoldResult<S>[] = [];
  for (const batch of batches) {
    const q = p as Projection<unknown>;
    const r = foldRoom(p, meta, batch, keys, loadFields(store, q, keys, fieldsRead(q, meta.fence, batch)));
    store.exec(r.cmds);
    meta = r.meta;
    results.push(r);
  }
  return { store, meta, results };
}

/** Reads every key under `pattern` from Redis (single or cluster) in the same shape; rooms' history records only with `history`. */
export async function redisSnapshot(redis: RedisClient, pattern: string, opts: { history?: boolean } = {}): Promise<Snapshot> {
  const keys = new Set<string>();
  const nodes = 'nodes' in redis && typeof redis.nodes === 'function' ? redis.nodes('master') : [redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', '1000');
      cursor = next;
      for (const k of batch) keys.add(k);
    } while (cursor !== '0');
  }
  const snap: Snapshot = {};
  for (const k of [...keys].sort()) {
    if (!opts.history && k.endsWith(`:${HISTORY_SUFFIX}`)) continue;
    const type = await redis.type(k);
    if (type === 'zset') {
      const flat = await redis.zrange(k, '0', '-1', 'WITHSCORES');
      const pairs: [string, number][] = [];
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, Number(flat[i + 1])]);
      snap[k] = pairs;
    } else if (type === 'hash') {
      const h = await redis.hgetall(k);
      if (k.endsWith(':meta')) snap[k] = { fence: h.fence, state: JSON.parse(h.state ?? 'null') };
      else snap[k] = Object.fromEntries(Object.entries(h).sort());
    } else if (type === 'string') {
      snap[k] = await redis.get(k);
    }
  }
  return snap;
}
