/**
 * Reading the projections: what gateways serve. Always reads the active
 * version of each projection, so a rebuild's switch is seen at once.
 *
 * A client's place in a room is a position {offset, epoch}: the offset of the
 * last feed item it has, and the room's epoch when it got it. A different
 * epoch means the projection was rebuilt and the client must reload.
 */
import type { RedisClient } from '../core/redis.ts';
import type { FeedItem, Leaderboard, PinState, RoomSettings } from './projection.ts';
import { emptyLeaderboard } from './projections/gifts.ts';
import type { HeldEntry } from './projections/held.ts';
import { defaultSettings } from './projections/room-state.ts';
import type { SampledState } from './projections/sampled.ts';
import { activeVersion, epochKey, switchesKey, type ProjectionNaming } from './naming.ts';
import { roomKeys } from './projection.ts';

export type View = 'ordered' | 'sampled';

export interface Position {
  offset: number;
  epoch: number;
}

export interface FeedPage {
  items: FeedItem[];
  /** Position after the last item served (or the room's position when nothing is new). */
  position: Position;
  /**
   * The oldest offset Redis still holds for this room (undefined when empty).
   * A client asking for anything older needs the log, not Redis.
   */
  oldestOffset: number | undefined;
  /** Sampling rate of the sampled view (1 = everything). */
  rate: number;
}

const projectionOfView = (v: View) => (v === 'ordered' ? 'feed' : 'sampled');

/**
 * The room's epoch: its own counter plus the number of version switches (a
 * rebuild bumps every room's epoch with one INCR of the switch counter).
 * Both only grow, so the sum does: a position of another epoch is not one of
 * this epoch's, and its client needs a fresh snapshot.
 */
export async function roomEpoch(redis: RedisClient, n: ProjectionNaming, room: string): Promise<number> {
  const [own, switches] = await Promise.all([redis.get(epochKey(n, room)), redis.get(switchesKey(n))]);
  return Number(own ?? 0) + Number(switches ?? 0);
}

/** The room's position in a view: the last offset its projection applied (-1 before any), and the epoch. */
export async function roomPosition(redis: RedisClient, n: ProjectionNaming, room: string, view: View = 'ordered'): Promise<Position> {
  const name = projectionOfView(view);
  const keys = roomKeys(n.keyPrefix, name, await activeVersion(redis, n, name), room);
  const [fence, epoch] = await Promise.all([redis.hget(keys.meta, 'fence'), roomEpoch(redis, n, room)]);
  return { offset: fence === null ? -1 : Number(fence), epoch };
}

export interface FeedQuery {
  view: View;
  /** Items strictly after this offset (resume). */
  afterOffset?: number;
  /**
   * Items whose event time is within [fromMs, toMs] — among the page read by offset only,
   * so a window misses items past `limit` and older than Redis holds: the exact
   * answer is the gateway's GET /v1/rooms/:room/feed/window (gateway/feed-window.ts).
   */
  fromMs?: number;
  toMs?: number;
  limit?: number;
}

export async function readFeed(redis: RedisClient, n: ProjectionNaming, room: string, q: FeedQuery): Promise<FeedPage> {
  const name = projectionOfView(q.view);
  const version = await activeVersion(redis, n, name);
  const keys = roomKeys(n.keyPrefix, name, version, room);
  const limit = q.limit ?? 200;
  const min = q.afterOffset === undefined ? '-inf' : `(${q.afterOffset}`;
  const [raw, oldest, meta, epoch] = await Promise.all([
    redis.zrangebyscore(keys.key('z'), min, '+inf', 'LIMIT', '0', String(limit)),
    redis.zrange(keys.key('z'), '0', '0', 'WITHSCORES'),
    redis.hmget(keys.meta, 'fence', 'state'),
    roomEpoch(redis, n, room),
  ]);
  let items = raw.map((m) => JSON.parse(m) as FeedItem);
  if (q.fromMs !== undefined || q.toMs !== undefined) {
    items = items.filter((i) => (q.fromMs === undefined || i.occurredAt >= q.fromMs) && (q.toMs === undefined || i.occurredAt <= q.toMs));
  }
  const fence = meta[0] ? Number(meta[0]) : -1;
  const last = raw.length === limit && items.length > 0 ? items[items.length - 1]!.offset : fence;
  const rate = name === 'sampled' && meta[1] ? (JSON.parse(meta[1]) as SampledState).rate : 1;
  return {
    items,
    position: { offset: Math.max(last, q.afterOffset ?? -1), epoch },
    oldestOffset: oldest.length === 2 ? Number(oldest[1]) : undefined,
    rate,
  };
}

export interface RoomSnapshotState {
  pinned: PinState | null;
  settings: RoomSettings;
  tallies: { totals: Record<string, number>; lastSeconds: Record<string, Record<string, number>> };
  muted: Record<string, { untilMs: number | null; kind: 'shadow' | 'visible'; reason: string }>;
  /** The gift leaderboard (projections/gifts.ts). */
  leaderboard: Leaderboard;
  epoch: number;
}

/** Pin (hidden once expired at `nowMs`), settings, tallies, muted users, the gift leaderboard. */
export async function readRoomState(redis: RedisClient, n: ProjectionNaming, room: string, nowMs: number): Promise<RoomSnapshotState> {
  const [sv, tv, gv] = await Promise.all([activeVersion(redis, n, 'state'), activeVersion(redis, n, 'tallies'), activeVersion(redis, n, 'gifts')]);
  const sk = roomKeys(n.keyPrefix, 'state', sv, room);
  const tk = roomKeys(n.keyPrefix, 'tallies', tv, room);
  const [pinRaw, settingsRaw, mutedRaw, totals, secs, epoch, board] = await Promise.all([
    redis.get(sk.key('pin')),
    redis.get(sk.key('settings')),
    redis.hgetall(sk.key('muted')),
    redis.hgetall(tk.key('total')),
    redis.hgetall(tk.key('sec')),
    roomEpoch(redis, n, room),
    redis.get(roomKeys(n.keyPrefix, 'gifts', gv, room).key('board')),
  ]);
  const pin = pinRaw ? (JSON.parse(pinRaw) as PinState) : null;
  const muted: RoomSnapshotState['muted'] = {};
  for (const [u, v] of Object.entries(mutedRaw)) {
    const m = JSON.parse(v) as { untilMs: number | null; kind: 'shadow' | 'visible'; reason: string };
    if (m.untilMs === null || m.untilMs > nowMs) muted[u] = m;
  }
  const lastSeconds: Record<string, Record<string, number>> = {};
  const nowSec = Math.floor(nowMs / 1000);
  for (const [field, count] of Object.entries(secs)) {
    const [sec, emoji] = [field.slice(0, field.indexOf(':')), field.slice(field.indexOf(':') + 1)];
    if (Number(sec) < nowSec - 10) continue;
    (lastSeconds[sec] ??= {})[emoji] = Number(count);
  }
  return {
    pinned: pin && (pin.untilMs === null || pin.untilMs > nowMs) ? pin : null,
    settings: settingsRaw ? (JSON.parse(settingsRaw) as RoomSettings) : defaultSettings(),
    tallies: { totals: Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, Number(v)])), lastSeconds },
    muted,
    leaderboard: board ? (JSON.parse(board) as Leaderboard) : emptyLeaderboard(),
    epoch,
  };
}

export interface HeldPage {
  /** Oldest hold first. */
  items: HeldEntry[];
  /** The `heldAt` to pass as `after` for the next page; null when there is none. */
  next: number | null;
  /** Entries in the queue (with `userId`: that author's). */
  total: number;
}

/**
 * A page of the room's review queue (projections/held.ts), oldest hold first:
 * up to `limit` entries held after position `after`. With `userId`, that
 * author's entries only — read whole and filtered here, which the queue's
 * bound (HELD_MAX_ITEMS) keeps cheap.
 */
export async function readHeld(redis: RedisClient, n: ProjectionNaming, room: string, q: { after?: number; limit: number; userId?: string; version?: number }): Promise<HeldPage> {
  const keys = roomKeys(n.keyPrefix, 'held', q.version ?? (await activeVersion(redis, n, 'held')), room);
  const min = q.after === undefined ? '-inf' : `(${q.after}`;
  if (q.userId !== undefined) {
    const all = (await redis.zrange(keys.key('z'), '0', '-1')).map((m) => JSON.parse(m) as HeldEntry).filter((h) => h.userId === q.userId);
    const after = q.after === undefined ? all : all.filter((h) => h.heldAt > q.after!);
    const items = after.slice(0, q.limit);
    return { items, next: after.length > q.limit ? items[items.length - 1]!.heldAt : null, total: all.length };
  }
  const [raw, total] = await Promise.all([redis.zrangebyscore(keys.key('z'), min, '+inf', 'LIMIT', '0', String(q.limit + 1)), redis.zcard(keys.key('z'))]);
  const items = raw.slice(0, q.limit).map((m) => JSON.parse(m) as HeldEntry);
  return { items, next: raw.length > q.limit ? items[items.length - 1]!.heldAt : null, total };
}

/** The queue's entry of comment `eventId`, or undefined when it is not held (never, or released or deleted since). */
export async function readHeldEntry(redis: RedisClient, n: ProjectionNaming, room: string, eventId: string, version?: number): Promise<HeldEntry | undefined> {
  const keys = roomKeys(n.keyPrefix, 'held', version ?? (await activeVersion(redis, n, 'held')), room);
  const at = await redis.hget(keys.key('idx'), eventId);
  if (at === null) return undefined;
  const [member] = await redis.zrangebyscore(keys.key('z'), at, at);
  const entry = member ? (JSON.parse(member) as HeldEntry) : undefined;
  return entry?.eventId === eventId ? entry : undefined;
}
