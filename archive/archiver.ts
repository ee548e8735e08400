/**
 * The archiver: every event of every kind, from the log into ClickHouse's
 * `events` table, in batches, exactly once in effect.
 *
 * Per fetched partition batch (one room lives in one partition, so a batch is
 * in log order): decode (undecodable records go to the dead-letter topic),
 * cut into inserts of at most `batchRows`, and for each insert
 *   1. journal its offset range in `archive_batches`,
 *   2. insert it with insert_deduplication_token = <topic>/<partition>/<first>-<last>,
 *   3. only then commit the Kafka offset after it.
 * A crash anywhere leaves the offset at the start of that insert. On restart
 * the journal says which range was being inserted there, and the very same
 * block is sent again with the very same token: each table (events and every
 * materialized view) drops it if it already had it and takes it otherwise. So
 * neither a kill -9 nor a redelivery leaves a duplicate or a gap — and the
 * events table, a ReplacingMergeTree keyed by event id, would collapse any
 * duplicate that got through anyway (a re-produced event, a zombie instance).
 *
 * Time bound: Kafka is the buffer. When a batch is not full and its events are
 * fresh (the archiver is at the head of the log), the archiver waits until
 * `batchMs` has passed since the partition's previous insert, so at low
 * traffic a partition gets about one insert per `batchMs` (few parts), and an
 * event waits about `batchMs` plus one fetch before it is queryable. Behind
 * the head (catching up), every batch goes at once.
 *
 * ClickHouse (or the registry) unavailable: capped, jittered exponential
 * backoff with heartbeats, nothing committed meanwhile; then it catches up.
 */
import { backoffMs } from '../core/backoff.ts';
import type { ClickHouse } from '../core/clickhouse.ts';
import { AppError } from '../core/errors.ts';
import type { EventCodec } from '../schemas/codec.ts';
import { positionOf } from '../topics/generations.ts';
import { DeadLetters, decodeOrDeadLetter, type DecodedRecord } from '../topics/consumer.ts';
import type { BatchContext, LogClient, LogConsumer, LogProducer, LogRecord } from '../topics/kafka.ts';
import { quoteIdent } from './migrate.ts';
import { rowOf, type EventRow } from './rows.ts';

export const tokenOf = (topic: string, partition: number, first: number, last: number) => `${topic}/${partition}/${first}-${last}`;

export interface ArchiverOptions {
  client: LogClient;
  codec: EventCodec;
  ch: ClickHouse;
  /** The topic of `generation`. */
  topic: string;
  /**
   * The log generation it holds (default 0). Rows keep their topic and
   * partition, and `kafka_offset` holds the event's position
   * (generation · 2^40 + offset, topics/generations.ts), so a room's rows
   * order by it across generations; the journal and the dedup tokens keep
   * the topic's own offsets.
   */
  generation?: number;
  deadLetterTopic: string;
  groupId: string;
  batchRows: number;
  batchMs: number;
  maxBackoffMs: number;
  log?(msg: string): void;
  onInserted?(rows: number, seconds: number): void;
  onFailure?(what: string, err: unknown): void;
  onDeadLettered?(n: number): void;
  onRecovered?(partition: number, exact: boolean): void;
  /** The consumer stopped for good (a failure kafkajs would not restart from). */
  onCrash?(err: Error): void;
}

export interface Piece {
  first: number;
  last: number;
  /** Index range [start, end) into the batch's records. */
  start: number;
  end: number;
}

/**
 * Where a batch is cut (pure). `resumeLast`: the journaled last offset of the
 * insert that started at this batch's first offset, to be re-formed exactly.
 */
export function cutBatch(offsets: number[], batchRows: number, resumeLast?: number): Piece[] {
  const pieces: Piece[] = [];
  let start = 0;
  if (resumeLast !== undefined && offsets.length > 0) {
    let end = 0;
    while (end < offsets.length && offsets[end]! <= resumeLast) end++;
    if (end > 0) {
      pieces.push({ first: offsets[0]!, last: offsets[end - 1]!, start: 0, end });
      start = end;
    }
  }
  while (start < offsets.length) {
    const end = Math.min(offsets.length, start + batchRows);
    pieces.push({ first: offsets[start]!, last: offsets[end - 1]!, start, end });
    start = end;
  }
  return pieces;
}

type Attempt<T> = { ok: true; value: T } | { ok: false };

export class Archiver {
  private consumer: LogConsumer | undefined;
  private producer: LogProducer | undefined;
  private dlq: DeadLetters | undefined;
  private stopping = false;
  /** Partitions whose journal was consulted since they were (re)assigned. */
  private readonly recovered = new Set<number>();
  private readonly lastInsertAt = new Map<number, number>();
  private readonly db: string;
  inserted = 0;
  inserts = 0;
  failures = 0;

  constructor(private readonly o: ArchiverOptions) {
    this.db = quoteIdent(o.ch.database);
  }

  private log(m: string): void {
    this.o.log?.(m);
  }

  async start(signal?: AbortSignal): Promise<void> {
    const { client, topic, groupId } = this.o;
    this.producer = client.producer({ lingerMs: 0 });
    await this.producer.connect();
    this.dlq = new DeadLetters(this.producer, this.o.deadLetterTopic, groupId);
    this.consumer = client.consumer(groupId);
    await this.consumer.connect();
    await this.consumer.subscribe([topic], true);
    this.consumer.onGroupJoin((a) => {
      // A new assignment may bring partitions another instance was half-way through.
      this.recovered.clear();
      this.log(`assigned partitions [${(a[topic] ?? []).join(',')}] (group ${groupId})`);
    });
    this.consumer.onCrash((err) => {
      this.log(`consumer crashed: ${err.message}`);
      this.o.onCrash?.(err);
    });
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    await this.consumer.run({ eachBatch: (records, ctx) => this.onBatch(records, ctx) });
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.consumer?.disconnect();
    await this.producer?.disconnect();
  }

  private active(ctx: BatchContext): boolean {
    return !this.stopping && ctx.isActive();
  }

  private async onBatch(records: LogRecord[], ctx: BatchContext): Promise<void> {
    if (records.length === 0 || !this.active(ctx)) return;
    const partition = records[0]!.partition;
    const decoding = await this.retry('decode', ctx, () => decodeOrDeadLetter(records, this.o.codec, this.dlq!));
    if (!decoding.ok) return;
    if (decoding.value.deadLettered > 0) this.o.onDeadLettered?.(decoding.value.deadLettered);
    const byOffset = new Map<string, DecodedRecord>(decoding.value.decoded.map((d) => [d.offset, d]));
    const offsets = records.map((r) => Number(r.offset));
    const gen = this.o.generation ?? 0;

    let resumeLast: number | undefined;
    const recovering = !this.recovered.has(partition);
    if (recovering) {
      const found = await this.retry('journal lookup', ctx, () => this.journaled(partition, offsets[0]!));
      if (!found.ok) return;
      resumeLast = found.value;
      this.recovered.add(partition);
      if (resumeLast !== undefined) {
        const exact = offsets.includes(resumeLast);
        this.o.onRecovered?.(partition, exact);
        this.log(
          exact
            ? `partition ${partition}: re-sending the insert of offsets ${offsets[0]}-${resumeLast} begun before a restart (same token: whatever landed is deduplicated)`
            : `partition ${partition}: the insert begun at ${offsets[0]} ran to ${resumeLast}, but this fetch ends at ${offsets[offsets.length - 1]}; sending what it holds`,
        );
      }
    }

    for (const piece of cutBatch(offsets, this.o.batchRows, resumeLast)) {
      const isResend = resumeLast !== undefined && piece.start === 0 && piece.last === resumeLast;
      // Pacing is for a consumer at the head of the log; one that is behind inserts at once.
      const atHead = Date.now() - records[piece.end - 1]!.timestamp < this.o.batchMs;
      if (!isResend && atHead && piece.end - piece.start < this.o.batchRows && !(await this.pace(partition, ctx))) return;
      const rows: EventRow[] = [];
      for (const r of records.slice(piece.start, piece.end)) {
        const d = byOffset.get(r.offset);
        if (d) rows.push(rowOf(d.event, gen === 0 ? d : { ...d, offset: String(positionOf(gen, d.offset)) }));
      }
      const t0 = performance.now();
      const done = await this.retry('insert', ctx, () => this.insert(partition, piece, rows, !isResend));
      if (!done.ok) return; // not committed: whoever owns the partition next re-sends it
      this.inserted += rows.length;
      this.inserts++;
      this.o.onInserted?.(rows.length, (performance.now() - t0) / 1000);
      this.lastInsertAt.set(partition, Date.now());
      // Committed only now that the rows are durable in ClickHouse.
      try {
        await ctx.commit(String(piece.last + 1));
      } catch (err) {
        // The batch will be redelivered, perhaps cut differently: consult the journal again
        // so the insert just made is re-sent as it was (same range, same token).
        this.recovered.delete(partition);
        throw err;
      }
    }
  }

  /** The last offset of the insert journaled as starting at `first`, if any. */
  private async journaled(partition: number, first: number): Promise<number | undefined> {
    const rs = await this.o.ch.client.query({
      query: `SELECT last_offset FROM ${this.db}.archive_batches WHERE topic = {topic:String} AND partition = {partition:UInt32} AND first_offset = {first:UInt64} ORDER BY at DESC LIMIT 1`,
      query_params: { topic: this.o.topic, partition, first },
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ last_offset: number | string }>();
    return row === undefined ? undefined : Number(row.last_offset);
  }

  private async insert(partition: number, piece: Piece, rows: EventRow[], journal: boolean): Promise<void> {
    const token = tokenOf(this.o.topic, partition, piece.first, piece.last);
    if (journal) {
      await this.o.ch.client.insert({
        table: `${this.db}.archive_batches`,
        values: [{ topic: this.o.topic, partition, first_offset: piece.first, last_offset: piece.last, rows: rows.length, token }],
        format: 'JSONEachRow',
        // Settings are explicit on every insert: on the embedded engine they stick to the session.
        clickhouse_settings: { insert_deduplication_token: '' },
      });
    }
    if (rows.length === 0) return; // every record of the range was dead-lettered
    await this.o.ch.client.insert({
      table: `${this.db}.events`,
      values: rows,
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplicate: 1, insert_deduplication_token: token, deduplicate_blocks_in_dependent_materialized_views: 1 },
    });
  }

  /** Waits until `batchMs` has passed since this partition's last insert (Kafka buffers meanwhile). */
  private async pace(partition: number, ctx: BatchContext): Promise<boolean> {
    const last = this.lastInsertAt.get(partition);
    if (last === undefined) return true;
    return this.pause(last + this.o.batchMs - Date.now(), ctx);
  }

  private async pause(ms: number, ctx: BatchContext): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (!this.active(ctx)) return false;
      await new Promise((r) => setTimeout(r, Math.min(500, until - Date.now())));
      await ctx.heartbeat().catch(() => {});
    }
    return this.active(ctx);
  }

  /**
   * Runs `fn` until it succeeds, backing off between attempts. Gives up only
   * when the partition is no longer ours (stopping, or lost in a rebalance);
   * errors a retry cannot fix are rethrown and stop the consumer.
   */
  private async retry<T>(what: string, ctx: BatchContext, fn: () => Promise<T>): Promise<Attempt<T>> {
    for (let attempt = 0; ; attempt++) {
      if (!this.active(ctx)) return { ok: false };
      try {
        return { ok: true, value: await fn() };
      } catch (err) {
        if (err instanceof AppError && !err.retriable) throw err;
        this.failures++;
        this.o.onFailure?.(what, err);
        const wait = backoffMs(attempt, this.o.maxBackoffMs, 200);
        this.log(`${what} failed (attempt ${attempt + 1}): ${(err as Error).message?.split('\n')[0]}; retrying in ${Math.round(wait)} ms`);
        if (!(await this.pause(wait, ctx))) return { ok: false };
      }
    }
  }
}
