/**
 * Where projection effects land. Two implementations of the same commands:
 * - RedisStore: one Lua script per (room, batch) that checks the fence,
 *   applies every command, advances the fence and state, and publishes the
 *   change notification — all atomically, on the room's shard.
 * - MemoryStore: the same semantics in process, for unit specs and for
 *   replay (so live, rebuild and replay share one projection code path).
 */
import type { RedisClient } from '../core/redis.ts';
import type { Cmd, RoomMeta } from './projection.ts';

/** Sorted set + hash + string + hash-of-fields store, enough for the Cmd vocabulary. */
export class MemoryStore {
  readonly zsets = new Map<string, Map<string, number>>();
  readonly hashes = new Map<string, Map<string, string>>();
  readonly strings = new Map<string, string>();

  exec(cmds: Cmd[]): void {
    for (const c of cmds) {
      switch (c.op) {
        case 'ZADD':
          this.z(c.key).set(c.member, c.score);
          break;
        case 'ZREMRANGEBYSCORE':
          for (const [m, s] of this.z(c.key)) if (s >= c.min && s <= c.max) this.z(c.key).delete(m);
          break;
        case 'HSET':
          this.h(c.key).set(c.field, c.value);
          break;
        case 'HDEL':
          for (const f of c.fields) this.h(c.key).delete(f);
          break;
        case 'HINCRBY':
          this.h(c.key).set(c.field, String(Number(this.h(c.key).get(c.field) ?? 0) + c.by));
          break;
        case 'SET':
          this.strings.set(c.key, c.value);
          break;
        case 'DEL':
          this.zsets.delete(c.key);
          this.hashes.delete(c.key);
          this.strings.delete(c.key);
          break;
        case 'feedAdd':
          if (!this.h(c.index).has(c.eventId)) {
            this.h(c.index).set(c.eventId, String(c.offset));
            this.z(c.key).set(c.member, c.offset);
          }
          break;
        case 'feedRemove': {
          const off = this.h(c.index).get(c.eventId);
          if (off !== undefined) {
            for (const [m, s] of this.z(c.key)) if (s === Number(off)) this.z(c.key).delete(m);
            this.h(c.index).delete(c.eventId);
          }
          break;
        }
        case 'feedTrim': {
          const sorted = this.sortedMembers(c.key);
          const drop = sorted.slice(0, Math.max(0, sorted.length - c.keep));
          for (const [m] of drop) {
            this.z(c.key).delete(m);
            this.h(c.index).delete(idOfMember(m));
          }
          break;
        }
        default: {
          const never: never = c;
          throw new Error(`unknown op ${JSON.stringify(never)}`);
        }
      }
    }
  }

  sortedMembers(key: string): [string, number][] {
    // Redis orders by score, then lexicographically by member.
    return [...this.z(key)].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  private z(key: string): Map<string, number> {
    let m = this.zsets.get(key);
    if (!m) this.zsets.set(key, (m = new Map()));
    return m;
  }

  private h(key: string): Map<string, string> {
    let m = this.hashes.get(key);
    if (!m) this.hashes.set(key, (m = new Map()));
    return m;
  }
}

/**
 * Feed members are JSON; a tombstone is indexed as `del:<deletion id>`, a
 * comment by its event id. Both are recoverable from the member alone, which
 * is what lets trimming drop index entries without a second lookup.
 */
export function idOfMember(member: string): string {
  const o = JSON.parse(member) as { kind: string; eventId: string; deletionId?: string };
  return o.kind === 'delete' ? `del:${o.deletionId}` : o.eventId;
}

// KEYS[1] = meta hash; KEYS[2..] = every key the commands touch (same hash tag).
// ARGV[1] = expected fence ('' = never applied), ARGV[2] = new fence,
// ARGV[3] = new state JSON, ARGV[4] = commands JSON (key names replaced by KEYS
// indexes), ARGV[5] = notification channel ('' = none), ARGV[6] = message.
// Returns {1} when applied, {0, current fence} when the fence moved under us
// (another instance applied first; the caller reloads and refolds).
export const APPLY_LUA = `
local cur = redis.call('HGET', KEYS[1], 'fence')
if (cur or '') ~= ARGV[1] then return {0, cur or ''} end
local cmds = cjson.decode(ARGV[4])
for _, c in ipairs(cmds) do
  local op = c[1]
  if op == 'feedAdd' then
    -- c = {op, zKey, idxKey, eventId, offset, member}
    if redis.call('HSETNX', KEYS[c[3]], c[4], c[5]) == 1 then
      redis.call('ZADD', KEYS[c[2]], c[5], c[6])
    end
  elseif op == 'feedRemove' then
    -- c = {op, zKey, idxKey, eventId}
    local off = redis.call('HGET', KEYS[c[3]], c[4])
    if off then
      redis.call('ZREMRANGEBYSCORE', KEYS[c[2]], off, off)
      redis.call('HDEL', KEYS[c[3]], c[4])
    end
  elseif op == 'feedTrim' then
    -- c = {op, zKey, idxKey, keep}
    local n = redis.call('ZCARD', KEYS[c[2]])
    if n > c[4] then
      local drop = redis.call('ZRANGE', KEYS[c[2]], 0, n - c[4] - 1)
      for _, m in ipairs(drop) do
        local o = cjson.decode(m)
        local id = o.eventId
        if o.kind == 'delete' then id = 'del:' .. o.deletionId end
        redis.call('HDEL', KEYS[c[3]], id)
      end
      redis.call('ZREMRANGEBYRANK', KEYS[c[2]], 0, n - c[4] - 1)
    end
  elseif op == 'HDEL' then
    redis.call('HDEL', KEYS[c[2]], unpack(c[3]))
  else
    -- Plain command: c = {op, keyIndex, args...}
    redis.call(op, KEYS[c[2]], unpack(c, 3))
  end
end
redis.call('HSET', KEYS[1], 'fence', ARGV[2], 'state', ARGV[3])
if ARGV[5] ~= '' then redis.call('SPUBLISH', ARGV[5], ARGV[6]) end
return {1}
`;

/** Encodes commands for the script: key names become indexes into KEYS. */
export function encodeCmds(meta: string, cmds: Cmd[]): { keys: string[]; json: string } {
  const keys = [meta];
  const at = (k: string) => {
    let i = keys.indexOf(k);
    if (i < 0) i = keys.push(k) - 1;
    return i + 1; // Lua is 1-based
  };
  const rows = cmds.map((c): unknown[] => {
    switch (c.op) {
      case 'ZADD':
        return ['ZADD', at(c.key), c.score, c.member];
      case 'ZREMRANGEBYSCORE':
        return ['ZREMRANGEBYSCORE', at(c.key), c.min, c.max];
      case 'HSET':
        return ['HSET', at(c.key), c.field, c.value];
      case 'HDEL':
        return ['HDEL', at(c.key), c.fields];
      case 'HINCRBY':
        return ['HINCRBY', at(c.key), c.field, c.by];
      case 'SET':
        return ['SET', at(c.key), c.value];
      case 'DEL':
        return ['DEL', at(c.key)];
      case 'feedAdd':
        return ['feedAdd', at(c.key), at(c.index), c.eventId, c.offset, c.member];
      case 'feedRemove':
        return ['feedRemove', at(c.key), at(c.index), c.eventId];
      case 'feedTrim':
        return ['feedTrim', at(c.key), at(c.index), c.keep];
      default: {
        const never: never = c;
        throw new Error(`unknown op ${JSON.stringify(never)}`);
      }
    }
  });
  return { keys, json: JSON.stringify(rows) };
}

export class RedisStore {
  constructor(private readonly redis: RedisClient) {
    redis.defineCommand('dmApplyEffect', { lua: APPLY_LUA });
  }

  async loadMeta<S>(metaKey: string, initial: () => S): Promise<RoomMeta<S>> {
    const [fence, state] = await this.redis.hmget(metaKey, 'fence', 'state');
    return { fence: fence ? Number(fence) : undefined, state: state ? (JSON.parse(state) as S) : initial() };
  }

  /** Applies atomically if the fence is still `expected`; false when it moved (caller refolds). */
  async apply(metaKey: string, expected: number | undefined, next: RoomMeta<unknown>, cmds: Cmd[], notify?: { channel: string; message: string }): Promise<boolean> {
    const { keys, json } = encodeCmds(metaKey, cmds);
    const r = (await (this.redis as unknown as { dmApplyEffect(n: number, ...args: (string | number)[]): Promise<[number, string?]> }).dmApplyEffect(
      keys.length,
      ...keys,
      expected === undefined ? '' : String(expected),
      String(next.fence),
      JSON.stringify(next.state),
      json,
      notify?.channel ?? '',
      notify?.message ?? '',
    )) as [number, string?];
    return r[0] === 1;
  }
}
