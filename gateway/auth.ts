/**
 * Bearer JWTs: `sub` = user id, `role` ∈ viewer | moderator | broadcaster |
 * admin, `exp`. Verified with the HS256 secret, or with a public key when one
 * is configured. Reads may be anonymous (config); writes never are.
 */
import fs from 'node:fs';
import fastifyJwt from '@fastify/jwt';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../core/errors.ts';

export const ROLES = ['viewer', 'moderator', 'broadcaster', 'admin'] as const;
export type UserRole = (typeof ROLES)[number];
const RANK: Record<UserRole, number> = { viewer: 0, moderator: 1, broadcaster: 1, admin: 2 };

export interface User {
  id: string;
  role: UserRole;
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub: string; role: UserRole };
    user: { sub: string; role: UserRole; exp: number };
  }
}

/** Moderator and above (broadcasters moderate their own rooms). */
export const isModerator = (u: User) => RANK[u.role] >= 1;

// fp: the JWT decorators it registers (request.jwtVerify, app.jwt) are used by every route plugin through userOf.
export const authPlugin = fp(async (app: FastifyInstance) => {
  const { auth } = app.deps.cfg;
  if (auth.jwtPublicKeyFile) {
    await app.register(fastifyJwt, { secret: { public: fs.readFileSync(auth.jwtPublicKeyFile, 'utf8'), private: '' }, verify: { algorithms: ['RS256', 'ES256'] } });
  } else {
    await app.register(fastifyJwt, { secret: auth.jwtSecret, verify: { algorithms: ['HS256'] } });
  }
});

/** The caller, or null when no token was sent. A bad or expired token is an error, never anonymity. */
export async function userOf(req: FastifyRequest): Promise<User | null> {
  const header = req.headers.authorization;
  const queryToken = (req.query as { token?: string } | undefined)?.token;
  if (!header && !queryToken) return null;
  try {
    // Browsers cannot set headers on a WebSocket: the token may come as ?token=.
    const claims = (header ? await req.jwtVerify() : req.server.jwt.verify(queryToken!)) as { sub?: string; role?: UserRole };
    if (!claims.sub || !claims.role || !(ROLES as readonly string[]).includes(claims.role)) throw new Error('claims sub and role are required');
    return { id: String(claims.sub), role: claims.role };
  } catch (err) {
    throw new AppError('ERR_AUTH_INVALID', `invalid bearer token: ${(err as Error).message}`, { cause: err });
  }
}

export async function requireUser(req: FastifyRequest): Promise<User> {
  const u = await userOf(req);
  if (!u) throw new AppError('ERR_AUTH_REQUIRED', 'this needs `Authorization: Bearer <JWT>`');
  return u;
}

export async function requireReader(req: FastifyRequest): Promise<User | null> {
  const u = await userOf(req);
  if (!u && !req.server.deps.cfg.auth.anonymousReads) throw new AppError('ERR_AUTH_REQUIRED', 'anonymous reads are disabled');
  return u;
}

export function requireModerator(u: User): void {
  if (!isModerator(u)) throw new AppError('ERR_FORBIDDEN', `role ${u.role} may not do this (moderator, broadcaster or admin)`);
}
