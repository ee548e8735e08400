/**
 * Room statistics from the materialized views (docs/analytics.md has the same
 * queries for data teams). Views aggregate per UTC minute of event time, so a
 * range is widened to whole minutes: [floor(fromMs), ceil(toMs)). Unique
 * chatters are exact over the whole range (uniqExact states merged), not a
 * sum of per-minute counts. Top chatters come from the events table itself
 * (FINAL), which is exact for any range.
 */
import type { ClickHouse } from '../core/clickhouse.ts';
import { quoteIdent } from './migrate.ts';

export interface MinuteStats {
  /** Start of the UTC minute, ms since the epoch. */
  minute: number;
  comments: number;
  reactions: number;
  chatters: number;
}

export interface RoomStats {
  room: string;
  /** The range actually covered, widened to whole minutes; null when open and the room is empty. */
  fromMs: number | null;
  toMs: number | null;
  /** Minutes with activity, in order. */
  minutes: MinuteStats[];
  totals: { events: number; comments: number; reactions: number; uniqueChatters: number; commentsPerMinute: number };
  topEmojis: { emoji: string; count: number }[];
  topChatters: { userId: string; comments: number }[];
  moderation: {
    /** CommentDeleted events (by authors, moderators or the moderation pipeline). */
    deleted: number;
    /** ModerationDecided verdicts: hold. */
    held: number;
    /** ModerationDecided verdicts of any kind. */
    decisions: number;
    muted: number;
    /** (deleted + held) / comments; 0 without comments. */
    rate: number;
  };
  /**
   * The SQL behind each figure, with this request's values written in (room,
   * range, limit), to paste into `npm run sql` as it is: minutes, totals,
   * topEmojis, moderation, topChatters.
   */
  sql: Record<StatsQuery, string>;
}

export type StatsQuery = 'minutes' | 'totals' | 'topEmojis' | 'moderation' | 'topChatters';

/** A parameterized query with its parameters written in as literals (a ClickHouse String is single-quoted, `\` and `'` escaped). */
export function withParams(query: string, params: Record<string, string | number>): string {
  return query
    .replace(/\{(\w+):(\w+)\}/g, (all, name: string) => {
      const v = params[name];
      if (v === undefined) return all;
      return typeof v === 'number' ? String(v) : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    })
    .replace(/\n\s+/g, '\n  ');
}

const MINUTE = 60_000;
export const floorMinute = (ms: number) => Math.floor(ms / MINUTE) * MINUTE;
export const ceilMinute = (ms: number) => Math.ceil(ms / MINUTE) * MINUTE;

export async function roomStats(ch: ClickHouse, room: string, range: { fromMs?: number; toMs?: number } = {}, top = 10): Promise<RoomStats> {
  const db = quoteIdent(ch.database);
  const from = range.fromMs === undefined ? undefined : floorMinute(range.fromMs);
  const to = range.toMs === undefined ? undefined : ceilMinute(range.toMs);
  const params = { room, from: Math.floor((from ?? 0) / 1000), to: Math.floor((to ?? 0) / 1000), top };
  const minuteIn = [
    'room_id = {room:String}',
    ...(from === undefined ? [] : ['minute >= toDateTime({from:Int64})']),
    ...(to === undefined ? [] : ['minute < toDateTime({to:Int64})']),
  ].join(' AND ');
  const eventIn = [
    'room_id = {room:String}',
    ...(from === undefined ? [] : ['occurred_at >= toDateTime64({from:Int64}, 3)']),
    ...(to === undefined ? [] : ['occurred_at < toDateTime64({to:Int64}, 3)']),
  ].join(' AND ');
  const rows = async <T>(query: string): Promise<T[]> => (await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })).json<T>();
  type N = number | string;
  const queries: Record<StatsQuery, string> = {
    minutes: `SELECT toUnixTimestamp(minute) * 1000 AS minute_ms, sum(comments) AS comments_n, sum(reactions) AS reactions_n, uniqExactMerge(chatters) AS chatters_n
       FROM ${db}.room_minute WHERE ${minuteIn} GROUP BY minute ORDER BY minute`,
    totals: `SELECT sum(events) AS events_n, sum(comments) AS comments_n, sum(reactions) AS reactions_n, uniqExactMerge(chatters) AS chatters_n,
              toUnixTimestamp(min(minute)) * 1000 AS first_ms, toUnixTimestamp(max(minute)) * 1000 AS last_ms, count() AS n
       FROM ${db}.room_minute WHERE ${minuteIn}`,
    topEmojis: `SELECT emoji, sum(reactions) AS n FROM ${db}.room_minute_reactions WHERE ${minuteIn} GROUP BY emoji ORDER BY n DESC, emoji LIMIT {top:UInt32}`,
    moderation: `SELECT action, sum(actions) AS n FROM ${db}.moderation_minute WHERE ${minuteIn} GROUP BY action`,
    // A comment posted under a shadow mute was shown to its author alone, so
    // it never names its author here either: each comment is matched (ASOF)
    // with the author's latest mute before it, as the feed projection decides.
    topChatters: `SELECT c.user_id AS user_id, count() AS n
       FROM (SELECT user_id, occurred_at FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'CommentPosted') AS c
       ASOF LEFT JOIN (
         SELECT target_user_id AS user_id, occurred_at, mute_kind, until_at FROM ${db}.events FINAL
         WHERE room_id = {room:String} AND kind = 'UserMuted'
       ) AS m ON c.user_id = m.user_id AND c.occurred_at >= m.occurred_at
       WHERE NOT (m.mute_kind = 'shadow' AND (m.until_at IS NULL OR c.occurred_at < m.until_at))
       GROUP BY user_id ORDER BY n DESC, user_id LIMIT {top:UInt32}`,
  };

  const [minutes, [totals], emojis, moderation, chatters] = await Promise.all([
    rows<{ minute_ms: N; comments_n: N; reactions_n: N; chatters_n: N }>(queries.minutes),
    rows<{ events_n: N; comments_n: N; reactions_n: N; chatters_n: N; first_ms: N; last_ms: N; n: N }>(queries.totals),
    rows<{ emoji: string; n: N }>(queries.topEmojis),
    rows<{ action: string; n: N }>(queries.moderation),
    rows<{ user_id: string; n: N }>(queries.topChatters),
  ]);
  const action = (name: string) => Number(moderation.find((m) => m.action === name)?.n ?? 0);
  const verdicts = moderation.filter((m) => m.action.startsWith('verdict:')).reduce((a, m) => a + Number(m.n), 0);
  const comments = Number(totals?.comments_n ?? 0);
  const any = Number(totals?.n ?? 0) > 0;
  const fromMs = from ?? (any ? Number(totals!.first_ms) : null);
  const toMs = to ?? (any ? Number(totals!.last_ms) + MINUTE : null);
  const spanMinutes = fromMs !== null && toMs !== null ? Math.max(1, (toMs - fromMs) / MINUTE) : 1;
  const deleted = action('deleted');
  const held = action('verdict:hold');
  return {
    room,
    fromMs,
    toMs,
    minutes: minutes.map((m) => ({ minute: Number(m.minute_ms), comments: Number(m.comments_n), reactions: Number(m.reactions_n), chatters: Number(m.chatters_n) })),
    totals: {
      events: Number(totals?.events_n ?? 0),
      comments,
      reactions: Number(totals?.reactions_n ?? 0),
      uniqueChatters: Number(totals?.chatters_n ?? 0),
      commentsPerMinute: comments / spanMinutes,
    },
    topEmojis: emojis.map((e) => ({ emoji: e.emoji, count: Number(e.n) })),
    topChatters: chatters.map((c) => ({ userId: c.user_id, comments: Number(c.n) })),
    moderation: { deleted, held, decisions: verdicts, muted: action('muted'), rate: comments > 0 ? (deleted + held) / comments : 0 },
    sql: Object.fromEntries(Object.entries(queries).map(([k, q]) => [k, withParams(q, params)])) as Record<StatsQuery, string>,
  };
}
