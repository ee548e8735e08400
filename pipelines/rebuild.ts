/**
 * `npm run pipelines -- rebuild <projection>`: builds a new version of a
 * projection from the start of the log, beside the live one (new key names,
 * new consumer group), while the live version keeps serving. Once the new
 * version has caught up with the head of the log it becomes the active one:
 * readers switch, every room's epoch is bumped (clients holding positions of
 * the old version resync), and the live processors, which watch the active
 * version, continue in the new version's consumer group from where the
 * rebuild committed. The old version's keys are then removed.
 */
import cliProgress from 'cli-progress';
import type { Config } from '../core/config.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { topicNames } from '../topics/topics.ts';
import { projectionsOf, type ProjectionName } from './catalog.ts';
import { activeVersion, activeVersionKey, epochKey, notifyChannel, roomsKey, type Notification, type ProjectionNaming } from './naming.ts';
import { ProjectionWorker } from './runner.ts';
import { measureLag } from '../topics/lag.ts';

export interface RebuildOptions {
  cfg: Config;
  projection: ProjectionName;
  log?: (m: string) => void;
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /** Keep the old version's keys (default: removed after the switch). */
  keepOld?: boolean;
}

export interface RebuildResult {
  from: number;
  to: number;
  events: number;
  rooms: number;
  seconds: number;
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

export async function rebuild(o: RebuildOptions): Promise<RebuildResult> {
  const { cfg } = o;
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const naming: ProjectionNaming = { keyPrefix: cfg.redis.keyPrefix, groupPrefix: cfg.pipelines.groupPrefix };
  const topics = topicNames(cfg);
  const redis = openRedis({ ...redisOptions(cfg), name: 'rebuild' });
  const client = logClient(cfg, 'rebuild');
  const admin = client.admin();
  await admin.connect();
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topics.roomEvents) });
  await codec.init();
  const projection = projectionsOf(cfg)[o.projection];

  const from = await activeVersion(redis, naming, o.projection);
  // A sequence, not active+1: an abandoned rebuild's version is never reused half-built.
  const seqKey = `${naming.keyPrefix}proj:${o.projection}:seq`;
  await redis.set(seqKey, String(from), 'NX');
  let to = await redis.incr(seqKey);
  if (to <= from) to = from + 1;
  log(`rebuilding ${o.projection}: version ${from} is live; building version ${to} from the start of ${topics.roomEvents}`);

  const worker = new ProjectionWorker({ client, redis, codec, topic: topics.roomEvents, deadLetterTopic: topics.deadLetter, naming, projection, version: to, notify: false });
  const ends = await admin.endOffsets(topics.roomEvents);
  const total = [...ends.values()].reduce((a, b) => a + Number(b), 0);
  const bar = o.progress
    ? new cliProgress.SingleBar({ format: `rebuild ${o.projection} v${to} [{bar}] {percentage}% | {value}/{total} events | {eta_formatted} left`, noTTYOutput: true, notTTYSchedule: 1000, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(total, 0);
  await worker.start();

  // Caught up = the rebuild's group has committed up to the head of every partition.
  for (;;) {
    const lag = await measureLag(admin, worker.groupId, topics.roomEvents);
    const behind = [...lag.values()].reduce((a, b) => a + b, 0);
    const head = [...(await admin.endOffsets(topics.roomEvents)).values()].reduce((a, b) => a + Number(b), 0);
    bar?.setTotal(head);
    bar?.update(head - behind);
    if (behind === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await worker.stop();
  bar?.stop();

  // Switch readers, then tell every room's clients to resync.
  await redis.set(activeVersionKey(naming, o.projection), String(to));
  const rooms = await redis.smembers(roomsKey(naming));
  for (const room of rooms) {
    await redis.incr(epochKey(naming, room));
    const n: Notification & { resync: true } = { room, projection: o.projection, version: to, offset: -1, deltas: [], resync: true };
    await redis.spublish(notifyChannel(naming, room), JSON.stringify(n));
  }
  log(`switched ${o.projection} to version ${to}; bumped the epoch of ${rooms.length} rooms`);
  if (!o.keepOld) {
    const removed = await deleteVersion(redis, `${naming.keyPrefix}${o.projection}:v${from}:*`);
    log(`removed ${removed} keys of version ${from}`);
  }
  await admin.disconnect();
  await client.close();
  redis.disconnect();
  const result = { from, to, events: worker.applied + worker.skipped, rooms: rooms.length, seconds: (Date.now() - t0) / 1000 };
  log(`done: ${result.events} events in ${result.seconds.toFixed(1)} s (${Math.round(result.events / Math.max(result.seconds, 0.001))} events/s)`);
  return result;
}
