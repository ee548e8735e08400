/**
 * Where projection effects land. Two implementations of the same commands:
 * - RedisStore: one Lua script per (room, batch) that checks the fence,
 *   applies every command, advances the fence and state, and publishes the
 *   change notification — all atomically, on the room's shard.
 * - MemoryStore: the same semantics in process, for unit specs and for
 *   replay (so live, rebuild and replay share one projection code path).
 */
import { createHash } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../core/redis.ts';
import type { ExternalWrite, RoomMeta } from './projection.ts';

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
  /**
   * Per-user state with an expiry in event time (see UserFields in
   * projection.ts): a hash `key` of one field per user, and a sorted set
   * `index` of the same fields scored by the event time from which the field
   * means nothing any more. `expireAt` -1: kept until replaced or deleted.
   */
  fieldSet: command({
    keys: ['key', 'index'],
    args: { field: 'string', value: 'string', expireAt: 'number' },
    lua: `
      redis.call('HSET', K[1], A[1], A[2])
      if A[3] >= 0 then redis.call('ZADD', K[2], A[3], A[1]) else redis.call('ZREM', K[2], A[1]) end`,
    memory: (m, c) => {
      m.hash(c.key).set(c.field, c.value);
      if (c.expireAt >= 0) m.zadd(c.index, c.field, c.expireAt);
      else m.zrem(c.index, c.field);
    },
  }),
  fieldDel: command({
    keys: ['key', 'index'],
    args: { field: 'string' },
    lua: `
      redis.call('HDEL', K[1], A[1])
      redis.call('ZREM', K[2], A[1])`,
    memory: (m, c) => {
      m.hash(c.key).delete(c.field);
      m.zrem(c.index, c.field);
    },
  }),
  /** Drops every field whose expiry is at or before `upTo` (event time): what keeps per-user state bounded. */
  fieldsExpire: command({
    keys: ['key', 'index'],
    args: { upTo: 'number' },
    lua: `
      local f = redis.call('ZRANGEBYSCORE', K[2], '-inf', A[1])
      if #f > 0 then
        for i = 1, #f, 1000 do redis.call('HDEL', K[1], unpack(f, i, math.min(i + 999, #f))) end
        redis.call('ZREMRANGEBYSCORE', K[2], '-inf', A[1])
      end`,
    memory: (m, c) => {
      for (const field of m.zpopUpTo(c.index, c.upTo)) m.hash(c.key).delete(field);
    },
  }),
  /**
   * A run of `feedAdd` + `feedTrim` pairs on one feed, as one command: the
   * Redis side folds such runs into it (see compactRuns), so a batch of a busy
   * room trims once instead of once per comment. Each entry is added as
   * feedAdd adds it, the trim to `keep` waits until the end — except when an
   * entry's id is indexed already while a trim is pending: the trim runs
   * first, then the entry is tried again (it may have been trimmed away).
   */
  feedAppend: command({
    keys: ['key', 'index'],
    args: { keep: 'number', eventIds: 'string[]', offsets: 'number[]', members: 'string[]' },
    lua: `
      local function trim()
        local n = redis.call('ZCARD', K[1])
        if n <= A[1] then return end
        local drop = redis.call('ZRANGE', K[1], 0, n - A[1] - 1)
        local ids = {}
        for i, m in ipairs(drop) do
          local o = cjson.decode(m)
          ids[i] = o.kind == 'delete' and ('del:' .. o.deletionId) or o.eventId
        end
        for i = 1, #ids, 1000 do redis.call('HDEL', K[2], unpack(ids, i, math.min(i + 999, #ids))) end
        redis.call('ZREMRANGEBYRANK', K[1], 0, n - A[1] - 1)
      end
      local pending = false
      for i, id in ipairs(A[2]) do
        local added = redis.call('HSETNX', K[2], id, A[3][i]) == 1
        if not added and pending then
          trim()
          pending = false
          added = redis.call('HSETNX', K[2], id, A[3][i]) == 1
        end
        if added then
          redis.call('ZADD', K[1], A[3][i], A[4][i])
          pending = true
        end
      end
      trim()`,
    memory: (m, c) => {
      const idx = m.hash(c.index);
      let pending = false;
      c.eventIds.forEach((id, i) => {
        let added = !idx.has(id);
        if (!added && pending) {
          trimFeed(m, c.key, c.index, c.keep);
          pending = false;
          added = !idx.has(id);
        }
        if (added) {
          idx.set(id, String(c.offsets[i]!));
          m.zadd(c.key, c.members[i]!, c.offsets[i]!);
          pending = true;
        }
      });
      trimFeed(m, c.key, c.index, c.keep);
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
    memory: (m, c) => trimFeed(m, c.key, c.index, c.keep),
  }),
};

function trimFeed(m: MemoryStore, key: string, index: string, keep: number): void {
  const n = m.zset(key).size;
  if (n <= keep) return; // what ZCARD decides first in Lua; spares the sort
  for (const [member] of m.sortedMembers(key).slice(0, n - keep)) {
    m.zrem(key, member);
    m.hash(index).delete(idOfMember(member));
  }
}

/**
 * What the Redis side runs instead of `cmds`: each run of feedAdd + feedTrim
 * pairs on the same feed (same keys, same `keep`) becomes one feedAppend.
 * The same result, for the feeds the projections keep: every index entry
 * names a member of the set under its own id (idOfMember), and each member
 * has its own score. Then deferring the trim changes nothing — the newest
 * `keep` of a set with more entries added loses exactly what trimming after
 * each addition lost (each trim drops what cannot be among the newest
 * `keep` of any superset) — and an id already indexed is found as it would
 * have been (feedAppend trims before it looks again). MemoryStore runs the
 * commands as they are; the processor specs compare the two on real streams.
 */
export function compactRuns(cmds: Cmd[]): Cmd[] {
  const out: Cmd[] = [];
  for (let i = 0; i < cmds.length; ) {
    const add = cmds[i]!;
    const trim = cmds[i + 1];
    if (add.op !== 'feedAdd' || trim?.op !== 'feedTrim' || trim.key !== add.key || trim.index !== add.index) {
      out.push(add);
      i++;
      continue;
    }
    const run: Extract<Cmd, { op: 'feedAppend' }> = { op: 'feedAppend', key: add.key, index: add.index, keep: trim.keep, eventIds: [], offsets: [], members: [] };
    for (;;) {
      const a = cmds[i];
      const t = cmds[i + 1];
      if (a?.op !== 'feedAdd' || t?.op !== 'feedTrim' || a.key !== run.key || a.index !== run.index || t.key !== run.key || t.index !== run.index || t.keep !== run.keep) break;
      run.eventIds.push(a.eventId);
      run.offsets.push(a.offset);
      run.members.push(a.member);
      i += 2;
    }
    out.push(run.eventIds.length === 1 ? add : run, ...(run.eventIds.length === 1 ? [trim] : []));
  }
  return out;
}

/** The types a command field can have, by the name the table uses. */
interface FieldTypes {
  string: string;
  number: number;
  'string[]': string[];
  'number[]': number[];
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
  /**
   * Per sorted set that fieldsExpire has read: a min-heap of [score, member],
   * kept lazily (an entry whose member has another score now, or none, is
   * dropped when it comes up), so expiring is O(log n) per field, not a scan.
   */
  readonly #heaps = new Map<string, [number, string][]>();

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
    const heap = this.#heaps.get(key);
    if (heap) heapPush(heap, [score, member]);
  }

  /** ZRANGEBYSCORE key -inf upTo + ZREMRANGEBYSCORE key -inf upTo: the members removed, lowest first. */
  zpopUpTo(key: string, upTo: number): string[] {
    let heap = this.#heaps.get(key);
    if (!heap) {
      heap = [];
      for (const [m, sc] of this.zset(key)) heapPush(heap, [sc, m]);
      this.#heaps.set(key, heap);
    }
    const out: string[] = [];
    while (heap.length > 0 && heap[0]![0] <= upTo) {
      const [sc, m] = heapPop(heap);
      if (this.zsets.get(key)?.get(m) !== sc) continue; // re-scored or removed since
      this.zrem(key, m);
      out.push(m);
    }
    return out;
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
    this.#heaps.delete(key);
    this.hashes.delete(key);
    this.strings.delete(key);
  }
}

function heapPush(h: [number, string][], x: [number, string]): void {
  h.push(x);
  for (let i = h.length - 1; i > 0; ) {
    const p = (i - 1) >> 1;
    if (h[p]![0] <= h[i]![0]) break;
    [h[p], h[i]] = [h[i]!, h[p]!];
    i = p;
  }
}

function heapPop(h: [number, string][]): [number, string] {
  const top = h[0]!;
  const last = h.pop()!;
  if (h.length > 0) {
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]![0] < h[m]![0]) m = l;
      if (r < h.length && h[r]![0] < h[m]![0]) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
  return top;
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
// ARGV[6] = message, ARGV[7] = seconds the room's keys live ('' = no expiry),
// ARGV[8] = how many of them end KEYS (before the history record, KEYS' last),
// ARGV[9] = the history's first position, ARGV[10..] = the commands' string
// arguments, which the JSON names by their place ("1" = ARGV[10]): feed items pass as they are,
// not escaped into the JSON and unescaped again.
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
local function str(a) if type(a) == 'string' then return ARGV[9 + tonumber(a)] end return a end
for _, c in ipairs(cjson.decode(ARGV[4])) do
  local K = c[2]
  for i, k in ipairs(K) do K[i] = KEYS[k] end
  local A = c[3]
  for i, a in ipairs(A) do
    if type(a) == 'table' then
      for j, x in ipairs(a) do a[j] = str(x) end
    else
      A[i] = str(a)
    end
  end
  run[c[1]](K, A)
end
redis.call('HSET', KEYS[1], 'fence', ARGV[2], 'state', ARGV[3])
local ttl = tonumber(ARGV[7])
if ttl then
  -- The room's keys (the last ARGV[8] of KEYS, the history record last) live
  -- for ttl seconds after its last event; the history record stays.
  local n = tonumber(ARGV[8])
  for i = #KEYS - n, #KEYS - 1 do redis.call('EXPIRE', KEYS[i], ttl) end
  redis.call('HSETNX', KEYS[#KEYS], 'first', ARGV[9])
  redis.call('HSET', KEYS[#KEYS], 'last', ARGV[2])
end
if ARGV[5] ~= '' then redis.call('SPUBLISH', ARGV[5], ARGV[6]) end
return {1}
`;

/**
 * Encodes commands for the script: `[op, [key indexes], [arguments]]`, key
 * names replaced by indexes into KEYS, string arguments by their place in
 * `strings` (as a JSON string: "1" is the first), numbers as they are.
 */
export function encodeCmds(meta: string, cmds: Cmd[]): { keys: string[]; json: string; strings: string[] } {
  const keys = [meta];
  const keyAt = new Map<string, number>([[meta, 1]]);
  const at = (k: string) => {
    let i = keyAt.get(k);
    if (i === undefined) keyAt.set(k, (i = keys.push(k))); // Lua is 1-based
    return i;
  };
  const strings: string[] = [];
  const arg = (v: unknown): unknown => (typeof v === 'string' ? String(strings.push(v)) : v);
  const rows = cmds.map((c) => {
    const s = SPECS[c.op];
    const fields = c as unknown as Record<string, unknown>;
    return [c.op, s.keys.map((k) => at(fields[k] as string)), s.argNames.map((a) => (Array.isArray(fields[a]) ? (fields[a] as unknown[]).map(arg) : arg(fields[a])))];
  });
  return { keys, json: JSON.stringify(rows), strings };
}

// Reads a room's fence and state and, in the same step, the per-user fields a
// batch needs: KEYS[1] = meta, KEYS[2] = the fields' hash, KEYS[3] = its expiry
// index; ARGV = the fields. Returns {fence, state, value1, expiry1, value2, …},
// nil for anything absent (Lua's false, which does not end the reply as nil
// would). One script, so the fields are those of that fence.
export const LOAD_LUA = `
local out = redis.call('HMGET', KEYS[1], 'fence', 'state')
for i = 1, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  local v = redis.call('HMGET', KEYS[2], unpack(ARGV, i, j))
  local s = redis.call('ZMSCORE', KEYS[3], unpack(ARGV, i, j))
  for k = 1, j - i + 1 do
    out[#out + 1] = v[k]
    out[#out + 1] = s[k]
  end
end
return out
`;

// Moves positions forward only: KEYS[1] = hash, ARGV = field, value, held…
// triples. A field is set when the value is above what it holds, so an
// instance that lost a partition in a rebalance cannot move its position back.
// `held` = 1 names a field the caller read or wrote before: if every one of
// those is gone, Redis lost its data under the worker (FLUSHALL, a restart
// without its AOF) — nothing is written and 0 is returned, so the worker
// rebuilds from the log instead of writing positions over a hole (issue 14,
// `npm run chaos -- redis-wipe`). (A rebuild removes one old version's fields
// only, and only once the live group has moved on.)
export const ADVANCE_LUA = `
local held, gone = 0, 0
for i = 1, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    held = held + 1
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then gone = gone + 1 end
  end
end
if held > 0 and gone == held then return 0 end
for i = 1, #ARGV, 3 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
`;

/** A batch's view of a projection's per-user fields: what the fold reads, and the fields' expiry. */
export interface LoadedFields {
  /** field → [value, expireAt (undefined: kept until replaced)] */
  fields: Map<string, [string, number | undefined]>;
}

/** A Lua script run by its SHA1, loaded on first use (NOSCRIPT). */
class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}

const APPLY = new Script(APPLY_LUA);
const LOAD = new Script(LOAD_LUA);
const ADVANCE = new Script(ADVANCE_LUA);

export class RedisStore {
  constructor(private readonly redis: RedisClient) {}

  /**
   * EVALSHA, then EVAL when Redis does not know the script yet. Not ioredis's
   * defineCommand: on a cluster with auto-pipelining, ioredis routes a defined
   * command by its first argument (the key count), so scripts of rooms on
   * different nodes land in one pipeline and fail; EVALSHA's keys it knows.
   */
  private async run<T>(script: Script, keys: string[], args: (string | number)[]): Promise<T> {
    try {
      return (await this.redis.evalsha(script.sha, keys.length, ...keys, ...args)) as T;
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return (await this.redis.eval(script.lua, keys.length, ...keys, ...args)) as T;
    }
  }

  async loadMeta<S>(metaKey: string, initial: () => S): Promise<RoomMeta<S>> {
    const [fence, state] = await this.redis.hmget(metaKey, 'fence', 'state');
    return { fence: fence ? Number(fence) : undefined, state: state ? (JSON.parse(state) as S) : initial() };
  }

  /** The fence and state, and `fields` of the per-user hash `hash` (expiry index `index`), read together. */
  async loadMetaAndFields<S>(metaKey: string, initial: () => S, hash: string, index: string, fields: string[]): Promise<{ meta: RoomMeta<S>; loaded: LoadedFields }> {
    const r = await this.run<(string | null)[]>(LOAD, [metaKey, hash, index], fields);
    const meta = { fence: r[0] ? Number(r[0]) : undefined, state: r[1] ? (JSON.parse(r[1]) as S) : initial() };
    const loaded: LoadedFields = { fields: new Map() };
    fields.forEach((f, i) => {
      const v = r[2 + 2 * i];
      const at = r[3 + 2 * i];
      if (v !== null && v !== undefined) loaded.fields.set(f, [v, at === null || at === undefined ? undefined : Number(at)]);
    });
    return { meta, loaded };
  }

  /**
   * Sets each field of `hash` to its value where that is higher than what it
   * holds. False (and nothing written) when every field in `held` — those the
   * caller read or wrote before — is gone: Redis lost its data.
   */
  async advance(hash: string, values: Map<string, number>, held: ReadonlySet<string> = new Set()): Promise<boolean> {
    if (values.size === 0) return true;
    return (await this.run<number>(ADVANCE, [hash], [...values].flatMap(([f, v]) => [f, String(v), held.has(f) ? '1' : '0']))) === 1;
  }

  /** Sets `key` to `value` unless it holds a larger number (a counter that must never go back). */
  /**
   * Writes outside a room's keys (Effect.external), each on its own key's
   * node: one command per key, never a pipeline or script across slots.
   */
  async writeExternal(writes: readonly ExternalWrite[]): Promise<void> {
    await Promise.all(
      writes.map(async (w) => {
        if (w.value === null) await this.redis.hdel(w.key, w.field);
        else await Promise.all([this.redis.hset(w.key, w.field, w.value), this.redis.pexpire(w.key, w.ttlMs)]);
      }),
    );
  }

  async raise(key: string, value: number): Promise<void> {
    await this.redis.eval(`local c = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end return 1`, 1, key, String(value));
  }

  /**
   * Removes every key under the given prefixes (a room's keys of a projection
   * version, `roomKeys(...)` base + ':'), on every node of a cluster. Used
   * right after Redis lost its data, when the keyspace holds only what was
   * written since, so one SCAN is cheap.
   */
  async removeUnder(match: string, prefixes: string[]): Promise<number> {
    if (prefixes.length === 0) return 0;
    const nodes = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    let removed = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        const mine = keys.filter((k) => prefixes.some((p) => k.startsWith(p)));
        // One DEL per key: on a cluster, keys of different rooms live in different slots.
        for (const k of mine) removed += await node.del(k);
      } while (cursor !== '0');
    }
    return removed;
  }

  /**
   * Applies atomically if the fence is still `expected`; false when it moved
   * (caller refolds). With `expire`, in the same step: every key of the room
   * (meta included) expires `ttlSec` after this effect, and the room's history
   * record (which does not expire) says where its events start (`first`, set
   * once) and end (the new fence).
   */
  async apply(
    metaKey: string,
    expected: number | undefined,
    next: RoomMeta<unknown>,
    cmds: Cmd[],
    notify?: { channel: string; message: string },
    expire?: { ttlSec: number; keys: readonly string[]; history: string; first: number },
  ): Promise<boolean> {
    const { keys, json, strings } = encodeCmds(metaKey, compactRuns(cmds));
    if (expire) keys.push(...expire.keys, expire.history);
    const r = await this.run<[number, string?]>(APPLY, keys, [
      expected === undefined ? '' : String(expected),
      String(next.fence),
      JSON.stringify(next.state),
      json,
      notify?.channel ?? '',
      notify?.message ?? '',
      expire ? String(expire.ttlSec) : '',
      expire ? String(expire.keys.length) : '',
      expire ? String(expire.first) : '',
      ...strings,
    ]);
    return r[0] === 1;
  }

  /** A room's history record for one projection version (see HISTORY_SUFFIX): undefined when it has none. */
  async history(key: string): Promise<{ first: number; last: number } | undefined> {
    const [first, last] = await this.redis.hmget(key, 'first', 'last');
    return first && last ? { first: Number(first), last: Number(last) } : undefined;
  }
}
