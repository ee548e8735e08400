/**
 * Reads over HTTP: room state, and the feed for clients on weak networks
 * that poll instead of holding a WebSocket. The server tells each poller
 * when to come back (`nextPollMs`): sooner in a busy room, later in a quiet
 * one (sparse control) and later when this gateway is loaded (bandwidth
 * control). Responses carry an ETag; an unchanged feed answers 304.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../core/errors.ts';
import type { FeedItem } from '../pipelines/projection.ts';
import { readFeed, readRoomState, roomPosition } from '../pipelines/read.ts';
import { requireReader, type User } from './auth.ts';
import { itemsFromLog } from './gap.ts';
import { pushMetrics } from './push/metrics.ts';
import { pageFromWindow } from './push/window.ts';
import { DEVICE_ID_PATTERN, viewerIdentity } from './presence.ts';
import { ReadLimits } from './read-limits.ts';
import { parsePosition, POSITION_PATTERN, type FeedResponse } from './protocol.ts';
import { RoomParams } from './write.ts';

const FeedQuery = Type.Object({
  since: Type.Optional(Type.String({ pattern: POSITION_PATTERN, description: 'Position `<epoch>.<offset>` of the last item the client has (each part at most 2^53 − 1).' })),
  view: Type.Optional(Type.Union([Type.Literal('ordered'), Type.Literal('sampled')], { default: 'ordered' })),
  wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 300, description: 'Long poll: hold the request up to this many seconds until something new arrives.' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  device: Type.Optional(Type.String({ pattern: DEVICE_ID_PATTERN, description: 'The client\'s stable anonymous id: who it is for the viewer counts when it has no token (else its address).' })),
});

/** Shadow comments are shown to their author only. */
export const visibleTo = (items: FeedItem[], user: User | null) => items.filter((i) => i.kind !== 'comment' || !i.shadow || i.userId === user?.id);

export async function readPlugin(app: FastifyInstance): Promise<void> {
  const { deps } = app;
  const { cfg, redis, naming } = deps;
  const limits = new ReadLimits(cfg);
  let elu = performance.eventLoopUtilization();
  let load = 0;
  const loadTimer = setInterval(() => {
    const next = performance.eventLoopUtilization();
    load = performance.eventLoopUtilization(next, elu).utilization;
    elu = next;
  }, 1000);
  app.addHook('onClose', async () => clearInterval(loadTimer));

  /** Quiet room → long interval; busy room → short; loaded gateway → longer still. */
  function nextPollMs(items: FeedItem[], now: number): number {
    const recent = items.filter((i) => now - i.occurredAt < 10_000).length;
    const base = cfg.push.pollMaxMs / (1 + recent);
    const overload = load > 0.8 ? 3 : load > 0.5 ? 1.5 : 1;
    return Math.round(Math.min(cfg.push.pollMaxMs, Math.max(cfg.push.pollMinMs, base) * overload));
  }

  app.get(
    '/v1/gifts',
    {
      schema: {
        tags: ['read'],
        summary: 'The gift catalogue (GIFTS): what POST /v1/rooms/:room/gifts accepts, with each gift’s value, and the largest count one request may send',
        response: {
          200: Type.Object({
            gifts: Type.Array(Type.Object({ id: Type.String(), name: Type.String(), value: Type.Integer({ description: 'Value of one, in coins: what a leaderboard total grows by.' }) })),
            maxCount: Type.Integer({ description: 'GIFT_MAX_COUNT: the largest `count` of one send.' }),
          }),
        },
      },
    },
    async () => ({ gifts: cfg.gateway.gifts, maxCount: cfg.gateway.giftMaxCount }),
  );

  app.get<{ Params: Static<typeof RoomParams> }>(
    '/v1/rooms/:room/state',
    { schema: { tags: ['read'], summary: 'Pinned comment, tallies, gift leaderboard (top senders by total value, and totals), viewers, settings and the room position', description: '`viewers`: concurrent viewers across gateways (sockets plus clients that polled recently); `uniqueViewers`: distinct viewers of the room\'s stream (HyperLogLog of user ids, else the clients\' `device` ids, else addresses).', params: RoomParams } },
    async (req) => {
      await limits.take(req, await requireReader(req));
      const { room } = req.params;
      const now = deps.now();
      const [state, position, counts] = await Promise.all([readRoomState(redis, naming, room, now), roomPosition(redis, naming, room), app.presence.read(room)]);
      return {
        pinned: state.pinned,
        tallies: state.tallies,
        leaderboard: state.leaderboard,
        viewers: counts.viewers,
        uniqueViewers: counts.uniqueViewers,
        settings: state.settings,
        position,
      };
    },
  );

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof FeedQuery> }>(
    '/v1/rooms/:room/feed',
    { schema: { tags: ['read'], summary: 'Poll the feed since a position (short poll, or long poll with `wait`)', params: RoomParams, querystring: FeedQuery } },
    async (req, reply) => {
      const user = await requireReader(req);
      await limits.take(req, user);
      const { room } = req.params;
      const view = req.query.view ?? 'ordered';
      const limit = req.query.limit ?? 200;
      app.presence.touchPoller(room, viewerIdentity(user?.id, req.query.device, req.ip));
      const since = req.query.since ? parsePosition(req.query.since) : undefined;
      if (req.query.since && !since) throw new AppError('ERR_VALIDATION', 'querystring/since must be a position <epoch>.<offset> with parts of at most 2^53 - 1', { details: { issues: [{ path: '/since', message: 'out of range' }] } });
      const deadline = Date.now() + Math.min(req.query.wait ?? 0, cfg.push.longPollMaxSec) * 1000;

      let body: FeedResponse;
      // A long poll holds the room's subscription and sleeps until the hub sees news of it (never re-reading Redis on a timer).
      const watch = deadline > Date.now() ? await app.pushHub.watch(room) : undefined;
      try {
        for (;;) {
          const fromMemory = view === 'ordered' ? pageFromWindow(app.pushHub.windowOf(room), since?.offset, limit) : undefined;
          pushMetrics.pollReads.inc({ source: fromMemory ? 'memory' : 'redis' });
          const page = fromMemory ?? (await readFeed(redis, naming, room, { view, afterOffset: since?.offset, limit }));
          const fresh = since === undefined || since.epoch !== page.position.epoch;
          if (since && since.epoch !== page.position.epoch) {
            // The projection was rebuilt: the client's positions mean nothing now.
            const all = await readFeed(redis, naming, room, { view, limit });
            body = { events: visibleTo(all.items, user), position: all.position, nextPollMs: cfg.push.pollMinMs, rate: all.rate, unrecoverable: true };
            break;
          }
          let items = page.items;
          if (!fresh && page.oldestOffset !== undefined && since.offset < page.oldestOffset - 1 && since.offset >= 0) {
            // Older than Redis holds: serve the gap from the log (ordered view), or say it is gone.
            const fromLog = view === 'ordered' ? await itemsFromLog(deps, room, since.offset, page.oldestOffset - 1) : undefined;
            if (!fromLog) {
              const all = await readFeed(redis, naming, room, { view, limit });
              body = { events: visibleTo(all.items, user), position: all.position, nextPollMs: cfg.push.pollMinMs, rate: all.rate, unrecoverable: true };
              break;
            }
            items = [...fromLog, ...items];
          }
          // `limit` holds for the log's part too: the oldest `limit` items, and the
          // position of the last one given, so the client pages on from there.
          let position = page.position;
          if (items.length > limit) {
            items = items.slice(0, limit);
            position = { epoch: page.position.epoch, offset: items[items.length - 1]!.offset };
          }
          const visible = visibleTo(items, user);
          if (visible.length > 0 || items.length > 0 || Date.now() >= deadline || (fresh && since === undefined)) {
            body = { events: visible, position, nextPollMs: nextPollMs(visible, deps.now()), rate: page.rate };
            break;
          }
          // Long poll: read again when the room has news, or answer empty at the deadline.
          await watch!.next(deadline - Date.now());
        }
      } finally {
        watch?.close();
      }

      const etag = `"${createHash('sha1').update(`${view}|${req.query.since ?? ''}|${body.position.epoch}.${body.position.offset}|${body.events.length}|${user?.id ?? ''}`).digest('base64url')}"`;
      void reply.header('ETag', etag).header('Cache-Control', 'no-cache');
      if (req.headers['if-none-match'] === etag) return reply.status(304).send();
      return body;
    },
  );
}
