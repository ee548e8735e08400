/**
 * The ordered feed's older part, by time: the comments a room's feed held
 * once, below the oldest log position Redis still holds, whose event time or
 * video position lies in a window — with the feed's semantics, so the
 * gateway can append Redis's part (gateway/feed-window.ts) and the answer
 * reads as one feed:
 *
 * - a feed item is a comment at its posting's position, or a released
 *   comment at its release's (pipelines/projections/feed.ts);
 * - it is gone when a removal of its comment (`removalTarget`: a deletion or
 *   a hold) comes after it in the log — exactly what the projection's
 *   feedRemove does to the sorted set;
 * - it is shadowed when its author's shadow mute was in force at its place in
 *   the log, decided as the projection decides it (isShadowed on the
 *   per-user fields, which every mute trims of the mutes that ended by its
 *   event time); a shadowed item is only for its author.
 *
 * Order: (t, log position), where t is the event time (`by: 'event'`) or the
 * video position — videoOffsetMs, or for a comment without one its event time
 * minus the room's origin, as replay places it (archive/replay.ts, originOf).
 *
 * Cost: the room's moderation events (deletions, verdicts, mutes, releases)
 * are read whole, as replay's moderated view reads them; comments are read in
 * chunks in the window's order, from the window's start (or the page's
 * cursor), until a page is full.
 */
import type { ClickHouse } from '../core/clickhouse.ts';
import type { FeedEntry, PositionedEvent } from '../pipelines/projection.ts';
import { feedEntryOf, releasedEntryOf, removalTarget } from '../pipelines/projections/feed.ts';
import { quoteIdent } from './migrate.ts';
import { ClickHouseReplaySource } from './replay.ts';
import { eventOf, type StoredEvent } from './rows.ts';

export type WindowBy = 'event' | 'video';

export interface FeedWindowQuery {
  room: string;
  by: WindowBy;
  /** Inclusive bounds of t (ms). */
  fromMs: number;
  toMs: number;
  /**
   * Feed items strictly below this log position only (the oldest one Redis
   * holds). Undefined: no items wanted, only the room's origin.
   */
  below?: number;
  /** Items strictly after this (t, position): the last item of the previous page. */
  after?: { t: number; offset: number };
  limit: number;
  /** Who asks: a shadowed item goes to its author alone. */
  viewer: string | null;
  /** Removals the caller knows beyond the archive (Redis's tombstones): [removed comment id, removal's position]. */
  removals?: [string, number][];
}

export interface FeedWindowItem extends FeedEntry {
  /** The item's place in the window's order (event time or video position, ms). */
  t: number;
}

export interface FeedWindowResult {
  /** Event time of video offset 0 (replay's origin): the caller places Redis's comments without a video offset with it. */
  origin: number;
  /** At most `limit` items, in (t, position) order. */
  items: FeedWindowItem[];
  /** More items of the window follow the last one. */
  more: boolean;
  /**
   * The archive holds every event of the room below `below` (it has one of
   * the room's at or past it, and each partition is archived in log order:
   * archive/archiver.ts). False: what it gave may miss items.
   */
  complete: boolean;
}

interface Mute {
  offset: number;
  occurredAt: number;
  userId: string;
  kind: 'shadow' | 'visible';
  untilMs: number | null;
}

const keyAfter = (t: number, offset: number, a: { t: number; offset: number } | undefined) => !a || t > a.t || (t === a.t && offset > a.offset);
const compare = (a: FeedWindowItem, b: FeedWindowItem) => a.t - b.t || a.offset - b.offset;

/**
 * Was `userId`'s shadow mute in force for an item at log position `offset`
 * and event time `at`? The projection's rule (isShadowed over SHADOW_USERS):
 * the user's last mute before the item decides, unless a mute event between
 * the two (of anyone) dropped it as ended by its own event time.
 */
export function shadowedAt(mutes: Mute[], userId: string, offset: number, at: number): boolean {
  let last: Mute | undefined;
  let latestTimeSince = -Infinity;
  for (const m of mutes) {
    if (m.offset >= offset) break;
    if (m.userId === userId) {
      last = m;
      latestTimeSince = -Infinity;
    } else {
      latestTimeSince = Math.max(latestTimeSince, m.occurredAt);
    }
  }
  if (!last || last.kind !== 'shadow') return false;
  if (last.untilMs === null) return true;
  if (last.untilMs <= last.occurredAt || latestTimeSince >= last.untilMs) return false;
  return at < last.untilMs;
}

interface Row extends StoredEvent {
  kafka_offset: number | string;
  t: number | string;
}

export async function feedWindow(ch: ClickHouse, q: FeedWindowQuery, chunkRows: number): Promise<FeedWindowResult> {
  const source = new ClickHouseReplaySource(ch);
  const origin = await source.origin(q.room);
  if (q.below === undefined) return { origin, items: [], more: false, complete: true };
  const table = `${quoteIdent(ch.database)}.events`;
  const rows = async <T>(query: string, params: Record<string, unknown>): Promise<T[]> => (await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })).json<T>();

  const [held, mods] = await Promise.all([
    rows<{ n: number | string }>(`SELECT count() AS n FROM (SELECT 1 FROM ${table} WHERE room_id = {room:String} AND kafka_offset >= {below:UInt64} LIMIT 1)`, { room: q.room, below: q.below }),
    rows<Row>(
      `SELECT event_id, room_id, user_id, role, toUnixTimestamp64Milli(occurred_at) AS occurred_ms, video_offset_ms, client_msg_id, payload, kafka_offset, 0 AS t
       FROM ${table} FINAL
       WHERE room_id = {room:String} AND kind IN ('CommentDeleted', 'ModerationDecided', 'UserMuted', 'CommentReleased')
       ORDER BY kafka_offset`,
      { room: q.room },
    ),
  ]);
  const complete = Number(held[0]?.n ?? 0) > 0;
  const events: PositionedEvent[] = mods.map((r) => ({ event: eventOf(r), partition: 0, offset: Number(r.kafka_offset) }));

  // The last removal of each comment: an item is gone when one comes after it.
  const removedAt = new Map<string, number>();
  const removed = (eventId: string, at: number) => removedAt.set(eventId, Math.max(removedAt.get(eventId) ?? -Infinity, at));
  for (const [eventId, at] of q.removals ?? []) removed(eventId, at);
  const mutes: Mute[] = [];
  for (const e of events) {
    const rm = removalTarget(e.event);
    if (rm) removed(rm.target, e.offset);
    const p = e.event.payload;
    if (p.type === 'UserMuted') mutes.push({ offset: e.offset, occurredAt: e.event.occurredAt, userId: p.userId, kind: p.kind, untilMs: p.untilMs });
  }
  const placeOf = (entry: FeedEntry) => (q.by === 'event' ? entry.occurredAt : (entry.videoOffsetMs ?? entry.occurredAt - origin));
  /** The item as the feed shows it to the viewer, or undefined when the viewer does not see it. */
  const shown = (entry: FeedEntry | undefined, at: number): FeedWindowItem | undefined => {
    if (!entry) return undefined;
    if ((removedAt.get(entry.eventId) ?? -Infinity) > entry.offset) return undefined;
    if (shadowedAt(mutes, entry.userId, entry.offset, at)) {
      if (entry.userId !== q.viewer) return undefined;
      entry.shadow = true;
    }
    const t = placeOf(entry);
    return { ...entry, t };
  };
  const inWindow = (i: FeedWindowItem) => i.t >= q.fromMs && i.t <= q.toMs && keyAfter(i.t, i.offset, q.after);

  // Released comments: few (each a moderator's decision), taken from the moderation events.
  const released: FeedWindowItem[] = [];
  for (const e of events) {
    if (e.offset >= q.below || e.event.payload.type !== 'CommentReleased') continue;
    const item = shown(releasedEntryOf(e.event, e.offset), e.event.occurredAt);
    if (item && inWindow(item)) released.push(item);
  }

  // Posted comments, in the window's order, a chunk at a time until the page is full.
  const T = q.by === 'event' ? 'toUnixTimestamp64Milli(occurred_at)' : 'coalesce(video_offset_ms, toUnixTimestamp64Milli(occurred_at) - {origin:Int64})';
  // By event time the window bounds the table's sorting key (room_id, occurred_at, …) too.
  const byTime = q.by === 'event' ? `AND occurred_at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND occurred_at <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')` : '';
  const posted: FeedWindowItem[] = [];
  let cursor = q.after;
  let exhausted = false;
  while (posted.length <= q.limit) {
    const chunk = await rows<Row>(
      `SELECT event_id, room_id, user_id, role, occurred_ms, video_offset_ms, client_msg_id, payload, kafka_offset, t
       FROM (
         SELECT event_id, room_id, user_id, role, toUnixTimestamp64Milli(occurred_at) AS occurred_ms, video_offset_ms, client_msg_id, payload, kafka_offset, ${T} AS t
         FROM ${table} FINAL
         WHERE room_id = {room:String} AND kind = 'CommentPosted' AND kafka_offset < {below:UInt64} ${byTime}
       )
       WHERE t >= {from:Int64} AND t <= {to:Int64} AND (t, kafka_offset) > ({at:Int64}, {ao:Int64})
       ORDER BY t, kafka_offset
       LIMIT {limit:UInt32}`,
      { room: q.room, below: q.below, origin, from: q.fromMs, to: q.toMs, at: cursor?.t ?? q.fromMs - 1, ao: cursor?.offset ?? -1, limit: chunkRows },
    );
    for (const r of chunk) {
      const offset = Number(r.kafka_offset);
      const e = eventOf(r);
      const item = shown(feedEntryOf(e, offset), e.occurredAt);
      if (item) posted.push(item);
    }
    if (chunk.length < chunkRows) {
      exhausted = true;
      break;
    }
    const last = chunk[chunk.length - 1]!;
    cursor = { t: Number(last.t), offset: Number(last.kafka_offset) };
  }
  // Every posted item up to `cursor` was considered (all of them when exhausted): so were the released ones up to there.
  const merged = [...posted, ...released.filter((i) => exhausted || !keyAfter(i.t, i.offset, cursor))].sort(compare);
  return { origin, items: merged.slice(0, q.limit), more: merged.length > q.limit, complete };
}
