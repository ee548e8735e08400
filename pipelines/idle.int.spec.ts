/**
 * Idle rooms leave Redis and come back from the log (issue 14, item 4): a
 * room's projection keys expire ROOM_IDLE_TTL_SEC after its last event, and
 * when it gets an event again the processor restores its state from the log
 * before applying it, so every projection equals, key for key, the pure fold
 * of the room's whole log — as if the keys had never left. Real processes,
 * Kafka and Redis (single and cluster), a private world per test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startService } from '../test/processes.ts';
import { processorWorld } from '../test/processor-world.ts';
import { expectedSnapshot, mixedStream, redisSnapshot } from '../test/streams.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin } from '../topics/kafka.ts';
import { projectionsOf } from './catalog.ts';
import { HISTORY_SUFFIX, roomKeys } from './projection.ts';
import { readFeed } from './read.ts';

const base = testConfig();
const modes = base.test.redisModes.split(',').map((m) => m.trim()) as ('single' | 'cluster')[];

describe.each(modes)('idle rooms on %s Redis', (mode) => {
  const client = logClient(base, 'idle-test');
  let admin: LogAdmin;
  let redis: RedisClient;
  beforeAll(async () => {
    admin = client.admin();
    await admin.connect();
    redis = openRedis({ mode, url: base.redis.url, clusterNodes: base.redis.clusterNodes });
  });
  afterAll(async () => {
    await admin.disconnect();
    await client.close();
    redis.disconnect();
  });

  it('expires a room\'s keys when it is idle, keeps its history record, and restores it from the log on its next event', async () => {
    const { env, cfg, naming, producer, produce, positioned, caughtUp } = await processorWorld(client, admin, 'idle', 2, { REDIS_MODE: mode, MODERATION_ENABLED: 'false' });
    const projections = Object.values(projectionsOf(cfg));
    const rooms = ['idle-a', 'idle-b', 'idle-c'];
    // Not a room of the test: it keeps the partitions busy while the others are idle (its keys stay).
    const busy = 'busy-room';

    // 1. A processor whose rooms expire 2 s after their last event.
    const first = await startService(['pipelines', 'run'], { ...env, ROOM_IDLE_TTL_SEC: '2' });
    await produce(mixedStream({ rooms, count: 600, seed: 5 }));
    await waitFor(caughtUp, { what: 'the processor to apply the first part', timeoutMs: 60_000, intervalMs: 300 });
    const feedKeys = roomKeys(env.REDIS_KEY_PREFIX, 'feed', 1, 'idle-a');
    const ttl = await redis.pttl(feedKeys.meta);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2000);
    const before = (await readFeed(redis, naming, 'idle-a', { view: 'ordered', limit: 1000 })).items.length;
    expect(before).toBeGreaterThan(0);

    // 2. Idle: every projection key of the rooms goes; the history records stay (they never expire).
    const roomsOnly = async () => {
      const left: string[] = [];
      for (const p of projections) left.push(...Object.keys(await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}${p.name}:v1:*`)));
      return left;
    };
    await waitFor(async () => ((await roomsOnly()).length === 0 ? true : undefined), { what: 'the idle rooms\' keys to expire', timeoutMs: 30_000, intervalMs: 250 });
    for (const p of projections) for (const room of rooms) {
      const h = roomKeys(env.REDIS_KEY_PREFIX, p.name, 1, room).key(HISTORY_SUFFIX);
      expect(await redis.pttl(h), `${h} never expires`).toBe(-1);
    }
    expect((await readFeed(redis, naming, 'idle-a', { view: 'ordered', limit: 1000 })).items).toEqual([]);
    await first.stop();

    // 3. The rooms come back, under a processor that keeps keys for an hour (so the comparison is not a race with expiry).
    const second = await startService(['pipelines', 'run'], { ...env, ROOM_IDLE_TTL_SEC: '3600' });
    await produce(mixedStream({ rooms: [...rooms, busy], count: 300, seed: 6, startMs: 1_800_000_000_000 }));
    await waitFor(caughtUp, { what: 'the processor to apply the second part', timeoutMs: 60_000, intervalMs: 300 });
    await second.waitForLine(/restored idle-a \(feed v1\) from \d+ events of the log/);
    await second.stop();
    await producer.disconnect();

    // Every projection, history records included, is the pure fold of the whole log: nothing lost, nothing twice.
    for (const p of projections) {
      const actual = await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}${p.name}:v1:*`, { history: true });
      const expected = expectedSnapshot(p, env.REDIS_KEY_PREFIX, 1, positioned, { history: true });
      expect(Object.keys(actual).sort(), p.name).toEqual(Object.keys(expected).sort());
      expect(actual, p.name).toEqual(expected);
    }
    expect((await readFeed(redis, naming, 'idle-a', { view: 'ordered', limit: 1000 })).items.length).toBeGreaterThan(before);
  }, 240_000);
});
