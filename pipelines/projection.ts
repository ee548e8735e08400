/**
 * The shape every projection has (after Emmett): a pure function from an
 * event, plus the little state it needs, to its effect described as data —
 * Redis commands as objects — and the deltas clients are told about. A
 * separate runner (runner.ts) does the Kafka and Redis I/O.
 *
 * Exactly-once in effect comes from the fence: each (projection, version,
 * room) remembers the offset of the last event it applied. A room lives in
 * one partition, so its offsets only increase; an event at or below the
 * fence was applied already (a redelivery, a rebalance, a restart) and is
 * skipped. The fence, the state and the effect are written by one Lua script,
 * so they can never disagree.
 */
import type { RoomEvent } from '../schemas/events.ts';

export interface PositionedEvent {
  event: RoomEvent;
  /** Kafka offset within the room's partition (below 2^53, so a number is exact). */
  offset: number;
  partition: number;
}

/**
 * A Redis effect as data. `key` is a key name (all keys of one call share the
 * room's hash tag). The custom ops are small loops the Lua script runs
 * server-side, so they stay atomic with the rest.
 */
export type Cmd =
  | { op: 'ZADD'; key: string; score: number; member: string }
  | { op: 'ZREMRANGEBYSCORE'; key: string; min: number; max: number }
  | { op: 'HSET'; key: string; field: string; value: string }
  | { op: 'HDEL'; key: string; fields: string[] }
  | { op: 'HINCRBY'; key: string; field: string; by: number }
  | { op: 'SET'; key: string; value: string }
  | { op: 'DEL'; key: string }
  /** Removes the feed entry of `eventId` (found through the index hash) from the sorted set. */
  | { op: 'feedRemove'; key: string; index: string; eventId: string }
  /** Adds an entry to the sorted set and records eventId → offset in the index. */
  | { op: 'feedAdd'; key: string; index: string; eventId: string; offset: number; member: string }
  /** Keeps the newest `keep` entries, dropping the index entries of the rest. */
  | { op: 'feedTrim'; key: string; index: string; keep: number };

/** What clients are told after an effect: a compact, typed change. */
export type Delta =
  | { t: 'comment'; entry: FeedEntry }
  | { t: 'delete'; eventId: string; offset: number; reason: string }
  | { t: 'tally'; totals: Record<string, number>; second: number; burst: Record<string, number> }
  | { t: 'pin'; pin: PinState | null }
  | { t: 'settings'; settings: RoomSettings }
  | { t: 'mute'; userId: string; untilMs: number | null; kind: 'shadow' | 'visible' }
  | { t: 'rate'; rate: number };

export interface FeedEntry {
  kind: 'comment';
  offset: number;
  eventId: string;
  userId: string;
  role: string;
  text: string;
  mode: 'scroll' | 'top' | 'bottom';
  color: number;
  size: 'small' | 'medium' | 'large';
  occurredAt: number;
  videoOffsetMs: number | null;
  replyTo: string | null;
  /** Set when the author is shadow-muted: only the author is shown the comment. */
  shadow?: true;
}

export interface Tombstone {
  kind: 'delete';
  offset: number;
  /** The removed comment. */
  eventId: string;
  /** The event that removed it (a deletion or a moderation verdict). */
  deletionId: string;
  occurredAt: number;
  reason: string;
}

export type FeedItem = FeedEntry | Tombstone;

export interface PinState {
  eventId: string;
  text: string | null;
  untilMs: number | null;
  by: string;
  offset: number;
}

export interface RoomSettings {
  slowModeSec: number;
  emoteOnly: boolean;
  extra: Record<string, string>;
}

export interface Effect<S> {
  state: S;
  cmds: Cmd[];
  deltas: Delta[];
}

export interface Projection<S> {
  /** Stable name: part of key names, consumer groups and metrics. */
  readonly name: string;
  initial(): S;
  /** Pure: never reads a clock, the network or randomness, so replay and rebuild agree with live. */
  apply(state: S, e: PositionedEvent, keys: RoomKeys): Effect<S>;
}

/** Key names of one projection version for one room; every key carries the room's hash tag. */
export interface RoomKeys {
  meta: string;
  key(suffix: string): string;
}

export function roomKeys(prefix: string, projection: string, version: number, room: string): RoomKeys {
  const base = `${prefix}${projection}:v${version}:{${room}}`;
  return { meta: `${base}:meta`, key: (suffix) => `${base}:${suffix}` };
}

export interface RoomMeta<S> {
  /** Offset of the last applied event; undefined when the room was never touched. */
  fence: number | undefined;
  state: S;
}

export interface FoldResult<S> {
  meta: RoomMeta<S>;
  cmds: Cmd[];
  deltas: Delta[];
  applied: number;
  skipped: number;
}

/**
 * Folds a room's events into one effect, skipping those at or below the
 * fence. Commands of consecutive events are concatenated (not merged) so the
 * result is the same as applying them one at a time.
 */
export function foldRoom<S>(p: Projection<S>, meta: RoomMeta<S>, events: PositionedEvent[], keys: RoomKeys): FoldResult<S> {
  let { fence, state } = meta;
  const cmds: Cmd[] = [];
  const deltas: Delta[] = [];
  let applied = 0;
  let skipped = 0;
  for (const e of events) {
    if (fence !== undefined && e.offset <= fence) {
      skipped++;
      continue;
    }
    const eff = p.apply(state, e, keys);
    state = eff.state;
    cmds.push(...eff.cmds);
    deltas.push(...eff.deltas);
    fence = e.offset;
    applied++;
  }
  return { meta: { fence, state }, cmds, deltas, applied, skipped };
}
