/**
 * The demo page: `GET /` serves index.html, `GET /demo.js` the browser app
 * (demo/app.ts and the client, bundled by esbuild once, on first request,
 * and kept in memory), and — in DEV_MODE only — `GET /v1/dev/token` hands
 * out viewer tokens so the page's composer can post without a login.
 *
 * The dev token route is a development convenience, not authentication: it
 * signs whatever user name it is given, so it is registered only when
 * DEV_MODE is on (`npm start`'s demo; nothing else sets it) and it signs
 * viewer tokens only: moderator, broadcaster and admin tokens come from the
 * operator's `npm run token`. Without DEV_MODE the page still shows the room;
 * its composer needs a token from elsewhere.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type, type Static } from '@sinclair/typebox';
import { build } from 'esbuild';
import type { FastifyInstance } from 'fastify';
import { AppError, errorCodeSchema, type ErrorCode } from '../../core/errors.ts';
import { jwtSecretOf, tokenSigner } from '../auth.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const TokenQuery = Type.Object({
  user: Type.String({ minLength: 1, maxLength: 64, description: 'User id to sign (any name; this is a development convenience).' }),
  role: Type.Optional(Type.String({ default: 'viewer', description: 'viewer (the default and the only role signed here); any other role is refused with 403.' })),
});
const TokenReply = Type.Object({
  token: Type.String({ description: 'HS256 bearer JWT: send as `Authorization: Bearer <token>` or `?token=` on the WebSocket.' }),
  user: Type.String(),
  role: Type.String(),
  expiresInSec: Type.Integer(),
});
const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String() });

/** Bundles a browser app of this folder (app.ts: the demo, analytics.ts: the analytics page); one build per process, shared by every request. */
async function bundle(entry = 'app.ts'): Promise<string> {
  const out = await build({
    entryPoints: [path.join(HERE, entry)],
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

  const pages = new Map<string, Promise<string>>();
  const cached = (key: string, load: () => Promise<string>) => {
    let p = pages.get(key);
    if (!p) {
      p = load();
      pages.set(key, p);
      p.catch(() => pages.delete(key)); // retried on the next request
    }
    return p;
  };
  // The analytics page (analytics.ts) and the replay page (replay.ts): pages over the archive's APIs.
  for (const name of ['analytics', 'replay']) {
    app.get(`/${name}`, { schema: { hide: true } }, async (_req, reply) =>
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(await cached(`${name}.html`, () => fs.readFile(path.join(HERE, `${name}.html`), 'utf8'))),
    );
    app.get(`/${name}.js`, { schema: { hide: true } }, async (req, reply) => {
      let text: string;
      try {
        text = await cached(`${name}.js`, () => bundle(`${name}.ts`));
      } catch (err) {
        req.log.error({ err }, `${name} bundle failed`);
        throw new AppError('ERR_DEMO_BUILD', `the ${name} page did not build: ${(err as Error).message}`, { cause: err });
      }
      return reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(text);
    });
  }

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

  if (!auth.devMode) return;
  const secret = jwtSecretOf(app.deps.cfg);
  if (!secret) return; // public-key deployments: tokens come from the identity provider
  const sign = tokenSigner(secret, auth.devTokenTtlSec);

  app.get<{ Querystring: Static<typeof TokenQuery> }>(
    '/v1/dev/token',
    {
      schema: {
        tags: ['dev'],
        summary: 'A development viewer token for any user name (DEV_MODE only)',
        description:
          'Development convenience for the demo page, registered only with DEV_MODE: signs `{sub: user}` (a viewer) with the HS256 secret for AUTH_DEV_TOKEN_TTL_SEC. Any other role is refused (403): moderator, broadcaster and admin tokens come from `npm run token`.',
        querystring: TokenQuery,
        response: { 200: TokenReply, 400: ErrorBody, 403: ErrorBody },
      },
    },
    async (req) => {
      const user = req.query.user.trim();
      const role = req.query.role ?? 'viewer';
      // Whatever else changes, this route never mints more than a viewer.
      if (role !== 'viewer') throw new AppError('ERR_FORBIDDEN', 'the dev token route signs viewer tokens only; moderator, broadcaster and admin tokens come from `npm run token`');
      if (!/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$/.test(user)) throw new AppError('ERR_VALIDATION', 'user must be a user id: letters, digits, _ . : @ -; at most 64');
      return { token: sign({ sub: user }), user, role, expiresInSec: auth.devTokenTtlSec };
    },
  );
}
