/**
 * Where projections live and how they are announced: Redis key names,
 * notification channels and consumer group names, plus the notification
 * message itself. Every reader (gateways, replay, tests, the rebuild) may
 * import this without pulling in the runner and its Kafka consumer.
 *
 * Every key of a room carries the room's hash tag `{room}`, so one Lua script
 * can touch them all on a Redis Cluster, and the room's notifications use a
 * sharded channel on the same slot.
 */
import type { RedisClient } from '../core/redis.ts';
import { epochSwitchesKey } from '../topics/generations.ts';
import type { Delta } from './projection.ts';

export interface ProjectionNaming {
  /** Key prefix of everything this deployment writes (isolates deployments and tests). */
  keyPrefix: string;
  groupPrefix: string;
}

export const activeVersionKey = (n: ProjectionNaming, projection: string) => `${n.keyPrefix}proj:${projection}:active`;
/** A room's own epoch; what clients see is this plus the switch counter (see read.ts roomEpoch). */
export const epochKey = (n: ProjectionNaming, room: string) => `${n.keyPrefix}{${room}}:epoch`;
/**
 * How many times a rebuild switched a projection's version or a repartition
 * switched the log's generation. Every room's epoch includes it, so one INCR
 * at a switch moves the epoch of every room — no loop over rooms, no set of
 * every room ever seen. (Declared in topics/generations.ts, the lowest layer
 * that bumps it.)
 */
export const switchesKey = (n: ProjectionNaming) => epochSwitchesKey(n.keyPrefix);
export const notifyChannel = (n: ProjectionNaming, room: string) => `${n.keyPrefix}{${room}}:notify`;
/** The live projections' one consumer group (each projection version keeps its own fences and positions). */
export const liveGroupOf = (n: ProjectionNaming) => `${n.groupPrefix}processors`;
/** A rebuild's group: one projection version read alone from the log's start (also the live groups before the shared one). */
export const groupOf = (n: ProjectionNaming, projection: string, version: number) => `${n.groupPrefix}projector.${projection}.v${version}`;
export const moderatorGroupOf = (n: ProjectionNaming) => `${n.groupPrefix}moderator.v1`;
/** The moderation model stage's group (its Python process gets it as `--group`). */
export const moderationModelGroup = (groupPrefix: string) => `${groupPrefix}moderation-model.v1`;
/** The archiver's group (a later log generation's archiver reads with `<group>.g<G>`, see generationGroup in topics/generations.ts). */
export const archiverGroup = (groupPrefix: string) => `${groupPrefix}archiver.v1`;
/**
 * Per projection version and partition, the next offset the live group must
 * apply to it ("everything below is applied"): hash field
 * `<projection>:v<version>:<partition>`. Written by the live group after
 * each batch, and by a rebuild when it switches (where it stopped).
 */
export const positionsKey = (n: ProjectionNaming) => `${n.keyPrefix}proj:positions`;
/** Generation 0 keeps the field it always had; a later generation's partitions are its own (`…:g<G>:<partition>`). */
export const positionField = (projection: string, version: number, partition: number, generation = 0) =>
  generation === 0 ? `${projection}:v${version}:${partition}` : `${projection}:v${version}:g${generation}:${partition}`;

export async function activeVersion(redis: RedisClient, n: ProjectionNaming, projection: string): Promise<number> {
  const v = await redis.get(activeVersionKey(n, projection));
  return v ? Number(v) : 1;
}

/** The message gateways receive on a room's channel after an effect. */
export interface Notification {
  room: string;
  projection: string;
  version: number;
  /** Position of the last event the effect covers (topics/generations.ts): the room's position in this projection. */
  offset: number;
  deltas: Delta[];
  /** The room's first effect in a new log generation: readers take a fresh snapshot (the epoch moved) instead of applying deltas. */
  resync?: true;
}
