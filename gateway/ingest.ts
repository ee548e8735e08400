/**
 * The write path, once: what a comment, a reaction, a deletion, a pin or a
 * settings change must pass and how it becomes an event in Kafka. The HTTP
 * routes (write.ts) and the WebSocket write frames (socket-writes.ts) both
 * call this, with the same schemas (below), normalisation (text.ts), limits
 * (limits.ts), idempotency (clientMsgId), room-scoped roles and error codes.
 *
 * An acknowledgement means durable: Kafka acknowledged the event with
 * acks=all; when it cannot, the write fails with 503 ERR_KAFKA_UNAVAILABLE
 * and nothing was accepted. A retry with the same clientMsgId (over either
 * transport) returns the first result and never creates a second event.
 *
 * A comment costs one Redis round trip before it is produced: the comment
 * gate (limits.ts: claim, mute, emote-only, slow mode, bucket and the room's
 * epoch in one script on the room's slot), run concurrently with the
 * ban/revocation check on the user's slot when one is due. The projection
 * versions that name the state keys come from memory (versions.ts).
 * Reactions cost no Redis round trip at all (an in-memory budget, an
 * in-memory sum: reactions.ts) unless they carry a clientMsgId.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyBaseLogger } from 'fastify';
import type { Gift } from '../core/config.ts';
import { emojiKey } from '../core/config.ts';
import { AppError, errorCodeSchema, type ErrorCode } from '../core/errors.ts';
import { roomKeys, type FeedEntry } from '../pipelines/projection.ts';
import { activeVersion, epochKey } from '../pipelines/naming.ts';
import type { HeldEntry } from '../pipelines/projections/held.ts';
import { readHeldEntry, readRoomState, roomEpoch } from '../pipelines/read.ts';
import { comment, makeEvent, RoleValues, type Role, type RoomEvent, type RoomEventPayload } from '../schemas/events.ts';
import type { LogWriteAck } from '../topics/writer.ts';
import { isStillSending } from '../topics/kafka.ts';
import { asAppError } from './input.ts';
import { isModeratorIn, requireModerator, roleIn, type User } from './auth.ts';
import type { GatewayDeps } from './deps.ts';
import { CommentGate, MemoryBuckets, type GateResult } from './limits.ts';
import { MAX_TIME_MS } from './protocol.ts';
import { ReactionAggregator, type ReactionAck } from './reactions.ts';
import { isEmoteOnly, isInvisible, MAX_TEXT_CODE_POINTS, normalizeComment } from './text.ts';
import { ProjectionVersions } from './versions.ts';

// ---------------------------------------------------------------- schemas (HTTP bodies and socket frames alike)

export const ROOM_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';
export const RoomParams = Type.Object({ room: Type.String({ pattern: ROOM_PATTERN, description: 'Room id: letters, digits, _ . : -; at most 64.' }) });
const EventId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9:_-]+$' });
export const EventIdParams = Type.Object({ room: RoomParams.properties.room, eventId: EventId });

export const PositionSchema = Type.Object({ offset: Type.Integer(), epoch: Type.Integer() });
export const AcceptedSchema = Type.Object({ eventId: Type.String(), position: PositionSchema, duplicate: Type.Optional(Type.Boolean()) });
export type Accepted = Static<typeof AcceptedSchema>;
export const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });

const ClientMsgId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'Idempotency key: a retry with the same id returns the first result.' });

export const CommentBody = Type.Object(
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
    clientMsgId: Type.Optional(ClientMsgId),
  },
  { additionalProperties: false },
);
export const ReactionBody = Type.Object(
  { emoji: Type.String({ minLength: 1, maxLength: 32 }), count: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })), clientMsgId: Type.Optional(ClientMsgId) },
  { additionalProperties: false },
);
export const GiftBody = Type.Object(
  {
    giftId: Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z0-9_-]+$', description: 'A gift id of the catalogue (GIFTS); another is 400 ERR_UNKNOWN_GIFT.' }),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'How many at once: 1–GIFT_MAX_COUNT (default 1).' })),
    videoOffsetMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TIME_MS, description: 'Milliseconds since the stream started (replay places the gift there).' })),
    clientMsgId: Type.Optional(ClientMsgId),
  },
  { additionalProperties: false },
);
export const PinBody = Type.Object({ eventId: EventId, durationSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3600 })) }, { additionalProperties: false });
export const SettingsBody = Type.Object(
  { slowModeSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })), emoteOnly: Type.Optional(Type.Boolean()) },
  { additionalProperties: false, minProperties: 1 },
);

const CorrelationId = Type.String({ minLength: 1, maxLength: 64, description: "The client's correlation id, echoed in the ack or nack." });
/** Socket frames: the HTTP body of the same write, plus `type` and `id`. */
export const CommentFrameSchema = Type.Object({ type: Type.Literal('comment'), id: CorrelationId, ...CommentBody.properties }, { additionalProperties: false });
export const ReactionFrameSchema = Type.Object({ type: Type.Literal('reaction'), id: CorrelationId, ...ReactionBody.properties }, { additionalProperties: false });
export const GiftFrameSchema = Type.Object({ type: Type.Literal('gift'), id: CorrelationId, ...GiftBody.properties }, { additionalProperties: false });
export const DeleteFrameSchema = Type.Object({ type: Type.Literal('delete'), id: CorrelationId, eventId: EventId }, { additionalProperties: false });

export type CommentInput = Static<typeof CommentBody>;
export type ReactionInput = Static<typeof ReactionBody>;
export type GiftInput = Static<typeof GiftBody>;

// ---------------------------------------------------------------- the writer

/**
 * Who writes. `block` is the ban/revocation check of the user (blocks.ts)
 * when one is due — started by the caller, awaited here beside the write's
 * own Redis work — or null when it was done already (HTTP reactions, deletes)
 * or memory answers it (a socket checked recently: a ban closes its sockets).
 */
export interface Writer {
  user: User;
  block: Promise<AppError | null> | null;
  /** Goes into the event's `trace-id` header. */
  traceId: string;
}

/** A reaction's answer: its event's id and position (and for sockets, that ack's serialized tail). */
export type ReactionResult = Accepted & { frameTail?: string };
export type ReactionDone = (err: AppError | null, result: ReactionResult | null) => void;

const noop = () => undefined;
/** How long a clientMsgId stays claimed while its write is in flight (a crashed writer's claim expires). */
const CLAIM_TTL_SEC = 60;

/** Code points of a string without building an array of them. */
function codePointCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

export class Ingest {
  readonly versions: ProjectionVersions;
  readonly reactions: ReactionAggregator;
  /** What a client may send for a reaction (a name, or the emoji itself without variation selectors) → the name events carry. */
  readonly emojis: ReadonlyMap<string, string>;
  /** The gift catalogue (GIFTS), by id. */
  readonly gifts: ReadonlyMap<string, Gift>;
  private readonly gate: CommentGate;
  private readonly reactionBudget = new MemoryBuckets();
  private readonly prefix: string;
  private readonly schemaId: string;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly log?: FastifyBaseLogger,
  ) {
    const { cfg, redis, naming, codec } = deps;
    this.prefix = cfg.redis.keyPrefix;
    this.versions = new ProjectionVersions(redis, naming);
    this.gate = new CommentGate(redis);
    this.reactions = new ReactionAggregator(deps, { flushMs: cfg.gateway.reactionsFlushMs, log });
    this.emojis = new Map(cfg.gateway.emojis.flatMap((e) => [[e.name, e.name] as const, ...(e.char === null ? [] : [[emojiKey(e.char), e.name] as const])]));
    this.gifts = new Map(cfg.gateway.gifts.map((g) => [g.id, g]));
    this.schemaId = String(codec.schemaId);
  }

  start(): Promise<void> {
    return this.versions.start();
  }

  /** Graceful stop: reactions in memory are flushed (and answered) before the sockets close. */
  async drain(): Promise<void> {
    await this.reactions.drain();
    this.versions.stop();
  }

  // ---------------------------------------------------------------- comments

  async comment(w: Writer, room: string, b: CommentInput): Promise<Accepted> {
    const { user } = w;
    const text = normalizeComment(b.text);
    const n = codePointCount(text);
    if (n < 1 || n > MAX_TEXT_CODE_POINTS) {
      await this.blocked(w); // who is asking comes first, as before any other answer
      throw new AppError('ERR_TEXT_LENGTH', `text must be 1–${MAX_TEXT_CODE_POINTS} characters after normalisation (got ${n})`);
    }
    if (isInvisible(text)) {
      await this.blocked(w);
      throw new AppError('ERR_TEXT_INVISIBLE', 'the comment would show nothing: only whitespace, combining marks or invisible characters');
    }
    const moderator = isModeratorIn(user, room);
    const cmid = b.clientMsgId;
    const p = this.prefix;
    const claim = `${p}{${room}}:cmid:${user.id}:${cmid ?? ''}`;
    const state = roomKeys(p, 'state', this.versions.get('state'), room);
    const l = this.deps.cfg.limits;
    const gate = this.gate.check(
      { claim, bucket: `${p}{${room}}:rl:${user.id}:comments`, slow: `${p}{${room}}:slow:${user.id}`, muted: state.key('muted'), settings: state.key('settings'), epoch: epochKey(this.deps.naming, room) },
      {
        userId: user.id,
        nowMs: this.deps.now(),
        moderator,
        emoteOnly: moderator || isEmoteOnly(text),
        capacity: l.commentsPerWindow * (moderator ? l.moderatorFactor : 1),
        windowMs: l.commentsWindowSec * 1000,
        hasClaim: cmid !== undefined,
        claimTtlSec: CLAIM_TTL_SEC,
      },
    );
    if (w.block) {
      gate.catch(noop);
      let block: AppError | null;
      try {
        block = await w.block;
      } catch (err) {
        this.releaseIfClaimed(gate, cmid, claim);
        throw err;
      }
      if (block) {
        this.releaseIfClaimed(gate, cmid, claim);
        throw block;
      }
    }
    const r = await gate;
    if (r.kind !== 'ok') return refusal(r, 'comments');
    const event = makeEvent({
      roomId: room,
      actor: { userId: user.id, role: roleIn(user, room) },
      payload: comment(text, { mode: b.mode ?? 'scroll', color: b.color ?? 0xffffff, size: b.size ?? 'medium' }),
      videoOffsetMs: b.videoOffsetMs ?? null,
      clientMsgId: cmid ?? null,
    });
    let ack: LogWriteAck;
    const resultOf = (a: LogWriteAck): Accepted => ({ eventId: event.eventId, position: { offset: a.position, epoch: this.versions.epochOf(r.epoch) } });
    try {
      // Answered 503 while its batch is still being sent, it may land yet: the claim is kept, and the
      // result stored if it does, so the writer's retry gets this event instead of writing a second one.
      ack = await this.send(event, w.traceId, cmid !== undefined ? (late) => this.remember(claim, resultOf(late)) : undefined);
    } catch (err) {
      if (cmid !== undefined && !isStillSending(err)) await this.release(claim);
      throw err;
    }
    const result = resultOf(ack);
    if (cmid !== undefined) this.remember(claim, result);
    return result;
  }

  // ---------------------------------------------------------------- gifts

  /**
   * A gift from the catalogue: GiftSent, carrying the gift's name and value
   * as the catalogue has them now. It passes the comment gate (one script on
   * the room's slot: the clientMsgId claim, a visible mute, and its own token
   * bucket, LIMIT_GIFTS per user and room) but neither emote-only nor slow
   * mode, which are about text.
   */
  async gift(w: Writer, room: string, b: GiftInput): Promise<Accepted> {
    const { user } = w;
    const gift = this.gifts.get(b.giftId);
    if (!gift) {
      await this.blocked(w);
      throw new AppError('ERR_UNKNOWN_GIFT', `gift must be one of ${[...this.gifts.keys()].join(', ')}`, { details: { gifts: [...this.gifts.keys()] } });
    }
    const count = b.count ?? 1;
    const max = this.deps.cfg.gateway.giftMaxCount;
    if (count > max) {
      await this.blocked(w);
      throw new AppError('ERR_VALIDATION', `count must be at most ${max} (GIFT_MAX_COUNT)`, { details: { issues: [{ path: '/count', message: `must be <= ${max}` }] } });
    }
    const cmid = b.clientMsgId;
    const p = this.prefix;
    const claim = `${p}{${room}}:cmid:${user.id}:${cmid ?? ''}`;
    const state = roomKeys(p, 'state', this.versions.get('state'), room);
    const l = this.deps.cfg.limits;
    const gate = this.gate.check(
      { claim, bucket: `${p}{${room}}:rl:${user.id}:gifts`, slow: `${p}{${room}}:slow:${user.id}:gifts`, muted: state.key('muted'), settings: state.key('settings'), epoch: epochKey(this.deps.naming, room) },
      {
        userId: user.id,
        nowMs: this.deps.now(),
        // Exempts from emote-only and slow mode only (text rules); the bucket is chosen here.
        moderator: true,
        emoteOnly: true,
        capacity: l.giftsPerWindow * (isModeratorIn(user, room) ? l.moderatorFactor : 1),
        windowMs: l.giftsWindowSec * 1000,
        hasClaim: cmid !== undefined,
        claimTtlSec: CLAIM_TTL_SEC,
      },
    );
    if (w.block) {
      gate.catch(noop);
      let block: AppError | null;
      try {
        block = await w.block;
      } catch (err) {
        this.releaseIfClaimed(gate, cmid, claim);
        throw err;
      }
      if (block) {
        this.releaseIfClaimed(gate, cmid, claim);
        throw block;
      }
    }
    const r = await gate;
    if (r.kind !== 'ok') return refusal(r, 'gifts');
    const event = makeEvent({
      roomId: room,
      actor: { userId: user.id, role: roleIn(user, room) },
      payload: { type: 'GiftSent', giftId: gift.id, name: gift.name, count, unitValue: gift.value, value: count * gift.value },
      videoOffsetMs: b.videoOffsetMs ?? null,
      clientMsgId: cmid ?? null,
    });
    const resultOf = (a: LogWriteAck): Accepted => ({ eventId: event.eventId, position: { offset: a.position, epoch: this.versions.epochOf(r.epoch) } });
    let ack: LogWriteAck;
    try {
      ack = await this.send(event, w.traceId, cmid !== undefined ? (late) => this.remember(claim, resultOf(late)) : undefined);
    } catch (err) {
      if (cmid !== undefined && !isStillSending(err)) await this.release(claim);
      throw err;
    }
    const result = resultOf(ack);
    if (cmid !== undefined) this.remember(claim, result);
    return result;
  }

  // ---------------------------------------------------------------- reactions

  /**
   * Takes a reaction into its room's sum; `done` is called once the flushed
   * event holding it is durable (or failed). The budget is checked in memory
   * (limits.ts MemoryBuckets: why not Redis at 100,000/s).
   */
  react(w: Writer, room: string, b: ReactionInput, done: ReactionDone): void {
    const emoji = this.emojis.get(emojiKey(b.emoji));
    if (emoji === undefined) {
      const set = this.deps.cfg.gateway.emojis.map((e) => (e.char === null ? e.name : `${e.name} (${e.char})`)).join(', ');
      done(new AppError('ERR_UNKNOWN_EMOJI', `emoji must be one of ${set}`), null);
      return;
    }
    b = { ...b, emoji };
    const count = b.count ?? 1;
    if (w.block === null && b.clientMsgId === undefined) {
      // The hot path: no await, no Redis.
      const refused = this.spendReaction(w.user, room);
      if (refused) done(refused, null);
      else this.reactions.add(room, b.emoji, count, done);
      return;
    }
    void this.reactSlow(w, room, b.emoji, count, b.clientMsgId, done).catch((err: unknown) => {
      done(asAppError(err), null);
    });
  }

  /** The same, as a promise (HTTP). */
  reaction(w: Writer, room: string, b: ReactionInput): Promise<Accepted> {
    return new Promise((resolve, reject) =>
      this.react(w, room, b, (err, r) => {
        if (err || !r) reject(err ?? new AppError('ERR_INTERNAL', 'no result'));
        else resolve(r.duplicate ? { eventId: r.eventId, position: r.position, duplicate: true } : { eventId: r.eventId, position: r.position });
      }),
    );
  }

  private async reactSlow(w: Writer, room: string, emoji: string, count: number, cmid: string | undefined, done: ReactionDone): Promise<void> {
    await this.blocked(w);
    const claim = `${this.prefix}{${room}}:cmid:${w.user.id}:${cmid ?? ''}`;
    if (cmid !== undefined) {
      const first = await this.claim(claim);
      if (first) {
        done(null, { ...first, duplicate: true });
        return;
      }
    }
    const refused = this.spendReaction(w.user, room);
    if (refused) {
      if (cmid !== undefined) await this.release(claim);
      done(refused, null);
      return;
    }
    this.reactions.add(room, emoji, count, (err, ack) => {
      if (cmid !== undefined) {
        if (ack) this.remember(claim, { eventId: ack.eventId, position: ack.position });
        else void this.release(claim);
      }
      done(err, ack);
    });
  }

  private spendReaction(user: User, room: string): AppError | null {
    const l = this.deps.cfg.limits;
    const factor = isModeratorIn(user, room) ? l.moderatorFactor : 1;
    const wait = this.reactionBudget.take(user.id, { capacity: l.reactionsPerWindow * factor, windowMs: l.reactionsWindowSec * 1000 }, this.deps.now());
    if (wait === 0) return null;
    const retryAfterSec = Math.ceil(wait / 1000);
    return new AppError('ERR_RATE_LIMITED', `too many reactions; retry in ${retryAfterSec} s`, { details: { retryAfterSec } });
  }

  // ---------------------------------------------------------------- deletions, pins, settings

  async deleteComment(w: Writer, room: string, eventId: string): Promise<Accepted> {
    const { user } = w;
    const found = this.findComment(room, eventId);
    found.catch(noop);
    await this.blocked(w);
    const c = await found;
    if (!c) throw notFound();
    const moderator = isModeratorIn(user, room);
    if (!moderator && c.userId !== user.id) throw new AppError('ERR_FORBIDDEN', 'only its author or a moderator may delete a comment');
    return this.produce(w, room, { type: 'CommentDeleted', targetEventId: eventId, deletedBy: user.id, reason: moderator ? 'moderator' : 'author' });
  }

  async pin(w: Writer, room: string, b: Static<typeof PinBody>): Promise<Accepted> {
    await this.blocked(w);
    requireModerator(w.user, room);
    const c = await this.findComment(room, b.eventId);
    if (!c) throw notFound();
    const untilMs = b.durationSec ? this.deps.now() + b.durationSec * 1000 : null;
    return this.produce(w, room, { type: 'CommentPinned', targetEventId: b.eventId, untilMs, text: c.text });
  }

  async unpin(w: Writer, room: string): Promise<Accepted> {
    await this.blocked(w);
    requireModerator(w.user, room);
    const state = await readRoomState(this.deps.redis, this.deps.naming, room, this.deps.now());
    if (!state.pinned) throw new AppError('ERR_NOT_PINNED', 'nothing is pinned in this room');
    return this.produce(w, room, { type: 'CommentUnpinned', targetEventId: state.pinned.eventId });
  }

  async settings(w: Writer, room: string, b: Static<typeof SettingsBody>): Promise<Accepted> {
    await this.blocked(w);
    requireModerator(w.user, room);
    return this.produce(w, room, { type: 'RoomSettingsChanged', slowModeSec: b.slowModeSec ?? null, emoteOnly: b.emoteOnly ?? null, extra: {} });
  }

  // ---------------------------------------------------------------- the review queue

  /**
   * A moderator releases a held comment: CommentReleased, carrying the
   * comment as the queue holds it (or, for a hold that came too late to find
   * its text, as the archive does), so the feeds put it back from the event alone.
   */
  async releaseHeld(w: Writer, room: string, eventId: string): Promise<Accepted> {
    const held = await this.heldFor(w, room, eventId);
    let { text, userId } = held;
    if (text === null) {
      if (!this.deps.archive) throw new AppError('ERR_ARCHIVE_UNAVAILABLE', 'the held comment’s text is older than the queue remembers (HELD_LOOKBACK_RECORDS) and no archive is configured here');
      const c = await this.deps.archive.findComment(room, eventId);
      if (!c) throw notFound();
      text = c.text;
      userId ||= c.userId;
    }
    const authorRole: Role = (RoleValues as readonly string[]).includes(held.role) ? (held.role as Role) : 'viewer';
    return this.produce(w, room, {
      type: 'CommentReleased',
      targetEventId: eventId,
      releasedBy: w.user.id,
      authorId: userId,
      authorRole,
      text,
      mode: held.mode,
      color: held.color,
      size: held.size,
      replyTo: held.replyTo,
      postedAt: held.occurredAt,
      postedVideoOffsetMs: held.videoOffsetMs,
    });
  }

  /** A moderator deletes a held comment: the ordinary CommentDeleted, reason `moderation:review`. */
  async deleteHeld(w: Writer, room: string, eventId: string): Promise<Accepted> {
    await this.heldFor(w, room, eventId);
    return this.produce(w, room, { type: 'CommentDeleted', targetEventId: eventId, deletedBy: w.user.id, reason: 'moderation:review' });
  }

  /** The queue's entry of `eventId`, for a moderator of the room (404 ERR_HELD_NOT_FOUND when it is not in the queue). */
  private async heldFor(w: Writer, room: string, eventId: string): Promise<HeldEntry> {
    await this.blocked(w);
    requireModerator(w.user, room);
    const held = await readHeldEntry(this.deps.redis, this.deps.naming, room, eventId, this.versions.get('held'));
    if (!held) throw new AppError('ERR_HELD_NOT_FOUND', 'no such comment in this room’s review queue (never held, or released or deleted already)');
    return held;
  }

  /**
   * The comment (author, text): from the ordered feed while Redis holds it,
   * else from the archive; undefined when neither has it — then the room has
   * no such comment (or, without an archive, none recent enough to find), and
   * a pin or a deletion naming it would only put a dangling reference in the log.
   */
  private async findComment(room: string, eventId: string): Promise<Pick<FeedEntry, 'userId' | 'text'> | undefined> {
    const { redis, naming } = this.deps;
    const keys = roomKeys(this.prefix, 'feed', await activeVersion(redis, naming, 'feed'), room);
    const offset = await redis.hget(keys.key('idx'), eventId);
    if (offset !== null) {
      const [member] = await redis.zrangebyscore(keys.key('z'), offset, offset);
      const item = member ? (JSON.parse(member) as FeedEntry) : undefined;
      if (item?.kind === 'comment') return item;
    }
    return this.deps.archive?.findComment(room, eventId);
  }

  // ---------------------------------------------------------------- producing

  /** Produces one event of `w.user` (its role in this room); resolves its position once Kafka acknowledged it. */
  private async produce(w: Writer, room: string, payload: RoomEventPayload): Promise<Accepted> {
    const event = makeEvent({ roomId: room, actor: { userId: w.user.id, role: roleIn(w.user, room) }, payload });
    const epoch = roomEpoch(this.deps.redis, this.deps.naming, room);
    epoch.catch(noop);
    const ack = await this.send(event, w.traceId);
    return { eventId: event.eventId, position: { offset: ack.position, epoch: await epoch } };
  }

  /** Through the writer: to the log's current generation; the ack's position is what the client is told. */
  private send(event: RoomEvent, traceId: string, onLateAck?: (ack: LogWriteAck) => void): Promise<LogWriteAck> {
    const { writer, codec } = this.deps;
    return writer.send({ key: event.roomId, value: codec.encode(event), headers: { 'event-type': event.payload.type, 'schema-id': this.schemaId, 'trace-id': traceId }, ...(onLateAck ? { onLateAck } : {}) });
  }

  // ---------------------------------------------------------------- bans, claims

  private async blocked(w: Writer): Promise<void> {
    if (!w.block) return;
    const e = await w.block;
    if (e) throw e;
  }

  /**
   * Claims a clientMsgId before producing, so two concurrent retries cannot
   * both produce. Resolves the first result when it was claimed and answered
   * before; throws ERR_IN_PROGRESS while that write is still in flight.
   */
  private async claim(key: string): Promise<Accepted | undefined> {
    const { redis } = this.deps;
    if ((await redis.set(key, 'pending', 'EX', CLAIM_TTL_SEC, 'NX')) === 'OK') return undefined;
    const v = await redis.get(key);
    if (v && v !== 'pending') return JSON.parse(v) as Accepted;
    throw inProgress();
  }

  /**
   * Stores the result of a claimed write after its ack. Not awaited: the
   * answer does not wait for it, and a retry through this gateway is queued
   * behind it on the same connection; one through another gateway in the
   * instant between may get ERR_IN_PROGRESS (retriable) instead of the result.
   */
  private remember(key: string, result: Accepted): void {
    this.deps.redis.set(key, JSON.stringify(result), 'EX', this.deps.cfg.limits.idempotencyTtlSec).catch((err: unknown) => {
      this.log?.warn({ err, key }, 'write: storing the result of a clientMsgId failed (its claim expires in 60 s)');
    });
  }

  /** A failed write releases its claim, so a retry can make it. */
  private async release(key: string): Promise<void> {
    await this.deps.redis.del(key).catch((err: unknown) => this.log?.warn({ err, key }, 'write: releasing a clientMsgId claim failed (it expires in 60 s)'));
  }

  private releaseIfClaimed(gate: Promise<GateResult>, cmid: string | undefined, key: string): void {
    if (cmid === undefined) return;
    gate.then((r) => (r.kind === 'ok' ? this.release(key) : undefined), noop);
  }
}

const notFound = () => new AppError('ERR_COMMENT_NOT_FOUND', 'no such comment in this room');
const inProgress = () => new AppError('ERR_IN_PROGRESS', 'a write with this clientMsgId is in progress; retry shortly', { details: { retryAfterSec: 1 } });

/** The answer to a gate that did not let the comment through: the first result again, or the error HTTP has always given. */
function refusal(r: Exclude<GateResult, { kind: 'ok' }>, kind: 'comments' | 'gifts'): Accepted {
  switch (r.kind) {
    case 'dup':
      return { ...(JSON.parse(r.first) as Accepted), duplicate: true };
    case 'busy':
      throw inProgress();
    case 'muted':
      throw new AppError('ERR_MUTED', `you are muted in this room${r.untilMs ? ` until ${new Date(r.untilMs).toISOString()}` : ''}: ${r.reason}`, { details: { untilMs: r.untilMs, reason: r.reason } });
    case 'emote':
      throw new AppError('ERR_EMOTE_ONLY', 'this room is in emote-only mode');
    case 'slow':
      throw new AppError('ERR_SLOW_MODE', `slow mode: one comment every ${r.slowModeSec} s`, { details: { retryAfterSec: Math.ceil(r.waitMs / 1000) } });
    case 'rate': {
      const retryAfterSec = Math.ceil(r.waitMs / 1000);
      throw new AppError('ERR_RATE_LIMITED', `too many ${kind}; retry in ${retryAfterSec} s`, { details: { retryAfterSec } });
    }
  }
}

export type { ReactionAck };
