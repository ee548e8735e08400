/**
 * Sampling is deterministic: the busiest stretch of a real chat log (from
 * ../shared/data, when present) run twice through Kafka and two separate
 * processors gives identical sampled feeds, at most K kept comments per second.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { prepareLog, worldEnv, worldId } from '../services/world.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startService } from '../test/processes.ts';
import { busiestStretch, redisSnapshot } from '../test/streams.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin } from '../topics/kafka.ts';
import { liveGroupOf } from './naming.ts';
import { measureLag } from '../topics/lag.ts';

const base = testConfig();
const stretch = busiestStretch('asoul', 1_767_225_600_000);

describe.skipIf(!stretch)('sampled feed on a real chat log', () => {
  const client = logClient(base, 'sampling-test');
  let admin: LogAdmin;
  let redis: RedisClient;
  beforeAll(async () => {
    admin = client.admin();
    await admin.connect();
    redis = openRedis({ mode: 'single', url: base.redis.url, clusterNodes: base.redis.clusterNodes });
  });
  afterAll(async () => {
    await admin.disconnect();
    await client.close();
    redis.disconnect();
  });

  it('gives the same sample in two independent runs, within K per second', async () => {
    const events = stretch!;
    expect(events.length).toBeGreaterThan(1000);
    const snapshots = [];
    for (let run = 0; run < 2; run++) {
      const id = worldId('sampling');
      const env = worldEnv(id, 1, { SAMPLED_PER_SECOND: '3', MODERATION_ENABLED: 'false' });
      await prepareLog(env);
      const codec = new EventCodec({ registry: createRegistry(base.registry.url), subject: subjectFor(id) });
      await codec.init();
      const producer = client.producer();
      await producer.connect();
      await Promise.all(events.map((e) => producer.send({ topic: id, key: e.roomId, value: codec.encode(e) })));
      await producer.disconnect();
      const proc = await startService(['pipelines', 'run', '--projections', 'sampled'], env);
      const group = liveGroupOf({ keyPrefix: env.REDIS_KEY_PREFIX, groupPrefix: env.PIPELINES_GROUP_PREFIX });
      await waitFor(async () => [...(await measureLag(admin, group, id)).values()].every((n) => n === 0), { what: 'the sample', timeoutMs: 120_000, intervalMs: 300 });
      await proc.stop();
      const snap = await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}sampled:v1:*`);
      snapshots.push(Object.fromEntries(Object.entries(snap).map(([k, v]) => [k.slice(env.REDIS_KEY_PREFIX.length), v])));
    }
    expect(snapshots[1]).toEqual(snapshots[0]);
    const z = Object.entries(snapshots[0]!).find(([k]) => k.endsWith(':z'))![1] as [string, number][];
    const perSecond = new Map<number, number>();
    for (const [m] of z) {
      const s = Math.floor((JSON.parse(m) as { occurredAt: number }).occurredAt / 1000);
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    }
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(3);
    console.log(`sampled feed kept ${z.length} of ${events.length} real comments (3 minutes, K = 3/s)`);
  });
});
