/**
 * The one place Redis connections are made: a single redis-server or a Redis
 * Cluster, behind ioredis's common command interface. Every key of a room
 * carries the room's hash tag (`{room}`), so in a cluster a room's effect and
 * its fence live on one shard and run in one Lua script.
 */
import { Cluster, Redis } from 'ioredis';
import type { Config } from './config.ts';
import { errorChain, isUnreachable } from './errors.ts';

export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  mode: 'single' | 'cluster';
  url: string;
  clusterNodes: string;
  /** Extra client name, shown by CLIENT LIST. */
  name?: string;
}

export function redisOptions(cfg: Config): RedisOptions {
  return { mode: cfg.redis.mode, url: cfg.redis.url, clusterNodes: cfg.redis.clusterNodes };
}

export function openRedis(opts: RedisOptions): RedisClient {
  const client = connect(opts);
  // Without a listener ioredis prints "Unhandled error event" for every reconnect attempt while
  // Redis is down (dozens a second per client, seen in `npm run chaos -- redis-kill`). The
  // commands' own rejections carry the failure to the callers; this says it once per 10 s.
  let said = 0;
  client.on('error', (err: Error) => {
    const now = Date.now();
    if (now - said < 10_000) return;
    said = now;
    console.error(`[redis${opts.name ? ` ${opts.name}` : ''}] ${err.message} (ioredis reconnects by itself)`);
  });
  return client;
}

function connect(opts: RedisOptions): RedisClient {
  if (opts.mode === 'cluster') {
    const nodes = opts.clusterNodes.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host: host!, port: Number(port) };
    });
    return new Cluster(nodes, {
      enableReadyCheck: true,
      // Sharded pub/sub subscribers follow slot moves by themselves.
      shardedSubscribers: true,
      enableAutoPipelining: true,
      redisOptions: { connectionName: opts.name, maxRetriesPerRequest: 3 },
    });
  }
  // Auto-pipelining batches the many small per-room calls of a batch into few round trips.
  return new Redis(opts.url, { connectionName: opts.name, maxRetriesPerRequest: 3, enableAutoPipelining: true });
}

/** The hash tag that keeps all of a room's keys in one cluster slot. */
export const roomTag = (room: string) => `{${room}}`;

/** ioredis's errors for a server it cannot reach (by class name: ioredis does not export these classes). */
const UNREACHABLE_ERRORS = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError']);
// ioredis rejects every pending and new command of a closed connection with a
// plain `Error` carrying only this message (its `CONNECTION_CLOSED_ERROR_MSG`,
// which ioredis itself compares by message); no class, no code. So this one
// message check lives here, beside the client, and nowhere else.
const CONNECTION_CLOSED = 'Connection is closed.';

/**
 * Whether a Redis call failed because Redis could not be reached (retry
 * later), as opposed to Redis refusing the command (a ReplyError: a bug).
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (isUnreachable(err)) return true;
  return errorChain(err).some((e) => (e instanceof Error && (UNREACHABLE_ERRORS.has(e.name) || e.message === CONNECTION_CLOSED)));
}
