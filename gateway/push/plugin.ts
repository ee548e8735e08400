/**
 * GET /v1/rooms/:room/ws — live pushes over WebSocket.
 *
 * Query: `since` (a position `<epoch>.<offset>` to resume from), `view`
 * (`ordered`, the default, or `sampled`), `token` (browsers cannot set an
 * Authorization header on a WebSocket), `device` (the client's stable
 * anonymous id: who it is for the viewer counts without a token, presence.ts).
 *
 * On connect the socket is registered with the hub first (its batches are
 * held), then the room is read — from the hub's window of the room in memory
 * when it has one (window.ts), else from Redis — then it is sent:
 * - no `since`: a snapshot (the newest items, pin, tallies, viewers, settings,
 *   sampling rate, position);
 * - `since` of the room's epoch: a snapshot without items, then a catch-up of
 *   every item after `since` — from Redis when Redis still holds everything
 *   after it, else from the log (gap.ts); when the log no longer has it
 *   either, a full snapshot with reason 'unrecoverable';
 * - `since` of another epoch (projections were rebuilt): a full snapshot with
 *   reason 'epoch'.
 * Then the held batches, minus what the snapshot or catch-up already had:
 * no gap, no duplicate.
 *
 * The socket also takes write frames (comments, reactions, deletes) from a
 * client that connected with a token: socket-writes.ts answers each with an
 * ack or a nack.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { readFeed, readRoomState, type FeedPage } from '../../pipelines/read.ts';
import type { FeedItem } from '../../pipelines/projection.ts';
import { AppError } from '../../core/errors.ts';
import { requireReader, type User } from '../auth.ts';
import { ReadLimits } from '../read-limits.ts';
import type { GatewayDeps } from '../deps.ts';
import { itemsFromLog } from '../gap.ts';
import { DEVICE_ID, viewerIdentity, type Presence } from '../presence.ts';
import { CLOSE, parsePosition, type CatchUpMessage, type Position, type SnapshotMessage, type View } from '../protocol.ts';
import { RoomHub, SNAPSHOT_ITEMS, snapshotFor, visibleTo, type HubClient, type SnapshotBase } from './hub.ts';
import { extraRegistries } from '../ops.ts';
import { pushMetrics, pushRegistry } from './metrics.ts';
import { SocketWrites } from '../socket-writes.ts';
import { openFileLimit, socketCap } from '../fdlimit.ts';

declare module 'fastify' {
  interface FastifyInstance {
    pushHub: RoomHub;
  }
}

export const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

interface RoomRead extends SnapshotBase {
  /** Oldest offset Redis holds for the room's view (undefined when it holds nothing). */
  oldestOffset: number | undefined;
}

/**
 * Everything Redis holds for the room's view, plus the room state. The feed
 * is read in pages until exhausted (Redis keeps at most FEED_MAX_ITEMS, so
 * normally one page), so the newest items are all there.
 */
export async function readRoom(deps: GatewayDeps, presence: Presence, room: string, view: View, reason?: SnapshotMessage['reason']): Promise<RoomRead> {
  const { redis, naming, cfg } = deps;
  const limit = Math.max(SNAPSHOT_ITEMS, cfg.pipelines.feedMaxItems + 1);
  const [state, first] = await Promise.all([readRoomState(redis, naming, room, deps.now()), readFeed(redis, naming, room, { view, limit })]);
  const items: FeedItem[] = [...first.items];
  let page: FeedPage = first;
  while (page.items.length >= limit) {
    page = await readFeed(redis, naming, room, { view, limit, afterOffset: page.position.offset });
    items.push(...page.items);
  }
  const msg: SnapshotMessage = {
    type: 'snapshot',
    room,
    view,
    position: { offset: page.position.offset, epoch: first.position.epoch },
    items,
    pinned: state.pinned,
    tallies: state.tallies,
    leaderboard: state.leaderboard,
    viewers: presence.count(room),
    uniqueViewers: presence.unique(room),
    settings: state.settings,
    rate: page.rate,
    ...(reason ? { reason } : {}),
  };
  return { msg, floor: items.length > 0 ? items[items.length - 1]!.offset : -1, oldestOffset: first.oldestOffset };
}

/** A close reason is at most 123 bytes. */
function reasonText(s: string): string {
  const b = Buffer.from(s);
  return b.length <= 120 ? s : `${b.subarray(0, 117).toString('utf8').replace(/\uFFFD+$/, '')}...`;
}

// fp: `app.pushHub` is exposed on the gateway's root instance, where the push tests inspect rooms and sockets.
export const pushPlugin = fp(async (app: FastifyInstance) => {
  const deps = app.deps;
  const limits = new ReadLimits(deps.cfg);
  const hub = new RoomHub(deps, {
    snapshots: (room, view, reason) => readRoom(deps, app.presence, room, view, reason),
    presence: app.presence,
    log: app.log,
    onVersion: (projection, version) => app.ingest.versions.observe(projection, version),
  });
  app.decorate('pushHub', hub);
  if (!extraRegistries.includes(pushRegistry)) extraRegistries.push(pushRegistry); // served on /metrics
  // @fastify/websocket closes its clients in preClose (with no code); ours are
  // made to say 1001 there (see below), and whatever is left goes here.
  app.addHook('onClose', async () => hub.close());

  async function serve(socket: WebSocket, req: FastifyRequest): Promise<void> {
    // @fastify/websocket closes every socket without a code in its preClose,
    // which runs before any hook of ours: a server-side close without a code
    // is that shutdown, and says "going away". (ws also calls close() without
    // a code to echo a peer's code-less close frame: that one stays as is.)
    const closeWith = socket.close.bind(socket);
    socket.close = (code?: number, data?: string | Buffer) => {
      const echo = (socket as unknown as { _closeFrameReceived?: boolean })._closeFrameReceived === true;
      if (code === undefined && !echo) closeWith(CLOSE.shuttingDown, 'server shutting down');
      else closeWith(code, data);
    };

    let closed = false;
    let client: HubClient | undefined;
    let leave: (() => void) | undefined;
    let expiry: NodeJS.Timeout | undefined;
    const { room } = req.params as { room: string };
    // Write frames (socket-writes.ts): listened to at once, so none is lost while the
    // upgrade is checked; they are held until the token is known, then answered.
    const writes = new SocketWrites(socket, { room, ingest: app.ingest, deps, log: req.log, traceId: String(req.id) });
    socket.on('message', (data, isBinary) => writes.onFrame(data, isBinary));
    socket.on('close', () => {
      closed = true;
      writes.close();
      clearTimeout(expiry);
      leave?.();
      if (client) hub.remove(client);
    });
    socket.on('error', (err) => req.log.debug({ err }, 'push: socket error'));
    const fail = (code: number, why: string) => {
      if (socket.readyState === socket.OPEN) socket.close(code, reasonText(why));
    };

    const q = (req.query ?? {}) as Record<string, unknown>;
    if (!ROOM_ID.test(room)) return fail(CLOSE.badRequest, 'room id must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$');
    const view = q.view === undefined || q.view === '' ? 'ordered' : q.view;
    if (view !== 'ordered' && view !== 'sampled') return fail(CLOSE.badRequest, 'view must be ordered or sampled');
    let since: Position | undefined;
    if (q.since !== undefined && q.since !== '') {
      since = typeof q.since === 'string' ? parsePosition(q.since) : undefined;
      if (!since) return fail(CLOSE.badRequest, 'since must be a position <epoch>.<offset>, e.g. 0.1234');
    }
    // The client's stable anonymous id: who it is for the viewer counts when it has no token.
    const device = q.device === undefined || q.device === '' ? undefined : q.device;
    if (device !== undefined && (typeof device !== 'string' || !DEVICE_ID.test(device))) return fail(CLOSE.badRequest, 'device must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$');
    let user: User | null;
    try {
      user = await requireReader(req, { queryToken: true });
      await limits.take(req, user);
    } catch (err) {
      return fail(err instanceof AppError && err.code === 'ERR_RATE_LIMITED' ? CLOSE.tryAgainLater : CLOSE.unauthorized, (err as Error).message);
    }
    if (closed) return;
    const userId = user?.id ?? null;
    // Verified once per connection: writes after `exp` are refused; a reader that may not read anonymously is closed then.
    writes.authenticated(user);
    if (user?.exp !== undefined && !deps.cfg.auth.anonymousReads) {
      const left = user.exp * 1000 - deps.now();
      expiry = setTimeout(() => fail(CLOSE.tokenExpired, 'token expired: reconnect with a new one'), Math.max(0, Math.min(left, 2 ** 31 - 1)));
      expiry.unref();
    }

    try {
      leave = app.presence.join(room, viewerIdentity(userId, device, req.ip));
      client = await hub.add(socket, room, view, userId);
      if (closed) {
        hub.remove(client);
        return;
      }
      // Registered (batches held) and subscribed: now read.
      // From the room's window in memory when the hub has one, else one read of Redis (which starts it).
      const base = await hub.snapshot(room, view, () => readRoom(deps, app.presence, room, view));
      if (closed) return;
      const position = base.msg.position;
      let floor = base.floor;
      if (since && since.epoch === position.epoch) {
        const oldest = base.oldestOffset;
        let catchUp: CatchUpMessage | undefined;
        if (oldest === undefined || since.offset >= oldest - 1) {
          // Redis holds everything after `since`: the items just read.
          const after = since.offset;
          catchUp = { type: 'catchup', room, items: base.msg.items.filter((i) => i.offset > after && visibleTo(i, userId)), position, source: 'redis' };
        } else if (view === 'ordered') {
          const fromLog = await itemsFromLog(deps, room, since.offset, position.offset).catch((err: unknown) => {
            req.log.warn({ err, room }, 'push: reading the gap from the log failed');
            return undefined;
          });
          if (closed) return;
          if (fromLog) {
            // The log covers everything up to the position read: held items up to it are duplicates.
            floor = Math.max(floor, position.offset);
            catchUp = { type: 'catchup', room, items: fromLog.filter((i) => visibleTo(i, userId)), position, source: 'log' };
          }
        }
        if (catchUp) {
          hub.send(client, { ...base.msg, items: [] });
          hub.send(client, catchUp);
          pushMetrics.catchUps.inc({ source: catchUp.source });
        } else {
          // Older than Redis and the log (or a sampled view, which the log cannot rebuild).
          hub.send(client, snapshotFor({ ...base.msg, reason: 'unrecoverable' }, userId));
        }
      } else {
        hub.send(client, snapshotFor(since ? { ...base.msg, reason: 'epoch' } : base.msg, userId));
      }
      hub.release(client, floor, position);
    } catch (err) {
      req.log.error({ err, room }, 'push: connecting a socket failed');
      fail(1011, 'internal error');
    }
  }

  // The socket cap, checked before the upgrade: a slot is taken by the
  // request and given back when its TCP connection closes (an upgrade that
  // fails, or the WebSocket's end), so upgrades in progress count too.
  const cap = socketCap(deps.cfg.gateway.wsMaxConnections, openFileLimit(), deps.cfg.gateway.fdReserve);
  if (Number.isFinite(cap)) pushMetrics.socketCap.set(cap);
  let slots = 0;
  const takeSlot = async (req: FastifyRequest) => {
    if (slots >= cap) {
      pushMetrics.capRefusals.inc();
      throw new AppError('ERR_TOO_MANY_CONNECTIONS', `this gateway holds ${slots} WebSockets, its cap: connect to another gateway or retry later`, { details: { cap, retryAfterSec: 5 } });
    }
    slots++;
    req.raw.socket.once('close', () => slots--);
  };

  app.get('/v1/rooms/:room/ws', { websocket: true, preValidation: takeSlot }, (socket: WebSocket, req: FastifyRequest) => {
    void serve(socket, req);
  });
});
