/**
 * Bans and token revocations, kept in Redis so every gateway refuses the same
 * tokens (POST /v1/admin/users/:user/ban and /revoke write them; `userOf` in
 * auth.ts checks them after a token's signature and claims are verified).
 *
 *   <prefix>ban:user:{<userId>}      JSON {untilMs, reason, by, atMs}; PX = the ban's length (no TTL: no end)
 *   <prefix>revoked:user:{<userId>}  revocation time (ms); PX = AUTH_MAX_TOKEN_TTL_SEC + slack, after
 *                                     which every token issued before it has expired anyway
 *
 * Both keys of a user share the hash tag `{<userId>}` (user ids cannot hold
 * braces: auth.ts allows letters, digits and `_ . : @ -`), so one MGET reads
 * them on a Redis Cluster too. Not cached: the lookup is one auto-pipelined
 * MGET per authenticated request, and a ban then holds on every gateway the
 * moment it is written, with nothing to invalidate. (A comment's check runs
 * beside its comment gate, so it adds no latency; a WebSocket's writes
 * re-check at most every 2 s, since a ban also closes the user's sockets.)
 */
import { AppError } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';

export const banKey = (prefix: string, userId: string) => `${prefix}ban:user:{${userId}}`;
export const revokedKey = (prefix: string, userId: string) => `${prefix}revoked:user:{${userId}}`;

/** Kept past the longest token lifetime by the verifier's clock tolerance, and then some. */
const REVOCATION_SLACK_MS = 60_000;

export interface Ban {
  /** When the ban ends (ms), or null: until lifted. */
  untilMs: number | null;
  reason: string;
  /** The admin who banned. */
  by: string;
  atMs: number;
}

export function parseBan(raw: string | null | undefined): Ban | undefined {
  if (!raw) return undefined;
  try {
    const b = JSON.parse(raw) as Partial<Ban>;
    if (b.untilMs !== null && typeof b.untilMs !== 'number') return undefined;
    return { untilMs: b.untilMs, reason: typeof b.reason === 'string' ? b.reason : '', by: typeof b.by === 'string' ? b.by : '', atMs: typeof b.atMs === 'number' ? b.atMs : 0 };
  } catch {
    return undefined;
  }
}

/**
 * Why a token of this user is refused, or null. Pure. A revocation refuses
 * tokens whose `iat` (seconds) is earlier than the revocation time (ms);
 * `iat` has whole seconds, so a token signed in the same second as the
 * revocation but after it is refused too (the safe side), and a token
 * without `iat` counts as older.
 */
export function judgeBlock(ban: Ban | undefined, revokedAtMs: number | undefined, iatSec: number | undefined, nowMs: number): AppError | null {
  if (ban && (ban.untilMs === null || ban.untilMs > nowMs)) {
    const until = ban.untilMs === null ? '' : ` until ${new Date(ban.untilMs).toISOString()}`;
    return new AppError('ERR_BANNED', `this user is banned${until}${ban.reason ? `: ${ban.reason}` : ''}`, { details: { untilMs: ban.untilMs, reason: ban.reason } });
  }
  if (revokedAtMs !== undefined && Number.isFinite(revokedAtMs) && (iatSec === undefined || iatSec * 1000 < revokedAtMs)) {
    return new AppError('ERR_TOKEN_REVOKED', `this token was revoked (tokens issued before ${new Date(revokedAtMs).toISOString()} are refused): get a new one`, {
      details: { revokedAtMs },
    });
  }
  return null;
}

/** The error that refuses this user's token (banned, or issued before a revocation), or null. One MGET. */
export async function blockOf(redis: RedisClient, prefix: string, userId: string, iatSec: number | undefined, nowMs = Date.now()): Promise<AppError | null> {
  const [ban, revoked] = await redis.mget(banKey(prefix, userId), revokedKey(prefix, userId));
  return judgeBlock(parseBan(ban), revoked ? Number(revoked) : undefined, iatSec, nowMs);
}

/** Bans a user: the key expires with the ban (a ban without end has no TTL until lifted). */
export async function banUser(redis: RedisClient, prefix: string, userId: string, ban: Ban): Promise<void> {
  const value = JSON.stringify(ban);
  if (ban.untilMs === null) await redis.set(banKey(prefix, userId), value);
  else await redis.set(banKey(prefix, userId), value, 'PX', Math.max(1, ban.untilMs - ban.atMs));
}

/** Lifts a ban; whether there was one. */
export async function unbanUser(redis: RedisClient, prefix: string, userId: string): Promise<boolean> {
  return (await redis.del(banKey(prefix, userId))) > 0;
}

// A revocation never moves back in time (two admins, two gateways with skewed clocks): the later one stays.
const REVOKE = `
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`;

/** Refuses every token of the user issued before `atMs`; returns the revocation time in force. */
export async function revokeTokens(redis: RedisClient, prefix: string, userId: string, atMs: number, maxTokenTtlSec: number): Promise<number> {
  const ttlMs = maxTokenTtlSec * 1000 + REVOCATION_SLACK_MS;
  const inForce = (await redis.eval(REVOKE, 1, revokedKey(prefix, userId), String(Math.floor(atMs)), String(ttlMs))) as string;
  return Number(inForce);
}
