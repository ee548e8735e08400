/**
 * Replay and analytics, from the ClickHouse archive:
 * - GET /v1/rooms/:room/replay — the timeline of a room in video-offset order,
 *   as viewers saw it live, moderated as of now, or sampled like live; pages
 *   of JSON with a cursor, or the whole range as NDJSON streamed in constant
 *   memory (rows are read in chunks and written as the client takes them).
 * - GET /v1/rooms/:room/stats — comments per minute, top emojis, unique
 *   chatters, moderation rate, from the materialized views.
 *
 * The archive is `deps.archive`, an ArchiveReader the composition root wires
 * (archive/reader.ts: the archiver's own ClickHouse handle in embedded mode,
 * a server's with CLICKHOUSE_URL). Without one both answer 503
 * ERR_ARCHIVE_UNAVAILABLE: in embedded mode only the process holding the data
 * directory can read it (`npm run archiver -- run --gateway`).
 */
import { Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError, errorCodeSchema, UnavailableError, type ErrorCode } from '../core/errors.ts';
import { requireReader } from './auth.ts';
import type { ArchiveReader, ArchiveReplayQuery } from './deps.ts';
import { readPastStreams } from './presence.ts';
import { MAX_TIME_MS } from './protocol.ts';
import { RoomParams } from './write.ts';

const REPLAY_VIEWS = ['live', 'moderated', 'sampled'] as const;
type ReplayView = ArchiveReplayQuery['view'];

const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });
const errors = { 400: ErrorBody, 401: ErrorBody, 503: ErrorBody };

// Every number in a query is bounded: past ±2^53 a number is no longer exact, and the
// archive's client refuses to send it (a 500 before these bounds).
const timeBounds = { minimum: -MAX_TIME_MS, maximum: MAX_TIME_MS };

const ReplayQuery = Type.Object({
  fromMs: Type.Optional(Type.Integer({ ...timeBounds, description: 'Start of the range on the video timeline (ms since the stream started), inclusive.' })),
  toMs: Type.Optional(Type.Integer({ ...timeBounds, description: 'End of the range on the video timeline, exclusive.' })),
  view: Type.Optional(
    Type.Unsafe<ReplayView>({ type: 'string', enum: [...REPLAY_VIEWS], default: 'live', description: 'live: as viewers saw it; moderated: deleted, held (unless released since) and muted comments removed as of now; sampled: the live sample.' }),
  ),
  format: Type.Optional(
    Type.Unsafe<'json' | 'ndjson'>({ type: 'string', enum: ['json', 'ndjson'], default: 'json', description: 'json: one page; ndjson: the whole range (or `limit` items), streamed, ending with an `end` line.' }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'Items per page (json default REPLAY_PAGE_ITEMS, at most REPLAY_MAX_PAGE_ITEMS); ndjson: unbounded unless set.' })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 65536, pattern: '^[A-Za-z0-9_.-]+$', description: '`nextCursor` of the previous page (same view and range): opaque (encrypted and authenticated); anything else is ERR_CURSOR_INVALID.' })),
});

const ReplayPage = Type.Object({
  room: Type.String(),
  view: Type.String(),
  fromMs: Type.Union([Type.Integer(), Type.Null()]),
  toMs: Type.Union([Type.Integer(), Type.Null()]),
  items: Type.Array(Type.Unknown(), {
    description:
      'In (at, log position) order. `kind: comment` (a FeedEntry: eventId, userId, role, text, mode, color, size, occurredAt, videoOffsetMs, replyTo, offset), ' +
      '`kind: delete` (a tombstone: eventId of the removed comment, deletionId, reason), `kind: pin` (pin: the pinned comment, or null when unpinned) ' +
      'and `kind: gift` (eventId, userId, giftId, name, count, value = count × the gift’s value when sent, occurredAt, videoOffsetMs, offset). ' +
      'Each has `at`: its place on the video timeline in ms.',
  }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null at the end.' }),
});

const StatsQuery = Type.Object({
  fromMs: Type.Optional(Type.Integer({ ...timeBounds, description: 'Event time (ms since the epoch), widened down to the minute.' })),
  toMs: Type.Optional(Type.Integer({ ...timeBounds, description: 'Event time, exclusive, widened up to the minute.' })),
});

const Stats = Type.Object({
  room: Type.String(),
  fromMs: Type.Union([Type.Integer(), Type.Null()]),
  toMs: Type.Union([Type.Integer(), Type.Null()]),
  minutes: Type.Array(Type.Object({ minute: Type.Integer(), comments: Type.Integer(), reactions: Type.Integer(), chatters: Type.Integer() })),
  totals: Type.Object({ events: Type.Integer(), comments: Type.Integer(), reactions: Type.Integer(), uniqueChatters: Type.Integer(), commentsPerMinute: Type.Number() }),
  topEmojis: Type.Array(Type.Object({ emoji: Type.String(), count: Type.Integer() })),
  topChatters: Type.Array(Type.Object({ userId: Type.String(), comments: Type.Integer() })),
  moderation: Type.Object({ deleted: Type.Integer(), held: Type.Integer(), decisions: Type.Integer(), muted: Type.Integer(), rate: Type.Number() }),
  gifts: Type.Object(
    {
      minutes: Type.Array(Type.Object({ minute: Type.Integer(), value: Type.Integer(), gifts: Type.Integer() })),
      totalValue: Type.Integer(),
      totalGifts: Type.Integer(),
      topGifters: Type.Array(Type.Object({ userId: Type.String(), value: Type.Integer(), gifts: Type.Integer() })),
    },
    { description: 'Gifts: value (count × the gift’s value when sent) and gifts per minute with activity, totals, and the top senders by value.' },
  ),
  viewers: Type.Optional(
    Type.Object(
      {
        unique: Type.Integer({ description: 'Distinct viewers of the room\'s current stream (HyperLogLog in Redis: user ids, else device ids, else addresses, added on connect and poll); the whole stream, whatever the range.' }),
        concurrent: Type.Integer({ description: 'Viewers now, across gateways (sockets plus recent pollers).' }),
        pastStreams: Type.Optional(
          Type.Array(Type.Object({ stream: Type.Integer({ description: 'When that stream started (its StreamStarted, ms since the epoch).' }), uniqueViewers: Type.Integer() }), {
            description: 'Unique viewers of the room\'s earlier streams, oldest first: `unique` counts the current stream only, and starts again at each StreamStarted.',
          }),
        ),
      },
      { description: 'Viewer presence is not in the event log: these come from Redis (`{room}:viewers:hll`, `{room}:presence`), not from ClickHouse, and are absent when Redis does not answer.' },
    ),
  ),
  sql: Type.Object(
    {
      minutes: Type.String(),
      totals: Type.String(),
      topEmojis: Type.String(),
      moderation: Type.String(),
      topChatters: Type.String(),
      giftsPerMinute: Type.String(),
      topGifters: Type.String(),
    },
    { description: 'The SQL behind each figure, with this request\'s room, range and limit written in: paste it into `npm run sql`.' },
  ),
});

/** Longest tally timeline one request may ask for (a day of seconds). */
const MAX_TALLY_WINDOW_MS = 24 * 3600 * 1000;

const TallyQuery = Type.Object({
  fromMs: Type.Integer({ ...timeBounds, description: 'Start of the window on the video timeline (ms since the stream started), inclusive.' }),
  toMs: Type.Integer({ ...timeBounds, description: 'End of the window, exclusive; at most 24 h after fromMs.' }),
});

const TallyTimeline = Type.Object({
  room: Type.String(),
  fromMs: Type.Integer(),
  toMs: Type.Integer(),
  seconds: Type.Array(Type.Object({ second: Type.Integer({ description: 'Start of the second on the video timeline (ms).' }), counts: Type.Record(Type.String(), Type.Integer()) }), {
    description: 'Seconds with reactions, in order.',
  }),
  totals: Type.Record(Type.String(), Type.Integer(), { description: 'Reactions per emoji over the window.' }),
});

/** GET /v1/rooms/:room/stats, as a client reads it (the analytics page). */
export type StatsResponse = Static<typeof Stats>;
/** GET /v1/rooms/:room/replay/tallies, as a client reads it. */
export type TallyTimelineResponse = Static<typeof TallyTimeline>;

const NO_ARCHIVE =
  'replay and analytics need the ClickHouse archive: set CLICKHOUSE_URL, or in embedded mode serve from the archiver process (`npm run archiver -- run --gateway`)';

function checkRange(fromMs: number | undefined, toMs: number | undefined): void {
  if (fromMs !== undefined && toMs !== undefined && toMs <= fromMs) throw new AppError('ERR_RANGE_INVALID', `toMs (${toMs}) must be greater than fromMs (${fromMs})`);
}

export async function replayPlugin(app: FastifyInstance): Promise<void> {
  const { cfg } = app.deps;

  function archive(): ArchiveReader {
    if (app.deps.archive) return app.deps.archive;
    throw new UnavailableError('ERR_ARCHIVE_UNAVAILABLE', NO_ARCHIVE, { details: { retryAfterSec: 30 } });
  }

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof ReplayQuery> }>(
    '/v1/rooms/:room/replay',
    {
      schema: {
        tags: ['replay'],
        summary: 'The timeline of a room from the archive, in video-offset order (live, moderated or sampled view)',
        params: RoomParams,
        querystring: ReplayQuery,
        response: { 200: ReplayPage, ...errors },
      },
    },
    async (req, reply) => {
      const user = await requireReader(req);
      const reader = archive();
      const q = req.query;
      checkRange(q.fromMs, q.toMs);
      const format = q.format ?? 'json';
      if (format === 'json' && q.limit !== undefined && q.limit > cfg.archive.replayMaxPageItems) {
        throw new AppError('ERR_LIMIT_TOO_LARGE', `limit may be at most ${cfg.archive.replayMaxPageItems} (use format=ndjson to stream a long range)`);
      }
      const request: ArchiveReplayQuery = {
        room: req.params.room,
        view: q.view ?? 'live',
        fromMs: q.fromMs,
        toMs: q.toMs,
        limit: format === 'json' ? (q.limit ?? cfg.archive.replayPageItems) : q.limit,
        cursor: q.cursor,
        nowMs: app.deps.now(),
        viewer: user?.id ?? null,
      };
      const outputs = reader.replay(request);
      // The first output is awaited before anything is sent, so a bad cursor or
      // an unavailable archive still gets its proper status.
      const first = await outputs.next();

      if (format === 'json') {
        const items: unknown[] = [];
        let next: string | null = null;
        for (let o = first; !o.done; o = await outputs.next()) {
          if (o.value.type === 'item') items.push(o.value.item);
          else next = o.value.nextCursor;
        }
        return { room: request.room, view: request.view, fromMs: q.fromMs ?? null, toMs: q.toMs ?? null, items, nextCursor: next };
      }

      async function* lines(): AsyncGenerator<Buffer> {
        // Lines are grouped into writes of ~16 KB; the stream is pulled, so a slow client slows the reads.
        let buf = '';
        try {
          for (let o = first; !o.done; o = await outputs.next()) {
            const v = o.value;
            buf += JSON.stringify(v.type === 'item' ? v.item : { kind: 'end', items: v.items, nextCursor: v.nextCursor }) + '\n';
            if (buf.length >= 16_384) {
              yield Buffer.from(buf);
              buf = '';
            }
          }
        } catch (err) {
          const body = err instanceof AppError ? err.toJSON() : { code: 'ERR_INTERNAL', message: 'replay failed' };
          req.log.error({ err }, 'replay stream failed');
          buf += JSON.stringify({ kind: 'error', ...body }) + '\n';
        }
        if (buf) yield Buffer.from(buf);
      }
      void reply.header('content-type', 'application/x-ndjson; charset=utf-8');
      return reply.send(Readable.from(lines()));
    },
  );

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof StatsQuery> }>(
    '/v1/rooms/:room/stats',
    {
      schema: {
        tags: ['analytics'],
        summary: 'Comments per minute, top emojis, unique chatters and moderation rate of a room (event time, whole UTC minutes)',
        params: RoomParams,
        querystring: StatsQuery,
        response: { 200: Stats, ...errors },
      },
    },
    async (req) => {
      await requireReader(req);
      const reader = archive();
      checkRange(req.query.fromMs, req.query.toMs);
      const [stats, counts] = await Promise.all([
        reader.stats(req.params.room, { fromMs: req.query.fromMs, toMs: req.query.toMs }),
        // Presence lives in Redis, not in the log: read beside the archive, left out if Redis does not answer.
        // (A process that serves replay without the live side has no presence: no counts then.)
        (app.hasDecorator('presence') ? app.presence.read(req.params.room) : Promise.resolve(undefined)).catch((err: unknown) => {
          req.log.warn({ err }, 'stats: viewer counts unavailable');
          return undefined;
        }),
      ]);
      if (!counts) return stats;
      const pastStreams = await readPastStreams(app.deps.redis, app.deps.cfg.redis.keyPrefix, req.params.room).catch(() => []);
      return { ...(stats as object), viewers: { unique: counts.uniqueViewers, concurrent: counts.viewers, ...(pastStreams.length > 0 ? { pastStreams } : {}) } };
    },
  );

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof TallyQuery> }>(
    '/v1/rooms/:room/replay/tallies',
    {
      schema: {
        tags: ['replay'],
        summary: 'The reaction tally timeline of a replay window: reactions per emoji in each second of video time (at most 24 h)',
        params: RoomParams,
        querystring: TallyQuery,
        response: { 200: TallyTimeline, ...errors },
      },
    },
    async (req) => {
      await requireReader(req);
      const reader = archive();
      const { fromMs, toMs } = req.query;
      checkRange(fromMs, toMs);
      if (toMs - fromMs > MAX_TALLY_WINDOW_MS) throw new AppError('ERR_RANGE_INVALID', `a tally timeline spans at most ${MAX_TALLY_WINDOW_MS} ms (24 h); ask for several windows`);
      return reader.tallies(req.params.room, { fromMs, toMs });
    },
  );
}
