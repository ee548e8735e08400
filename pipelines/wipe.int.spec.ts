/**
 * What lets a processor notice that Redis lost its data (FLUSHALL, a restart
 * without its AOF) and rebuild from the log instead of writing over the hole
 * (runner.ts recoverFromWipe; `npm run chaos -- redis-wipe` drives it end to
 * end): positions only move forward, and an advance whose held fields are all
 * gone writes nothing and says so. On the suite's Redis, under a random prefix
 * (FLUSHALL stands for deleting the prefix's keys).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { openRedis, redisOptions } from '../core/redis.ts';
import { randomName, testConfig } from '../test/helpers.ts';
import { RedisStore } from './store.ts';

const cfg = testConfig();
const redis = openRedis({ ...redisOptions(cfg), name: 'wipe-test' });
const store = new RedisStore(redis);
afterAll(() => redis.disconnect());

describe('positions after Redis lost its data', () => {
  it('advance moves forward only, and refuses (writing nothing) when every held field is gone', async () => {
    const p = randomName('wipe');
    const hash = `${p}:proj:positions`;
    // First batch: nothing held yet.
    expect(await store.advance(hash, new Map([['feed:v1:0', 10], ['tallies:v1:0', 10]]))).toBe(true);
    // Forward only.
    expect(await store.advance(hash, new Map([['feed:v1:0', 5]]), new Set(['feed:v1:0']))).toBe(true);
    expect(await redis.hget(hash, 'feed:v1:0')).toBe('10');
    // One held field removed (a rebuild dropping an old version's fields): not a loss of data.
    await redis.hdel(hash, 'tallies:v1:0');
    expect(await store.advance(hash, new Map([['feed:v1:0', 20], ['tallies:v1:0', 20]]), new Set(['feed:v1:0', 'tallies:v1:0']))).toBe(true);
    // Everything gone: refused, nothing written.
    await redis.del(hash);
    expect(await store.advance(hash, new Map([['feed:v1:0', 30], ['tallies:v1:0', 30]]), new Set(['feed:v1:0', 'tallies:v1:0']))).toBe(false);
    expect(await redis.exists(hash)).toBe(0);
    await redis.del(hash);
  });

  it('removeUnder removes a room\'s keys of the given projection versions only; raise never lowers a counter', async () => {
    const p = randomName('wipe');
    const mine = [`${p}:feed:v1:{r1}:meta`, `${p}:feed:v1:{r1}:z`, `${p}:tallies:v1:{r1}:total`];
    const others = [`${p}:feed:v1:{r2}:z`, `${p}:{r1}:epoch`, `${p}:feed:v1:{r10}:z`];
    for (const k of [...mine, ...others]) await redis.set(k, '1');
    const removed = await store.removeUnder(`${p}:*`, [`${p}:feed:v1:{r1}:`, `${p}:tallies:v1:{r1}:`]);
    expect(removed).toBe(3);
    for (const k of mine) expect(await redis.exists(k)).toBe(0);
    for (const k of others) expect(await redis.exists(k)).toBe(1);
    for (const k of others) await redis.del(k);

    const counter = `${p}:proj:switches`;
    await store.raise(counter, 5);
    await store.raise(counter, 3);
    expect(await redis.get(counter)).toBe('5');
    await store.raise(counter, 1_767_225_600_000);
    expect(await redis.get(counter)).toBe('1767225600000');
    await redis.del(counter);
  });
});
