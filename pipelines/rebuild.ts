/**
 * `npm run pipelines -- rebuild <projection>`: builds a new version of a
 * projection from the start of the log, beside the live one (new key names,
 * its own consumer group `<prefix>projector.<name>.v<N>`), while the live
 * version keeps serving, then switches to it — also while events keep coming.
 *
 * Switching under steady writes: the rebuild never waits for lag 0 (which
 * never comes). It catches up to a target — the live group's committed
 * offsets per partition, read when it decides — repeating with a fresh
 * target while a round still takes long, so the distance left is what the
 * live group moves during one short round. Then it stops its consumer; its
 * committed offsets H say exactly what it covered: every record below H (and
 * perhaps a few past it, which the fences skip). It publishes H as the new
 * version's positions in the live group (`positionsKey`), then switches the
 * active version and bumps every room's epoch with one INCR of the switch
 * counter.
 *
 * The live group continues correctly: from its next batch it applies the
 * new version, starting at its position H. Where the group is already past H
 * (it kept applying the old version meanwhile), the partition rewinds to H:
 * the other projections skip the records again by their positions, and the
 * new version applies H onwards; its fences skip what the rebuild applied
 * past H. Where the group is behind H, the new version skips up to H. So the
 * new version gets every record exactly once; the lag at the switch is the
 * records between H and the group's position, caught up at processing speed.
 * The old version's keys are removed once the live group has moved on.
 *
 * After a repartition the log has several generations (topics/generations.ts):
 * the rebuild reads each sealed one to its ends, in order (group
 * `<group>.g<N>` for generation N ≥ 1), publishes those ends as the new
 * version's positions there, and does the above on the current generation.
 * Do not run it while a repartition is sealing a generation.
 */
import cliProgress from 'cli-progress';
import type { Config } from '../core/config.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin } from '../topics/kafka.ts';
import { topicNames } from '../topics/topics.ts';
import { projectionsOf, type ProjectionName } from './catalog.ts';
import { activeVersion, activeVersionKey, groupOf, liveGroupOf, positionField, positionsKey, switchesKey, type ProjectionNaming } from './naming.ts';
import { ProjectionWorker } from './runner.ts';
import { readToEnds } from './generations.ts';
import { currentGeneration, generationGroup, readGenerations, unsealed } from '../topics/generations.ts';
import { AppError } from '../core/errors.ts';

export interface RebuildOptions {
  cfg: Config;
  projection: ProjectionName;
  log?: (m: string) => void;
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /** Keep the old version's keys (default: removed after the switch). */
  keepOld?: boolean;
  /** A catch-up round shorter than this is close enough to switch (default 2000 ms). */
  switchRoundMs?: number;
}

export interface RebuildResult {
  from: number;
  to: number;
  events: number;
  rooms: number;
  seconds: number;
  /** Records between where the rebuild stopped and where the live group was at the switch (what it then caught up). */
  lagAtSwitch: number;
}

async function deleteVersion(redis: RedisClient, pattern: string): Promise<number> {
  let n = 0;
  const nodes = 'nodes' in redis && typeof redis.nodes === 'function' ? redis.nodes('master') : [redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', '1000');
      cursor = next;
      // One key per call: in a cluster, keys of different rooms live on different slots.
      for (const k of keys) n += await node.unlink(k);
    } while (cursor !== '0');
  }
  return n;
}

const sum = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** Committed offsets of a group per partition of `ends` (0 where it committed nothing). */
async function committed(admin: LogAdmin, group: string, topic: string, ends: Map<number, number>): Promise<Map<number, number>> {
  const c = await admin.committedOffsets(group, topic);
  return new Map([...ends.keys()].map((p) => [p, Math.max(0, Number(c.get(p) ?? '-1'))]));
}

async function endOffsets(admin: LogAdmin, topic: string): Promise<Map<number, number>> {
  return new Map([...(await admin.endOffsets(topic))].map(([p, o]) => [p, Number(o)]));
}

export async function rebuild(o: RebuildOptions): Promise<RebuildResult> {
  const { cfg } = o;
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const naming: ProjectionNaming = { keyPrefix: cfg.redis.keyPrefix, groupPrefix: cfg.pipelines.groupPrefix };
  const topics = topicNames(cfg);
  const redis = openRedis({ ...redisOptions(cfg), name: 'rebuild' });
  const gens = await readGenerations(redis, naming.keyPrefix, topics.roomEvents, cfg.topics.partitions);
  if (unsealed(gens)) {
    redis.disconnect();
    throw new AppError('ERR_REPARTITION', `log generation ${unsealed(gens)!.generation} is being sealed by a repartition: rebuild once it is done`);
  }
  const current = currentGeneration(gens);
  const topic = current.topic;
  const client = logClient(cfg, 'rebuild');
  const admin = client.admin();
  await admin.connect();
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topics.roomEvents) });
  await codec.init();
  const projection = projectionsOf(cfg)[o.projection];
  const liveGroup = generationGroup(liveGroupOf(naming), current.generation);

  const from = await activeVersion(redis, naming, o.projection);
  // A sequence, not active+1: an abandoned rebuild's version is never reused half-built.
  const seqKey = `${naming.keyPrefix}proj:${o.projection}:seq`;
  await redis.set(seqKey, String(from), 'NX');
  let to = await redis.incr(seqKey);
  if (to <= from) to = from + 1;
  const baseGroup = groupOf(naming, o.projection, to);
  const group = generationGroup(baseGroup, current.generation);
  log(`rebuilding ${o.projection}: version ${from} is live; building version ${to} from the start of the log (group ${baseGroup})`);

  const rooms = new Set<string>();
  const workerFor = (g: typeof current, until?: (p: number) => number | undefined) =>
    new ProjectionWorker({
      client,
      redis,
      codec,
      topic: g.topic,
      generation: g.generation,
      until,
      deadLetterTopic: topics.deadLetter,
      naming,
      groupId: generationGroup(baseGroup, g.generation),
      lanes: () => [{ projection, version: to }],
      notify: false,
      partitionsConsumedConcurrently: cfg.pipelines.partitionsConcurrently,
      idleTtlSec: cfg.pipelines.roomIdleTtlSec,
      onApplied: (_p, room) => rooms.add(room),
    });
  // The sealed generations first, each to its ends: a room's older events before its newer.
  let earlier = { applied: 0, skipped: 0 };
  for (const g of gens.list) {
    if (g === current || !g.ends) continue;
    const ends = g.ends;
    const w = workerFor(g, (p) => Number(ends[String(p)] ?? 0));
    log(`reading log generation ${g.generation} (${g.topic}) to its ends`);
    await w.start();
    while (!readToEnds(ends, await admin.committedOffsets(generationGroup(baseGroup, g.generation), g.topic))) await new Promise((r) => setTimeout(r, 100));
    await w.stop();
    earlier = { applied: earlier.applied + w.applied, skipped: earlier.skipped + w.skipped };
    // Where the new version stands in that generation: at its ends (a live group still reading it goes on from there).
    await redis.hset(positionsKey(naming), Object.fromEntries(Object.entries(ends).map(([p, e]) => [positionField(o.projection, to, Number(p), g.generation), e])));
    await admin.deleteGroups([generationGroup(baseGroup, g.generation)]).catch(() => {});
  }
  const worker = workerFor(current);
  const bar = o.progress
    ? new cliProgress.SingleBar({ format: `rebuild ${o.projection} v${to} [{bar}] {percentage}% | {value}/{total} events | {eta_formatted} left`, noTTYOutput: true, notTTYSchedule: 1000, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(sum(await endOffsets(admin, topic)), 0);
  await worker.start();

  // Catch up to a target: the live group's committed offsets (the head where
  // the live group has not committed: nothing runs it, or not yet). Rounds
  // repeat with a fresh target until one is short: then the live group can
  // only be a short round's worth of records ahead at the switch.
  const roundMs = o.switchRoundMs ?? 2000;
  for (let round = 1; ; round++) {
    const started = Date.now();
    const ends = await endOffsets(admin, topic);
    const live = await admin.committedOffsets(liveGroup, topic);
    const target = new Map([...ends].map(([p, end]) => [p, Number(live.get(p) ?? '-1') >= 0 ? Number(live.get(p)) : end]));
    for (;;) {
      const done = await committed(admin, group, topic, ends);
      const head = sum(await endOffsets(admin, topic));
      bar?.setTotal(head);
      bar?.update(sum(done));
      if ([...target].every(([p, t]) => done.get(p)! >= t)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const took = Date.now() - started;
    if (took <= roundMs || round >= 10) {
      log(`caught up with the live group's offsets (round ${round}, ${took} ms): switching`);
      break;
    }
  }
  await worker.stop();
  bar?.stop();

  // What the rebuild covered: every record below its committed offsets.
  const ends = await endOffsets(admin, topic);
  const covered = await committed(admin, group, topic, ends);
  const liveAt = await committed(admin, liveGroup, topic, ends);
  const lagAtSwitch = [...covered].reduce((a, [p, h]) => a + Math.max(0, liveAt.get(p)! - h), 0);
  // Positions first, then the switch: a live worker that sees the new version finds where it starts.
  const positions = Object.fromEntries([...covered].map(([p, h]) => [positionField(o.projection, to, p, current.generation), String(h)]));
  await redis.hset(positionsKey(naming), positions);
  await redis.set(activeVersionKey(naming, o.projection), String(to));
  // Every room's epoch at once: readers add the switch counter to the room's own epoch.
  const switches = await redis.incr(switchesKey(naming));
  log(`switched ${o.projection} to version ${to}; bumped every room's epoch (switch ${switches}); the live group was ${lagAtSwitch} records past the rebuild`);

  // The old version's keys go once the live group applies the new one: until
  // then a batch it started before the switch may still write the old keys.
  if (!o.keepOld) {
    await untilLiveMovedOn(admin, redis, naming, o.projection, to, covered, liveGroup, topic, current.generation);
    const removed = await deleteVersion(redis, `${naming.keyPrefix}${o.projection}:v${from}:*`);
    const fields = gens.list.flatMap((g) => Array.from({ length: g.generation === current.generation ? Math.max(g.partitions, ends.size) : g.partitions }, (_, p) => positionField(o.projection, from, p, g.generation)));
    await redis.hdel(positionsKey(naming), ...fields);
    log(`removed ${removed} keys of version ${from}`);
  }
  // The live group carries the new version on; the rebuild's group is done.
  await admin.deleteGroups([group]).catch(() => {});
  await admin.disconnect();
  await client.close();
  redis.disconnect();
  const result = { from, to, events: earlier.applied + earlier.skipped + worker.applied + worker.skipped, rooms: rooms.size, seconds: (Date.now() - t0) / 1000, lagAtSwitch };
  log(`done: ${result.events} events in ${result.seconds.toFixed(1)} s (${Math.round(result.events / Math.max(result.seconds, 0.001))} events/s)`);
  return result;
}

/**
 * Waits (30 s at most) until the live group no longer writes the old
 * version: for every partition, its position in the new version moved past
 * where the rebuild stopped, or it has committed everything there is (so no
 * batch of the old version is in flight) — checked after the live workers
 * had time to see the switch. With no live member, nothing writes the old keys.
 */
async function untilLiveMovedOn(admin: LogAdmin, redis: RedisClient, naming: ProjectionNaming, projection: string, to: number, covered: Map<number, number>, liveGroup: string, topic: string, generation: number): Promise<void> {
  if ((await admin.groupMembers(liveGroup).catch(() => 0)) === 0) return;
  const seen = Date.now() + 2500; // the live workers poll the active version every second
  const deadline = Date.now() + 30_000;
  for (;;) {
    const now = Date.now();
    if (now >= deadline) return;
    if (now >= seen) {
      const ends = await endOffsets(admin, topic);
      const live = await committed(admin, liveGroup, topic, ends);
      const pos = await redis.hmget(positionsKey(naming), ...[...covered.keys()].map((p) => positionField(projection, to, p, generation)));
      const done = [...covered].every(([p, h], i) => Number(pos[i] ?? h) > h || live.get(p)! >= ends.get(p)!);
      if (done) return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
