/**
 * The review queue over HTTP: comments moderation held for a moderator
 * (the `held` projection, pipelines/projections/held.ts).
 *
 * - GET  /v1/rooms/:room/moderation/held                     moderators of the room (and admins): the queue, oldest hold first, paged
 * - GET  /v1/rooms/:room/moderation/held?mine=true           anyone with a token: their own held comments (pending), nobody else's
 * - POST /v1/rooms/:room/moderation/held/:eventId/release    → CommentReleased: the comment reaches every viewer
 * - POST /v1/rooms/:room/moderation/held/:eventId/delete     → CommentDeleted, reason `moderation:review`
 *
 * Decisions are events written through the same write path as the other
 * moderator actions (ingest.ts): 202 once Kafka acknowledged them. An id not
 * in the queue is 404 ERR_HELD_NOT_FOUND; a decision leaves the queue once
 * the processors applied it, so a second one racing it may still be accepted
 * — the projections take a comment released or deleted twice as once.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { readHeld } from '../pipelines/read.ts';
import { requireModerator, requireUser, requireWriter } from './auth.ts';
import { AcceptedSchema, ErrorBody, EventIdParams, RoomParams } from './ingest.ts';
import { ReadLimits } from './read-limits.ts';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody, 503: ErrorBody };

export const HELD_PAGE_MAX = 200;

const HeldQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HELD_PAGE_MAX, default: 50, description: `Entries per page (1–${HELD_PAGE_MAX}).` })),
  cursor: Type.Optional(Type.String({ pattern: '^\\d{1,16}$', description: '`nextCursor` of the previous page.' })),
  mine: Type.Optional(Type.Boolean({ default: false, description: 'Only the caller’s own held comments (pending): any user may ask; the whole queue needs a moderator, broadcaster or admin of the room.' })),
});

const HeldEntrySchema = Type.Object(
  {
    kind: Type.Literal('held'),
    eventId: Type.String({ description: 'The held comment.' }),
    userId: Type.String({ description: 'Its author.' }),
    role: Type.String(),
    text: Type.Union([Type.String(), Type.Null()], { description: 'Null when the hold came too long after the comment for the queue to know it (HELD_LOOKBACK_RECORDS); a release then takes it from the archive.' }),
    mode: Type.String(),
    color: Type.Integer(),
    size: Type.String(),
    replyTo: Type.Union([Type.String(), Type.Null()]),
    videoOffsetMs: Type.Union([Type.Integer(), Type.Null()]),
    offset: Type.Union([Type.Integer(), Type.Null()], { description: 'The comment’s position.' }),
    occurredAt: Type.Integer({ description: 'The comment’s event time (ms).' }),
    holdId: Type.String({ description: 'The ModerationDecided event that held it.' }),
    heldAt: Type.Integer({ description: 'The hold’s position: the queue’s order.' }),
    rule: Type.String({ description: 'The rule that held it (e.g. `link`, `reputation`, `model:…`).' }),
    labels: Type.Array(Type.String()),
    score: Type.Number(),
  },
  { additionalProperties: true },
);

const HeldPageSchema = Type.Object({
  items: Type.Array(HeldEntrySchema, { description: 'Oldest hold first.' }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null at the end.' }),
  total: Type.Integer({ description: 'Held comments in the queue (with `mine`: the caller’s).' }),
});

export async function moderationPlugin(app: FastifyInstance): Promise<void> {
  const { deps, ingest } = app;
  const limits = new ReadLimits(deps.cfg);

  app.get<{ Params: Static<typeof RoomParams>; Querystring: Static<typeof HeldQuery> }>(
    '/v1/rooms/:room/moderation/held',
    {
      schema: {
        tags: ['moderation'],
        summary: 'The review queue: comments held for a moderator (moderators of the room), or with mine=true the caller’s own pending ones',
        security: [{ bearer: [] }],
        params: RoomParams,
        querystring: HeldQuery,
        response: { 200: HeldPageSchema, ...errors },
      },
    },
    async (req) => {
      const user = await requireUser(req);
      await limits.take(req, user);
      const { room } = req.params;
      const mine = req.query.mine === true;
      if (!mine) requireModerator(user, room);
      const page = await readHeld(deps.redis, deps.naming, room, {
        after: req.query.cursor === undefined ? undefined : Number(req.query.cursor),
        limit: req.query.limit ?? 50,
        userId: mine ? user.id : undefined,
        version: ingest.versions.get('held'),
      });
      return { items: page.items, nextCursor: page.next === null ? null : String(page.next), total: page.total };
    },
  );

  const decision = (verb: 'release' | 'delete', summary: string) =>
    app.post<{ Params: Static<typeof EventIdParams> }>(
      `/v1/rooms/:room/moderation/held/:eventId/${verb}`,
      { schema: { tags: ['moderation'], summary, security: [{ bearer: [] }], params: EventIdParams, response: { 202: AcceptedSchema, ...errors } } },
      async (req, reply) => {
        // The ban check runs beside the queue's read, as for other writes.
        const { user, block } = await requireWriter(req);
        const w = { user, block, traceId: String(req.id) };
        const { room, eventId } = req.params;
        return reply.status(202).send(verb === 'release' ? await ingest.releaseHeld(w, room, eventId) : await ingest.deleteHeld(w, room, eventId));
      },
    );
  decision('release', 'Release a held comment (moderator, broadcaster or admin of the room): CommentReleased; it reaches every viewer');
  decision('delete', 'Delete a held comment (moderator, broadcaster or admin of the room): CommentDeleted, reason moderation:review');
}
