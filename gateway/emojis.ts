/**
 * The deployment's reactions (GATEWAY_EMOJIS) for clients to draw their
 * buttons from: `GET /v1/emojis`. A reaction may be sent by name or as the
 * emoji itself (gateway/ingest.ts resolves it); events, tallies, replay and
 * analytics carry the name.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';

const EmojisSchema = Type.Object({
  emojis: Type.Array(
    Type.Object({
      name: Type.String({ description: 'What reaction events and tallies carry; a client may send it.' }),
      char: Type.Union([Type.String(), Type.Null()], { description: 'The emoji itself (a client may send it instead of the name); null when the deployment gave none.' }),
    }),
  ),
});

/** Encapsulated: a route and nothing shared. */
export async function emojisPlugin(app: FastifyInstance): Promise<void> {
  const body = { emojis: app.deps.cfg.gateway.emojis.map((e) => ({ name: e.name, char: e.char })) };
  app.get('/v1/emojis', { schema: { tags: ['read'], summary: 'The reactions this deployment takes (name and emoji; either may be sent)', response: { 200: EmojisSchema } } }, async (_req, reply) => {
    // Settings change only with a restart: let browsers and proxies keep it a while.
    void reply.header('cache-control', 'public, max-age=300');
    return body;
  });
}
