/**
 * The client's pure logic: a reducer that applies what the gateway sends
 * (snapshot, catch-up, batches, viewers, degraded, and polled feed pages) to
 * the client's view of a room, and the reconnect backoff. No I/O, no clock,
 * no randomness of its own, so both are unit-tested without a server.
 *
 * Invariants of `items` (visible comments, oldest first, sorted by offset):
 * - no duplicate: an item whose offset was already applied is ignored, so a
 *   resume that overlaps what the client has (or a batch racing a snapshot)
 *   changes nothing;
 * - no deleted comment: a tombstone removes its comment, and a comment whose
 *   tombstone came first is never added — unless it is the same comment
 *   released from the review queue later in the log (`released`, at an
 *   offset after the removal): it shows again, once;
 * - the client's own comment held for review (a removal with a
 *   `moderation:hold:` reason, when the reducer knows who it is: `me`) stays,
 *   marked `pending`; everybody else's client removes it;
 * - a snapshot from another epoch (projections rebuilt), or one sent because
 *   the client's position was unrecoverable, replaces everything.
 */
import type {
  FeedEntry,
  FeedItem,
  FeedResponse,
  GiftItem,
  Leaderboard,
  PinState,
  Position,
  PushEvent,
  RoomSettings,
  ServerMessage,
  SnapshotMessage,
  Tallies,
  View,
} from '../protocol.ts';

/** GET /v1/rooms/:room/state */
export interface RoomStateResponse {
  pinned: PinState | null;
  tallies: Tallies;
  /** The gift leaderboard (absent from gateways older than gifts). */
  leaderboard?: Leaderboard;
  viewers: number;
  /** Distinct viewers of the room's stream (absent from gateways older than it). */
  uniqueViewers?: number;
  settings: RoomSettings;
  position: Position;
}

export type Transport = 'connecting' | 'ws' | 'polling' | 'closed';

/** A comment as the client holds it: `pending` while it is the client's own and held for review. */
export type ClientItem = FeedEntry & { pending?: true };

/** The reason of a removal that holds a comment for review (projections/feed.ts removalTarget). */
export const HOLD_REASON_PREFIX = 'moderation:hold:';

export interface ClientState {
  room: string;
  view: View;
  /** Where the client is: resume from here. Null before the first snapshot. */
  position: Position | null;
  /** Visible comments, oldest first (the client's own held ones marked `pending`). */
  items: ClientItem[];
  /** Offsets of every feed item applied (comments and tombstones) that are still in range: the dedupe set. */
  seen: Set<number>;
  /** Offsets below this were trimmed (maxItems): anything older is a duplicate by definition. */
  floor: number;
  /** Event ids of removed comments → offset of their latest removal (so a late comment is not shown again). */
  deleted: Map<string, number>;
  pinned: PinState | null;
  tallies: Tallies;
  /** The room's gift leaderboard: top senders by total value, and totals. */
  leaderboard: Leaderboard;
  /** Concurrent viewers across gateways (sockets plus recent pollers). */
  viewers: number;
  /** Distinct viewers of the room's stream so far (HyperLogLog estimate). */
  uniqueViewers: number;
  settings: RoomSettings;
  /** Sampling rate of the sampled view (1 = everything shown). */
  rate: number;
  /** Set when the server degraded this socket because it read too slowly. */
  degraded: 'sampled' | 'tallies' | null;
  /** A resume snapshot was taken and its catch-up has not come yet: the position stays where it was. */
  resuming: boolean;
}

/** What a reducer step tells the client's listeners. */
export type ClientEvent =
  | { type: 'comment'; entry: FeedEntry }
  | { type: 'delete'; eventId: string; offset: number; reason: string }
  /** The client's own comment was held for review: kept, marked pending, until a moderator releases or deletes it. */
  | { type: 'pending'; entry: ClientItem; reason: string }
  | { type: 'tally'; tallies: Tallies }
  /** A gift was sent (pushed): the gift, and the leaderboard with it counted. */
  | { type: 'gift'; gift: GiftItem; leaderboard: Leaderboard }
  /** The leaderboard changed otherwise (a polled state). */
  | { type: 'leaderboard'; leaderboard: Leaderboard }
  | { type: 'pin'; pin: PinState | null }
  | { type: 'viewers'; count: number }
  | { type: 'uniqueViewers'; count: number }
  | { type: 'settings'; settings: RoomSettings }
  | { type: 'rate'; rate: number }
  | { type: 'degraded'; mode: 'sampled' | 'tallies' }
  | { type: 'snapshot'; reason: 'fresh' | 'resume' | 'unrecoverable' | 'epoch' | 'resubscribed' | 'recovered'; items: ClientItem[] };

/** Everything the reducer takes: the WebSocket messages, and what polling brings. */
export type ClientInput =
  | ServerMessage
  | { type: 'feed'; response: FeedResponse }
  | { type: 'state'; state: RoomStateResponse }
  /** The client's own clock: a pin past its `untilMs` is hidden without waiting for the server. */
  | { type: 'clock'; now: number };

export interface Step {
  state: ClientState;
  events: ClientEvent[];
}

export interface ReducerOptions {
  /** Most comments kept in `items` (oldest dropped). */
  maxItems?: number;
  /** Seconds of per-second reaction buckets kept (the burst window is shorter). */
  tallySeconds?: number;
  /** The user this client is (its token's `sub`): its own comments held for review stay, marked pending. */
  me?: string;
}

const DEFAULT_MAX_ITEMS = 500;
type Options = Required<Omit<ReducerOptions, 'me'>> & Pick<ReducerOptions, 'me'>;
const DEFAULT_TALLY_SECONDS = 60;

export const defaultSettings = (): RoomSettings => ({ slowModeSec: 0, emoteOnly: false, extra: {} });
export const emptyLeaderboard = (): Leaderboard => ({ top: [], totalValue: 0, totalGifts: 0, senders: 0 });

export function initialState(room: string, view: View): ClientState {
  return {
    room,
    view,
    position: null,
    items: [],
    seen: new Set(),
    floor: -1,
    deleted: new Map(),
    pinned: null,
    tallies: { totals: {}, lastSeconds: {} },
    leaderboard: emptyLeaderboard(),
    viewers: 0,
    uniqueViewers: 0,
    settings: defaultSettings(),
    rate: 1,
    degraded: null,
    resuming: false,
  };
}

/** A working copy of the feed part of a state: mutated while one message is applied, then frozen into the next state. */
class FeedDraft {
  items: ClientItem[];
  seen: Set<number>;
  deleted: Map<string, number>;
  floor: number;
  private sorted = true;

  constructor(
    s: Pick<ClientState, 'items' | 'seen' | 'deleted' | 'floor'>,
    private readonly events: ClientEvent[],
    private readonly me?: string,
  ) {
    this.items = [...s.items];
    this.seen = new Set(s.seen);
    this.deleted = new Map(s.deleted);
    this.floor = s.floor;
  }

  private duplicate(offset: number): boolean {
    return offset <= this.floor || this.seen.has(offset);
  }

  comment(entry: FeedEntry, emit: boolean): void {
    if (this.duplicate(entry.offset)) return;
    this.seen.add(entry.offset);
    // Removed after this item's place in the log: not shown (only a release, later than the removal, brings a comment back).
    const removedAt = this.deleted.get(entry.eventId);
    if (removedAt !== undefined && removedAt > entry.offset) return;
    if (entry.released) {
      // One item per comment: the author's pending copy gives way to it; a second release adds nothing.
      const i = this.items.findIndex((c) => c.eventId === entry.eventId);
      if (i >= 0 && !this.items[i]!.pending) return;
      if (i >= 0) this.items.splice(i, 1);
    }
    const last = this.items[this.items.length - 1];
    if (last && last.offset > entry.offset) this.sorted = false;
    this.items.push(entry);
    if (emit) this.events.push({ type: 'comment', entry });
  }

  remove(eventId: string, offset: number, reason: string, emit: boolean): void {
    // A tombstone comes after its comment in the log: one at or below the floor removes nothing still held.
    if (this.duplicate(offset)) return;
    this.seen.add(offset);
    const before = this.deleted.get(eventId);
    // A removal older than one already applied (merge order) changes nothing.
    if (before !== undefined && before > offset) return;
    this.deleted.set(eventId, offset);
    const i = this.items.findIndex((c) => c.eventId === eventId && c.offset < offset);
    const item = i >= 0 ? this.items[i]! : undefined;
    if (item && this.me !== undefined && item.userId === this.me && reason.startsWith(HOLD_REASON_PREFIX)) {
      // Held for review: its author still sees it, as pending (a release or a deletion follows).
      const pending: ClientItem = { ...item, pending: true };
      this.items[i] = pending;
      if (emit) this.events.push({ type: 'pending', entry: pending, reason });
      return;
    }
    if (item) this.items.splice(i, 1);
    if (emit && (before === undefined || item)) this.events.push({ type: 'delete', eventId, offset, reason });
  }

  item(it: FeedItem, emit: boolean): void {
    if (it.kind === 'comment') this.comment(it, emit);
    else this.remove(it.eventId, it.offset, it.reason, emit);
  }

  freeze(maxItems: number): Pick<ClientState, 'items' | 'seen' | 'deleted' | 'floor'> {
    if (!this.sorted) this.items.sort((a, b) => a.offset - b.offset);
    if (this.items.length > maxItems) {
      const dropped = this.items.splice(0, this.items.length - maxItems);
      this.floor = Math.max(this.floor, dropped[dropped.length - 1]!.offset);
    }
    // The dedupe sets only need what is above the floor.
    if (this.floor >= 0) for (const o of this.seen) if (o <= this.floor) this.seen.delete(o);
    if (this.deleted.size > maxItems * 4) this.deleted = new Map([...this.deleted].slice(-maxItems * 2));
    return { items: this.items, seen: this.seen, deleted: this.deleted, floor: this.floor };
  }
}

/** The later of two positions of the same epoch (the other epoch's is ignored). */
function advance(current: Position | null, next: Position): Position {
  if (!current || current.epoch !== next.epoch) return next;
  return next.offset > current.offset ? next : current;
}

function pruneTallies(t: Tallies, keepSeconds: number): Tallies {
  const secs = Object.keys(t.lastSeconds).map(Number);
  if (secs.length === 0) return t;
  const newest = Math.max(...secs);
  const lastSeconds: Tallies['lastSeconds'] = {};
  for (const [s, v] of Object.entries(t.lastSeconds)) if (Number(s) > newest - keepSeconds) lastSeconds[s] = v;
  return { totals: t.totals, lastSeconds };
}

/** Reactions per emoji within the `windowSec` seconds up to `nowMs` (the "last 10 s" burst). */
export function recentBurst(t: Tallies, nowMs: number, windowSec = 10): Record<string, number> {
  const nowSec = Math.floor(nowMs / 1000);
  const out: Record<string, number> = {};
  for (const [s, counts] of Object.entries(t.lastSeconds)) {
    const sec = Number(s);
    if (sec <= nowSec - windowSec || sec > nowSec + 1) continue;
    for (const [emoji, n] of Object.entries(counts)) out[emoji] = (out[emoji] ?? 0) + n;
  }
  return out;
}

/** A snapshot built from the two polling endpoints (state + feed), for a client that cannot use WebSocket. */
export function snapshotFromHttp(room: string, view: View, state: RoomStateResponse, feed: FeedResponse, reason?: SnapshotMessage['reason']): SnapshotMessage {
  return {
    type: 'snapshot',
    room,
    view,
    position: feed.position,
    items: feed.events,
    pinned: state.pinned,
    tallies: state.tallies,
    ...(state.leaderboard ? { leaderboard: state.leaderboard } : {}),
    viewers: state.viewers,
    ...(state.uniqueViewers !== undefined ? { uniqueViewers: state.uniqueViewers } : {}),
    settings: state.settings,
    rate: feed.rate,
    ...(reason ? { reason } : {}),
  };
}

function applySnapshot(s: ClientState, m: SnapshotMessage, o: Options): Step {
  const events: ClientEvent[] = [];
  // A resume: same epoch, the client has a position and the server did not say it was lost.
  // Merge (the catch-up that follows fills what lies between), and keep the position until it came.
  const resume = s.position !== null && m.reason === undefined && m.position.epoch === s.position.epoch;
  const base = resume ? s : initialState(s.room, s.view);
  const draft = new FeedDraft(base, events, o.me);
  for (const it of m.items) draft.item(it, false);
  const feed = draft.freeze(o.maxItems);
  const state: ClientState = {
    ...base,
    ...feed,
    view: m.view,
    position: resume ? s.position : m.position,
    pinned: m.pinned,
    tallies: pruneTallies(m.tallies, o.tallySeconds),
    leaderboard: m.leaderboard ?? (resume ? s.leaderboard : emptyLeaderboard()),
    viewers: m.viewers,
    uniqueViewers: m.uniqueViewers ?? (resume ? s.uniqueViewers : 0),
    settings: m.settings,
    rate: m.rate,
    degraded: null,
    resuming: resume,
  };
  const reason = resume ? 'resume' : (m.reason ?? (s.position && s.position.epoch !== m.position.epoch ? 'epoch' : 'fresh'));
  events.push({ type: 'snapshot', reason, items: state.items });
  return { state, events };
}

/** Items after the client's position (catch-up or a polled page): merged, deduped, and the position moves on. */
function applyItems(s: ClientState, items: FeedItem[], position: Position, o: Options, events: ClientEvent[]): ClientState {
  const draft = new FeedDraft(s, events, o.me);
  for (const it of items) draft.item(it, true);
  return { ...s, ...draft.freeze(o.maxItems), position: advance(s.position, position), resuming: false };
}

function applyPush(s: ClientState, e: PushEvent, draft: FeedDraft, events: ClientEvent[], o: Options): ClientState {
  switch (e.t) {
    case 'comment':
      draft.comment(e.entry, true);
      return s;
    case 'delete':
      draft.remove(e.eventId, e.offset, e.reason, true);
      return s;
    case 'tally': {
      const tallies = pruneTallies({ totals: e.totals, lastSeconds: { ...s.tallies.lastSeconds, [String(e.second)]: e.burst } }, o.tallySeconds);
      events.push({ type: 'tally', tallies });
      return { ...s, tallies };
    }
    case 'pin':
      events.push({ type: 'pin', pin: e.pin });
      return { ...s, pinned: e.pin };
    case 'gift':
      events.push({ type: 'gift', gift: e.gift, leaderboard: e.leaderboard });
      return { ...s, leaderboard: e.leaderboard };
    case 'settings':
      events.push({ type: 'settings', settings: e.settings });
      return { ...s, settings: e.settings };
    case 'rate':
      if (e.rate !== s.rate) events.push({ type: 'rate', rate: e.rate });
      return { ...s, rate: e.rate };
    default:
      return s;
  }
}

/** Applies one input; returns the next state and what happened (for listeners). Never mutates `s`. */
export function reduce(s: ClientState, input: ClientInput, opts: ReducerOptions = {}): Step {
  const o: Options = { maxItems: opts.maxItems ?? DEFAULT_MAX_ITEMS, tallySeconds: opts.tallySeconds ?? DEFAULT_TALLY_SECONDS, me: opts.me };
  const events: ClientEvent[] = [];
  switch (input.type) {
    case 'snapshot':
      return applySnapshot(s, input, o);

    case 'clock': {
      const until = s.pinned?.untilMs;
      if (until === undefined || until === null || until > input.now) return { state: s, events };
      events.push({ type: 'pin', pin: null });
      return { state: { ...s, pinned: null }, events };
    }

    case 'catchup': {
      // A catch-up belongs to the snapshot just taken; one from another epoch is stale.
      if (s.position && input.position.epoch !== s.position.epoch) return { state: s, events };
      return { state: applyItems(s, input.items, input.position, o, events), events };
    }

    case 'batch': {
      if (!s.position) return { state: s, events }; // nothing to apply deltas to before the snapshot
      if (input.position.epoch !== s.position.epoch) return { state: s, events }; // the resync snapshot follows
      // Entirely behind what the client has (a batch racing its snapshot): comments dedupe by offset,
      // but stale pins or settings would overwrite newer ones, so the whole batch is skipped.
      if (!s.resuming && input.position.offset < s.position.offset) return { state: s, events };
      const draft = new FeedDraft(s, events, o.me);
      let next = s;
      for (const e of input.events) next = applyPush(next, e, draft, events, o);
      return { state: { ...next, ...draft.freeze(o.maxItems), position: advance(s.position, input.position), resuming: false }, events };
    }

    case 'viewers': {
      let next = s;
      if (input.count !== s.viewers) {
        events.push({ type: 'viewers', count: input.count });
        next = { ...next, viewers: input.count };
      }
      if (input.uniqueViewers !== undefined && input.uniqueViewers !== s.uniqueViewers) {
        events.push({ type: 'uniqueViewers', count: input.uniqueViewers });
        next = { ...next, uniqueViewers: input.uniqueViewers };
      }
      return { state: next, events };
    }

    case 'degraded':
      events.push({ type: 'degraded', mode: input.mode });
      return { state: { ...s, degraded: input.mode }, events };

    case 'feed': {
      const r = input.response;
      if (s.position && r.position.epoch !== s.position.epoch) {
        // Rebuilt projections: what the client has belongs to another history.
        return { state: s, events };
      }
      let next = applyItems(s, r.events, r.position, o, events);
      if (r.rate !== s.rate) {
        events.push({ type: 'rate', rate: r.rate });
        next = { ...next, rate: r.rate };
      }
      return { state: next, events };
    }

    case 'state': {
      const st = input.state;
      let next = s;
      if (JSON.stringify(st.pinned) !== JSON.stringify(s.pinned)) {
        events.push({ type: 'pin', pin: st.pinned });
        next = { ...next, pinned: st.pinned };
      }
      if (JSON.stringify(st.tallies) !== JSON.stringify(s.tallies)) {
        const tallies = pruneTallies(st.tallies, o.tallySeconds);
        events.push({ type: 'tally', tallies });
        next = { ...next, tallies };
      }
      if (st.leaderboard && JSON.stringify(st.leaderboard) !== JSON.stringify(s.leaderboard)) {
        events.push({ type: 'leaderboard', leaderboard: st.leaderboard });
        next = { ...next, leaderboard: st.leaderboard };
      }
      if (st.viewers !== s.viewers) {
        events.push({ type: 'viewers', count: st.viewers });
        next = { ...next, viewers: st.viewers };
      }
      if (st.uniqueViewers !== undefined && st.uniqueViewers !== s.uniqueViewers) {
        events.push({ type: 'uniqueViewers', count: st.uniqueViewers });
        next = { ...next, uniqueViewers: st.uniqueViewers };
      }
      if (JSON.stringify(st.settings) !== JSON.stringify(s.settings)) {
        events.push({ type: 'settings', settings: st.settings });
        next = { ...next, settings: st.settings };
      }
      return { state: next, events };
    }
  }
}

/** True when a polled page (or state) says the client must reload from scratch. */
export function needsResync(s: ClientState, r: FeedResponse): boolean {
  return r.unrecoverable === true || (s.position !== null && r.position.epoch !== s.position.epoch);
}

export interface BackoffOptions {
  /** First delay (attempt 0), before jitter. */
  baseMs?: number;
  /** Ceiling of the exponential part. */
  maxMs?: number;
  factor?: number;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped,
 * with "equal jitter" — half of the capped value fixed, half random — so a
 * crowd of clients dropped by one gateway does not come back in step, and no
 * client retries immediately.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const base = opts.baseMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const capped = Math.min(max, base * Math.pow(factor, Math.max(0, Math.min(attempt, 60))));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(capped / 2 + r * (capped / 2));
}
