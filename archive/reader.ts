/**
 * The archive as its readers see it: replay pages or streams and room stats,
 * with cursors as opaque strings and a ClickHouse that does not answer
 * reported as the archive being unavailable. The gateway's replay and
 * analytics routes are written against this shape (`ArchiveReader` in
 * gateway/deps.ts); the composition root hands them this implementation, so
 * neither side imports the other.
 */
import { isClickHouseUnavailable, type ClickHouse } from '../core/clickhouse.ts';
import { AppError, UnavailableError } from '../core/errors.ts';
import { ClickHouseReplaySource, decodeCursor, encodeCursor, replay, type ReplayView } from './replay.ts';
import { feedWindow, type FeedWindowQuery, type FeedWindowResult } from './feed-window.ts';
import { quoteIdent } from './migrate.ts';
import { roomStats, type RoomStats } from './stats.ts';
import { tallyTimeline, type TallyTimeline } from './tallies.ts';

export interface ReplayQuery {
  room: string;
  view: ReplayView;
  fromMs?: number;
  toMs?: number;
  limit?: number;
  /** `nextCursor` of an earlier page, as given. */
  cursor?: string;
  nowMs: number;
  /** The user asking (null: anonymous). */
  viewer?: string | null;
}

export type ReplayLine = { type: 'item'; item: unknown } | { type: 'end'; items: number; nextCursor: string | null };

export interface ArchiveReaderOptions {
  /** The handle, opened on first use (a server) or shared with the archiver (embedded). */
  clickhouse(): Promise<ClickHouse>;
  perSecond: number;
  maxItems: number;
  chunkRows: number;
  /** Secret the replay cursors are sealed with (AES-256-GCM under a key derived from it: see encodeCursor). */
  cursorKey: Buffer;
  close?(): Promise<void>;
}

/** A ClickHouse that does not answer is the archive being unavailable; anything else is ours. */
export function archiveError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (isClickHouseUnavailable(err)) {
    return new UnavailableError('ERR_ARCHIVE_UNAVAILABLE', `the archive (ClickHouse) is not answering: ${msg}`, { cause: err });
  }
  return err;
}

export class ArchiveReader {
  constructor(private readonly o: ArchiveReaderOptions) {}

  private async ch(): Promise<ClickHouse> {
    try {
      return await this.o.clickhouse();
    } catch (err) {
      throw archiveError(err);
    }
  }

  /**
   * The timeline, item by item, then one `end` line with the next page's
   * cursor. A bad cursor or an unavailable archive throws on the first pull,
   * before anything is sent.
   */
  async *replay(q: ReplayQuery): AsyncGenerator<ReplayLine> {
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor, this.o.cursorKey);
    const ch = await this.ch();
    const outputs = replay(new ClickHouseReplaySource(ch), {
      room: q.room,
      view: q.view,
      fromMs: q.fromMs,
      toMs: q.toMs,
      limit: q.limit,
      cursor,
      perSecond: this.o.perSecond,
      maxItems: this.o.maxItems,
      nowMs: q.nowMs,
      viewer: q.viewer ?? null,
      chunkRows: this.o.chunkRows,
    });
    try {
      for await (const o of outputs) {
        if (o.type === 'item') yield { type: 'item', item: o.item };
        else yield { type: 'end', items: o.items, nextCursor: o.next ? encodeCursor(o.next, this.o.cursorKey) : null };
      }
    } catch (err) {
      throw archiveError(err);
    }
  }

  async stats(room: string, range: { fromMs?: number; toMs?: number }): Promise<RoomStats> {
    const ch = await this.ch();
    try {
      return await roomStats(ch, room, range);
    } catch (err) {
      throw archiveError(err);
    }
  }

  /** Reactions per second of video time in a replay window, per emoji (tallies.ts). */
  async tallies(room: string, range: { fromMs: number; toMs: number }): Promise<TallyTimeline> {
    const ch = await this.ch();
    try {
      return await tallyTimeline(ch, room, range);
    } catch (err) {
      throw archiveError(err);
    }
  }

  /** The comment `eventId` of the room as posted (deleted or not); undefined when the room has none by that id. */
  async findComment(room: string, eventId: string): Promise<ArchivedComment | undefined> {
    const ch = await this.ch();
    try {
      return await findComment(ch, room, eventId);
    } catch (err) {
      throw archiveError(err);
    }
  }

  /** The ordered feed's part below a log position, by event time or video position (feed-window.ts). */
  async feedWindow(q: FeedWindowQuery): Promise<FeedWindowResult> {
    const ch = await this.ch();
    try {
      return await feedWindow(ch, q, this.o.chunkRows);
    } catch (err) {
      throw archiveError(err);
    }
  }

  async close(): Promise<void> {
    await this.o.close?.();
  }
}

export interface ArchivedComment {
  eventId: string;
  userId: string;
  text: string;
  occurredAt: number;
}

/**
 * One comment by room and id. `room_id` leads the sorting key, so only the
 * room's granules are considered, and the bloom filter on `event_id`
 * (migration 0003) skips all but the one that holds it: a lookup, a hit or a
 * miss, reads a granule or so even in a room of millions of events. No FINAL:
 * a duplicate row is the same comment, and LIMIT 1 takes either.
 */
export async function findComment(ch: ClickHouse, room: string, eventId: string): Promise<ArchivedComment | undefined> {
  const rs = await ch.client.query({
    query: `SELECT event_id, user_id, text, toUnixTimestamp64Milli(occurred_at) AS occurred_ms
            FROM ${quoteIdent(ch.database)}.events
            WHERE room_id = {room:String} AND event_id = {id:String} AND kind = 'CommentPosted'
            LIMIT 1`,
    query_params: { room, id: eventId },
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ event_id: string; user_id: string; text: string; occurred_ms: number | string }>();
  return row && { eventId: row.event_id, userId: row.user_id, text: row.text, occurredAt: Number(row.occurred_ms) };
}
