/**
 * Who is asking, and what their token grants — nothing more.
 *
 * Bearer JWTs carry `sub` (the user id, a string), `exp` (required; the
 * lifetime `exp - iat` is capped by AUTH_MAX_TOKEN_TTL_SEC), a platform
 * `role` (`viewer`, the default, or `admin`, which is global) and `rooms`: the
 * rooms where the user is `moderator` or `broadcaster` (`{"A": "broadcaster"}`).
 * Room roles are only ever looked up for the room a request is about, so a
 * broadcaster of room A is a viewer in room B.
 *
 * Verification is pinned to one family of algorithms: HS256 with JWT_SECRET,
 * or RS256/ES256 with JWT_PUBLIC_KEY_FILE or a JWKS file (key by `kid`). The
 * gateway fails closed: without DEV_MODE it refuses to start with no secret,
 * an empty or short one, or the documented development secret. Reads may be
 * anonymous (config); writes never are. Tokens come from the Authorization
 * header; `?token=` is read only where a browser cannot set headers (the
 * WebSocket upgrade), and the request log never shows it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createSigner, createVerifier, type Algorithm, type DecodedJwt } from 'fast-jwt';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../core/config.ts';
import { AppError, ConfigError } from '../core/errors.ts';
import { blockOf } from './blocks.ts';

/** The documented development secret: accepted only in DEV_MODE. */
export const DEV_JWT_SECRET = 'dev-only-secret-change-me';
export const MIN_SECRET_LENGTH = 32;
/** How far the issuer's clock may be off ours (exp, nbf, iat). */
const CLOCK_TOLERANCE_SEC = 5;

export const PLATFORM_ROLES = ['viewer', 'admin'] as const;
export type PlatformRole = (typeof PLATFORM_ROLES)[number];
export const ROOM_ROLES = ['moderator', 'broadcaster'] as const;
export type RoomRole = (typeof ROOM_ROLES)[number];
/** A user's role in one room. */
export type UserRole = PlatformRole | RoomRole;

const USER_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$/;
const ROOM_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const MAX_ROOMS_IN_TOKEN = 1000;

export interface User {
  id: string;
  /** Platform role: `admin` acts everywhere; everyone else is a viewer outside their rooms. */
  role: PlatformRole;
  /** Rooms where the user moderates or broadcasts. */
  rooms: Readonly<Record<string, RoomRole>>;
  /** Issued-at (seconds), when the token says. */
  iat?: number;
  /** Expiry (seconds), set by the verifier: a WebSocket refuses writes after it. */
  exp?: number;
}

/** The user's role in `room`: admin everywhere, a room role where the token grants one, else viewer. */
export function roleIn(u: User, room: string): UserRole {
  if (u.role === 'admin') return 'admin';
  return Object.hasOwn(u.rooms, room) ? u.rooms[room]! : 'viewer';
}

/** Moderator, broadcaster (of this room) or admin. */
export const isModeratorIn = (u: User, room: string) => roleIn(u, room) !== 'viewer';

export function requireModerator(u: User, room: string): void {
  if (!isModeratorIn(u, room)) throw new AppError('ERR_FORBIDDEN', `user ${u.id} is not a moderator, broadcaster or admin of room ${room}`);
}

export function requireAdmin(u: User): void {
  if (u.role !== 'admin') throw new AppError('ERR_FORBIDDEN', 'this needs the platform admin role');
}

/**
 * The HS256 secret this deployment signs and verifies with, or undefined when
 * it verifies with public keys. Throws (fail closed) on a missing, empty,
 * short or development secret outside DEV_MODE, naming the variable.
 */
export function jwtSecretOf(cfg: Config): string | undefined {
  const { auth } = cfg;
  const asymmetric = Boolean(auth.jwtPublicKeyFile || auth.jwksFile);
  const secret = auth.jwtSecret;
  if (secret === undefined) {
    if (asymmetric) return undefined;
    if (auth.devMode) return DEV_JWT_SECRET;
    throw new ConfigError('JWT_SECRET is not set: set a secret of at least 32 characters (or JWT_PUBLIC_KEY_FILE / JWT_JWKS_FILE); DEV_MODE=true allows the development secret', ['JWT_SECRET: not set']);
  }
  if (!auth.devMode) {
    if (secret === DEV_JWT_SECRET) throw new ConfigError('JWT_SECRET is the documented development secret: anyone could forge tokens; set your own', ['JWT_SECRET: development secret']);
    if (secret.length < MIN_SECRET_LENGTH) throw new ConfigError(`JWT_SECRET is shorter than ${MIN_SECRET_LENGTH} characters`, ['JWT_SECRET: too short']);
  }
  return secret;
}

/** Claims of a token this deployment would sign: a platform role and room roles. */
export interface TokenClaims {
  sub: string;
  role?: PlatformRole;
  rooms?: Record<string, RoomRole>;
}

/** Signs tokens with the HS256 secret (the token CLI, the dev route, tests, the demo chatter). */
export function tokenSigner(secret: string, ttlSec: number): (claims: TokenClaims) => string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: ttlSec * 1000 });
  return (claims) => sign({ ...claims });
}

type KeyOf = (decoded: DecodedJwt) => Promise<string>;

/** Public keys of a JWKS file by `kid` (PEM), for RS256/ES256 verification. */
export function jwksKeys(file: string): Map<string, string> {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { keys?: (crypto.JsonWebKey & { kid?: string })[] };
  const keys = new Map<string, string>();
  for (const jwk of doc.keys ?? []) {
    if (!jwk.kid) continue;
    keys.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString());
  }
  if (keys.size === 0) throw new ConfigError(`JWT_JWKS_FILE ${file} has no keys with a kid`, ['JWT_JWKS_FILE: no keys']);
  return keys;
}

export interface TokenVerifier {
  verify(token: string): Promise<User>;
}

/** Verifies a token and turns its claims into a User, or throws ERR_AUTH_INVALID. */
export function createTokenVerifier(cfg: Config): TokenVerifier {
  const { auth } = cfg;
  let verify: (token: string) => Promise<Record<string, unknown>>;
  const common = { requiredClaims: ['exp', 'sub'], cache: 1000, clockTolerance: CLOCK_TOLERANCE_SEC * 1000 };
  const asymmetric: Algorithm[] = ['RS256', 'ES256'];
  if (auth.jwksFile) {
    const keys = jwksKeys(auth.jwksFile);
    const key: KeyOf = async (decoded) => {
      const k = keys.get(String(decoded.header.kid ?? ''));
      if (!k) throw new Error(`no key for kid ${JSON.stringify(decoded.header.kid ?? null)}`);
      return k;
    };
    verify = createVerifier({ ...common, key, algorithms: asymmetric }) as (t: string) => Promise<Record<string, unknown>>;
  } else if (auth.jwtPublicKeyFile) {
    const pem = fs.readFileSync(auth.jwtPublicKeyFile, 'utf8');
    const v = createVerifier({ ...common, key: pem, algorithms: asymmetric });
    verify = async (t) => v(t) as Record<string, unknown>;
  } else {
    const v = createVerifier({ ...common, key: jwtSecretOf(cfg)!, algorithms: ['HS256'] as Algorithm[] });
    verify = async (t) => v(t) as Record<string, unknown>;
  }
  return {
    async verify(token) {
      let claims: Record<string, unknown>;
      try {
        claims = await verify(token);
      } catch (err) {
        throw new AppError('ERR_AUTH_INVALID', `invalid bearer token: ${(err as Error).message}`, { cause: err });
      }
      const user = userFromClaims(claims, auth.maxTokenTtlSec, Date.now());
      // The expiry travels with the user: a socket verifies its token once and refuses writes after it.
      return { ...user, exp: claims.exp as number };
    },
  };
}

/** The checks a signature cannot make: claim types, lifetime, roles. Pure. */
export function userFromClaims(claims: Record<string, unknown>, maxTtlSec: number, nowMs: number): User {
  const bad = (why: string) => new AppError('ERR_AUTH_INVALID', `invalid bearer token: ${why}`);
  const { sub, exp, iat, role, rooms } = claims;
  if (typeof sub !== 'string' || !USER_ID.test(sub)) throw bad('`sub` must be a user id (letters, digits, _ . : @ -; at most 64)');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw bad('`exp` is required');
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw bad('`iat` must be a number');
  const nowSec = nowMs / 1000;
  // A token "issued" in the future would pass the lifetime cap (exp - iat) while
  // living for years, and dodge revocations (which refuse tokens issued before them):
  // refuse it beyond the verifier's clock tolerance, and cap what is left of its life too.
  if (typeof iat === 'number' && iat > nowSec + CLOCK_TOLERANCE_SEC) throw bad('`iat` is in the future');
  const issued = typeof iat === 'number' ? iat : nowSec;
  if (exp - issued > maxTtlSec || exp - nowSec > maxTtlSec + CLOCK_TOLERANCE_SEC) throw bad(`the token lives longer than the ${maxTtlSec} s this deployment allows`);
  if (role !== undefined && !(PLATFORM_ROLES as readonly unknown[]).includes(role)) {
    throw bad(typeof role === 'string' && (ROOM_ROLES as readonly string[]).includes(role) ? `role ${role} is given per room: use the \`rooms\` claim` : '`role` must be viewer or admin');
  }
  const granted: Record<string, RoomRole> = {};
  if (rooms !== undefined) {
    if (typeof rooms !== 'object' || rooms === null || Array.isArray(rooms)) throw bad('`rooms` must be an object of room id → moderator|broadcaster');
    const entries = Object.entries(rooms);
    if (entries.length > MAX_ROOMS_IN_TOKEN) throw bad(`\`rooms\` may name at most ${MAX_ROOMS_IN_TOKEN} rooms`);
    for (const [room, r] of entries) {
      if (!ROOM_ID.test(room) || !(ROOM_ROLES as readonly unknown[]).includes(r)) throw bad(`\`rooms.${room.slice(0, 64)}\` must be moderator or broadcaster of a valid room id`);
      granted[room] = r as RoomRole;
    }
  }
  return { id: sub, role: (role as PlatformRole | undefined) ?? 'viewer', rooms: granted, ...(typeof iat === 'number' ? { iat } : {}) };
}

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenVerifier;
  }
}

// fp: `app.tokens` is read by every route plugin through userOf.
export const authPlugin = fp(async (app: FastifyInstance) => {
  app.decorate('tokens', createTokenVerifier(app.deps.cfg));
});

/**
 * The caller, or null when no token was sent. A bad, expired, revoked or
 * banned token is an error, never anonymity. `queryToken`: also read
 * `?token=` (only the WebSocket upgrade, where browsers cannot set headers).
 */
export async function userOf(req: FastifyRequest, opts: { queryToken?: boolean } = {}): Promise<User | null> {
  const token = tokenOf(req, opts);
  if (token === undefined) return null;
  const user = await req.server.tokens.verify(token);
  const { redis, cfg } = req.server.deps;
  const block = await blockOf(redis, cfg.redis.keyPrefix, user.id, user.iat);
  if (block) throw block;
  return user;
}

/**
 * The caller of a write, with the ban/revocation check started but not
 * awaited: the write awaits it beside its own Redis round trip (ingest.ts),
 * so the two cost one round trip of latency. The promise never rejects
 * unhandled (a handler is attached); awaiting it rethrows a Redis failure.
 */
export async function requireWriter(req: FastifyRequest): Promise<{ user: User; block: Promise<AppError | null> }> {
  const token = tokenOf(req, {});
  if (token === undefined) throw new AppError('ERR_AUTH_REQUIRED', 'this needs `Authorization: Bearer <JWT>`');
  const user = await req.server.tokens.verify(token);
  const { redis, cfg } = req.server.deps;
  const block = blockOf(redis, cfg.redis.keyPrefix, user.id, user.iat);
  block.catch(() => undefined);
  return { user, block };
}

/** The bearer token of a request: the Authorization header, or `?token=` where allowed (undefined: none sent). */
function tokenOf(req: FastifyRequest, opts: { queryToken?: boolean }): string | undefined {
  const header = req.headers.authorization;
  let token: string | undefined;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new AppError('ERR_AUTH_INVALID', 'the Authorization header must be `Bearer <JWT>`');
    token = m[1];
  } else if (opts.queryToken) {
    const q = (req.query as { token?: unknown } | undefined)?.token;
    if (q !== undefined && q !== '') {
      if (typeof q !== 'string') throw new AppError('ERR_AUTH_INVALID', 'give one token');
      token = q;
    }
  }
  return token;
}

export async function requireUser(req: FastifyRequest): Promise<User> {
  const u = await userOf(req);
  if (!u) throw new AppError('ERR_AUTH_REQUIRED', 'this needs `Authorization: Bearer <JWT>`');
  return u;
}

export async function requireReader(req: FastifyRequest, opts: { queryToken?: boolean } = {}): Promise<User | null> {
  const u = await userOf(req, opts);
  if (!u && !req.server.deps.cfg.auth.anonymousReads) throw new AppError('ERR_AUTH_REQUIRED', 'anonymous reads are disabled');
  return u;
}

/** A URL as logs may show it: the query token replaced. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}
