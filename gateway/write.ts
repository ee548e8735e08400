/**
 * The write API over HTTP: routes, their schemas and status codes. What a
 * write must pass and how it becomes an event is ingest.ts, shared with the
 * WebSocket write frames. 202 means Kafka acknowledged it with acks=all;
 * when Kafka is unreachable the answer is 503 with Retry-After, so nothing
 * is acknowledged that is not durable. A retry with the same clientMsgId
 * returns the first result and never creates a second event.
 */
import type { Static } from '@sinclair/typebox';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requireUser, requireWriter } from './auth.ts';
import { extraRegistries } from './ops.ts';
import { reactionRegistry } from './reactions.ts';
import { AcceptedSchema, CommentBody, ErrorBody, EventIdParams, GiftBody, Ingest, PinBody, ReactionBody, RoomParams, SettingsBody, type Writer } from './ingest.ts';

export { ROOM_PATTERN, RoomParams } from './ingest.ts';

const errors = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
};

type Room = Static<typeof RoomParams>;

declare module 'fastify' {
  interface FastifyInstance {
    ingest: Ingest;
  }
}

// fp: `app.ingest` is used by the write routes and by the push plugin's socket writes.
export const ingestPlugin = fp(async (app: FastifyInstance) => {
  const ingest = new Ingest(app.deps, app.log);
  await ingest.start();
  if (!extraRegistries.includes(reactionRegistry)) extraRegistries.push(reactionRegistry); // served on /metrics
  app.decorate('ingest', ingest);
  // Normally drained by GatewayService.stop before the sockets close; this covers apps closed directly (tests).
  app.addHook('onClose', async () => ingest.drain());
});

/** A writer whose ban check was done (it precedes everything else these routes check). */
async function checkedWriter(req: FastifyRequest): Promise<Writer> {
  return { user: await requireUser(req), block: null, traceId: String(req.id) };
}

export async function writePlugin(app: FastifyInstance): Promise<void> {
  const { ingest } = app;

  app.post<{ Params: Room; Body: Static<typeof CommentBody> }>(
    '/v1/rooms/:room/comments',
    { schema: { tags: ['write'], summary: 'Post a comment', security: [{ bearer: [] }], params: RoomParams, body: CommentBody, response: { 202: AcceptedSchema, ...errors } } },
    async (req, reply) => {
      // The ban check runs beside the comment gate (one round trip of latency, two slots).
      const { user, block } = await requireWriter(req);
      return reply.status(202).send(await ingest.comment({ user, block, traceId: String(req.id) }, req.params.room, req.body));
    },
  );

  app.post<{ Params: Room; Body: Static<typeof ReactionBody> }>(
    '/v1/rooms/:room/reactions',
    {
      schema: {
        tags: ['write'],
        summary: 'Add a reaction (count > 1 for a pre-aggregated burst); 202 once the aggregated event holding it is durable (up to REACTIONS_FLUSH_MS)',
        security: [{ bearer: [] }],
        params: RoomParams,
        body: ReactionBody,
        response: { 202: AcceptedSchema, ...errors },
      },
    },
    async (req, reply) => reply.status(202).send(await ingest.reaction(await checkedWriter(req), req.params.room, req.body)),
  );

  app.post<{ Params: Room; Body: Static<typeof GiftBody> }>(
    '/v1/rooms/:room/gifts',
    {
      schema: {
        tags: ['write'],
        summary: 'Send a gift from the catalogue (GIFTS): a GiftSent event carrying its name and value; 202 once durable. The room’s leaderboard (top senders by total value) counts it.',
        security: [{ bearer: [] }],
        params: RoomParams,
        body: GiftBody,
        response: { 202: AcceptedSchema, ...errors },
      },
    },
    async (req, reply) => {
      // The ban check runs beside the gift's gate, as a comment's does.
      const { user, block } = await requireWriter(req);
      return reply.status(202).send(await ingest.gift({ user, block, traceId: String(req.id) }, req.params.room, req.body));
    },
  );

  app.delete<{ Params: Static<typeof EventIdParams> }>(
    '/v1/rooms/:room/comments/:eventId',
    { schema: { tags: ['write'], summary: 'Delete a comment (its author, or moderator and above)', security: [{ bearer: [] }], params: EventIdParams, response: { 202: AcceptedSchema, ...errors } } },
    async (req, reply) => reply.status(202).send(await ingest.deleteComment(await checkedWriter(req), req.params.room, req.params.eventId)),
  );

  app.post<{ Params: Room; Body: Static<typeof PinBody> }>(
    '/v1/rooms/:room/pin',
    { schema: { tags: ['write'], summary: 'Pin a comment (broadcaster or moderator)', security: [{ bearer: [] }], params: RoomParams, body: PinBody, response: { 202: AcceptedSchema, ...errors } } },
    async (req, reply) => reply.status(202).send(await ingest.pin(await checkedWriter(req), req.params.room, req.body)),
  );

  app.delete<{ Params: Room }>(
    '/v1/rooms/:room/pin',
    { schema: { tags: ['write'], summary: 'Unpin the pinned comment (broadcaster or moderator)', security: [{ bearer: [] }], params: RoomParams, response: { 202: AcceptedSchema, ...errors } } },
    async (req, reply) => reply.status(202).send(await ingest.unpin(await checkedWriter(req), req.params.room)),
  );

  app.patch<{ Params: Room; Body: Static<typeof SettingsBody> }>(
    '/v1/rooms/:room/settings',
    { schema: { tags: ['write'], summary: 'Change room settings (moderator and above)', security: [{ bearer: [] }], params: RoomParams, body: SettingsBody, response: { 202: AcceptedSchema, ...errors } } },
    async (req, reply) => reply.status(202).send(await ingest.settings(await checkedWriter(req), req.params.room, req.body)),
  );
}
