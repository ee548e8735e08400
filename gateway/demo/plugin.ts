/**
 * The demo page: `GET /` serves index.html, `GET /demo.js` the browser app
 * (demo/app.ts and the client, bundled by esbuild once, on first request,
 * and kept in memory), and `GET /v1/dev/token` hands out bearer tokens so the
 * page's composer can post without a login.
 *
 * The dev token route is a development convenience, not authentication: it
 * signs whatever user name it is given. It never signs `admin`, and only
 * the roles a demo needs (viewer, moderator, broadcaster). A deployment with
 * real users verifies tokens from its identity provider (JWT_PUBLIC_KEY_FILE)
 * and these tokens, signed with the HS256 secret, are then not accepted.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type, type Static } from '@sinclair/typebox';
import { build } from 'esbuild';
import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { AppError, errorCodeSchema, type ErrorCode } from '../../core/errors.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEV_ROLES = ['viewer', 'moderator', 'broadcaster'] as const;

const TokenQuery = Type.Object({
  user: Type.String({ minLength: 1, maxLength: 64, description: 'User id to sign (any name; this is a development convenience).' }),
  role: Type.Optional(Type.String({ default: 'viewer', description: 'viewer (default), moderator or broadcaster. admin is refused.' })),
});
const TokenReply = Type.Object({
  token: Type.String({ description: 'HS256 bearer JWT: send as `Authorization: Bearer <token>` or `?token=` on the WebSocket.' }),
  user: Type.String(),
  role: Type.String(),
  expiresInSec: Type.Integer(),
});
const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String() });

/** Bundles the browser app; one build per process, shared by every request. */
async function bundle(): Promise<string> {
  const out = await build({
    entryPoints: [path.join(HERE, 'app.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    write: false,
    minify: true,
    sourcemap: 'inline',
    sourcesContent: false,
    logLevel: 'silent',
  });
  const file = out.outputFiles[0];
  if (!file) throw new Error('esbuild produced no output');
  return file.text;
}

export async function demoPlugin(app: FastifyInstance): Promise<void> {
  const { auth } = app.deps.cfg;
  let js: Promise<string> | undefined;
  let html: Promise<string> | undefined;

  app.get('/', { schema: { hide: true } }, async (_req, reply) => {
    html ??= fs.readFile(path.join(HERE, 'index.html'), 'utf8');
    try {
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(await html);
    } catch (err) {
      html = undefined;
      throw err;
    }
  });

  app.get('/demo.js', { schema: { hide: true } }, async (req, reply) => {
    js ??= bundle();
    let text: string;
    try {
      text = await js;
    } catch (err) {
      js = undefined; // a failed build is retried on the next request
      req.log.error({ err }, 'demo bundle failed');
      throw new AppError('ERR_DEMO_BUILD', `the demo app did not build: ${(err as Error).message}`, { cause: err });
    }
    return reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(text);
  });

  const sign = createSigner({ key: auth.jwtSecret, algorithm: 'HS256', expiresIn: auth.devTokenTtlSec * 1000 });

  app.get<{ Querystring: Static<typeof TokenQuery> }>(
    '/v1/dev/token',
    {
      schema: {
        tags: ['dev'],
        summary: 'A development bearer token for any user name',
        description:
          'Development convenience for the demo page: signs `{sub: user, role}` with the HS256 secret for AUTH_DEV_TOKEN_TTL_SEC. Roles: viewer, moderator, broadcaster; `admin` is never signed (403).',
        querystring: TokenQuery,
        response: { 200: TokenReply, 400: ErrorBody, 403: ErrorBody },
      },
    },
    async (req) => {
      const user = req.query.user.trim();
      const role = req.query.role ?? 'viewer';
      // Config-free guard: whatever else changes, this route never mints an admin.
      if (role === 'admin') throw new AppError('ERR_FORBIDDEN', 'the dev token route does not sign admin tokens');
      if (!(DEV_ROLES as readonly string[]).includes(role)) {
        throw new AppError('ERR_VALIDATION', `role must be one of ${DEV_ROLES.join(', ')}`);
      }
      if (!user) throw new AppError('ERR_VALIDATION', 'user must not be blank');
      return { token: sign({ sub: user, role }), user, role, expiresInSec: auth.devTokenTtlSec };
    },
  );
}
