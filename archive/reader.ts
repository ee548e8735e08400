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
import { roomStats, type RoomStats } from './stats.ts';

export interface ReplayQuery {
  room: string;
  view: ReplayView;
  fromMs?: number;
  toMs?: number;
  limit?: number;
  /** `nextCursor` of an earlier page, as given. */
  cursor?: string;
  nowMs: number;
}

export type ReplayLine = { type: 'item'; item: unknown } | { type: 'end'; items: number; nextCursor: string | null };

export interface ArchiveReaderOptions {
  /** The handle, opened on first use (a server) or shared with the archiver (embedded). */
  clickhouse(): Promise<ClickHouse>;
  perSecond: number;
  maxItems: number;
  chunkRows: number;
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
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
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
      chunkRows: this.o.chunkRows,
    });
    try {
      for await (const o of outputs) {
        if (o.type === 'item') yield { type: 'item', item: o.item };
        else yield { type: 'end', items: o.items, nextCursor: o.next ? encodeCursor(o.next) : null };
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

  async close(): Promise<void> {
    await this.o.close?.();
  }
}
