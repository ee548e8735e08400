/**
 * Reads the event log as typed events. Undecodable or invalid records go to
 * the dead-letter topic with headers saying why, then the offset moves on:
 * nothing is silently dropped, and one bad record never blocks a room.
 *
 * A partition's offset is committed only after the handler resolved, i.e.
 * after the batch's effects are durable; a crash before that redelivers the
 * batch, which is why every handler must be idempotent.
 */
import { AppError, isRetriable } from '../core/errors.ts';
import { isRedisUnavailable } from '../core/redis.ts';
import { EventCodec, EventError } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import type { LogClient, LogConsumer, LogProducer, LogRecord } from './kafka.ts';

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

export interface EventConsumerOptions {
  client: LogClient;
  codec: EventCodec;
  topic: string;
  deadLetterTopic: string;
  groupId: string;
  /** Applies a partition's decoded events; must be idempotent (redelivery happens). */
  handle(events: DecodedRecord[], partition: number): Promise<void>;
  onError?(err: unknown): void;
  /** Partitions this member got in a rebalance. */
  onAssigned?(partitions: number[]): void;
  /** Caps retry backoff of retriable failures. */
  maxBackoffMs?: number;
}

/** Capped exponential backoff with full jitter (kafkajs's retrier does the same). */
export function backoffMs(attempt: number, capMs: number, baseMs = 100): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}

export class EventConsumer {
  private consumer: LogConsumer | undefined;
  private producer: LogProducer | undefined;
  private stopping = false;
  deadLettered = 0;
  processed = 0;

  constructor(private readonly opts: EventConsumerOptions) {}

  async start(signal?: AbortSignal): Promise<void> {
    const { client, codec, topic, groupId } = this.opts;
    this.producer = client.producer({ lingerMs: 0 });
    await this.producer.connect();
    const dlq = new DeadLetters(this.producer, this.opts.deadLetterTopic, groupId);
    this.consumer = client.consumer(groupId);
    await this.consumer.connect();
    await this.consumer.subscribe([topic], true);
    if (this.opts.onAssigned) this.consumer.onGroupJoin((a) => this.opts.onAssigned!(a[topic] ?? []));
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    await this.consumer.run({
      eachBatch: async (records, ctx) => {
        for (let attempt = 0; ; attempt++) {
          if (this.stopping || !ctx.isActive()) return; // uncommitted: redelivered to whoever owns it next
          try {
            const { decoded, deadLettered } = await decodeOrDeadLetter(records, codec, dlq);
            if (decoded.length > 0) await this.opts.handle(decoded, records[0]!.partition);
            this.deadLettered += deadLettered;
            this.processed += records.length;
            await ctx.commit((BigInt(records[records.length - 1]!.offset) + 1n).toString());
            return;
          } catch (err) {
            this.opts.onError?.(err);
            // Handlers write their effects to Redis: a Redis that cannot be reached is waited out like any retriable error.
            if (!isRetriable(err) && !isRedisUnavailable(err)) throw err;
            await new Promise((r) => setTimeout(r, backoffMs(attempt, this.opts.maxBackoffMs ?? 5000)));
            await ctx.heartbeat().catch(() => {});
          }
        }
      },
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer?.disconnect();
    await this.producer?.disconnect();
  }
}
