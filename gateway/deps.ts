/**
 * The shared clients a gateway runs on, created once and handed to the app
 * as decorations: gateways share nothing but Redis (and Kafka for writes),
 * so any number of them can serve the same rooms.
 */
import type { Config } from '../core/config.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import type { ProjectionNaming } from '../pipelines/naming.ts';
import type { FeedEntry } from '../pipelines/projection.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import type { LogClient, LogProducer } from '../topics/kafka.ts';
import { topicNames, type TopicNames } from '../topics/topics.ts';
import { LogWriter } from '../topics/writer.ts';

export interface GatewayDeps {
  cfg: Config;
  /** Commands (reads, rate limits, idempotency, presence). */
  redis: RedisClient;
  /** A separate connection: a subscribed Redis connection can run nothing else. */
  subscriber: RedisClient;
  log: LogClient;
  producer: LogProducer;
  /** Every write goes through it: to the log's current generation, under a lease a repartition waits on (topics/writer.ts). */
  writer: LogWriter;
  codec: EventCodec;
  naming: ProjectionNaming;
  topics: TopicNames;
  /** The clock, injectable for tests of expiry logic. */
  now(): number;
  /**
   * The archive for replay and analytics, wired by the composition root
   * (archive/reader.ts). Absent: those routes answer 503
   * ERR_ARCHIVE_UNAVAILABLE. In embedded mode only the process holding the
   * data directory has it (the archiver and the gateway in one process).
   */
  archive?: ArchiveReader;
  close(): Promise<void>;
}

/** A replay request as the routes pass it on (the cursor is opaque to the gateway). */
export interface ArchiveReplayQuery {
  room: string;
  view: 'live' | 'moderated' | 'sampled';
  fromMs?: number;
  toMs?: number;
  limit?: number;
  cursor?: string;
  nowMs: number;
  /** The user asking: a shadow-muted user sees their own comments, nobody else does. */
  viewer: string | null;
}

/**
 * What the replay and analytics routes need from the archive. The gateway
 * only knows this shape; the archive's implementation is handed in by the
 * composition root, so gateway/ and archive/ never import each other.
 */
export interface ArchiveReader {
  /**
   * Items of the timeline, then one `end` line with the next page's cursor.
   * Bad input (a cursor it did not issue) and an unavailable archive throw
   * coded errors on the first pull, before anything is sent.
   */
  replay(q: ArchiveReplayQuery): AsyncGenerator<{ type: 'item'; item: unknown } | { type: 'end'; items: number; nextCursor: string | null }>;
  stats(room: string, range: { fromMs?: number; toMs?: number }): Promise<unknown>;
  /** Reactions per second of video time in a replay window, per emoji. */
  tallies(room: string, range: { fromMs: number; toMs: number }): Promise<unknown>;
  /**
   * The comment `eventId` of the room, as posted (deleted or not), for pins
   * and deletions of comments Redis no longer holds; undefined when the room
   * has no such comment. An unavailable archive throws ERR_ARCHIVE_UNAVAILABLE.
   */
  findComment(room: string, eventId: string): Promise<ArchivedComment | undefined>;
  /**
   * The ordered feed's items strictly below log position `below` (the oldest
   * Redis holds) whose time lies in [fromMs, toMs], in (time, position)
   * order, with the feed's removals and shadow rule (gateway/feed-window.ts);
   * also the room's origin (event time of video offset 0, as replay places
   * events without a video offset). Without `below`, only the origin.
   */
  feedWindow(q: ArchiveFeedWindowQuery): Promise<ArchiveFeedWindow>;
  close(): Promise<void>;
}

export interface ArchiveFeedWindowQuery {
  room: string;
  /** event: order by occurredAt; video: by videoOffsetMs (else occurredAt − origin). */
  by: 'event' | 'video';
  fromMs: number;
  toMs: number;
  below?: number;
  /** The last item of the previous page: items strictly after it. */
  after?: { t: number; offset: number };
  limit: number;
  viewer: string | null;
  /** Removals Redis holds as tombstones: [removed comment's id, the removal's position]. */
  removals?: [string, number][];
}

export interface ArchiveFeedWindow {
  origin: number;
  /** Comments as the feed holds them (FeedEntry), each with `t`, its place in the order. */
  items: (FeedEntry & { t: number })[];
  /** More items of the window follow the last one. */
  more: boolean;
  /** False when the archive has not yet archived the room up to `below`. */
  complete: boolean;
}

/** A comment as the archive keeps it: enough to check its author and to pin its text. */
export interface ArchivedComment {
  eventId: string;
  userId: string;
  text: string;
  /** Event time, ms since the epoch. */
  occurredAt: number;
}

export async function createGatewayDeps(cfg: Config, opts: { archive?: ArchiveReader } = {}): Promise<GatewayDeps> {
  const redis = openRedis({ ...redisOptions(cfg), name: `gateway-${cfg.gateway.id}` });
  const subscriber = openRedis({ ...redisOptions(cfg), name: `gateway-sub-${cfg.gateway.id}` });
  const log = logClient(cfg, 'gateway');
  const producer = log.producer();
  const topics = topicNames(cfg);
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topics.roomEvents) });
  await codec.init();
  // Kafka may be down at start; the producer reconnects on the next send and
  // writes answer 503 meanwhile, so a gateway still serves reads.
  await producer.connect().catch(() => undefined);
  const writer = new LogWriter({
    producer,
    redis,
    keyPrefix: cfg.redis.keyPrefix,
    baseTopic: topics.roomEvents,
    partitions: cfg.topics.partitions,
    name: `gateway:${cfg.gateway.id}`,
    leaseMs: cfg.topics.writerLeaseMs,
  });
  // Redis may be down at start too: writes answer 503 until the lease is taken (it is retried every third of it).
  await writer.start().catch(() => undefined);
  return {
    cfg,
    redis,
    subscriber,
    log,
    producer,
    writer,
    codec,
    naming: { keyPrefix: cfg.redis.keyPrefix, groupPrefix: cfg.pipelines.groupPrefix },
    topics,
    now: () => Date.now(),
    archive: opts.archive,
    async close() {
      await writer.stop().catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
      await log.close();
      subscriber.disconnect();
      redis.disconnect();
    },
  };
}
