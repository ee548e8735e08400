/**
 * The shape every projection has (after Emmett): a pure function from an
 * event, plus the little state it needs, to its effect described as data —
 * Redis commands as objects — and the deltas clients are told about. A
 * separate runner (runner.ts) does the Kafka and Redis I/O.
 *
 * Exactly-once in effect comes from the fence: each (projection, version,
 * room) remembers the position of the last event it applied. A room lives in
 * one partition per log generation and generations are read in order, so its
 * positions only increase (topics/generations.ts); an event at or below the
 * fence was applied already (a redelivery, a rebalance, a restart) and is
 * skipped. The fence, the state and the effect are written by one Lua script,
 * so they can never disagree.
 */
import type { RoomEvent } from '../schemas/events.ts';
import { MemoryStore, type Cmd, type LoadedFields } from './store.ts';

export interface PositionedEvent {
  event: RoomEvent;
  /**
   * The event's position: its Kafka offset within the room's partition in
   * log generation 0, generation · 2^40 + offset after a repartition
   * (topics/generations.ts), so a room's positions only grow across
   * generations (below 2^53, so a number is exact).
   */
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
  // deletionId and occurredAt: what a reader needs to build the tombstone as the feed holds it (a gateway's in-memory snapshot).
  | { t: 'delete'; eventId: string; offset: number; reason: string; deletionId?: string; occurredAt?: number }
  | { t: 'tally'; totals: Record<string, number>; second: number; burst: Record<string, number> }
  | { t: 'pin'; pin: PinState | null }
  | { t: 'settings'; settings: RoomSettings }
  | { t: 'mute'; userId: string; untilMs: number | null; kind: 'shadow' | 'visible' }
  | { t: 'rate'; rate: number }
  | { t: 'gift'; gift: GiftItem; leaderboard: Leaderboard };

/** One gift as viewers are shown it (projections/gifts.ts). */
export interface GiftItem {
  kind: 'gift';
  offset: number;
  eventId: string;
  userId: string;
  giftId: string;
  name: string;
  count: number;
  /** count × the gift's value when sent. */
  value: number;
  occurredAt: number;
  videoOffsetMs: number | null;
}

/** A sender's place on a room's leaderboard. */
export interface GiftSender {
  userId: string;
  /** Total value of every gift the user sent in the room. */
  value: number;
  /** Gifts sent (counts summed). */
  gifts: number;
  /** Position of the gift that brought the total to `value`: of two equal totals, the one reached first ranks higher. */
  at: number;
}

/** A room's gift leaderboard: the top senders by total value, and the room's totals. */
export interface Leaderboard {
  top: GiftSender[];
  totalValue: number;
  totalGifts: number;
  /** Users who sent at least one gift. */
  senders: number;
}

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
  /**
   * Set on a held comment a moderator released (CommentReleased): the same
   * comment (event id, author, text, time) again, at the release's offset.
   */
  released?: true;
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
  /**
   * Writes outside the room's keys (moderation's share of a user's
   * reputation, kept per user across rooms: another hash slot, so not in the
   * room's script). Idempotent (a value, not an increment) and deterministic
   * like emits; the runner makes them durable before the fence moves past
   * their cause, so a crash in between writes the same again.
   */
  external?: ExternalWrite[];
}

/** One field of a hash outside the room's keys: set (and the hash kept ttlMs), or deleted (value null). */
export interface ExternalWrite {
  key: string;
  field: string;
  value: string | null;
  ttlMs: number;
}

/**
 * Per-user state, kept beside the room's meta instead of in its state: one
 * field per user in the hash `keys.key(suffix)`, and the sorted set
 * `keys.key(suffix + ':exp')` of the same fields by the event time from which
 * a field means nothing any more. The runner loads, per batch, only the fields
 * the batch's events read (`readsOf`), never the whole hash; the projection
 * writes them with the `fieldSet`/`fieldDel` commands and bounds the hash with
 * `fieldsExpire` (event time, so replay and rebuild drop exactly what live
 * dropped). Within a fold, what the projection wrote is what it reads next.
 */
export interface UserFields {
  suffix: string;
  /** The fields (user ids) applying `e` reads. */
  readsOf(e: RoomEvent): readonly string[];
}

/** What apply reads of its per-user fields: as the commands before it left them. */
export interface UserView {
  get(field: string): string | undefined;
}

export interface Projection<S> {
  /** Stable name: part of key names, consumer groups and metrics. */
  readonly name: string;
  initial(): S;
  /** Per-user state, loaded per batch for the users of the batch only (see UserFields). */
  readonly users?: UserFields;
  /**
   * Pure: never reads a clock, the network or randomness, so replay and
   * rebuild agree with live. `users` holds the fields `users.readsOf(e)`
   * names (empty for a projection without per-user state).
   */
  apply(state: S, e: PositionedEvent, keys: RoomKeys, users: UserView): Effect<S>;
  /**
   * Optional: the projection to fold one batch with, asked for once per batch
   * by the runner. For inputs that change over time (moderation's reloadable
   * word list): they are read here, and apply stays pure given them.
   */
  forBatch?(): Projection<S>;
  /**
   * Optional, instead of forBatch: the projection for one batch, given the
   * batch's events, when what it reads beside the room's state must be
   * fetched first (moderation reads the authors' reputation in the other
   * rooms). apply stays pure given what this read.
   */
  prepare?(events: readonly RoomEvent[]): Promise<Projection<S>>;
  /**
   * Every key the projection may write under a room (suffixes for
   * `RoomKeys.key`), besides the meta key and the per-user hash and its index
   * (`users`), which are known already. An idle room's keys expire together
   * (ROOM_IDLE_TTL_SEC), so each effect renews them all, not just the keys it
   * touched: a pin set once must not expire while the room chats on.
   */
  readonly keySuffixes: readonly string[];
}

/** Every key of a projection under one room that expires when the room is idle (meta first). */
export function expiringKeys(p: Projection<unknown>, keys: RoomKeys): string[] {
  const suffixes = p.users ? [...p.keySuffixes, p.users.suffix, `${p.users.suffix}:exp`] : p.keySuffixes;
  return [keys.meta, ...new Set(suffixes)].map((s, i) => (i === 0 ? s : keys.key(s)));
}

/**
 * The suffix of a room's *history record* for one projection version: where
 * the room's events start and end in the log (positions `first`, `last`).
 * Written with every effect while ROOM_IDLE_TTL_SEC is on, and never expires:
 * when the room's keys have expired, it is how the runner knows the room had
 * a history, and where in the log to read it back from.
 */
export const HISTORY_SUFFIX = 'history';

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
  external: ExternalWrite[];
  applied: number;
  skipped: number;
}

/** The per-user hash of a projection and its expiry index, for one room. */
export function userKeys(keys: RoomKeys, users: UserFields): { key: string; index: string } {
  return { key: keys.key(users.suffix), index: keys.key(`${users.suffix}:exp`) };
}

/** The fields a batch of a room reads (events past the fence only). */
export function fieldsRead(p: Projection<unknown>, fence: number | undefined, events: PositionedEvent[]): string[] {
  if (!p.users) return [];
  const out = new Set<string>();
  for (const e of events) if (fence === undefined || e.offset > fence) for (const f of p.users.readsOf(e.event)) out.add(f);
  return [...out];
}

/**
 * The per-user fields a fold reads, in memory: seeded with what was loaded
 * (the fields and their expiry), then kept as the store would hold them by
 * running each effect's commands on those keys (the same command table as
 * Redis, so a field expired or deleted mid-batch is gone for the next event).
 */
export class FieldsView implements UserView {
  readonly store = new MemoryStore();
  constructor(
    readonly key: string,
    readonly index: string,
    loaded?: LoadedFields,
  ) {
    for (const [f, [v, at]] of loaded?.fields ?? []) {
      this.store.hash(key).set(f, v);
      if (at !== undefined) this.store.zadd(index, f, at);
    }
  }

  get(field: string): string | undefined {
    return this.store.hashes.get(this.key)?.get(field);
  }

  /** Runs the commands that touch these fields. */
  follow(cmds: Cmd[]): void {
    for (const c of cmds) if ((c.op === 'fieldSet' || c.op === 'fieldDel' || c.op === 'fieldsExpire') && c.key === this.key) this.store.exec([c]);
  }

  /** Everything the view holds: field → [value, expireAt]. */
  entries(): LoadedFields {
    const fields: LoadedFields['fields'] = new Map();
    const idx = this.store.zsets.get(this.index);
    for (const [f, v] of this.store.hashes.get(this.key) ?? []) fields.set(f, [v, idx?.get(f)]);
    return { fields };
  }
}

const NO_USERS: UserView = { get: () => undefined };

/** A view for `p` in the room of `keys`: of `loaded`, or empty (a fold from the room's start). */
export function fieldsView(p: Projection<unknown>, keys: RoomKeys, loaded?: LoadedFields): FieldsView | undefined {
  if (!p.users) return undefined;
  const k = userKeys(keys, p.users);
  return new FieldsView(k.key, k.index, loaded);
}

/** Applies one event and keeps `view` up to date: what foldRoom does per event, for callers that fold one at a time (replay). */
export function applyOne<S>(p: Projection<S>, state: S, e: PositionedEvent, keys: RoomKeys, view?: FieldsView): Effect<S> {
  const eff = p.apply(state, e, keys, view ?? NO_USERS);
  view?.follow(eff.cmds);
  return eff;
}

/**
 * Folds a room's events into one effect, skipping those at or below the
 * fence. Commands of consecutive events are concatenated (not merged) so the
 * result is the same as applying them one at a time. `view` holds the
 * per-user fields the events read (see UserFields): loaded by the runner,
 * empty for a fold from the room's start.
 */
export function foldRoom<S>(p: Projection<S>, meta: RoomMeta<S>, events: PositionedEvent[], keys: RoomKeys, view?: FieldsView): FoldResult<S> {
  let { fence, state } = meta;
  const users = view ?? fieldsView(p as Projection<unknown>, keys);
  const cmds: Cmd[] = [];
  const deltas: Delta[] = [];
  const emits: RoomEvent[] = [];
  const external: ExternalWrite[] = [];
  let applied = 0;
  let skipped = 0;
  for (const e of events) {
    if (fence !== undefined && e.offset <= fence) {
      skipped++;
      continue;
    }
    const eff = applyOne(p, state, e, keys, users);
    state = eff.state;
    for (const c of eff.cmds) cmds.push(c);
    for (const d of eff.deltas) deltas.push(d);
    if (eff.emits) for (const x of eff.emits) emits.push(x);
    if (eff.external) for (const x of eff.external) external.push(x);
    fence = e.offset;
    applied++;
  }
  return { meta: { fence, state }, cmds, deltas, emits, external, applied, skipped };
}
