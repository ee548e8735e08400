/**
 * `buildGateway(deps)` returns the fastify app; `service.ts` only listens. The
 * shared clients arrive as the `deps` decoration. Write, read (polling),
 * the review queue (moderation), replay and analytics, and the demo page are
 * encapsulated plugins: their routes, hooks and state stay inside them. Five are wrapped in
 * fastify-plugin because siblings need what they add: auth (the JWT
 * decorators every route's `userOf` uses), ops (the metrics hook on every
 * route), ingest (`app.ingest`, the write path the write routes and the
 * socket's write frames share), presence (`app.presence`, read by read and
 * push) and push (`app.pushHub`). Errors of every plugin reach the one handler below and
 * leave as `{code, message}` with the catalogue's code and status.
 */
import fastifyCompress from '@fastify/compress';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import { Ajv } from 'ajv';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { AppError, type ErrorCode } from '../core/errors.ts';
import { adminPlugin } from './admin.ts';
import { authPlugin, redactUrl } from './auth.ts';
import { connectionsPlugin } from './connections.ts';
import type { GatewayDeps } from './deps.ts';
import { demoPlugin } from './demo/plugin.ts';
import { emojisPlugin } from './emojis.ts';
import { feedWindowPlugin } from './feed-window.ts';
import { asAppError, onClientError, onFrameworkError, strictInput } from './input.ts';
import { moderationPlugin } from './moderation.ts';
import { opsPlugin } from './ops.ts';
import { presencePlugin } from './presence.ts';
import { pushPlugin } from './push/plugin.ts';
import { chooseSubprotocol } from './push/wire.ts';
import { readPlugin } from './read.ts';
import { replayPlugin } from './replay.ts';
import { routingPlugin } from './routing.ts';
import { ingestPlugin, writePlugin } from './write.ts';

declare module 'fastify' {
  interface FastifyInstance {
    deps: GatewayDeps;
  }
}

/** Maps fastify's own error codes to the product's stable ones. */
function toAppError(err: FastifyError): AppError {
  if (err instanceof AppError) return err;
  if (err.validation) {
    return new AppError('ERR_VALIDATION', err.message, { details: { issues: err.validation.map((v) => ({ path: v.instancePath, message: v.message })) } });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('ERR_BAD_JSON', 'the body is not valid JSON');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('ERR_BODY_TOO_LARGE', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', err.message);
  }
  // Any other refusal by fastify or a plugin (FST_ERR_CTP_INVALID_CONTENT_LENGTH,
  // @fastify/compress's undecodable bodies, …) gets the catalogue code for its status.
  if (err.statusCode && err.statusCode < 500) return new AppError(CLIENT_ERROR_CODES[err.statusCode] ?? 'ERR_BAD_REQUEST', err.message, { cause: err });
  return asAppError(err);
}

const CLIENT_ERROR_CODES: Partial<Record<number, ErrorCode>> = {
  401: 'ERR_AUTH_INVALID',
  403: 'ERR_FORBIDDEN',
  404: 'ERR_NOT_FOUND',
  413: 'ERR_BODY_TOO_LARGE',
  415: 'ERR_UNSUPPORTED_MEDIA_TYPE',
};

/** GATEWAY_TRUSTED_PROXIES as fastify's trustProxy: a list of addresses/CIDRs, or false (trust nobody). */
export function trustedProxies(list: string): string[] | false {
  const items = list
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  return items.length > 0 ? items : false;
}

export async function buildGateway(deps: GatewayDeps, opts: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const { cfg } = deps;
  const app = Fastify({
    // Requests are logged at info; at the default level only warnings and errors
    // show, since one line per request would drown everything at demo rates
    // (metrics count requests).
    // A `?token=` (WebSocket upgrades) never reaches a log line.
    logger: opts.logger
      ? {
          level: cfg.logLevel === 'info' ? 'warn' : cfg.logLevel,
          serializers: {
            req: (req: { method: string; url: string; id: string; ip?: string }) => ({ id: req.id, method: req.method, url: redactUrl(req.url), remoteAddress: req.ip }),
          },
        }
      : false,
    bodyLimit: cfg.gateway.bodyLimitBytes,
    // Room ids and event ids are validated by route schemas; keep paths exact.
    routerOptions: { ignoreTrailingSlash: true },
    // X-Forwarded-For decides `req.ip` (presence, per-client limits) only from configured proxies.
    trustProxy: trustedProxies(cfg.gateway.trustedProxies),
    // Refusals before routing (a path that does not decode) leave with a catalogue code too.
    frameworkErrors: onFrameworkError,
    // Malformed HTTP (oversized headers, bad framing): a status line and headers, never a body.
    clientErrorHandler: onClientError,
  });
  app.decorate('deps', deps);

  // Bodies are validated strictly: a wrong type is a 400, never silently
  // coerced ("text": 123) and unknown fields are refused. Query strings and
  // path parameters are text by nature and are coerced to their types.
  const strict = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false });
  const lenient = new Ajv({ coerceTypes: 'array', removeAdditional: false, useDefaults: true, allErrors: false, strict: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : lenient).compile(schema));
  // Bodies decoded as strict UTF-8, lone surrogates refused, query integers in digits (input.ts).
  strictInput(app);

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toAppError(err);
    if (e.status >= 500) req.log.error({ err }, 'request failed');
    if (e.retriable) void reply.header('Retry-After', String(e.details?.retryAfterSec ?? 1));
    if (e.status === 429 && e.details?.retryAfterSec !== undefined) void reply.header('Retry-After', String(e.details.retryAfterSec));
    void reply.status(e.status).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new AppError('ERR_NOT_FOUND', `no route ${req.method} ${req.url}`);
    void reply.status(e.status).send(e.toJSON());
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'danmaku-live gateway', version: '1.0.0', description: 'Live comments for live streams: writes become Avro events in Kafka; reads and pushes come from Redis projections. Errors carry a stable `code`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  // gzip for polling responses (weak networks); WebSocket frames are not affected.
  await app.register(fastifyCompress, { global: true, threshold: 512, encodings: ['gzip', 'deflate'] });
  // The wire format is a subprotocol per socket (push/wire.ts): MessagePack when offered, else JSON.
  await app.register(fastifyWebsocket, { options: { perMessageDeflate: cfg.push.deflate, maxPayload: 64 * 1024, handleProtocols: (offered: Set<string>) => chooseSubprotocol(offered) } });
  await app.register(authPlugin);
  await app.register(opsPlugin);
  // The write path (ingest.ts), shared by the HTTP write routes and the socket's write frames.
  await app.register(ingestPlugin);
  await app.register(writePlugin);
  // The review queue: held comments, released or deleted through the same write path.
  await app.register(moderationPlugin);
  await app.register(readPlugin);
  await app.register(feedWindowPlugin);
  await app.register(emojisPlugin);
  await app.register(presencePlugin);
  await app.register(pushPlugin);
  // After push: the connection registry follows the hub's sockets and closes them on command.
  await app.register(connectionsPlugin);
  await app.register(adminPlugin);
  await app.register(replayPlugin);
  // GET /v1/connect: transport, gateways and poll interval from the operator's routing rules.
  await app.register(routingPlugin);
  await app.register(demoPlugin);
  return app;
}
