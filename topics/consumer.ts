/**
 * Reads the event log as typed events. Undecodable or invalid records go to
 * the dead-letter topic with headers saying why, then the offset moves on:
 * nothing is silently dropped, and one bad record never blocks a room.
 *
 * A partition's offset is committed only after the handler resolved, i.e.
 * after the batch's effects are durable; a crash before that redelivers the
 * batch, which is why every handler must be idempotent.
 */
import { backoffMs } from '../core/backoff.ts';
import { AppError, isRetriable } from '../core/errors.ts';
import { isRedisUnavailable } from '../core/redis.ts';
import { EventCodec, EventError } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import type { BatchContext, LogClient, LogConsumer, LogProducer, LogRecord } from './kafka.ts';

export const DLQ_HEADERS = {
  sourceTopic: 'dlq.source.topic',
  sourcePartition: 'dlq.source.partition',
  sourceOffset: 'dlq.source.offset',
  errorCode: 'dlq.error.code',
  errorMessage: 'dlq.error.message',
  consumerGroup: 'dlq.consumer.group',
  failedAt: 'dlq.failed.at',
} as const;

export class DeadLetters {
  constructor(
    private readonly producer: LogProducer,
    readonly topic: string,
    private readonly group: string,
  ) {}

  /** Resolves once the dead letter is durable in Kafka (only then may the source offset move on). */
  async send(record: LogRecord, err: AppError): Promise<void> {
    await this.producer.send({
      topic: this.topic,
      key: record.key?.toString('utf8') ?? '',
      value: record.value ?? Buffer.alloc(0),
      headers: {
        ...record.headers,
        [DLQ_HEADERS.sourceTopic]: record.topic,
        [DLQ_HEADERS.sourcePartition]: String(record.partition),
        [DLQ_HEADERS.sourceOffset]: record.offset,
        [DLQ_HEADERS.errorCode]: err.code,
        [DLQ_HEADERS.errorMessage]: err.message.slice(0, 1000),
        [DLQ_HEADERS.consumerGroup]: this.group,
        [DLQ_HEADERS.failedAt]: new Date().toISOString(),
      },
    });
  }
}

export interface DecodedRecord {
  event: RoomEvent;
  topic: string;
  partition: number;
  offset: string;
  /** Milliseconds since the epoch at which Kafka stored the record. */
  timestamp: number;
}

/** Decodes a batch; records that can never decode are dead-lettered and left out. */
export async function decodeOrDeadLetter(records: LogRecord[], codec: EventCodec, dlq: DeadLetters): Promise<{ decoded: DecodedRecord[]; deadLettered: number }> {
  const decoded: DecodedRecord[] = [];
  let deadLettered = 0;
  for (const r of records) {
    try {
      const event = await codec.decode(r.value);
      decoded.push({ event, topic: r.topic, partition: r.partition, offset: r.offset, timestamp: r.timestamp });
    } catch (err) {
      // A registry that is down is not the record's fault: let the batch retry.
      if (!(err instanceof EventError)) throw err;
      await dlq.send(r, err);
      deadLettered++;
    }
  }
  return { decoded, deadLettered };
}

/** Where a handler needs a batch of a partition to start (see EventConsumerOptions.position). */
export type BatchStart =
  /** Records below this offset are applied everywhere already: not decoded, not handed over (but committed). */
  | { skipBelow: string }
  /** The handler needs records from this earlier offset first: the partition is read again from there, this batch dropped. */
  | { rewindTo: string };

export interface EventConsumerOptions {
  client: LogClient;
  codec: EventCodec;
  topic: string;
  deadLetterTopic: string;
  groupId: string;
  /**
   * Applies a partition's decoded events; must be idempotent (redelivery
   * happens). Called for every batch, with no events when none were left to
   * hand over; `nextOffset` is what is committed once it resolves.
   */
  handle(events: DecodedRecord[], partition: number, nextOffset: string): Promise<void>;
  /** Optional, asked before a batch is decoded: from where the handler needs it. */
  position?(partition: number, firstOffset: string): Promise<BatchStart>;
  onError?(err: unknown): void;
  /** Partitions this member got in a rebalance. */
  onAssigned?(partitions: number[]): void;
  /** A batch was handled and committed: its size as fetched, and how long it took. */
  onBatch?(partition: number, records: number, ms: number): void;
  /** Caps retry backoff of retriable failures. */
  maxBackoffMs?: number;
  /** Batches of different partitions handled at once (a partition's own batches stay in order). */
  partitionsConsumedConcurrently?: number;
  /** Kafka session timeout of the group (how long a dead member keeps its partitions). */
  sessionTimeoutMs?: number;
}

export class EventConsumer {
  private consumer: LogConsumer | undefined;
  private producer: LogProducer | undefined;
  private stopping = false;
  deadLettered = 0;
  processed = 0;

  constructor(private readonly opts: EventConsumerOptions) {}

  async start(signal?: AbortSignal): Promise<void> {
    const { client, topic, groupId } = this.opts;
    this.producer = client.producer({ lingerMs: 0 });
    await this.producer.connect();
    const dlq = new DeadLetters(this.producer, this.opts.deadLetterTopic, groupId);
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    await this.open(dlq);
  }

  /**
   * kafkajs gives up on a consumer after some errors (a member the group
   * forgot while it was stopped, whose re-join then fails its retries) and
   * says so only with a CRASH event without restart: the process lived on,
   * reading nothing, its partitions never handed to anyone (found by `npm run
   * chaos -- processor-stop`: two SIGSTOPs in a row left both processors
   * idle for good). So such a consumer is replaced by a new member of the
   * same group, after a backoff, until it starts.
   */
  private async reopen(old: LogConsumer, dlq: DeadLetters, err: Error): Promise<void> {
    this.opts.onError?.(new Error(`consumer of ${this.opts.groupId} stopped for good (${err.message}): joining the group again`));
    await old.disconnect();
    for (let attempt = 0; !this.stopping; attempt++) {
      await new Promise((r) => setTimeout(r, backoffMs(attempt, this.opts.maxBackoffMs ?? 5000)));
      if (this.stopping) return;
      try {
        await this.open(dlq);
        return;
      } catch (e) {
        this.opts.onError?.(e);
      }
    }
  }

  private async open(dlq: DeadLetters): Promise<void> {
    const { client, topic, groupId } = this.opts;
    const consumer = client.consumer(groupId, { partitionsConsumedConcurrently: this.opts.partitionsConsumedConcurrently, sessionTimeoutMs: this.opts.sessionTimeoutMs });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe([topic], true);
    if (this.opts.onAssigned) consumer.onGroupJoin((a) => this.opts.onAssigned!(a[topic] ?? []));
    consumer.onCrash((err) => {
      if (!this.stopping && this.consumer === consumer) void this.reopen(consumer, dlq, err);
    });
    await consumer.run({
      eachBatch: async (records, ctx) => {
        const t0 = Date.now();
        const partition = records[0]!.partition;
        const next = (BigInt(records[records.length - 1]!.offset) + 1n).toString();
        // kafkajs heartbeats between batches only: a fetch's batches are handled
        // together, and a large one (catching up) may take longer than the
        // session. Keep the membership alive while this one runs.
        const beat = setInterval(() => void ctx.heartbeat().catch(() => {}), 1000);
        try {
          await this.batch(records, ctx, partition, next, t0, dlq);
        } finally {
          clearInterval(beat);
        }
      },
    });
  }

  /** One batch: decode, hand over, commit; retriable failures are retried with backoff, the rest end the consumer. */
  private async batch(records: LogRecord[], ctx: BatchContext, partition: number, next: string, t0: number, dlq: DeadLetters): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopping || !ctx.isActive()) return; // uncommitted: redelivered to whoever owns it next
      try {
        let todo = records;
        const start = await this.opts.position?.(partition, records[0]!.offset);
        if (start && 'rewindTo' in start) {
          ctx.seek(start.rewindTo);
          return; // dropped, uncommitted: the partition is read again from rewindTo
        }
        if (start) todo = records.filter((r) => BigInt(r.offset) >= BigInt(start.skipBelow));
        const { decoded, deadLettered } = await decodeOrDeadLetter(todo, this.opts.codec, dlq);
        await this.opts.handle(decoded, partition, next);
        this.deadLettered += deadLettered;
        this.processed += records.length;
        await ctx.commit(next);
        this.opts.onBatch?.(partition, records.length, Date.now() - t0);
        return;
      } catch (err) {
        this.opts.onError?.(err);
        // Handlers write their effects to Redis: a Redis that cannot be reached is waited out like any retriable error.
        if (!isRetriable(err) && !isRedisUnavailable(err)) throw err;
        await new Promise((r) => setTimeout(r, backoffMs(attempt, this.opts.maxBackoffMs ?? 5000)));
        await ctx.heartbeat().catch(() => {});
      }
    }
  }

  /** Reads an assigned partition again from `offset` (a partition not assigned here is left alone). */
  seek(partition: number, offset: string): void {
    this.consumer?.seek(this.opts.topic, partition, offset);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer?.disconnect();
    await this.producer?.disconnect();
  }
}
