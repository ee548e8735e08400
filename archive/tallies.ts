/**
 * The reaction tally timeline of a replay window: per second of video time,
 * how many reactions of each emoji — what the live tallies showed as bursts,
 * read back from the archive for a scrubber's timeline (peaks visible).
 * Reactions are placed on the video timeline as replay places every event
 * (replay.ts): their video offset, else event time minus the room's origin.
 */
import type { ClickHouse } from '../core/clickhouse.ts';
import { quoteIdent } from './migrate.ts';
import { ClickHouseReplaySource } from './replay.ts';

export interface TallySecond {
  /** Start of the second on the video timeline (ms). */
  second: number;
  counts: Record<string, number>;
}

export interface TallyTimeline {
  room: string;
  fromMs: number;
  toMs: number;
  /** Seconds with reactions, in order. */
  seconds: TallySecond[];
  /** Reactions per emoji over the window. */
  totals: Record<string, number>;
}

export async function tallyTimeline(ch: ClickHouse, room: string, range: { fromMs: number; toMs: number }): Promise<TallyTimeline> {
  const origin = await new ClickHouseReplaySource(ch).origin(room);
  const rs = await ch.client.query({
    query: `SELECT toInt64(floor(at / 1000)) * 1000 AS second_ms, emoji, sum(reaction_count) AS n
            FROM (
              SELECT emoji, reaction_count, coalesce(video_offset_ms, toUnixTimestamp64Milli(occurred_at) - {origin:Int64}) AS at
              FROM ${quoteIdent(ch.database)}.events FINAL
              WHERE room_id = {room:String} AND kind = 'ReactionAdded'
            )
            WHERE at >= {from:Int64} AND at < {to:Int64}
            GROUP BY second_ms, emoji
            ORDER BY second_ms, emoji`,
    query_params: { room, origin, from: range.fromMs, to: range.toMs },
    format: 'JSONEachRow',
  });
  const rows = await rs.json<{ second_ms: number | string; emoji: string; n: number | string }>();
  const seconds: TallySecond[] = [];
  const totals: Record<string, number> = {};
  for (const r of rows) {
    const second = Number(r.second_ms);
    let last = seconds[seconds.length - 1];
    if (!last || last.second !== second) seconds.push((last = { second, counts: {} }));
    last.counts[r.emoji] = Number(r.n);
    totals[r.emoji] = (totals[r.emoji] ?? 0) + Number(r.n);
  }
  return { room, fromMs: range.fromMs, toMs: range.toMs, seconds, totals };
}
