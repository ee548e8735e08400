/**
 * Where projection effects land. Two implementations of the same commands:
 * - RedisStore: one Lua script per (room, batch) that checks the fence,
 *   applies every command, advances the fence and state, and publishes the
 *   change notification — all atomically, on the room's shard.
 * - MemoryStore: the same semantics in process, for unit specs and for
 *   replay (so live, rebuild and replay share one projection code path).
 */
import type { RedisClient } from '../core/redis.ts';
import type { RoomMeta } from './projection.ts';

/**
 * The effect vocabulary, each command declared once: the fields naming keys
 * (all of one call share the room's hash tag), its other fields in the order
 * the Lua body sees them, the Lua body, and the same effect in memory. The
 * `Cmd` type, the encoder, the Lua script and MemoryStore all derive from
 * this table, so a command cannot exist in one and not the others (a missing
 * part is a type error; store.int.spec.ts checks that Lua and memory agree).
 *
 * In a Lua body, `K[i]` is the i-th key name and `A[i]` the i-th argument:
 * numbers arrive as Lua numbers, `string[]` as a Lua array. Numbers are
 * integers (offsets, counts): Redis formats a Lua number with %.17g, which
 * only agrees with JavaScript's String(n) for integers.
 */
export const COMMANDS = {
  ZADD: command({
    keys: ['key'],
    args: { score: 'number', member: 'string' },
    lua: `redis.call('ZADD', K[1], A[1], A[2])`,
    memory: (m, c) => m.zadd(c.key, c.member, c.score),
  }),
  ZREMRANGEBYSCORE: command({
    keys: ['key'],
    args: { min: 'number', max: 'number' },
    lua: `redis.call('ZREMRANGEBYSCORE', K[1], A[1], A[2])`,
    memory: (m, c) => {
      for (const [member, s] of m.zset(c.key)) if (s >= c.min && s <= c.max) m.zrem(c.key, member);
    },
  }),
  HSET: command({
    keys: ['key'],
    args: { field: 'string', value: 'string' },
    lua: `redis.call('HSET', K[1], A[1], A[2])`,
    memory: (m, c) => {
      m.hash(c.key).set(c.field, c.value);
    },
  }),
  /** `fields` must not be empty (Redis rejects an HDEL without fields). */
  HDEL: command({
    keys: ['key'],
    args: { fields: 'string[]' },
    lua: `redis.call('HDEL', K[1], unpack(A[1]))`,
    memory: (m, c) => {
      for (const f of c.fields) m.hash(c.key).delete(f);
    },
  }),
  HINCRBY: command({
    keys: ['key'],
    args: { field: 'string', by: 'number' },
    lua: `redis.call('HINCRBY', K[1], A[1], A[2])`,
    memory: (m, c) => {
      const h = m.hash(c.key);
      h.set(c.field, String(Number(h.get(c.field) ?? 0) + c.by));
    },
  }),
  SET: command({
    keys: ['key'],
    args: { value: 'string' },
    lua: `redis.call('SET', K[1], A[1])`,
    memory: (m, c) => {
      m.strings.set(c.key, c.value);
    },
  }),
  DEL: command({
    keys: ['key'],
    args: {},
    lua: `redis.call('DEL', K[1])`,
    memory: (m, c) => m.del(c.key),
  }),
  /** Adds an entry to the sorted set and records eventId → offset in the index; a no-op when eventId is indexed already. */
  feedAdd: command({
    keys: ['key', 'index'],
    args: { eventId: 'string', offset: 'number', member: 'string' },
    lua: `
      if redis.call('HSETNX', K[2], A[1], A[2]) == 1 then
        redis.call('ZADD', K[1], A[2], A[3])
      end`,
    memory: (m, c) => {
      const idx = m.hash(c.index);
      if (idx.has(c.eventId)) return;
      idx.set(c.eventId, String(c.offset));
      m.zadd(c.key, c.member, c.offset);
    },
  }),
  /** Removes the feed entry of `eventId` (found through the index hash) from the sorted set. */
  feedRemove: command({
    keys: ['key', 'index'],
    args: { eventId: 'string' },
    lua: `
      local off = redis.call('HGET', K[2], A[1])
      if off then
        redis.call('ZREMRANGEBYSCORE', K[1], off, off)
        redis.call('HDEL', K[2], A[1])
      end`,
    memory: (m, c) => {
      const idx = m.hash(c.index);
      const off = idx.get(c.eventId);
      if (off === undefined) return;
      m.zremScore(c.key, Number(off));
      idx.delete(c.eventId);
    },
  }),
  /** Keeps the newest `keep` entries, dropping the index entries of the rest (members are feed items, see idOfMember). */
  feedTrim: command({
    keys: ['key', 'index'],
    args: { keep: 'number' },
    lua: `
      local n = redis.call('ZCARD', K[1])
      if n > A[1] then
        local drop = redis.call('ZRANGE', K[1], 0, n - A[1] - 1)
        for _, m in ipairs(drop) do
          local o = cjson.decode(m)
          local id = o.eventId
          if o.kind == 'delete' then id = 'del:' .. o.deletionId end
          redis.call('HDEL', K[2], id)
        end
        redis.call('ZREMRANGEBYRANK', K[1], 0, n - A[1] - 1)
      end`,
    memory: (m, c) => {
      const n = m.zset(c.key).size;
      if (n <= c.keep) return; // what ZCARD decides first in Lua; spares the sort
      for (const [member] of m.sortedMembers(c.key).slice(0, n - c.keep)) {
        m.zrem(c.key, member);
        m.hash(c.index).delete(idOfMember(member));
      }
    },
  }),
};

/** The types a command field can have, by the name the table uses. */
interface FieldTypes {
  string: string;
  number: number;
  'string[]': string[];
}
type FieldType = keyof FieldTypes;

type CommandFields<K extends string, A extends Record<string, FieldType>> = { [k in K]: string } & { [a in keyof A]: FieldTypes[A[a]] };

interface CommandSpec<K extends string, A extends Record<string, FieldType>> {
  /** Fields holding key names: `K[1]`, `K[2]`… in the Lua body, in this order. */
  keys: readonly K[];
  /** The other fields, in order: `A[1]`, `A[2]`… in the Lua body. */
  args: A;
  lua: string;
  memory(m: MemoryStore, c: CommandFields<K, A>): void;
}

/** Only infers the field names and types of one table entry. */
function command<K extends string, A extends Record<string, FieldType>>(spec: CommandSpec<K, A>): CommandSpec<K, A> {
  return spec;
}

export type Op = keyof typeof COMMANDS;

/**
 * A Redis effect as data, e.g. `{ op: 'HSET', key, field, value }`: the op
 * and the fields its table entry declares (see COMMANDS).
 */
export type Cmd = { [O in Op]: { op: O } & Parameters<(typeof COMMANDS)[O]['memory']>[1] }[Op];

/** The table seen uniformly, for the encoder and the executors. */
interface AnySpec {
  keys: readonly string[];
  argNames: string[];
  lua: string;
  memory(m: MemoryStore, c: Cmd): void;
}
// One cast: TypeScript cannot tie `COMMANDS[c.op].memory` to the `c` of that op.
const SPECS = Object.fromEntries(
  Object.entries(COMMANDS).map(([op, s]) => [op, { keys: s.keys, argNames: Object.keys(s.args), lua: s.lua, memory: s.memory as AnySpec['memory'] }]),
) as Record<Op, AnySpec>;

/** Sorted sets, hashes and strings in process: the command table's in-memory side. */
export class MemoryStore {
  /** Sorted sets (member → score). Read them here; change them through zadd/zrem, which keep #byScore. */
  readonly zsets = new Map<string, Map<string, number>>();
  readonly hashes = new Map<string, Map<string, string>>();
  readonly strings = new Map<string, string>();
  /** Per sorted set, score → members: a removal by score (feedRemove) is a lookup, not a scan. */
  readonly #byScore = new Map<string, Map<number, Set<string>>>();

  exec(cmds: Cmd[]): void {
    for (const c of cmds) SPECS[c.op].memory(this, c);
  }

  sortedMembers(key: string): [string, number][] {
    // Redis orders by score, then by the member's bytes (memcmp); ties only
    // compare UTF-8 bytes, which differs from JavaScript's UTF-16 order above U+FFFF.
    return [...this.zset(key)].sort((a, b) => a[1] - b[1] || Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  }

  zset(key: string): ReadonlyMap<string, number> {
    let m = this.zsets.get(key);
    if (!m) this.zsets.set(key, (m = new Map()));
    return m;
  }

  hash(key: string): Map<string, string> {
    let m = this.hashes.get(key);
    if (!m) this.hashes.set(key, (m = new Map()));
    return m;
  }

  zadd(key: string, member: string, score: number): void {
    this.zrem(key, member);
    (this.zset(key) as Map<string, number>).set(member, score);
    let scores = this.#byScore.get(key);
    if (!scores) this.#byScore.set(key, (scores = new Map()));
    let members = scores.get(score);
    if (!members) scores.set(score, (members = new Set()));
    members.add(member);
  }

  zrem(key: string, member: string): void {
    const z = this.zsets.get(key);
    const score = z?.get(member);
    if (score === undefined) return;
    z!.delete(member);
    const scores = this.#byScore.get(key)!;
    const members = scores.get(score)!;
    members.delete(member);
    if (members.size === 0) scores.delete(score);
  }

  /** ZREMRANGEBYSCORE key score score. */
  zremScore(key: string, score: number): void {
    for (const member of [...(this.#byScore.get(key)?.get(score) ?? [])]) this.zrem(key, member);
  }

  del(key: string): void {
    this.zsets.delete(key);
    this.#byScore.delete(key);
    this.hashes.delete(key);
    this.strings.delete(key);
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

/** A table entry's Lua body, re-indented to sit inside its function. */
function indented(lua: string): string {
  const lines = lua.split('\n').filter((l) => l.trim() !== '');
  const margin = Math.min(...lines.map((l) => l.length - l.trimStart().length));
  return lines.map((l) => `  ${l.slice(margin)}`).join('\n');
}

// KEYS[1] = meta hash; KEYS[2..] = every key the commands touch (same hash tag).
// ARGV[1] = expected fence ('' = never applied), ARGV[2] = new fence,
// ARGV[3] = new state JSON, ARGV[4] = commands JSON, each {op, {KEYS indexes},
// {arguments}} (see encodeCmds), ARGV[5] = notification channel ('' = none),
// ARGV[6] = message.
// Returns {1} when applied, {0, current fence} when the fence moved under us
// (another instance applied first; the caller reloads and refolds).
// Why this makes the update exactly-once in effect: the fence check, every
// command, the new fence and state, and the notification run as one script on
// the room's shard, with nothing interleaved, so the effect never lands
// without the fence that covers it (nor the fence without the effect), and a
// redelivered batch finds the fence past its events and changes nothing.
export const APPLY_LUA = `
local cur = redis.call('HGET', KEYS[1], 'fence')
if (cur or '') ~= ARGV[1] then return {0, cur or ''} end
local run = {}
${Object.entries(SPECS)
  .map(([op, s]) => `run['${op}'] = function(K, A)\n${indented(s.lua)}\nend`)
  .join('\n')}
for _, c in ipairs(cjson.decode(ARGV[4])) do
  local K = c[2]
  for i, k in ipairs(K) do K[i] = KEYS[k] end
  run[c[1]](K, c[3])
end
redis.call('HSET', KEYS[1], 'fence', ARGV[2], 'state', ARGV[3])
if ARGV[5] ~= '' then redis.call('SPUBLISH', ARGV[5], ARGV[6]) end
return {1}
`;

/** Encodes commands for the script: `[op, [key indexes], [arguments]]`, key names replaced by indexes into KEYS. */
export function encodeCmds(meta: string, cmds: Cmd[]): { keys: string[]; json: string } {
  const keys = [meta];
  const at = (k: string) => {
    let i = keys.indexOf(k);
    if (i < 0) i = keys.push(k) - 1;
    return i + 1; // Lua is 1-based
  };
  const rows = cmds.map((c) => {
    const s = SPECS[c.op];
    const fields = c as unknown as Record<string, unknown>;
    return [c.op, s.keys.map((k) => at(fields[k] as string)), s.argNames.map((a) => fields[a])];
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
