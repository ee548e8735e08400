/**
 * The write API: validates, checks limits and rights, and produces one event
 * to Kafka per request. 202 means Kafka acknowledged it with acks=all; when
 * Kafka is unreachable the answer is 503 with Retry-After, so nothing is
 * acknowledged that is not durable. A retry with the same clientMsgId
 * returns the first result and never creates a second event.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError, errorCodeSchema, type ErrorCode } from '../core/errors.ts';
import { roomKeys, type FeedEntry } from '../pipelines/projection.ts';
import { activeVersion } from '../pipelines/naming.ts';
import { readRoomState, roomEpoch } from '../pipelines/read.ts';
import { comment, makeEvent, type RoomEvent, type RoomEventPayload } from '../schemas/events.ts';
import { isModeratorIn, requireModerator, requireUser, roleIn, type User } from './auth.ts';
import { Limiter } from './limits.ts';
import { MAX_TIME_MS } from './protocol.ts';
import { codePoints, isEmoteOnly, isInvisible, MAX_TEXT_CODE_POINTS, normalizeComment } from './text.ts';

export const ROOM_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';
export const RoomParams = Type.Object({ room: Type.String({ pattern: ROOM_PATTERN, description: 'Room id: letters, digits, _ . : -; at most 64.' }) });
const EventIdParams = Type.Object({ room: RoomParams.properties.room, eventId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9:_-]+$' }) });

const Position = Type.Object({ offset: Type.Integer(), epoch: Type.Integer() });
const Accepted = Type.Object({ eventId: Type.String(), position: Position, duplicate: Type.Optional(Type.Boolean()) });
const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });
const errors = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
};

const CommentBody = Type.Object(
  {
    text: Type.String({
      minLength: 1,
      maxLength: 2000,
      description: '1–200 code points after normalisation (NFC; control, zero-width, bidi and stray tag characters removed), and something visible.',
    }),
    mode: Type.Optional(Type.Union([Type.Literal('scroll'), Type.Literal('top'), Type.Literal('bottom')])),
    color: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffffff, description: 'RGB as 0xRRGGBB.' })),
    size: Type.Optional(Type.Union([Type.Literal('small'), Type.Literal('medium'), Type.Literal('large')])),
    videoOffsetMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIME_MS, description: 'Milliseconds since the stream started.' })),
    clientMsgId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'Idempotency key: a retry with the same id returns the first result.' })),
  },
  { additionalProperties: false },
);
const ReactionBody = Type.Object(
  { emoji: Type.String({ minLength: 1, maxLength: 32 }), count: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })), clientMsgId: CommentBody.properties.clientMsgId },
  { additionalProperties: false },
);
const PinBody = Type.Object({ eventId: EventIdParams.properties.eventId, durationSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3600 })) }, { additionalProperties: false });
const SettingsBody = Type.Object(
  { slowModeSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })), emoteOnly: Type.Optional(Type.Boolean()) },
  { additionalProperties: false, minProperties: 1 },
);

type Room = Static<typeof RoomParams>;

export async function writePlugin(app: FastifyInstance): Promise<void> {
  const { deps } = app;
  const { cfg, redis, producer, codec, naming, topics } = deps;
  const limiter = new Limiter(redis);
  const emojis = new Set(cfg.gateway.emojis.split(',').map((e) => e.trim()).filter(Boolean));
  const prefix = cfg.redis.keyPrefix;

  /** Produces the event; resolves its position once Kafka acknowledged it. */
  async function produce(req: FastifyRequest, event: RoomEvent): Promise<{ eventId: string; position: { offset: number; epoch: number } }> {
    const ack = await producer.send({
      topic: topics.roomEvents,
      key: event.roomId,
      value: codec.encode(event),
      headers: { 'event-type': event.payload.type, 'schema-id': String(codec.schemaId), 'trace-id': String(req.id) },
    });
    return { eventId: event.eventId, position: { offset: Number(ack.offset), epoch: await roomEpoch(redis, naming, event.roomId) } };
  }

  /**
   * Runs `write` once per (user, clientMsgId). The key is claimed before
   * producing, so two concurrent retries cannot both produce; the result is
   * stored after the ack, and a failed produce releases the claim.
   */
  async function once(room: string, user: User, clientMsgId: string | undefined, write: () => Promise<Static<typeof Accepted>>): Promise<Static<typeof Accepted>> {
    if (!clientMsgId) return write();
    const key = `${prefix}{${room}}:cmid:${user.id}:${clientMsgId}`;
    const claimed = await redis.set(key, 'pending', 'EX', 60, 'NX');
    if (claimed !== 'OK') {
      const v = await redis.get(key);
      if (v && v !== 'pending') return { ...(JSON.parse(v) as Static<typeof Accepted>), duplicate: true };
      throw new AppError('ERR_IN_PROGRESS', 'a write with this clientMsgId is in progress; retry shortly', { details: { retryAfterSec: 1 } });
    }
    try {
      const result = await write();
      await redis.set(key, JSON.stringify(result), 'EX', cfg.limits.idempotencyTtlSec);
      return result;
    } catch (err) {
      await redis.del(key);
      throw err;
    }
  }

  const bucket = async (user: User, room: string, kind: 'comments' | 'reactions') => {
    const l = cfg.limits;
    const factor = isModeratorIn(user, room) ? l.moderatorFactor : 1;
    const spec = kind === 'comments'
      ? { capacity: l.commentsPerWindow * factor, windowMs: l.commentsWindowSec * 1000 }
      : { capacity: l.reactionsPerWindow * factor, windowMs: l.reactionsWindowSec * 1000 };
    const wait = await limiter.take(`${prefix}rl:{${user.id}}:${kind}`, spec, deps.now());
    if (wait > 0) throw new AppError('ERR_RATE_LIMITED', `too many ${kind}; retry in ${Math.ceil(wait / 1000)} s`, { details: { retryAfterSec: Math.ceil(wait / 1000) } });
  };

  /**
   * The comment (author, text): from the ordered feed while Redis holds it,
   * else from the archive; undefined when neither has it — then the room has
   * no such comment (or, without an archive, none recent enough to find), and
   * a pin or a deletion naming it would only put a dangling reference in the log.
   */
  async function findComment(room: string, eventId: string): Promise<Pick<FeedEntry, 'userId' | 'text'> | undefined> {
    const keys = roomKeys(prefix, 'feed', await activeVersion(redis, naming, 'feed'), room);
    const offset = await redis.hget(keys.key('idx'), eventId);
    if (offset !== null) {
      const [member] = await redis.zrangebyscore(keys.key('z'), offset, offset);
      const item = member ? (JSON.parse(member) as FeedEntry) : undefined;
      if (item?.kind === 'comment') return item;
    }
    return deps.archive?.findComment(room, eventId);
  }

  const notFound = () => new AppError('ERR_COMMENT_NOT_FOUND', 'no such comment in this room');

  // The role recorded in the event is the author's role in this room, never a global claim.
  const actorOf = (u: User, room: string) => ({ userId: u.id, role: roleIn(u, room) });
  const event = (room: string, u: User, payload: RoomEventPayload, extra: { videoOffsetMs?: number; clientMsgId?: string } = {}) =>
    makeEvent({ roomId: room, actor: actorOf(u, room), payload, videoOffsetMs: extra.videoOffsetMs ?? null, clientMsgId: extra.clientMsgId ?? null });

  app.post<{ Params: Room; Body: Static<typeof CommentBody> }>(
    '/v1/rooms/:room/comments',
    { schema: { tags: ['write'], summary: 'Post a comment', security: [{ bearer: [] }], params: RoomParams, body: CommentBody, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      const { room } = req.params;
      const text = normalizeComment(req.body.text);
      const n = codePoints(text);
      if (n < 1 || n > MAX_TEXT_CODE_POINTS) {
        throw new AppError('ERR_TEXT_LENGTH', `text must be 1–${MAX_TEXT_CODE_POINTS} characters after normalisation (got ${n})`);
      }
      if (isInvisible(text)) throw new AppError('ERR_TEXT_INVISIBLE', 'the comment would show nothing: only whitespace, combining marks or invisible characters');
      const result = await once(room, user, req.body.clientMsgId, async () => {
        const state = await readRoomState(redis, naming, room, deps.now());
        const mute = state.muted[user.id];
        if (mute?.kind === 'visible') {
          throw new AppError('ERR_MUTED', `you are muted in this room${mute.untilMs ? ` until ${new Date(mute.untilMs).toISOString()}` : ''}: ${mute.reason}`, {
            details: { untilMs: mute.untilMs, reason: mute.reason },
          });
        }
        // A shadow mute is not enforced here on purpose: the comment is accepted and the projections show it to its author alone.
        if (!isModeratorIn(user, room)) {
          if (state.settings.emoteOnly && !isEmoteOnly(text)) throw new AppError('ERR_EMOTE_ONLY', 'this room is in emote-only mode');
          const wait = await limiter.slowMode(`${prefix}{${room}}:slow:${user.id}`, state.settings.slowModeSec);
          if (wait > 0) throw new AppError('ERR_SLOW_MODE', `slow mode: one comment every ${state.settings.slowModeSec} s`, { details: { retryAfterSec: Math.ceil(wait / 1000) } });
        }
        await bucket(user, room, 'comments');
        const b = req.body;
        return produce(req, event(room, user, comment(text, { mode: b.mode ?? 'scroll', color: b.color ?? 0xffffff, size: b.size ?? 'medium' }), b));
      });
      return reply.status(202).send(result);
    },
  );

  app.post<{ Params: Room; Body: Static<typeof ReactionBody> }>(
    '/v1/rooms/:room/reactions',
    { schema: { tags: ['write'], summary: 'Add a reaction (count > 1 for a pre-aggregated burst)', security: [{ bearer: [] }], params: RoomParams, body: ReactionBody, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      if (!emojis.has(req.body.emoji)) throw new AppError('ERR_UNKNOWN_EMOJI', `emoji must be one of ${[...emojis].join(', ')}`);
      const result = await once(req.params.room, user, req.body.clientMsgId, async () => {
        await bucket(user, req.params.room, 'reactions');
        return produce(req, event(req.params.room, user, { type: 'ReactionAdded', emoji: req.body.emoji, count: req.body.count ?? 1 }));
      });
      return reply.status(202).send(result);
    },
  );

  app.delete<{ Params: Static<typeof EventIdParams> }>(
    '/v1/rooms/:room/comments/:eventId',
    { schema: { tags: ['write'], summary: 'Delete a comment (its author, or moderator and above)', security: [{ bearer: [] }], params: EventIdParams, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      const { room, eventId } = req.params;
      const c = await findComment(room, eventId);
      if (!c) throw notFound();
      if (!isModeratorIn(user, room) && c.userId !== user.id) throw new AppError('ERR_FORBIDDEN', 'only its author or a moderator may delete a comment');
      const result = await produce(req, event(room, user, { type: 'CommentDeleted', targetEventId: eventId, deletedBy: user.id, reason: isModeratorIn(user, room) ? 'moderator' : 'author' }));
      return reply.status(202).send(result);
    },
  );

  app.post<{ Params: Room; Body: Static<typeof PinBody> }>(
    '/v1/rooms/:room/pin',
    { schema: { tags: ['write'], summary: 'Pin a comment (broadcaster or moderator)', security: [{ bearer: [] }], params: RoomParams, body: PinBody, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      requireModerator(user, req.params.room);
      const { room } = req.params;
      const c = await findComment(room, req.body.eventId);
      if (!c) throw notFound();
      const untilMs = req.body.durationSec ? deps.now() + req.body.durationSec * 1000 : null;
      const result = await produce(req, event(room, user, { type: 'CommentPinned', targetEventId: req.body.eventId, untilMs, text: c.text }));
      return reply.status(202).send(result);
    },
  );

  app.delete<{ Params: Room }>(
    '/v1/rooms/:room/pin',
    { schema: { tags: ['write'], summary: 'Unpin the pinned comment (broadcaster or moderator)', security: [{ bearer: [] }], params: RoomParams, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      requireModerator(user, req.params.room);
      const state = await readRoomState(redis, naming, req.params.room, deps.now());
      if (!state.pinned) throw new AppError('ERR_NOT_PINNED', 'nothing is pinned in this room');
      const result = await produce(req, event(req.params.room, user, { type: 'CommentUnpinned', targetEventId: state.pinned.eventId }));
      return reply.status(202).send(result);
    },
  );

  app.patch<{ Params: Room; Body: Static<typeof SettingsBody> }>(
    '/v1/rooms/:room/settings',
    { schema: { tags: ['write'], summary: 'Change room settings (moderator and above)', security: [{ bearer: [] }], params: RoomParams, body: SettingsBody, response: { 202: Accepted, ...errors } } },
    async (req, reply) => {
      const user = await requireUser(req);
      requireModerator(user, req.params.room);
      const result = await produce(
        req,
        event(req.params.room, user, { type: 'RoomSettingsChanged', slowModeSec: req.body.slowModeSec ?? null, emoteOnly: req.body.emoteOnly ?? null, extra: {} }),
      );
      return reply.status(202).send(result);
    },
  );
}
