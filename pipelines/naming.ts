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
import type { Delta } from './projection.ts';

export interface ProjectionNaming {
  /** Key prefix of everything this deployment writes (isolates deployments and tests). */
  keyPrefix: string;
  groupPrefix: string;
}

export const activeVersionKey = (n: ProjectionNaming, projection: string) => `${n.keyPrefix}proj:${projection}:active`;
export const roomsKey = (n: ProjectionNaming) => `${n.keyPrefix}rooms`;
export const epochKey = (n: ProjectionNaming, room: string) => `${n.keyPrefix}{${room}}:epoch`;
export const notifyChannel = (n: ProjectionNaming, room: string) => `${n.keyPrefix}{${room}}:notify`;
export const groupOf = (n: ProjectionNaming, projection: string, version: number) => `${n.groupPrefix}projector.${projection}.v${version}`;

export async function activeVersion(redis: RedisClient, n: ProjectionNaming, projection: string): Promise<number> {
  const v = await redis.get(activeVersionKey(n, projection));
  return v ? Number(v) : 1;
}

/** The message gateways receive on a room's channel after an effect. */
export interface Notification {
  room: string;
  projection: string;
  version: number;
  /** Offset of the last event the effect covers: the room's position in this projection. */
  offset: number;
  deltas: Delta[];
}
