/**
 * Write limits, kept in Redis so every gateway enforces the same budget:
 * a token bucket per user and kind (comments, reactions) and slow mode per
 * room. Each check is one Lua script, so concurrent requests through
 * different gateways cannot both spend the last token.
 */
import type { RedisClient } from '../core/redis.ts';

// KEYS[1] bucket hash; ARGV: capacity, refill per ms, now ms, cost.
// Returns {allowed (1/0), ms until enough tokens}.
const BUCKET_LUA = `
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 1000)
return {allowed, wait}
`;

export interface BucketSpec {
  capacity: number;
  windowMs: number;
}

export class Limiter {
  constructor(private readonly redis: RedisClient) {
    redis.defineCommand('dmTokenBucket', { numberOfKeys: 1, lua: BUCKET_LUA });
  }

  /** Takes `cost` tokens; resolves the wait in ms (0 = allowed). */
  async take(key: string, spec: BucketSpec, nowMs: number, cost = 1): Promise<number> {
    const r = (await (this.redis as unknown as { dmTokenBucket(k: string, ...a: (string | number)[]): Promise<[number, number]> }).dmTokenBucket(
      key,
      spec.capacity,
      spec.capacity / spec.windowMs,
      nowMs,
      cost,
    )) as [number, number];
    return r[0] === 1 ? 0 : Math.max(1, r[1]);
  }

  /** Slow mode: one comment per `seconds` per user in a room. Resolves the wait in ms (0 = allowed). */
  async slowMode(key: string, seconds: number): Promise<number> {
    if (seconds <= 0) return 0;
    const ok = await this.redis.set(key, '1', 'PX', seconds * 1000, 'NX');
    if (ok === 'OK') return 0;
    return Math.max(1, await this.redis.pttl(key));
  }
}
