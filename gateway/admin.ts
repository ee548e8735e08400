/**
 * The admin API (platform `admin` role only): a user's live connections
 * across every gateway, disconnecting them, bans and token revocations.
 *
 * Bans and revocations are written to Redis first (gateway/blocks.ts: from
 * then on every gateway refuses the tokens), then every live gateway is told
 * on its control channel to close the user's sockets — every one, not only
 * those the registry lists, so a socket opened in the registry's debounce
 * window is closed too. DELETE …/connections asks only the gateways the
 * registry lists (gateway/connections.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errorCodeSchema, type ErrorCode } from '../core/errors.ts';
import { requireAdmin, requireUser } from './auth.ts';
import { banUser, revokeTokens, unbanUser } from './blocks.ts';
import { closeReason, readConnections, readLiveGateways, tellGateways } from './connections.ts';
import { CLOSE } from './protocol.ts';
import { ROOM_PATTERN } from './write.ts';

const UserParams = Type.Object({
  user: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$', description: 'User id (the tokens\' `sub`).' }),
});
type UserParams = Static<typeof UserParams>;

const Connection = Type.Object({
  gateway: Type.String({ description: 'Gateway id (GATEWAY_ID).' }),
  rooms: Type.Record(Type.String(), Type.Integer(), { description: 'Room → the user\'s sockets in it on this gateway.' }),
  sockets: Type.Integer(),
  updatedAtMs: Type.Integer({ description: 'When the gateway last wrote this entry (a change, or its periodic refresh).' }),
  gatewaySeenAtMs: Type.Integer({ description: 'When the gateway last said it is alive.' }),
});
const Connections = Type.Object({ userId: Type.String(), connections: Type.Array(Connection) });
const DisconnectQuery = Type.Object({ room: Type.Optional(Type.String({ pattern: ROOM_PATTERN, description: 'Only the sockets in this room.' })) });
const Told = Type.Object({ userId: Type.String(), gatewaysTold: Type.Integer({ description: 'Gateways whose control channel got the command.' }) });
const BanBody = Type.Object(
  {
    durationSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 365 * 24 * 3600, description: 'Length of the ban; absent: until lifted (DELETE …/ban).' })),
    reason: Type.String({ minLength: 1, maxLength: 500 }),
  },
  { additionalProperties: false },
);
const Banned = Type.Object({
  userId: Type.String(),
  untilMs: Type.Union([Type.Integer(), Type.Null()], { description: 'When the ban ends; null: until lifted.' }),
  reason: Type.String(),
  gatewaysTold: Type.Integer(),
});
const Lifted = Type.Object({ userId: Type.String(), lifted: Type.Boolean({ description: 'Whether there was a ban in force.' }) });
const Revoked = Type.Object({
  userId: Type.String(),
  revokedAtMs: Type.Integer({ description: 'Tokens with an earlier `iat` (or none) are refused; sign new ones after this instant (whole seconds: the next second).' }),
  gatewaysTold: Type.Integer(),
});
const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody };
const common = { tags: ['admin'], security: [{ bearer: [] }], params: UserParams };

export async function adminPlugin(app: FastifyInstance): Promise<void> {
  const { deps } = app;
  const { cfg, redis } = deps;
  const prefix = cfg.redis.keyPrefix;

  const admin = async (req: FastifyRequest) => {
    const u = await requireUser(req);
    requireAdmin(u);
    return u;
  };

  /** Closes the user's sockets on every live gateway; how many gateways were told. */
  async function closeEverywhere(userId: string, code: number, reason: string): Promise<number> {
    const gateways = await readLiveGateways(redis, cfg, deps.now());
    await tellGateways(redis, prefix, gateways, { cmd: 'disconnect', user: userId, code, reason: closeReason(reason) });
    return gateways.length;
  }

  app.get<{ Params: UserParams }>(
    '/v1/admin/users/:user/connections',
    { schema: { ...common, summary: 'A user\'s live WebSocket connections on every gateway (admin)', response: { 200: Connections, ...errors } } },
    async (req) => {
      await admin(req);
      const { user } = req.params;
      return { userId: user, connections: await readConnections(redis, cfg, user, deps.now()) };
    },
  );

  app.delete<{ Params: UserParams; Querystring: Static<typeof DisconnectQuery> }>(
    '/v1/admin/users/:user/connections',
    {
      schema: {
        ...common,
        summary: 'Disconnect a user\'s sockets on every gateway holding them (close code 4410; they may reconnect) (admin)',
        querystring: DisconnectQuery,
        response: { 202: Told, ...errors },
      },
    },
    async (req, reply) => {
      await admin(req);
      const { user } = req.params;
      const { room } = req.query;
      const gateways = [...new Set((await readConnections(redis, cfg, user, deps.now())).filter((c) => room === undefined || room in c.rooms).map((c) => c.gateway))];
      await tellGateways(redis, prefix, gateways, { cmd: 'disconnect', user, ...(room ? { room } : {}), code: CLOSE.disconnected, reason: 'disconnected by an operator' });
      return reply.status(202).send({ userId: user, gatewaysTold: gateways.length });
    },
  );

  app.post<{ Params: UserParams; Body: Static<typeof BanBody> }>(
    '/v1/admin/users/:user/ban',
    {
      schema: {
        ...common,
        summary: 'Ban a user: their tokens are refused (ERR_BANNED) until the ban ends, their sockets closed with 4403 (admin)',
        body: BanBody,
        response: { 200: Banned, ...errors },
      },
    },
    async (req) => {
      const by = await admin(req);
      const { user } = req.params;
      const atMs = deps.now();
      const untilMs = req.body.durationSec === undefined ? null : atMs + req.body.durationSec * 1000;
      await banUser(redis, prefix, user, { untilMs, reason: req.body.reason, by: by.id, atMs });
      const gatewaysTold = await closeEverywhere(user, CLOSE.forbidden, `banned: ${req.body.reason}`);
      req.log.warn({ user, by: by.id, untilMs, reason: req.body.reason }, 'admin: user banned');
      return { userId: user, untilMs, reason: req.body.reason, gatewaysTold };
    },
  );

  app.delete<{ Params: UserParams }>(
    '/v1/admin/users/:user/ban',
    { schema: { ...common, summary: 'Lift a user\'s ban (admin)', response: { 200: Lifted, ...errors } } },
    async (req) => {
      const by = await admin(req);
      const { user } = req.params;
      const lifted = await unbanUser(redis, prefix, user);
      req.log.warn({ user, by: by.id, lifted }, 'admin: ban lifted');
      return { userId: user, lifted };
    },
  );

  app.post<{ Params: UserParams }>(
    '/v1/admin/users/:user/revoke',
    {
      schema: {
        ...common,
        summary: 'Revoke every token of a user issued before now (ERR_TOKEN_REVOKED); their sockets are closed with 4401 (admin)',
        response: { 200: Revoked, ...errors },
      },
    },
    async (req) => {
      const by = await admin(req);
      const { user } = req.params;
      const revokedAtMs = await revokeTokens(redis, prefix, user, deps.now(), cfg.auth.maxTokenTtlSec);
      const gatewaysTold = await closeEverywhere(user, CLOSE.revoked, 'token revoked: sign in again');
      req.log.warn({ user, by: by.id, revokedAtMs }, 'admin: tokens revoked');
      return { userId: user, revokedAtMs, gatewaysTold };
    },
  );
}
