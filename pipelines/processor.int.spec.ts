/**
 * The processors against the real Kafka and Redis, run as real processes:
 * killed with SIGKILL in the middle of a stream of thousands of events and
 * restarted, or run as two instances in one consumer group — either way every
 * projection must equal, key for key, what the pure projections compute from
 * the same log in memory. Runs against a single Redis and a Redis Cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startScript, startService } from '../test/processes.ts';
import type { ServiceProcess } from '../services/spawn.ts';
import { processorWorld } from '../test/processor-world.ts';
import { expectedSnapshot, mixedStream, redisSnapshot } from '../test/streams.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogProducer } from '../topics/kafka.ts';
import { PROJECTION_NAMES, projectionsOf } from './catalog.ts';
import { activeVersionKey, liveGroupOf, notifyChannel, positionField, positionsKey, type Notification } from './naming.ts';
import { readFeed, readRoomState, roomEpoch } from './read.ts';
import { measureLag } from '../topics/lag.ts';

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

  /** A private world per test (services/world.ts): topics, key prefix, consumer groups. */
  async function world() {
    const w = await processorWorld(client, admin, 'proc', 4, {
      REDIS_MODE: mode,
      // Moderation writes events of its own into the log; it has its own spec.
      MODERATION_ENABLED: 'false',
    });
    const { env, cfg, positioned } = w;
    const compare = async () => {
      for (const p of Object.values(projectionsOf(cfg))) {
        // History records included (ROOM_IDLE_TTL_SEC is on by default): where each room starts and ends in the log.
        const expected = expectedSnapshot(p, env.REDIS_KEY_PREFIX, 1, positioned, { history: true });
        const actual = await redisSnapshot(redis, `${env.REDIS_KEY_PREFIX}${p.name}:v1:*`, { history: true });
        expect(Object.keys(actual).sort(), p.name).toEqual(Object.keys(expected).sort());
        expect(actual, p.name).toEqual(expected);
      }
    };
    return { ...w, compare };
  }

  it('loses nothing and applies nothing twice when a processor is killed -9 mid-stream and restarted', async () => {
    const w = await world();
    const rooms = Array.from({ length: 12 }, (_, i) => `room-${i}`);
    const events = mixedStream({ rooms, count: 4000, seed: 7 });
    const first: ServiceProcess = await startService(['pipelines', 'run'], w.env);

    // Produce in chunks while the processor works; kill it once it is part-way through.
    let killedAt: number | undefined;
    for (let i = 0; i < events.length; i += 200) {
      await w.produce(events.slice(i, i + 200));
      if (killedAt === undefined && i >= 1200) {
        const group = liveGroupOf(w.naming);
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

    const second = await startService(['pipelines', 'run'], w.env);
    await waitFor(() => w.caughtUp(), { what: 'all projections to catch up', timeoutMs: 120_000, intervalMs: 500 });
    await second.stop();
    await w.producer.disconnect();
    await w.compare();
  }, 240_000);

  it('two instances in one group split the partitions and together equal one', async () => {
    const w = await world();
    const a = await startService(['pipelines', 'run'], w.env);
    const b = await startService(['pipelines', 'run'], w.env);
    // After the rebalance each instance owns part of the 4 partitions.
    await waitFor(() => {
      const lastAssigned = (p: ServiceProcess) => [...p.output].reverse().find((l) => /processors: assigned partitions/.test(l));
      const la = lastAssigned(a);
      const lb = lastAssigned(b);
      return la && lb && !/\[\]/.test(la) && !/\[\]/.test(lb) && la !== lb ? true : undefined;
    }, { what: 'both instances to own partitions', timeoutMs: 60_000 });
    await w.produce(mixedStream({ rooms: Array.from({ length: 16 }, (_, i) => `r${i}`), count: 2000, seed: 11 }));
    await waitFor(() => w.caughtUp(), { what: 'both instances to catch up', timeoutMs: 120_000, intervalMs: 500 });
    await Promise.all([a.stop(), b.stop()]);
    await w.producer.disconnect();
    await w.compare();
  }, 240_000);

  it('rebuilds a projection beside the live one, switches readers, bumps epochs, and equals live', async () => {
    const w = await world();
    const live = await startService(['pipelines', 'run', '--projections', 'feed,tallies'], w.env);
    const rooms = Array.from({ length: 6 }, (_, i) => `rb-${i}`);
    await w.produce(mixedStream({ rooms, count: 1500, seed: 3 }));
    const naming = w.naming;
    await waitFor(() => w.caughtUp(), { what: 'live feed to catch up', timeoutMs: 60_000, intervalMs: 300 });
    const before = await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v1:*`);
    const epochsBefore = await Promise.all(rooms.map((r) => roomEpoch(redis, naming, r)));

    const rb = startScript('services/cli.ts', ['pipelines', 'rebuild', 'feed'], w.env);
    expect(await rb.exited).toBe(0);
    expect(rb.output.join('\n')).toMatch(/rebuild feed v2 \[.*\] \d+%/); // the progress bar
    expect(rb.output.join('\n')).toMatch(/switched feed to version 2/);
    expect(await redis.get(activeVersionKey(naming, 'feed'))).toBe('2');
    const epochsAfter = await Promise.all(rooms.map((r) => roomEpoch(redis, naming, r)));
    epochsAfter.forEach((e, i) => expect(e).toBe(epochsBefore[i]! + 1));

    // Rebuilt equals live (same content under the new version's key names), old keys gone.
    const after = await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v2:*`);
    const renamed = Object.fromEntries(Object.entries(before).map(([k, v]) => [k.replace(':feed:v1:', ':feed:v2:'), v]));
    expect(after).toEqual(renamed);
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v1:*`)).toEqual({});

    // The live processor follows: new events land in version 2.
    await live.waitForLine(/feed: active version is now 2/);
    await w.produce(mixedStream({ rooms, count: 200, seed: 4, startMs: 1_800_000_000_000 }));
    await waitFor(() => w.caughtUp(), {
      what: 'the live processor to apply new events to version 2',
      timeoutMs: 60_000,
      intervalMs: 300,
    });
    await live.stop();
    await w.producer.disconnect();
    const p = projectionsOf(w.cfg).feed;
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v2:*`)).toEqual(expectedSnapshot(p, w.env.REDIS_KEY_PREFIX, 2, w.positioned));
  }, 240_000);

  it('rebuilds under continuous writes: switches with the live group ahead, and the new version equals a fold of the whole log', async () => {
    const w = await world();
    const live = await startService(['pipelines', 'run', '--projections', 'feed,tallies'], w.env);
    const rooms = Array.from({ length: 8 }, (_, i) => `rw-${i}`);
    await w.produce(mixedStream({ rooms, count: 3000, seed: 21 }));
    // Writes never stop while the rebuild runs: lag 0 never comes, the switch must not wait for it.
    let writing = true;
    let chunks = 0;
    const writer = (async () => {
      while (writing) {
        await w.produce(mixedStream({ rooms, count: 40, seed: 1000 + chunks, startMs: 1_800_000_000_000 + chunks * 5000 }));
        chunks++;
        await new Promise((r) => setTimeout(r, 10)); // pacing of the load, not a wait for a condition
      }
    })();
    const rb = startScript('services/cli.ts', ['pipelines', 'rebuild', 'feed'], w.env);
    expect(await rb.exited).toBe(0);
    const chunksAtSwitch = chunks;
    expect(writing).toBe(true);
    // A few more chunks after the switch, so the live group applies version 2 on its own too.
    await waitFor(() => (chunks >= chunksAtSwitch + 10 ? true : undefined), { what: 'writes after the switch', timeoutMs: 60_000 });
    writing = false;
    await writer;
    const out = rb.output.join('\n');
    expect(out).toMatch(/switched feed to version 2/);
    console.log(out.split('\n').filter((l) => /caught up|switched|removed|done/.test(l)).join('\n'));
    await live.waitForLine(/feed: active version is now 2/);
    await waitFor(() => w.caughtUp(), { what: 'the live group to catch up', timeoutMs: 120_000, intervalMs: 300 });
    await live.stop();
    await w.producer.disconnect();
    // Nothing lost, nothing twice: version 2 is the pure fold of every event, those before, during and after the switch.
    const p = projectionsOf(w.cfg);
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v2:*`)).toEqual(expectedSnapshot(p.feed, w.env.REDIS_KEY_PREFIX, 2, w.positioned));
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}tallies:v1:*`)).toEqual(expectedSnapshot(p.tallies, w.env.REDIS_KEY_PREFIX, 1, w.positioned));
    // The old version is gone, and stays gone: the live group had moved on when it was removed.
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v1:*`)).toEqual({});
    expect(await redis.hget(positionsKey(w.naming), positionField('feed', 1, 0))).toBeNull();
  }, 300_000);

  it('a projection added to the live set later catches up from the log\'s start in the shared group', async () => {
    const w = await world();
    const rooms = Array.from({ length: 5 }, (_, i) => `add-${i}`);
    const first = await startService(['pipelines', 'run', '--projections', 'feed'], w.env);
    await w.produce(mixedStream({ rooms, count: 800, seed: 13 }));
    await waitFor(() => w.caughtUp(), { what: 'feed alone to catch up', timeoutMs: 60_000, intervalMs: 300 });
    await first.stop();
    // tallies has no position in the group: its partitions rewind to their start, feed skips what it has.
    const both = await startService(['pipelines', 'run', '--projections', 'feed,tallies'], w.env);
    await w.produce(mixedStream({ rooms, count: 300, seed: 14, startMs: 1_800_000_000_000 }));
    const ends = new Map<number, number>();
    for (const e of w.positioned) ends.set(e.partition, Math.max(ends.get(e.partition) ?? 0, e.offset + 1));
    const talliesDone = async () => {
      for (const [partition, end] of ends) if (Number(await redis.hget(positionsKey(w.naming), positionField('tallies', 1, partition))) < end) return false;
      return true;
    };
    await waitFor(async () => (await w.caughtUp()) && (await talliesDone()), { what: 'both to catch up', timeoutMs: 60_000, intervalMs: 300 });
    await both.stop();
    await w.producer.disconnect();
    const p = projectionsOf(w.cfg);
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}tallies:v1:*`)).toEqual(expectedSnapshot(p.tallies, w.env.REDIS_KEY_PREFIX, 1, w.positioned));
    expect(await redisSnapshot(redis, `${w.env.REDIS_KEY_PREFIX}feed:v1:*`)).toEqual(expectedSnapshot(p.feed, w.env.REDIS_KEY_PREFIX, 1, w.positioned));
  }, 120_000);

  it('publishes each applied effect on the room\'s sharded channel, in order, and exposes consumer lag as a metric', async () => {
    const w = await world();
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proc = await startService(['pipelines', 'run', '--projections', 'feed'], { ...w.env, PIPELINES_METRICS_PORT: String(port) });
    const naming = { keyPrefix: w.env.REDIS_KEY_PREFIX, groupPrefix: w.env.PIPELINES_GROUP_PREFIX };
    const sub = openRedis({ mode, url: base.redis.url, clusterNodes: base.redis.clusterNodes });
    const got: Notification[] = [];
    sub.on('smessage', (_ch: string, msg: string) => got.push(JSON.parse(msg) as Notification));
    await sub.ssubscribe(notifyChannel(naming, 'hot-room'));
    const events = mixedStream({ rooms: ['hot-room'], count: 300, seed: 5 });
    await w.produce(events);
    const comments = events.filter((e) => e.payload.type === 'CommentPosted').length;
    await waitFor(() => got.flatMap((n) => n.deltas).filter((d) => d.t === 'comment').length === comments || undefined, { what: 'every comment delta', timeoutMs: 30_000 });
    const offsets = got.map((n) => n.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(got.every((n) => n.projection === 'feed' && n.version === 1 && n.room === 'hot-room')).toBe(true);
    const ids = got.flatMap((n) => n.deltas).flatMap((d) => (d.t === 'comment' ? [d.entry.eventId] : []));
    expect(ids).toEqual(events.filter((e) => e.payload.type === 'CommentPosted').map((e) => e.eventId));

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const lagLines = metrics.split('\n').filter((l) => l.startsWith('danmaku_consumer_lag{'));
    expect(lagLines.length).toBeGreaterThan(0);
    expect(lagLines.every((l) => l.includes(liveGroupOf(naming)))).toBe(true);
    expect(metrics).toMatch(/danmaku_projection_events_applied_total\{projection="feed"\} \d+/);
    // Batch sizes as the fetch gave them: every record of the stream went through some batch.
    const batched = /danmaku_consumer_batch_records_sum\{group="[^"]+"\} (\d+)/.exec(metrics);
    expect(Number(batched?.[1])).toBe(events.length);
    sub.disconnect();
    await proc.stop();
    await w.producer.disconnect();
  });

  it('serves the feed by position range (resume, paged) and by time window, and the room state', async () => {
    const w = await world();
    const proc = await startService(['pipelines', 'run', '--projections', 'feed,sampled,tallies,state'], w.env);
    const events = mixedStream({ rooms: ['reader-room'], count: 400, seed: 9 });
    await w.produce(events);
    await waitFor(() => w.caughtUp(), { what: 'catch up', timeoutMs: 60_000, intervalMs: 300 });
    await proc.stop();
    await w.producer.disconnect();
    const naming = { keyPrefix: w.env.REDIS_KEY_PREFIX, groupPrefix: w.env.PIPELINES_GROUP_PREFIX };
    const all = await readFeed(redis, naming, 'reader-room', { view: 'ordered', limit: 10_000 });
    const expected = expectedSnapshot(projectionsOf(w.cfg).feed, w.env.REDIS_KEY_PREFIX, 1, w.positioned);
    const zkey = Object.keys(expected).find((k) => k.endsWith(':z'))!;
    expect(all.items.map((i) => i.offset)).toEqual((expected[zkey] as [string, number][]).map(([, o]) => o));
    expect(all.position.offset).toBe(Math.max(...w.positioned.map((p) => p.offset)));

    // Paging with `afterOffset` yields the same items, no gap, no duplicate.
    const paged = [];
    let after: number | undefined = undefined;
    for (;;) {
      const page = await readFeed(redis, naming, 'reader-room', { view: 'ordered', afterOffset: after, limit: 17 });
      if (page.items.length === 0) break;
      paged.push(...page.items);
      after = page.position.offset;
    }
    expect(paged).toEqual(all.items);

    const mid = all.items[Math.floor(all.items.length / 2)]!.occurredAt;
    const windowed = await readFeed(redis, naming, 'reader-room', { view: 'ordered', fromMs: mid, toMs: mid + 2000, limit: 10_000 });
    expect(windowed.items.length).toBeGreaterThan(0);
    expect(windowed.items).toEqual(all.items.filter((i) => i.occurredAt >= mid && i.occurredAt <= mid + 2000));

    const sampled = await readFeed(redis, naming, 'reader-room', { view: 'sampled', limit: 10_000 });
    expect(sampled.items.length).toBeLessThanOrEqual(all.items.length);
    expect(sampled.rate).toBeGreaterThan(0);

    const state = await readRoomState(redis, naming, 'reader-room', 0);
    const reactions = new Map<string, number>();
    for (const e of events) if (e.payload.type === 'ReactionAdded') reactions.set(e.payload.emoji, (reactions.get(e.payload.emoji) ?? 0) + e.payload.count);
    expect(state.tallies.totals).toEqual(Object.fromEntries(reactions));
  });
});
