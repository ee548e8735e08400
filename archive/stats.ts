/**
 * Room statistics from the materialized views (docs/analytics.md has the same
 * queries for data teams). Views aggregate per UTC minute of event time, so a
 * range is widened to whole minutes: [floor(fromMs), ceil(toMs)). Unique
 * chatters are exact over the whole range (uniqExact states merged), not a
 * sum of per-minute counts. Top chatters come from the events table itself
 * (FINAL), which is exact for any range, as are the gift figures (value per
 * minute, top gifters: GiftSent rows, their value read from `payload`).
 *
 * Every figure counts only what everyone could see: comments posted under a
 * shadow mute (shown to their author alone) and shadow mutes themselves are
 * left out of comments, chatters, events and mutes, so an anonymous reader
 * cannot learn from the stats that someone is shadow-muted.
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

export interface GiftMinute {
  /** Start of the UTC minute, ms since the epoch. */
  minute: number;
  /** Total value of the gifts sent in the minute (count × the gift's value when sent). */
  value: number;
  /** Gifts sent (counts summed). */
  gifts: number;
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
    /** UserMuted events, visible mutes only (a shadow mute is one nobody is told of). */
    muted: number;
    /** (deleted + held) / comments; 0 without comments. */
    rate: number;
  };
  gifts: {
    /** Minutes with gifts, in order. */
    minutes: GiftMinute[];
    totalValue: number;
    totalGifts: number;
    /** By total value sent, highest first (equal values by user id). */
    topGifters: { userId: string; value: number; gifts: number }[];
  };
  /**
   * The SQL behind each figure, with this request's values written in (room,
   * range, limit), to paste into `npm run sql` as it is: minutes, totals,
   * topEmojis, moderation, topChatters, giftsPerMinute, topGifters.
   */
  sql: Record<StatsQuery, string>;
}

export type StatsQuery = 'minutes' | 'totals' | 'topEmojis' | 'moderation' | 'topChatters' | 'giftsPerMinute' | 'topGifters';

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
  // What only one user could see counts nowhere here. A comment posted under a
  // shadow mute was shown to its author alone, and the shadow mute itself to
  // no one: the views count both, so each figure they feed is corrected by
  // what the raw log says was hidden. Each comment is matched (ASOF) with its
  // author's latest mute at or before it, as the feed projection decides; only
  // comments of users ever shadow-muted in the room are matched at all.
  const mutes = `SELECT target_user_id AS user_id, occurred_at, mute_kind, until_at FROM ${db}.events FINAL
         WHERE room_id = {room:String} AND kind = 'UserMuted'`;
  const underShadow = `m.mute_kind = 'shadow' AND (m.until_at IS NULL OR c.occurred_at < m.until_at)`;
  // Per minute and user: comments (n) and how many of them were hidden (h); shadow mutes (s) as rows of their own.
  const hidden = `SELECT minute, user_id, sum(hid) AS h, sum(one) AS n, sum(smute) AS s FROM (
         SELECT toStartOfMinute(c.occurred_at) AS minute, c.user_id AS user_id, toUInt64(ifNull(${underShadow}, 0)) AS hid, toUInt64(1) AS one, toUInt64(0) AS smute
         FROM (SELECT user_id, occurred_at FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'CommentPosted'
               AND user_id IN (SELECT target_user_id FROM ${db}.events WHERE room_id = {room:String} AND kind = 'UserMuted' AND mute_kind = 'shadow')) AS c
         ASOF LEFT JOIN (${mutes}) AS m ON c.user_id = m.user_id AND c.occurred_at >= m.occurred_at
         UNION ALL
         SELECT toStartOfMinute(occurred_at) AS minute, target_user_id AS user_id, toUInt64(0) AS hid, toUInt64(0) AS one, toUInt64(1) AS smute
         FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'UserMuted' AND mute_kind = 'shadow'
       ) GROUP BY minute, user_id`;
  const queries: Record<StatsQuery, string> = {
    // A chatter of a minute all of whose comments there were hidden is no chatter of it; a
    // minute with nothing anyone else could see is left out.
    minutes: `SELECT toUnixTimestamp(v.minute) * 1000 AS minute_ms, toInt64(v.comments) - toInt64(x.hidden_n) AS comments_n, v.reactions AS reactions_n, toInt64(v.chatters) - toInt64(x.gone_n) AS chatters_n
       FROM (SELECT minute, sum(events) AS events, sum(comments) AS comments, sum(reactions) AS reactions, uniqExactMerge(chatters) AS chatters
             FROM ${db}.room_minute WHERE ${minuteIn} GROUP BY minute) AS v
       LEFT JOIN (SELECT minute, sum(h) AS hidden_n, sum(s) AS mutes_n, countIf(n > 0 AND h = n) AS gone_n FROM (${hidden}) GROUP BY minute) AS x ON v.minute = x.minute
       WHERE toInt64(v.events) > toInt64(x.hidden_n) + toInt64(x.mutes_n)
       ORDER BY v.minute`,
    totals: `SELECT toInt64(v.events_n) - toInt64(x.hidden_n) - toInt64(x.mutes_n) AS events_n, toInt64(v.comments_n) - toInt64(x.hidden_n) AS comments_n, v.reactions_n AS reactions_n,
              toInt64(v.chatters_n) - toInt64(x.gone_n) AS chatters_n
       FROM (SELECT sum(events) AS events_n, sum(comments) AS comments_n, sum(reactions) AS reactions_n, uniqExactMerge(chatters) AS chatters_n
             FROM ${db}.room_minute WHERE ${minuteIn}) AS v
       CROSS JOIN (SELECT sum(uh) AS hidden_n, sum(us) AS mutes_n, countIf(un > 0 AND uh = un) AS gone_n
             FROM (SELECT user_id, sum(h) AS uh, sum(n) AS un, sum(s) AS us FROM (${hidden}) GROUP BY user_id)) AS x`,
    topEmojis: `SELECT emoji, sum(reactions) AS n FROM ${db}.room_minute_reactions WHERE ${minuteIn} GROUP BY emoji ORDER BY n DESC, emoji LIMIT {top:UInt32}`,
    // Mutes: the visible ones only (a shadow mute is one nobody is told of).
    moderation: `SELECT action, toInt64(sum(actions)) - if(action = 'muted', (SELECT toInt64(count()) FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'UserMuted' AND mute_kind = 'shadow'), 0) AS n
       FROM ${db}.moderation_minute WHERE ${minuteIn} GROUP BY action`,
    // A comment posted under a shadow mute never names its author here either.
    topChatters: `SELECT c.user_id AS user_id, count() AS n
       FROM (SELECT user_id, occurred_at FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'CommentPosted') AS c
       ASOF LEFT JOIN (${mutes}) AS m ON c.user_id = m.user_id AND c.occurred_at >= m.occurred_at
       WHERE NOT (${underShadow})
       GROUP BY user_id ORDER BY n DESC, user_id LIMIT {top:UInt32}`,
    // A GiftSent carries its value as the catalogue had it when sent (count × value of one).
    giftsPerMinute: `SELECT toUnixTimestamp(toStartOfMinute(occurred_at)) * 1000 AS minute_ms,
              sum(JSONExtractUInt(payload, 'value')) AS value_n, sum(JSONExtractUInt(payload, 'count')) AS gifts_n
       FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'GiftSent' GROUP BY minute_ms ORDER BY minute_ms`,
    topGifters: `SELECT user_id, sum(JSONExtractUInt(payload, 'value')) AS value_n, sum(JSONExtractUInt(payload, 'count')) AS gifts_n
       FROM ${db}.events FINAL WHERE ${eventIn} AND kind = 'GiftSent'
       GROUP BY user_id ORDER BY value_n DESC, user_id LIMIT {top:UInt32}`,
  };

  const [minutes, [totals], emojis, moderation, chatters, giftMinutes, gifters] = await Promise.all([
    rows<{ minute_ms: N; comments_n: N; reactions_n: N; chatters_n: N }>(queries.minutes),
    rows<{ events_n: N; comments_n: N; reactions_n: N; chatters_n: N }>(queries.totals),
    rows<{ emoji: string; n: N }>(queries.topEmojis),
    rows<{ action: string; n: N }>(queries.moderation),
    rows<{ user_id: string; n: N }>(queries.topChatters),
    rows<{ minute_ms: N; value_n: N; gifts_n: N }>(queries.giftsPerMinute),
    rows<{ user_id: string; value_n: N; gifts_n: N }>(queries.topGifters),
  ]);
  const giftsByMinute = giftMinutes.map((m) => ({ minute: Number(m.minute_ms), value: Number(m.value_n), gifts: Number(m.gifts_n) }));
  const action = (name: string) => Number(moderation.find((m) => m.action === name)?.n ?? 0);
  const verdicts = moderation.filter((m) => m.action.startsWith('verdict:')).reduce((a, m) => a + Number(m.n), 0);
  const comments = Number(totals?.comments_n ?? 0);
  // An open range covers the minutes shown (not those with only what one user could see).
  const fromMs = from ?? (minutes.length > 0 ? Number(minutes[0]!.minute_ms) : null);
  const toMs = to ?? (minutes.length > 0 ? Number(minutes[minutes.length - 1]!.minute_ms) + MINUTE : null);
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
    gifts: {
      minutes: giftsByMinute,
      totalValue: giftsByMinute.reduce((a, m) => a + m.value, 0),
      totalGifts: giftsByMinute.reduce((a, m) => a + m.gifts, 0),
      topGifters: gifters.map((g) => ({ userId: g.user_id, value: Number(g.value_n), gifts: Number(g.gifts_n) })),
    },
    sql: Object.fromEntries(Object.entries(queries).map(([k, q]) => [k, withParams(q, params)])) as Record<StatsQuery, string>,
  };
}
