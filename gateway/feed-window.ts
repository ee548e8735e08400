/**
 * GET /v1/rooms/:room/feed/window — the ordered feed by time: the room's
 * comments whose event time (`by=event`: occurredAt) or video position
 * (`by=video`: videoOffsetMs, or for a comment without one occurredAt minus
 * the room's origin, where replay places it) lies in [from, to], in that
 * order (ties by log position), with the feed's moderation: deleted and held
 * comments left out, a shadow-muted author's comments shown to that author
 * alone. Pages of at most `limit` items; `nextCursor` continues.
 *
 * Exact across the Redis/archive boundary, by log position: items at or
 * above the oldest position the Redis feed still holds come from Redis (the
 * whole sorted set: FEED_MAX_ITEMS bounds it), older ones from the archive
 * (`ArchiveReader.feedWindow`, archive/feed-window.ts), which is told Redis's
 * tombstones so that a removal it has not archived yet still counts. A feed
 * holding fewer than FEED_MAX_ITEMS items was never trimmed (a removal
 * replaces its comment with a tombstone; only the trim drops items), so Redis
 * alone is then the whole answer. When the archive is needed but absent,
 * unavailable or behind Redis's oldest position, the answer is what Redis
 * has, with `complete: false` and the reason — never silently partial.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError, errorCodeSchema, type ErrorCode } from '../core/errors.ts';
import { activeVersion } from '../pipelines/naming.ts';
import { roomKeys, type FeedEntry, type FeedItem } from '../pipelines/projection.ts';
import { requireReader } from './auth.ts';
import type { ArchiveFeedWindow } from './deps.ts';
import { MAX_TIME_MS } from './protocol.ts';
import { ReadLimits } from './read-limits.ts';
import { RoomParams } from './write.ts';

/** Longest window one request may ask for: a day. */
export const MAX_WINDOW_MS = 24 * 3600 * 1000;
const DEFAULT_LIMIT = 100;

const timeBounds = { minimum: -MAX_TIME_MS, maximum: MAX_TIME_MS };
const BY = ['event', 'video'] as const;
type By = (typeof BY)[number];

const WindowQuery = Type.Object({
  from: Type.Integer({ ...timeBounds, description: 'Start of the window, inclusive: ms since the epoch (by=event) or ms of video (by=video).' }),
  to: Type.Integer({ ...timeBounds, description: 'End of the window, inclusive; greater than `from`, at most 24 h after it.' }),
  by: Type.Optional(Type.Unsafe<By>({ type: 'string', enum: [...BY], default: 'event', description: 'event: by occurredAt; video: by videoOffsetMs (a comment without one: occurredAt minus the room\'s origin, as replay places it).' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, description: `Items per page (default ${DEFAULT_LIMIT}).` })),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, pattern: '^[A-Za-z0-9_-]+$', description: '`nextCursor` of the previous page of the same room, order and window.' })),
});

const WindowItem = Type.Object({
  kind: Type.Literal('comment'),
  offset: Type.Integer({ description: 'The item\'s log position (a released comment: its release\'s).' }),
  eventId: Type.String(),
  userId: Type.String(),
  role: Type.String(),
  text: Type.String(),
  mode: Type.String(),
  color: Type.Integer(),
  size: Type.String(),
  occurredAt: Type.Integer(),
  videoOffsetMs: Type.Union([Type.Integer(), Type.Null()]),
  replyTo: Type.Union([Type.String(), Type.Null()]),
  shadow: Type.Optional(Type.Boolean({ description: 'The author is shadow-muted: only they are given it.' })),
  released: Type.Optional(Type.Boolean({ description: 'A held comment a moderator released.' })),
  t: Type.Integer({ description: 'The item\'s place in the order: occurredAt (by=event) or its video position (by=video).' }),
});

const INCOMPLETE = ['no-archive', 'archive-unavailable', 'archive-behind', 'origin-unknown'] as const;
type IncompleteReason = (typeof INCOMPLETE)[number];

const WindowPage = Type.Object({
  room: Type.String(),
  by: Type.String(),
  from: Type.Integer(),
  to: Type.Integer(),
  items: Type.Array(WindowItem, { description: 'In (t, offset) order.' }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `after` for the next page; null at the end.' }),
  complete: Type.Boolean({ description: 'False: items of the window may be missing; `incomplete` says why.' }),
  incomplete: Type.Union([
    Type.Object({
      reason: Type.Unsafe<IncompleteReason>({ type: 'string', enum: [...INCOMPLETE] }),
      message: Type.String(),
    }),
    Type.Null(),
  ], {
    description:
      'no-archive: older items than Redis holds need the archive, and this gateway has none; archive-unavailable: it did not answer; ' +
      'archive-behind: it has not archived the room up to Redis\'s oldest item yet; origin-unknown (by=video): comments without a video offset could not be placed.',
  }),
  redisOldestOffset: Type.Union([Type.Integer(), Type.Null()], { description: 'The oldest log position Redis holds for the room\'s feed: items below it came from the archive.' }),
});

/** GET /v1/rooms/:room/feed/window, as a client reads it. */
export type FeedWindowPage = Static<typeof WindowPage>;

const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });

type Item = FeedEntry & { t: number };

interface WindowCursor {
  room: string;
  by: By;
  from: number;
  to: number;
  t: number;
  offset: number;
}

/**
 * A cursor is the page's last (t, offset) and the request it belongs to. It
 * grants nothing (any client may ask for any window), so it is only checked,
 * not sealed: one that does not parse is ERR_CURSOR_INVALID, one of another
 * request ERR_CURSOR_MISMATCH.
 */
export function encodeWindowCursor(c: WindowCursor): string {
  return Buffer.from(JSON.stringify([1, c.room, c.by, c.from, c.to, c.t, c.offset])).toString('base64url');
}

export function decodeWindowCursor(s: string, want: Omit<WindowCursor, 't' | 'offset'>): { t: number; offset: number } {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    v = undefined;
  }
  const safe = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n);
  if (!Array.isArray(v) || v.length !== 7 || v[0] !== 1 || typeof v[1] !== 'string' || !(BY as readonly unknown[]).includes(v[2]) || !v.slice(3).every(safe)) {
    throw new AppError('ERR_CURSOR_INVALID', 'the cursor is not one this API issued');
  }
  const [, room, by, from, to, t, offset] = v as [1, string, By, number, number, number, number];
  if (room !== want.room || by !== want.by || from !== want.from || to !== want.to) {
    throw new AppError('ERR_CURSOR_MISMATCH', 'the cursor belongs to another room, order or window: repeat the request it came from');
  }
  return { t, offset };
}

const compare = (a: Item, b: Item) => a.t - b.t || a.offset - b.offset;

export async function feedWindowPlugin(app: FastifyInstance): Promise<void> {
  const { deps } = app;
  const { cfg, redis, naming } = deps;
  const limits = new ReadLimits(cfg);

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof WindowQuery> }>(
    '/v1/rooms/:room/feed/window',
    {
      schema: {
        tags: ['read'],
        summary: 'The ordered feed by time: the room\'s comments in a window of event time or video time, exactly (Redis for the recent part, the archive before it), in pages',
        description:
          'Comments whose occurredAt (by=event) or video position (by=video) is in [from, to], ordered by it, ties by log position; deleted and held comments left out, ' +
          'a shadow-muted author\'s comments only for that author. Anonymous reads allowed (a token shows the caller their own shadowed comments). ' +
          '`complete: false` when part of the window could not be read (see `incomplete`).',
        params: RoomParams,
        querystring: WindowQuery,
        response: { 200: WindowPage, 400: ErrorBody, 401: ErrorBody, 429: ErrorBody },
      },
    },
    async (req): Promise<FeedWindowPage> => {
      const user = await requireReader(req);
      await limits.take(req, user);
      const { room } = req.params;
      const { from, to } = req.query;
      const by = req.query.by ?? 'event';
      const limit = req.query.limit ?? DEFAULT_LIMIT;
      if (to <= from) throw new AppError('ERR_RANGE_INVALID', `to (${to}) must be greater than from (${from})`);
      if (to - from > MAX_WINDOW_MS) throw new AppError('ERR_RANGE_INVALID', `a feed window spans at most ${MAX_WINDOW_MS} ms (24 h); ask for several windows`);
      const after = req.query.after === undefined ? undefined : decodeWindowCursor(req.query.after, { room, by, from, to });
      const viewer = user?.id ?? null;

      // The whole sorted set, in one command: an atomic view of the feed at the projection's fence.
      const keys = roomKeys(naming.keyPrefix, 'feed', await activeVersion(redis, naming, 'feed'), room);
      const feed = (await redis.zrange(keys.key('z'), '0', '-1')).map((m) => JSON.parse(m) as FeedItem);
      const trimmed = feed.length >= cfg.pipelines.feedMaxItems;
      const below = trimmed ? feed[0]!.offset : undefined;
      const comments = feed.filter((i): i is FeedEntry => i.kind === 'comment' && (!i.shadow || i.userId === viewer));
      const needOrigin = by === 'video' && comments.some((c) => c.videoOffsetMs === null || c.videoOffsetMs === undefined);

      let incomplete: FeedWindowPage['incomplete'] = null;
      let older: ArchiveFeedWindow | undefined;
      if (below !== undefined || needOrigin) {
        if (!deps.archive) {
          incomplete =
            below !== undefined
              ? { reason: 'no-archive', message: `the feed in Redis starts at position ${below}; older comments are in the archive, which this gateway does not have` }
              : { reason: 'origin-unknown', message: 'comments without a video offset are placed from the room\'s origin, which only the archive knows' };
        } else {
          try {
            older = await deps.archive.feedWindow({
              room,
              by,
              fromMs: from,
              toMs: to,
              below,
              after,
              limit,
              viewer,
              removals: feed.flatMap((i): [string, number][] => (i.kind === 'delete' ? [[i.eventId, i.offset]] : [])),
            });
          } catch (err) {
            if (!(err instanceof AppError) || err.code !== 'ERR_ARCHIVE_UNAVAILABLE') throw err;
            req.log.warn({ err }, 'feed window: the archive does not answer');
            incomplete = { reason: 'archive-unavailable', message: `the archive does not answer: ${err.message}` };
          }
          if (older && below !== undefined && !older.complete) {
            incomplete = { reason: 'archive-behind', message: `the archive has not yet archived this room up to position ${below}, where the feed in Redis starts` };
            older = { ...older, items: [], more: false };
          }
        }
      }

      const origin = older?.origin;
      let unplaced = false;
      const recent: Item[] = [];
      for (const c of comments) {
        const t = by === 'event' ? c.occurredAt : (c.videoOffsetMs ?? (origin === undefined ? undefined : c.occurredAt - origin));
        if (t === undefined) {
          unplaced = true;
          continue;
        }
        if (t < from || t > to || (after && (t < after.t || (t === after.t && c.offset <= after.offset)))) continue;
        recent.push({ ...c, t });
      }
      if (unplaced && !incomplete) incomplete = { reason: 'origin-unknown', message: 'comments without a video offset could not be placed: the room\'s origin is unknown without the archive' };

      const merged = [...(older?.items ?? []), ...recent].sort(compare);
      const items = merged.slice(0, limit);
      const last = items[items.length - 1];
      const more = merged.length > limit || (older?.more ?? false);
      return {
        room,
        by,
        from,
        to,
        items: items as FeedWindowPage['items'],
        nextCursor: more && last ? encodeWindowCursor({ room, by, from, to, t: last.t, offset: last.offset }) : null,
        complete: incomplete === null,
        incomplete,
        redisOldestOffset: feed[0]?.offset ?? null,
      };
    },
  );
}
