/**
 * A processor the group forgot comes back as a member (topics/consumer.ts
 * reopen). SIGSTOP one of two processors under load past the session
 * timeout: the other takes its partitions; SIGCONT it — its batch in hand
 * fails to commit (the coordinator no longer knows the member), and kafkajs
 * gives up on that consumer for good. Before the fix the process lived on
 * reading nothing, so when its successor then died, the log stalled for good
 * (found by `npm run chaos -- processor-stop` with two repetitions). Now the
 * continued processor joins the group again, and after its successor is
 * killed it applies everything: the projections equal the pure fold of the
 * log. Real processes, Kafka and Redis.
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

const base = testConfig();

describe('a processor the group forgot while it was stopped', () => {
  const client = logClient(base, 'rejoin-test');
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

  it('joins the group again when continued, and takes over everything when its successor dies', async () => {
    const { env, cfg, producer, produce, positioned, caughtUp } = await processorWorld(client, admin, 'rejoin', 4, { MODERATION_ENABLED: 'false', PIPELINES_SESSION_TIMEOUT_MS: '6000' });
    const rooms = Array.from({ length: 12 }, (_, i) => `rj-${i}`);

    const a = await startService(['pipelines', 'run'], env);
    const b = await startService(['pipelines', 'run'], env);
    const owns = (p: typeof a, all: boolean) => {
      const last = [...p.output].reverse().find((l) => /processors: assigned partitions/.test(l));
      return last !== undefined && (all ? /\[0,1,2,3\]/.test(last) : !/\[\]/.test(last));
    };
    await waitFor(() => (owns(a, false) && owns(b, false) ? true : undefined), { what: 'both processors to own partitions', timeoutMs: 60_000 });

    // Steady writes throughout, so the stopped processor is in the middle of a batch.
    let writing = true;
    let chunk = 0;
    const writer = (async () => {
      while (writing) {
        await produce(mixedStream({ rooms, count: 20, seed: 100 + chunk, startMs: 1_800_000_000_000 + chunk * 2000 }));
        chunk++;
        await new Promise((r) => setTimeout(r, 50)); // pacing of the load, not a wait for a condition
      }
    })();
    await waitFor(() => (chunk >= 20 ? true : undefined), { what: 'load to run', timeoutMs: 30_000 });
    process.kill(a.pid, 'SIGSTOP');
    const aOutput = a.output.length;
    try {
      await waitFor(() => (owns(b, true) ? true : undefined), { what: 'the other processor to take every partition', timeoutMs: 60_000 });
    } finally {
      process.kill(a.pid, 'SIGCONT');
    }
    // Back as a member: a new assignment for it (the rebalance its return causes).
    await waitFor(() => (a.output.slice(aOutput).some((l) => /processors: assigned partitions \[\d/.test(l)) ? true : undefined), {
      what: 'the continued processor to join the group again',
      timeoutMs: 60_000,
    });
    await b.kill9();
    await waitFor(() => (owns(a, true) ? true : undefined), { what: 'the continued processor to take every partition', timeoutMs: 60_000 });
    writing = false;
    await writer;
    await waitFor(caughtUp, { what: 'everything to be applied by the continued processor', timeoutMs: 120_000, intervalMs: 500 });
    await a.stop();
    await producer.disconnect();
    for (const p of Object.values(projectionsOf(cfg))) {
      expect(await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}${p.name}:v1:*`), p.name).toEqual(expectedSnapshot(p, env.REDIS_KEY_PREFIX, 1, positioned));
    }
  }, 240_000);
});
