/**
 * The command table's two executors agree: for every op, generated command
 * sequences applied through MemoryStore and through RedisStore (the Lua
 * script assembled from the table, on a real Redis, single and cluster) leave
 * the same keys with the same contents. This is what lets unit specs,
 * replay and the gap fill trust MemoryStore to say what Redis would hold.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { randomName, testConfig } from '../test/helpers.ts';
import { redisSnapshot, type Snapshot } from '../test/streams.ts';
import { COMMANDS, compactRuns, idOfMember, MemoryStore, RedisStore, type Cmd, type Op } from './store.ts';

const base = testConfig();
const modes = base.test.redisModes.split(',').map((m) => m.trim()) as ('single' | 'cluster')[];

// Small pools, so commands of a sequence keep meeting the same keys, fields and
// scores. Key kinds stay apart (a hash command on a sorted set is a type error
// in Redis, not an effect); index hashes are hashes too, so HSET and HDEL may
// touch them, with integer values as the feed writes there. HINCRBY stays off
// them: offsets near 2^53 plus an increment are exact in Redis (int64) but not
// in a JavaScript number, and nothing increments an index.
const ZSETS = ['z1', 'z2'];
const INDEXES = ['i1', 'i2'];
const COUNTERS = ['h1', 'h2'];
const HASHES = [...COUNTERS, ...INDEXES];
const STRINGS = ['s1', 's2'];
// Per-user fields and their expiry indexes (sorted sets of field names, apart from the feeds' sets of items).
const FIELD_HASHES = ['x1', 'x2'];
const EXPIRY_INDEXES = ['xi1', 'xi2'];
const USERS = ['u1', 'u2', 'u3'];
const IDS = ['e1', 'e2', 'e3', 'del:d1', 'del:d2'];

const score = fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: -1000, max: Number.MAX_SAFE_INTEGER }));
const text = fc.string({ unit: 'grapheme', maxLength: 6 });
/** Sorted-set members are feed items: feedTrim reads their ids back. */
const member = fc.oneof(
  fc.record({ kind: fc.constant('comment'), eventId: fc.constantFrom('e1', 'e2', 'e3'), text }),
  fc.record({ kind: fc.constant('delete'), eventId: fc.constantFrom('e1', 'e2', 'e3'), deletionId: fc.constantFrom('d1', 'd2') }),
).map((o) => JSON.stringify(o));
const field = fc.constantFrom('f1', 'f2', ...IDS);

/** A generator per op: a new op in the table without one is a type error here. */
const generators: { [O in Op]: fc.Arbitrary<Extract<Cmd, { op: O }>> } = {
  ZADD: fc.record({ op: fc.constant('ZADD'), key: fc.constantFrom(...ZSETS), score, member }),
  ZREMRANGEBYSCORE: fc.record({ op: fc.constant('ZREMRANGEBYSCORE'), key: fc.constantFrom(...ZSETS), min: score, max: score }),
  HSET: fc.record({ op: fc.constant('HSET'), key: fc.constantFrom(...HASHES), field, value: fc.integer({ min: -50, max: 50 }).map(String) }),
  HDEL: fc.record({ op: fc.constant('HDEL'), key: fc.constantFrom(...HASHES), fields: fc.array(field, { minLength: 1, maxLength: 3 }) }),
  HINCRBY: fc.record({ op: fc.constant('HINCRBY'), key: fc.constantFrom(...COUNTERS), field, by: fc.integer({ min: -1000, max: 1000 }) }),
  SET: fc.record({ op: fc.constant('SET'), key: fc.constantFrom(...STRINGS), value: text }),
  DEL: fc.record({ op: fc.constant('DEL'), key: fc.constantFrom(...ZSETS, ...HASHES, ...STRINGS, ...FIELD_HASHES, ...EXPIRY_INDEXES) }),
  feedAdd: fc
    .record({ key: fc.constantFrom(...ZSETS), index: fc.constantFrom(...INDEXES), offset: score, member, eventId: fc.option(fc.constantFrom(...IDS)) })
    // Mostly the member's own id, as the projections write it; sometimes another.
    .map(({ eventId, ...c }) => ({ op: 'feedAdd' as const, ...c, eventId: eventId ?? idOfMember(c.member) })),
  feedRemove: fc.record({ op: fc.constant('feedRemove'), key: fc.constantFrom(...ZSETS), index: fc.constantFrom(...INDEXES), eventId: fc.constantFrom(...IDS) }),
  feedTrim: fc.record({ op: fc.constant('feedTrim'), key: fc.constantFrom(...ZSETS), index: fc.constantFrom(...INDEXES), keep: fc.integer({ min: 0, max: 4 }) }),
  feedAppend: fc
    .record({
      key: fc.constantFrom(...ZSETS),
      index: fc.constantFrom(...INDEXES),
      keep: fc.integer({ min: 0, max: 4 }),
      entries: fc.array(fc.record({ offset: score, member, eventId: fc.option(fc.constantFrom(...IDS)) }), { minLength: 1, maxLength: 6 }),
    })
    .map(({ entries, ...c }) => ({
      op: 'feedAppend' as const,
      ...c,
      eventIds: entries.map((e) => e.eventId ?? idOfMember(e.member)),
      offsets: entries.map((e) => e.offset),
      members: entries.map((e) => e.member),
    })),
  fieldSet: fc.record({
    op: fc.constant('fieldSet'),
    key: fc.constantFrom(...FIELD_HASHES),
    index: fc.constantFrom(...EXPIRY_INDEXES),
    field: fc.constantFrom(...USERS),
    value: text,
    expireAt: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  }),
  fieldDel: fc.record({ op: fc.constant('fieldDel'), key: fc.constantFrom(...FIELD_HASHES), index: fc.constantFrom(...EXPIRY_INDEXES), field: fc.constantFrom(...USERS) }),
  fieldsExpire: fc.record({ op: fc.constant('fieldsExpire'), key: fc.constantFrom(...FIELD_HASHES), index: fc.constantFrom(...EXPIRY_INDEXES), upTo: score }),
};
const OPS = Object.keys(COMMANDS) as Op[];
const anyCmd: fc.Arbitrary<Cmd> = fc.oneof(...OPS.map((op) => generators[op] as fc.Arbitrary<Cmd>));

/** Batches (one script each) mostly of `op`, with other commands around it to give it something to act on. */
const batchesOf = (op: Op) =>
  fc.array(fc.array(fc.oneof({ weight: 3, arbitrary: generators[op] as fc.Arbitrary<Cmd> }, { weight: 2, arbitrary: anyCmd }), { maxLength: 8 }), { minLength: 1, maxLength: 5 });

/** Renames the pool's short key names into one room's keys (one hash tag, so the cluster runs one script). */
function placed(prefix: string, cmds: Cmd[]): Cmd[] {
  const rename = (k: string) => `${prefix}{room}:${k}`;
  return cmds.map((c) => ('index' in c ? { ...c, key: rename(c.key), index: rename(c.index) } : { ...c, key: rename(c.key) }));
}

/** MemoryStore's contents in redisSnapshot's shape (Redis drops emptied keys). */
function memorySnapshot(m: MemoryStore): Snapshot {
  const snap: Snapshot = {};
  for (const [k, z] of m.zsets) if (z.size > 0) snap[k] = m.sortedMembers(k);
  for (const [k, h] of m.hashes) if (h.size > 0) snap[k] = Object.fromEntries([...h].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  for (const [k, v] of m.strings) snap[k] = v;
  return snap;
}

describe.each(modes)('the command table on %s Redis', (mode) => {
  let redis: RedisClient;
  let store: RedisStore;
  const id = randomName('store');
  let run = 0;
  beforeAll(() => {
    redis = openRedis({ mode, url: base.redis.url, clusterNodes: base.redis.clusterNodes });
    store = new RedisStore(redis);
  });
  afterAll(() => redis.disconnect());

  it('has a generator for every op', () => {
    expect(Object.keys(generators).sort()).toEqual([...OPS].sort());
  });

  it('the load script reads the fence, the state and the fields (with their expiry) as MemoryStore holds them', async () => {
    const fieldOps = fc.array(fc.oneof(generators.fieldSet, generators.fieldDel, generators.fieldsExpire) as fc.Arbitrary<Cmd>, { minLength: 1, maxLength: 12 });
    await fc.assert(
      fc.asyncProperty(fieldOps, async (batch) => {
        const prefix = `${id}:${run++}:`;
        const meta = `${prefix}{room}:meta`;
        const cmds = placed(prefix, batch);
        const memory = new MemoryStore();
        memory.exec(cmds);
        expect(await store.apply(meta, undefined, { fence: 7, state: { s: 1 } }, cmds)).toBe(true);
        for (const [h, x] of FIELD_HASHES.map((h, i) => [h, EXPIRY_INDEXES[i]!] as const)) {
          const [key, index] = [`${prefix}{room}:${h}`, `${prefix}{room}:${x}`];
          const got = await store.loadMetaAndFields(meta, () => ({}), key, index, [...USERS, 'nobody']);
          expect(got.meta).toEqual({ fence: 7, state: { s: 1 } });
          const want = new Map<string, [string, number | undefined]>();
          for (const u of USERS) {
            const v = memory.hashes.get(key)?.get(u);
            if (v !== undefined) want.set(u, [v, memory.zsets.get(index)?.get(u)]);
          }
          expect(got.loaded.fields).toEqual(want);
        }
        const keys = Object.keys(await redisSnapshot(redis, `${prefix}*`));
        if (keys.length > 0) await redis.del(...keys);
      }),
      { numRuns: 40 },
    );
  });

  it.each(OPS)('%s: MemoryStore and the Lua script leave the same keys', async (op) => {
    await fc.assert(
      fc.asyncProperty(batchesOf(op), async (batches) => {
        const prefix = `${id}:${run++}:`;
        const meta = `${prefix}{room}:meta`;
        const memory = new MemoryStore();
        let fence: number | undefined;
        for (const [i, batch] of batches.entries()) {
          const cmds = placed(prefix, batch);
          // What the script runs: runs of add + trim pairs folded into feedAppend (compactRuns).
          memory.exec(compactRuns(cmds));
          expect(await store.apply(meta, fence, { fence: i, state: { batch: i } }, cmds)).toBe(true);
          fence = i;
        }
        const actual = await redisSnapshot(redis, `${prefix}*`);
        const keys = Object.keys(actual);
        if (keys.length > 0) await redis.del(...keys); // one hash tag: one slot
        expect(actual[meta]).toEqual({ fence: String(fence), state: { batch: fence } });
        delete actual[meta];
        expect(actual).toEqual(memorySnapshot(memory));
      }),
      { numRuns: 40 },
    );
  });
});
