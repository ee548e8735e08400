/**
 * The processors against the real Kafka and Redis, run as real processes:
 * killed with SIGKILL in the middle of a stream of thousands of events and
 * restarted, or run as two instances in one consumer group — either way every
 * projection must equal, key for key, what the pure projections compute from
 * the same log in memory. Runs against a single Redis and a Redis Cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { randomName, testConfig, waitFor } from '../test/helpers.ts';
import { startScript, type Proc } from '../test/processes.ts';
import { expectedSnapshot, mixedStream, redisSnapshot } from '../test/streams.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogProducer } from '../topics/kafka.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import { PROJECTION_NAMES, projectionsOf } from './catalog.ts';
import type { PositionedEvent } from './projection.ts';
import { groupOf } from './runner.ts';
import { measureLag } from './service.ts';

const base = testConfig();
const modes = base.test.redisModes.split(',').map((m) => m.trim()) as ('single' | 'cluster')[];

describe.each(modes)('processors on %s Redis', (mode) => {
  const client = logClient(base, 'processor-test');
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

  /** A private world per test: topics, key prefix, consumer groups. */
  async function world() {
    const id = randomName('proc');
    const env = {
      TOPIC_ROOM_EVENTS: `${id}`,
      TOPIC_DEAD_LETTER: `${id}.dlq`,
      REDIS_KEY_PREFIX: `${id}:`,
      PIPELINES_GROUP_PREFIX: `${id}.`,
      PIPELINES_METRICS_PORT: '0',
      REDIS_MODE: mode,
      TOPIC_PARTITIONS: '4',
    };
    const cfg = testConfig(env);
    await applyTopics(admin, declaredTopics(cfg, { roomEvents: env.TOPIC_ROOM_EVENTS, deadLetter: env.TOPIC_DEAD_LETTER }));
    const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS) });
    await codec.init();
    const producer = client.producer();
    await producer.connect();
    const positioned: PositionedEvent[] = [];
    const produce = async (events: RoomEvent[]) => {
      const acks = await Promise.all(events.map((e) => producer.send({ topic: env.TOPIC_ROOM_EVENTS, key: e.roomId, value: codec.encode(e) })));
      acks.forEach((a, i) => positioned.push({ event: events[i]!, offset: Number(a.offset), partition: a.partition }));
    };
    const caughtUp = async () => {
      for (const name of PROJECTION_NAMES) {
        const lag = await measureLag(admin, groupOf({ keyPrefix: env.REDIS_KEY_PREFIX, groupPrefix: env.PIPELINES_GROUP_PREFIX }, name, 1), env.TOPIC_ROOM_EVENTS);
        if ([...lag.values()].some((n) => n > 0)) return false;
      }
      return true;
    };
    const compare = async () => {
      for (const p of Object.values(projectionsOf(cfg))) {
        const expected = expectedSnapshot(p, env.REDIS_KEY_PREFIX, 1, positioned);
        const actual = await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}${p.name}:v1:*`);
        expect(Object.keys(actual).sort(), p.name).toEqual(Object.keys(expected).sort());
        expect(actual, p.name).toEqual(expected);
      }
    };
    return { env, cfg, producer, produce, positioned, caughtUp, compare };
  }

  it('loses nothing and applies nothing twice when a processor is killed -9 mid-stream and restarted', async () => {
    const w = await world();
    const rooms = Array.from({ length: 12 }, (_, i) => `room-${i}`);
    const events = mixedStream({ rooms, count: 4000, seed: 7 });
    const first: Proc = startScript('pipelines/cli.ts', ['run'], w.env);
    await first.waitForLine(/ready/);

    // Produce in chunks while the processor works; kill it once it is part-way through.
    let killedAt: number | undefined;
    for (let i = 0; i < events.length; i += 200) {
      await w.produce(events.slice(i, i + 200));
      if (killedAt === undefined && i >= 1200) {
        const group = groupOf({ keyPrefix: w.env.REDIS_KEY_PREFIX, groupPrefix: w.env.PIPELINES_GROUP_PREFIX }, 'feed', 1);
        await waitFor(async () => {
          const lag = await measureLag(admin, group, w.env.TOPIC_ROOM_EVENTS);
          const behind = [...lag.values()].reduce((a, b) => a + b, 0);
          return behind < w.positioned.length - 200 ? true : undefined; // it has applied a good part
        }, { what: 'the processor to make progress', timeoutMs: 60_000 });
        await first.kill9();
        killedAt = w.positioned.length;
      }
    }
    expect(killedAt).toBeGreaterThan(0);
    expect(killedAt).toBeLessThan(events.length);
    expect(await w.caughtUp()).toBe(false); // the kill really left work undone

    const second = startScript('pipelines/cli.ts', ['run'], w.env);
    await second.waitForLine(/ready/);
    await waitFor(() => w.caughtUp(), { what: 'all projections to catch up', timeoutMs: 120_000, intervalMs: 500 });
    await second.stop();
    await w.producer.disconnect();
    await w.compare();
  });

  it('two instances in one group split the partitions and together equal one', async () => {
    const w = await world();
    const a = startScript('pipelines/cli.ts', ['run'], w.env);
    await a.waitForLine(/ready/);
    const b = startScript('pipelines/cli.ts', ['run'], w.env);
    await b.waitForLine(/ready/);
    // After the rebalance each instance owns part of the 4 partitions.
    await waitFor(() => {
      const lastAssigned = (p: Proc) => [...p.output].reverse().find((l) => /feed: assigned partitions/.test(l));
      const la = lastAssigned(a);
      const lb = lastAssigned(b);
      return la && lb && !/\[\]/.test(la) && !/\[\]/.test(lb) && la !== lb ? true : undefined;
    }, { what: 'both instances to own partitions', timeoutMs: 60_000 });
    await w.produce(mixedStream({ rooms: Array.from({ length: 16 }, (_, i) => `r${i}`), count: 2000, seed: 11 }));
    await waitFor(() => w.caughtUp(), { what: 'both instances to catch up', timeoutMs: 120_000, intervalMs: 500 });
    await Promise.all([a.stop(), b.stop()]);
    await w.producer.disconnect();
    await w.compare();
  });
});
