/**
 * Replay: a room's timeline from the archive, in video-offset order, through
 * the same projection code the live pipelines run — so live and replay cannot
 * drift.
 *
 * - live: what viewers saw live. The ordered feed projection's deltas:
 *   comments (not those of shadow-muted authors, which only their author saw),
 *   and a tombstone at the time of each deletion or hold, so a comment
 *   deleted later still shows until then; plus pins from the room-state
 *   projection, and gifts (every view shows every gift: they are not
 *   moderated or sampled).
 * - sampled: the sampled projection's deltas (the same deterministic sample as
 *   live), tombstones and pins likewise.
 * - moderated: the live view with today's moderation applied: comments
 *   deleted or held (and not released from the review queue since), and
 *   comments of users muted now, are left out (no tombstones; pins of removed
 *   comments left out). A released comment shows at its own place, once (not
 *   again where its release put it back live).
 *
 * Projections run in log order (that is what they are defined on); the
 * timeline is in video-offset order. An event's timeline position `at` is its
 * videoOffsetMs, or, for events without one (deletions, pins, mutes), its
 * event time minus the room's origin (see `originOf`). The two orders agree
 * almost always; where they do not, items wait in a small heap and are
 * released once no later event in the log can come before them (the minimum
 * `at` of the rest of the log is known per chunk). Memory thus stays constant
 * in the length of the range: rows are read in chunks, only the disorder waits.
 *
 * Pages: a cursor carries the last item served and the fold state at the
 * last point where nothing was waiting, so the next page continues from there
 * instead of folding the room from its start again (encrypted: see encodeCursor).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { ClickHouse } from '../core/clickhouse.ts';
import { AppError } from '../core/errors.ts';
import { applyOne, roomKeys, type FeedEntry, type FieldsView, type GiftItem, type PinState, type PositionedEvent, type Projection, type Tombstone } from '../pipelines/projection.ts';
import { feedProjection, removalTarget, shadowView, type FeedState } from '../pipelines/projections/feed.ts';
import { roomStateProjection, type RoomStateState } from '../pipelines/projections/room-state.ts';
import { sampledProjection, type SampledState } from '../pipelines/projections/sampled.ts';
import { MemoryStore } from '../pipelines/store.ts';
import { quoteIdent } from './migrate.ts';
import { eventOf, type StoredEvent } from './rows.ts';

export const REPLAY_VIEWS = ['live', 'moderated', 'sampled'] as const;
export type ReplayView = (typeof REPLAY_VIEWS)[number];

/** An archived event with its timeline position (ms since the stream started). */
export interface TimedEvent extends PositionedEvent {
  at: number;
}

interface Placed {
  /** Timeline position: video offset in ms. */
  at: number;
  partition: number;
}

export type ReplayItem =
  | (FeedEntry & Placed)
  | (Tombstone & Placed)
  | ({ kind: 'pin'; offset: number; eventId: string; occurredAt: number; pin: PinState | null } & Placed)
  | (GiftItem & Placed);

export interface FoldState {
  feed: FeedState | SampledState;
  room: RoomStateState;
  /** Shadow mutes in force (userId, until ms or null): the feed projection's per-user fields, as the fold left them. */
  shadow?: [string, number | null][];
}

export interface FoldOptions {
  perSecond: number;
  maxItems: number;
  /** moderated: comments deleted or held, and not released after. */
  removed?: ReadonlySet<string>;
  /** moderated: users muted now. */
  mutedNow?: ReadonlySet<string>;
  /** Who is watching: a shadow-muted user's comments are shown to that user alone. */
  viewer?: string | null;
}

/** Folds a room's events (in log order) into replay items, one event at a time (pure). */
export class ReplayFold {
  private readonly feed: Projection<FeedState | SampledState>;
  private readonly room = roomStateProjection();
  private folded: Omit<FoldState, 'shadow'>;
  /** The feed's shadow-mute fields, made at the first event (their key names need the room). */
  private shadow: FieldsView | undefined;
  private readonly shadowAtStart: [string, number | null][];

  constructor(
    readonly view: ReplayView,
    private readonly o: FoldOptions,
    state?: FoldState,
  ) {
    this.feed = (view === 'sampled' ? sampledProjection(o.perSecond, o.maxItems) : feedProjection(o.maxItems)) as Projection<FeedState | SampledState>;
    this.folded = state ? { feed: state.feed, room: state.room } : { feed: this.feed.initial(), room: this.room.initial() };
    this.shadowAtStart = state?.shadow ?? [];
  }

  /** Where the fold is: what a cursor carries to resume it. */
  get state(): FoldState {
    const shadow = this.shadow
      ? [...this.shadow.entries().fields].map(([u, [v]]): [string, number | null] => [u, v === 'null' ? null : Number(v)])
      : this.shadowAtStart;
    return { ...this.folded, shadow };
  }

  push(e: TimedEvent): ReplayItem[] {
    // Key names only matter to the Redis commands, which replay does not need: the deltas are the view.
    const keys = roomKeys('replay:', this.feed.name, 0, e.event.roomId);
    this.shadow ??= shadowView(keys, this.shadowAtStart);
    const f = applyOne(this.feed, this.folded.feed, e, keys, this.shadow);
    const r = applyOne(this.room, this.folded.room, e, keys);
    this.folded = { feed: f.state, room: r.state };
    const moderated = this.view === 'moderated';
    const placed = { at: e.at, partition: e.partition };
    const items: ReplayItem[] = [];
    for (const d of f.deltas) {
      if (d.t === 'comment') {
        if (d.entry.shadow && d.entry.userId !== this.o.viewer) continue; // shown, live and in replay, to its author alone
        if (moderated && (this.o.removed?.has(d.entry.eventId) || this.o.mutedNow?.has(d.entry.userId) || d.entry.released)) continue;
        items.push({ ...d.entry, ...placed });
      } else if (d.t === 'delete' && !moderated) {
        items.push({ kind: 'delete', offset: e.offset, eventId: d.eventId, deletionId: e.event.eventId, occurredAt: e.event.occurredAt, reason: d.reason, ...placed });
      }
    }
    for (const d of r.deltas) {
      if (d.t !== 'pin') continue;
      // In the moderated view removed comments never existed: neither their pin nor its removal shows.
      if (moderated && ((d.pin && this.o.removed?.has(d.pin.eventId)) || removalTarget(e.event))) continue;
      items.push({ kind: 'pin', offset: e.offset, eventId: e.event.eventId, occurredAt: e.event.occurredAt, pin: d.pin, ...placed });
    }
    const p = e.event.payload;
    if (p.type === 'GiftSent') {
      // As the gifts projection pushes it live (projections/gifts.ts); the leaderboard is not part of a timeline.
      const { eventId, actor, occurredAt, videoOffsetMs } = e.event;
      items.push({ kind: 'gift', offset: e.offset, eventId, userId: actor.userId, giftId: p.giftId, name: p.name, count: p.count, value: p.value, occurredAt, videoOffsetMs, ...placed });
    }
    return items;
  }
}

/**
 * Today's moderation of a room, from its deletions, verdicts, releases and
 * mutes in log order: the removal rule of the feed projection — a comment
 * held and then released by a moderator is not removed, unless removed again
 * after — and the muted users as the room-state projection keeps them (the
 * last mute of a user wins; expired ones do not count), read back from its
 * commands as the gateway reads Redis.
 */
export function moderationAsOfNow(events: PositionedEvent[], nowMs: number): { removed: Set<string>; mutedNow: Set<string> } {
  const removed = new Set<string>();
  const store = new MemoryStore();
  const p = roomStateProjection();
  let state = p.initial();
  let mutedKey: string | undefined;
  for (const e of events) {
    const rm = removalTarget(e.event);
    if (rm) removed.add(rm.target);
    if (e.event.payload.type === 'CommentReleased') removed.delete(e.event.payload.targetEventId);
    if (e.event.payload.type !== 'UserMuted') continue;
    const keys = roomKeys('replay:', p.name, 0, e.event.roomId);
    mutedKey = keys.key('muted');
    const eff = applyOne(p, state, e, keys);
    // Not the projection's trimming of mutes that ended by a later mute's time:
    // that bounds Redis; here `nowMs` decides, and may be any time.
    store.exec(eff.cmds.filter((c) => c.op !== 'fieldsExpire'));
    state = eff.state;
  }
  const mutedNow = new Set<string>();
  for (const [user, raw] of (mutedKey && store.hashes.get(mutedKey)) || []) {
    const m = JSON.parse(raw) as { untilMs: number | null };
    if (m.untilMs === null || m.untilMs > nowMs) mutedNow.add(user);
  }
  return { removed, mutedNow };
}

export interface LogPos {
  partition: number;
  offset: number;
}

/** Where replay reads a room's archived events. ClickHouse in production; arrays in unit specs. */
export interface ReplaySource {
  /** The room's origin: event time of video offset 0 (see `originOf`). */
  origin(room: string): Promise<number>;
  /**
   * Up to `limit` events after `after`, in log order, reactions left out.
   * Comments outside [from, to) may come without their text (only folded);
   * with `commentsFrom`, comments placed before `from` are left out entirely.
   */
  chunk(q: { room: string; origin: number; after: LogPos; limit: number; from: number; to: number; commentsFrom?: boolean }): Promise<TimedEvent[]>;
  /** The smallest `at` among the room's events after `after` (Infinity when there is none). */
  minAtAfter(q: { room: string; origin: number; after: LogPos }): Promise<number>;
  /** Deletions, verdicts, releases and mutes of the room, in log order. */
  moderation(q: { room: string; origin: number }): Promise<TimedEvent[]>;
}

/**
 * Sort key of an item on the timeline: (at, offset, partition, index within
 * its event). `offset` is the event's log position (topics/generations.ts):
 * a room's events are in one partition per log generation, and positions
 * order them across generations, so position first is the room's log order
 * (and, within one generation, the same order as partition first).
 */
export type ItemKey = [number, number, number, number];

export function compareKeys(a: ItemKey, b: ItemKey): number {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

export interface ReplayCursor {
  v: 1;
  /** The room the cursor walks: a cursor of one room never resumes another. */
  room: string;
  view: ReplayView;
  fromMs: number | null;
  toMs: number | null;
  /** The last item served. */
  key: ItemKey;
  /** Resume the fold after this event with this state (null: from the room's start). */
  resume: (LogPos & { state: FoldState }) | null;
}

/**
 * Cursors are opaque and authenticated: base64url(version ‖ IV ‖ AES-256-GCM
 * ciphertext of the JSON ‖ tag). The fold state a cursor carries names who is
 * shadow-muted and until when, and decides what a page shows, so a client may
 * neither read it nor change it. Encryption hides it (a signed plain body, as
 * before, let anyone base64-decode the shadow-muted user ids); GCM's tag
 * authenticates the version byte (as additional data), the IV and the
 * ciphertext, so a separate HMAC would add nothing: a cursor not sealed under
 * this server's key fails the tag and is refused (400 ERR_CURSOR_INVALID)
 * before anything in it is parsed.
 *
 * The AES key is derived (HKDF-SHA256) from the configured cursor secret
 * rather than used as is, so the secret can be any length and the same secret
 * never serves two algorithms. IVs are random (12 bytes): under one key that
 * stays safe up to about 2^32 cursors; rotating the secret resets it (and
 * only invalidates outstanding cursors, which a client gets again by
 * repeating its first request).
 */
const CURSOR_VERSION = 2;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const cursorKeys = new WeakMap<Buffer, Buffer>();

function cursorAesKey(secret: Buffer): Buffer {
  let k = cursorKeys.get(secret);
  if (!k) {
    k = Buffer.from(hkdfSync('sha256', secret, 'danmaku-live', 'replay cursor v2 aes-256-gcm', 32));
    cursorKeys.set(secret, k);
  }
  return k;
}

export function encodeCursor(c: ReplayCursor, secret: Buffer): string {
  const version = Buffer.of(CURSOR_VERSION);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', cursorAesKey(secret), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(version);
  const body = Buffer.concat([cipher.update(JSON.stringify(c), 'utf8'), cipher.final()]);
  return Buffer.concat([version, iv, body, cipher.getAuthTag()]).toString('base64url');
}

const safeInt = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n);

export function decodeCursor(s: string, secret: Buffer): ReplayCursor {
  const invalid = (cause?: unknown) => new AppError('ERR_CURSOR_INVALID', 'the cursor is not one this API issued', cause === undefined ? {} : { cause });
  if (!/^[A-Za-z0-9_-]+$/.test(s)) throw invalid();
  const raw = Buffer.from(s, 'base64url');
  // Only the exact text issued: base64 decoders ignore the unused low bits of the last
  // character, so without this a changed last character could still decode to the same bytes.
  if (raw.toString('base64url') !== s || raw.length < 1 + IV_BYTES + TAG_BYTES + 2 || raw[0] !== CURSOR_VERSION) throw invalid();
  let json: string;
  try {
    const decipher = createDecipheriv('aes-256-gcm', cursorAesKey(secret), raw.subarray(1, 1 + IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(raw.subarray(0, 1));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    json = Buffer.concat([decipher.update(raw.subarray(1 + IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw invalid(cause); // the tag did not verify: changed, cut, or sealed under another key
  }
  try {
    const c = JSON.parse(json) as ReplayCursor;
    // Sealed by us, so well-formed unless the code changed between issuing and reading it.
    const okKey = Array.isArray(c.key) && c.key.length === 4 && c.key.every(safeInt);
    const okResume = c.resume === null || (safeInt(c.resume?.partition) && safeInt(c.resume?.offset) && typeof c.resume?.state === 'object' && c.resume.state !== null);
    if (c.v !== 1 || typeof c.room !== 'string' || !(REPLAY_VIEWS as readonly string[]).includes(c.view) || !okKey || !okResume) throw new Error('bad shape');
    return c;
  } catch (cause) {
    throw invalid(cause);
  }
}

export interface ReplayRequest {
  room: string;
  view: ReplayView;
  /** Timeline range [fromMs, toMs) in video-offset ms; open when absent. */
  fromMs?: number;
  toMs?: number;
  /** Most items to return (a page); unbounded when absent (a stream). */
  limit?: number;
  cursor?: ReplayCursor;
  perSecond: number;
  maxItems: number;
  /** "Now" of the moderated view (mutes still in force). */
  nowMs: number;
  /** The user asking (null: anonymous): their own shadow-muted comments are theirs to see. */
  viewer?: string | null;
  chunkRows: number;
}

export type ReplayOutput =
  | { type: 'item'; item: ReplayItem }
  | { type: 'end'; next: ReplayCursor | null; items: number; folded: number; /** Most items that waited for later log positions at once (the reorder buffer). */ waitingMax: number };

class MinHeap<T> {
  private readonly a: { key: ItemKey; value: T }[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): ItemKey | undefined {
    return this.a[0]?.key;
  }
  push(key: ItemKey, value: T): void {
    const a = this.a;
    a.push({ key, value });
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (compareKeys(a[i]!.key, a[parent]!.key) >= 0) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }
  pop(): { key: ItemKey; value: T } | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && compareKeys(a[l]!.key, a[m]!.key) < 0) m = l;
        if (r < a.length && compareKeys(a[r]!.key, a[m]!.key) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

const LOW = Number.MIN_SAFE_INTEGER;
const HIGH = Number.MAX_SAFE_INTEGER;

/** The timeline of a room: items in (at, log position) order, then an `end` with the next page's cursor. */
export async function* replay(src: ReplaySource, r: ReplayRequest): AsyncGenerator<ReplayOutput> {
  const from = r.fromMs ?? LOW;
  const to = r.toMs ?? HIGH;
  const limit = r.limit ?? Infinity;
  if (r.cursor && (r.cursor.room !== r.room || r.cursor.view !== r.view || r.cursor.fromMs !== (r.fromMs ?? null) || r.cursor.toMs !== (r.toMs ?? null))) {
    throw new AppError('ERR_CURSOR_MISMATCH', 'the cursor belongs to another room, view or range: repeat the request it came from');
  }
  const origin = await src.origin(r.room);
  let mod: { removed: Set<string>; mutedNow: Set<string> } | undefined;
  if (r.view === 'moderated') mod = moderationAsOfNow(await src.moderation({ room: r.room, origin }), r.nowMs);
  const fold = new ReplayFold(r.view, { perSecond: r.perSecond, maxItems: r.maxItems, removed: mod?.removed, mutedNow: mod?.mutedNow, viewer: r.viewer }, r.cursor?.resume?.state);
  const served = r.cursor?.key;
  let after: LogPos = r.cursor?.resume ? { partition: r.cursor.resume.partition, offset: r.cursor.resume.offset } : { partition: 0, offset: -1 };
  // The last point where every item folded so far had been released: where a next page resumes.
  let checkpoint: ReplayCursor['resume'] = r.cursor?.resume ?? null;
  const heap = new MinHeap<ReplayItem>();
  let emitted = 0;
  let folded = 0;
  const cursorAt = (key: ItemKey): ReplayCursor => ({ v: 1, room: r.room, view: r.view, fromMs: r.fromMs ?? null, toMs: r.toMs ?? null, key, resume: checkpoint });

  // Once a page is full, folding goes on until the next item would be served:
  // only then is there a next page (and the cursor skips what was folded meanwhile).
  let full: ItemKey | undefined;
  let waitingMax = 0;
  const end = (next: ReplayCursor | null): ReplayOutput => ({ type: 'end', next, items: emitted, folded, waitingMax });

  // Before the range, the ordered feed and room state change only with deletions, pins
  // and mutes, so live and moderated skip the comments there; the sample depends on
  // every comment (its windows), so sampled folds them, without their text, in
  // larger chunks (the rows are small).
  const commentsFrom = r.view !== 'sampled';
  let beforeRange = true;
  for (;;) {
    const limitRows = beforeRange && !commentsFrom ? r.chunkRows * 4 : r.chunkRows;
    const chunk = await src.chunk({ room: r.room, origin, after, limit: limitRows, from, to, commentsFrom });
    if (chunk.length === 0) break;
    const lastOfChunk = chunk[chunk.length - 1]!;
    const tail = chunk.length < limitRows ? Infinity : await src.minAtAfter({ room: r.room, origin, after: lastOfChunk });
    // laterMin[i]: the smallest `at` of any event after chunk[i] in the log.
    const laterMin: number[] = new Array(chunk.length);
    for (let i = chunk.length - 1, m = tail; i >= 0; i--) {
      laterMin[i] = m;
      m = Math.min(m, chunk[i]!.at);
    }
    for (let i = 0; i < chunk.length; i++) {
      const e = chunk[i]!;
      folded++;
      fold.push(e).forEach((item, seq) => {
        if (item.at < from || item.at >= to) return;
        const key: ItemKey = [e.at, e.offset, e.partition, seq];
        if (served && compareKeys(key, served) <= 0) return; // served on an earlier page
        heap.push(key, item);
      });
      if (heap.size > waitingMax) waitingMax = heap.size;
      // Items no later event can precede are final: release them in order.
      while (heap.size > 0 && heap.peek()![0] <= laterMin[i]!) {
        if (full) {
          yield end(cursorAt(full));
          return;
        }
        const { key, value } = heap.pop()!;
        yield { type: 'item', item: value };
        if (++emitted >= limit) full = key;
      }
      if (heap.size === 0) checkpoint = { partition: e.partition, offset: e.offset, state: fold.state };
      if (laterMin[i]! >= to) {
        yield end(null);
        return;
      }
    }
    after = { partition: lastOfChunk.partition, offset: lastOfChunk.offset };
    beforeRange = lastOfChunk.at < from;
  }
  while (heap.size > 0) {
    if (full) {
      yield end(cursorAt(full));
      return;
    }
    const { key, value } = heap.pop()!;
    yield { type: 'item', item: value };
    if (++emitted >= limit) full = key;
  }
  yield end(null);
}

/**
 * Video offset 0 of a room, in event time: its first StreamStarted (minus that
 * event's own video offset), else the first event that carries a video offset
 * (event time minus offset), else its first event. Events without a video
 * offset are placed at `occurredAt - origin`.
 */
export function originOf(o: { startedAt?: number; anchoredAt?: number; firstAt?: number }): number {
  return o.startedAt ?? o.anchoredAt ?? o.firstAt ?? 0;
}

/** Replay's reads from the `events` table (FINAL: a duplicate never reaches a projection). */
export class ClickHouseReplaySource implements ReplaySource {
  private readonly table: string;

  constructor(private readonly ch: ClickHouse) {
    this.table = `${quoteIdent(ch.database)}.events`;
  }

  private async rows<T>(query: string, params: Record<string, unknown>): Promise<T[]> {
    const rs = await this.ch.client.query({ query, query_params: params, format: 'JSONEachRow' });
    return rs.json<T>();
  }

  async origin(room: string): Promise<number> {
    // The first StreamStarted if any, else the first event with a video offset (log order).
    const [anchor] = await this.rows<{ origin: number | string }>(
      `SELECT toUnixTimestamp64Milli(occurred_at) - ifNull(video_offset_ms, 0) AS origin
       FROM ${this.table}
       WHERE room_id = {room:String} AND (kind = 'StreamStarted' OR video_offset_ms IS NOT NULL)
       ORDER BY kind = 'StreamStarted' DESC, kafka_offset, kafka_partition
       LIMIT 1`,
      { room },
    );
    if (anchor) return Number(anchor.origin);
    const [first] = await this.rows<{ first: number | string; n: number | string }>(
      `SELECT toUnixTimestamp64Milli(min(occurred_at)) AS first, count() AS n FROM ${this.table} WHERE room_id = {room:String}`,
      { room },
    );
    return originOf({ firstAt: first && Number(first.n) > 0 ? Number(first.first) : undefined });
  }

  private static readonly AT = `coalesce(video_offset_ms, toUnixTimestamp64Milli(occurred_at) - {origin:Int64})`;

  async chunk(q: { room: string; origin: number; after: LogPos; limit: number; from: number; to: number; commentsFrom?: boolean }): Promise<TimedEvent[]> {
    const rows = await this.rows<StoredEvent & { kafka_partition: number | string; kafka_offset: number | string; at: number | string }>(
      `SELECT event_id, room_id, user_id, role, toUnixTimestamp64Milli(occurred_at) AS occurred_ms, video_offset_ms, client_msg_id,
              kafka_partition, kafka_offset, at,
              if(kind = 'CommentPosted' AND (at < {from:Int64} OR at >= {to:Int64}), '', payload) AS payload
       FROM (
         SELECT *, ${ClickHouseReplaySource.AT} AS at
         FROM ${this.table} FINAL
         WHERE room_id = {room:String} AND kind != 'ReactionAdded' AND (kafka_offset, kafka_partition) > ({o:Int64}, {p:UInt32})
       )
       WHERE {all:Bool} OR NOT (kind = 'CommentPosted' AND at < {from:Int64})
       ORDER BY kafka_offset, kafka_partition
       LIMIT {limit:UInt32}`,
      { room: q.room, origin: q.origin, p: q.after.partition, o: q.after.offset, limit: q.limit, from: q.from, to: q.to, all: !q.commentsFrom },
    );
    return rows.map((row) => ({ event: eventOf(row), partition: Number(row.kafka_partition), offset: Number(row.kafka_offset), at: Number(row.at) }));
  }

  async minAtAfter(q: { room: string; origin: number; after: LogPos }): Promise<number> {
    const [row] = await this.rows<{ m: number | string; n: number | string }>(
      `SELECT min(${ClickHouseReplaySource.AT}) AS m, count() AS n FROM ${this.table}
       WHERE room_id = {room:String} AND kind != 'ReactionAdded' AND (kafka_offset, kafka_partition) > ({o:Int64}, {p:UInt32})`,
      { room: q.room, origin: q.origin, p: q.after.partition, o: q.after.offset },
    );
    return row && Number(row.n) > 0 ? Number(row.m) : Infinity;
  }

  async moderation(q: { room: string; origin: number }): Promise<TimedEvent[]> {
    const rows = await this.rows<StoredEvent & { kafka_partition: number | string; kafka_offset: number | string; at: number | string }>(
      `SELECT event_id, room_id, user_id, role, toUnixTimestamp64Milli(occurred_at) AS occurred_ms, video_offset_ms, client_msg_id, payload,
              kafka_partition, kafka_offset, ${ClickHouseReplaySource.AT} AS at
       FROM ${this.table} FINAL
       WHERE room_id = {room:String} AND kind IN ('CommentDeleted', 'ModerationDecided', 'UserMuted', 'CommentReleased')
       ORDER BY kafka_offset, kafka_partition`,
      { room: q.room, origin: q.origin },
    );
    return rows.map((row) => ({ event: eventOf(row), partition: Number(row.kafka_partition), offset: Number(row.kafka_offset), at: Number(row.at) }));
  }
}
