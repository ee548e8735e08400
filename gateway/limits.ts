/**
 * Write limits.
 *
 * Comments: everything a comment must pass before it is produced — the
 * idempotency claim of its clientMsgId, the author's visible mute, the room's
 * emote-only mode and slow mode, and the comment token bucket — is ONE Lua
 * script on the room's slot (`gateCommentLua`), so a comment costs one Redis
 * round trip before producing and concurrent writes through different
 * gateways can neither both spend the last token nor both claim one
 * clientMsgId. Every key carries the `{room}` hash tag, so the script runs on
 * a Redis Cluster too; that is why the comment bucket is per user *per room*.
 * Nothing is spent or claimed unless every check passes.
 *
 * Reactions: a token bucket per user in this process's memory
 * (`MemoryBuckets`), see there why.
 */
import { AppError } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';

/**
 * KEYS: 1 the clientMsgId claim, 2 the user's comment bucket in the room,
 *       3 the user's slow-mode marker, 4 the state projection's `muted` hash,
 *       5 its `settings` (JSON), 6 the room's own epoch counter (what clients
 *       see adds the rebuilds' switch counter, kept in memory: versions.ts).
 * ARGV: 1 user id, 2 now (ms), 3 moderator (1/0: exempt from emote-only and
 *       slow mode), 4 the text is emotes only (1/0), 5 bucket capacity,
 *       6 refill per ms, 7 has a clientMsgId (1/0), 8 claim TTL (s).
 * Returns {'ok', epoch} | {'dup', first result JSON} | {'busy'} |
 *   {'muted', untilMs (-1: no end), reason} | {'emote'} |
 *   {'slow', ms to wait, slowModeSec} | {'rate', ms to wait}.
 *
 * The mute is the projection's `muted` hash field (userId → JSON {untilMs,
 * kind, reason}): HGET of one field, never the whole hash. A shadow mute is
 * let through on purpose (the projections show the comment to its author alone).
 */
export const COMMENT_GATE_LUA = `
local now = tonumber(ARGV[2])
if ARGV[7] == '1' then
  local first = redis.call('GET', KEYS[1])
  if first then
    if first == 'pending' then return {'busy'} end
    return {'dup', first}
  end
end
local m = redis.call('HGET', KEYS[4], ARGV[1])
if m then
  local ok, mute = pcall(cjson.decode, m)
  if ok and type(mute) == 'table' and mute.kind == 'visible' then
    local untilMs = mute.untilMs
    if type(untilMs) ~= 'number' or untilMs > now then
      local reason = mute.reason
      if type(reason) ~= 'string' then reason = '' end
      return {'muted', type(untilMs) == 'number' and untilMs or -1, reason}
    end
  end
end
local slowSec = 0
if ARGV[3] ~= '1' then
  local raw = redis.call('GET', KEYS[5])
  if raw then
    local ok, st = pcall(cjson.decode, raw)
    if ok and type(st) == 'table' then
      if st.emoteOnly == true and ARGV[4] ~= '1' then return {'emote'} end
      if type(st.slowModeSec) == 'number' and st.slowModeSec > 0 then slowSec = st.slowModeSec end
    end
  end
  if slowSec > 0 then
    local ttl = redis.call('PTTL', KEYS[3])
    if ttl > 0 then return {'slow', ttl, slowSec} end
  end
end
local cap = tonumber(ARGV[5])
local rate = tonumber(ARGV[6])
local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
if tokens < 1 then return {'rate', math.ceil((1 - tokens) / rate)} end
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[2], math.ceil(cap / rate) + 1000)
if slowSec > 0 then redis.call('SET', KEYS[3], '1', 'PX', math.floor(slowSec * 1000)) end
if ARGV[7] == '1' then redis.call('SET', KEYS[1], 'pending', 'EX', ARGV[8]) end
return {'ok', tonumber(redis.call('GET', KEYS[6]) or '0') or 0}
`;

export interface CommentGateKeys {
  claim: string;
  bucket: string;
  slow: string;
  muted: string;
  settings: string;
  epoch: string;
}

export interface CommentGateArgs {
  userId: string;
  nowMs: number;
  moderator: boolean;
  emoteOnly: boolean;
  capacity: number;
  windowMs: number;
  hasClaim: boolean;
  claimTtlSec: number;
}

export type GateResult =
  | { kind: 'ok'; epoch: number }
  | { kind: 'dup'; first: string }
  | { kind: 'busy' }
  | { kind: 'muted'; untilMs: number | null; reason: string }
  | { kind: 'emote' }
  | { kind: 'slow'; waitMs: number; slowModeSec: number }
  | { kind: 'rate'; waitMs: number };

type GateCommand = (k1: string, k2: string, k3: string, k4: string, k5: string, k6: string, ...args: (string | number)[]) => Promise<(string | number)[]>;

export class CommentGate {
  private readonly run: GateCommand;

  constructor(redis: RedisClient) {
    redis.defineCommand('dmCommentGate', { numberOfKeys: 6, lua: COMMENT_GATE_LUA });
    this.run = (redis as unknown as { dmCommentGate: GateCommand }).dmCommentGate.bind(redis);
  }

  async check(k: CommentGateKeys, a: CommentGateArgs): Promise<GateResult> {
    const r = await this.run(k.claim, k.bucket, k.slow, k.muted, k.settings, k.epoch, a.userId, a.nowMs, a.moderator ? 1 : 0, a.emoteOnly ? 1 : 0, a.capacity, a.capacity / a.windowMs, a.hasClaim ? 1 : 0, a.claimTtlSec);
    switch (r[0]) {
      case 'ok':
        return { kind: 'ok', epoch: Number(r[1]) };
      case 'dup':
        return { kind: 'dup', first: String(r[1]) };
      case 'busy':
        return { kind: 'busy' };
      case 'muted':
        return { kind: 'muted', untilMs: Number(r[1]) < 0 ? null : Number(r[1]), reason: String(r[2] ?? '') };
      case 'emote':
        return { kind: 'emote' };
      case 'slow':
        return { kind: 'slow', waitMs: Math.max(1, Number(r[1])), slowModeSec: Number(r[2]) };
      case 'rate':
        return { kind: 'rate', waitMs: Math.max(1, Number(r[1])) };
      default:
        throw new AppError('ERR_INTERNAL', `comment gate: unexpected answer ${JSON.stringify(r)}`);
    }
  }
}

export interface BucketSpec {
  capacity: number;
  windowMs: number;
}

/**
 * Token buckets in this process's memory, for reactions: at 100,000
 * reactions/s a Redis round trip per reaction would cost more than
 * everything else a reaction does (it is a few integer additions into the
 * room's aggregate), and the budget protects this gateway's aggregation, not
 * a shared resource. The price: a user's budget is per gateway process
 * (a user whose sockets and requests reach several gateways or workers gets
 * that many budgets), which is acceptable for a cheap, aggregated action.
 * O(1) per take; idle full buckets are swept once per minute.
 */
export class MemoryBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number; cap: number }>();
  private lastSweep = 0;

  /** Takes `cost` tokens; returns the wait in ms (0 = allowed). */
  take(key: string, spec: BucketSpec, nowMs: number, cost = 1): number {
    const rate = spec.capacity / spec.windowMs;
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: spec.capacity, at: nowMs, cap: spec.capacity };
      this.buckets.set(key, b);
    }
    const tokens = Math.min(spec.capacity, b.tokens + Math.max(0, nowMs - b.at) * rate);
    b.at = nowMs;
    b.cap = spec.capacity;
    if (nowMs - this.lastSweep > 60_000) this.sweep(nowMs, spec.windowMs);
    if (tokens >= cost) {
      b.tokens = tokens - cost;
      return 0;
    }
    b.tokens = tokens;
    return Math.max(1, Math.ceil((cost - tokens) / rate));
  }

  /** Drops buckets that have refilled (untouched for longer than a window): they would start full anyway. */
  private sweep(nowMs: number, windowMs: number): void {
    this.lastSweep = nowMs;
    for (const [k, b] of this.buckets) if (nowMs - b.at > windowMs) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }
}
