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
import type { Cmd } from './store.ts';

export interface PositionedEvent {
  event: RoomEvent;
  /** Kafka offset within the room's partition (below 2^53, so a number is exact). */
  offset: number;
  partition: number;
}

/**
 * A Redis effect as data, e.g. `{ op: 'HSET', key, field, value }`. `key`
 * fields are key names (all keys of one call share the room's hash tag). The
 * commands are declared once, in the table in store.ts (fields, Lua body,
 * in-memory implementation); the custom ops (feedAdd, feedRemove, feedTrim)
 * are small loops the Lua script runs server-side, so they stay atomic with
 * the rest.
 */
export type { Cmd };

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
  /**
   * Events to write back to the log (moderation's decisions). The runner
   * produces them, acks=all, before it applies the effect that moves the
   * fence past the event that caused them; so they must be deterministic in
   * the event and state (derived event ids), as a crash in between emits
   * them again.
   */
  emits?: RoomEvent[];
}

export interface Projection<S> {
  /** Stable name: part of key names, consumer groups and metrics. */
  readonly name: string;
  initial(): S;
  /** Pure: never reads a clock, the network or randomness, so replay and rebuild agree with live. */
  apply(state: S, e: PositionedEvent, keys: RoomKeys): Effect<S>;
  /**
   * Optional: the projection to fold one batch with, asked for once per batch
   * by the runner. For inputs that change over time (moderation's reloadable
   * word list): they are read here, and apply stays pure given them.
   */
  forBatch?(): Projection<S>;
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
  emits: RoomEvent[];
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
  const emits: RoomEvent[] = [];
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
    if (eff.emits) emits.push(...eff.emits);
    fence = e.offset;
    applied++;
  }
  return { meta: { fence, state }, cmds, deltas, emits, applied, skipped };
}
