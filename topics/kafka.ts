/**
 * The one adapter around kafkajs. kafkajs is unmaintained upstream, so no
 * kafkajs type leaves this file: the rest of the product speaks LogRecord,
 * OutRecord, LogProducer, LogConsumer and LogAdmin, and another client can be
 * swapped in here alone.
 *
 * Guarantees it gives:
 * - Producer: idempotent, acks=all, key = room id (so a room stays in one
 *   partition and is totally ordered). A send resolves only once the broker
 *   has acknowledged it with all in-sync replicas — that is what a 202 means.
 *   Concurrent sends are coalesced into one batch (group commit): while one
 *   request is in flight the next batch fills, so throughput rises with load
 *   instead of one round trip per record.
 * - Consumer: no auto-commit. The caller commits a partition's offset after
 *   the effects of the records before it are durable.
 */
import { Kafka, logLevel as KafkaLogLevel, CompressionTypes, Partitioners, type Consumer, type Producer, type Admin, type IHeaders, type RecordMetadata } from 'kafkajs';
import { randomUUID } from 'node:crypto';
import { AppError, UnavailableError } from '../core/errors.ts';

export interface LogRecord {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (64-bit). */
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: number;
}

export interface OutRecord {
  topic: string;
  key: string;
  value: Buffer;
  headers?: Record<string, string>;
  /**
   * Called if the record lands after its send was answered with
   * ERR_KAFKA_UNAVAILABLE (its batch is sent again until it settles: see
   * LogProducer's lanes). Lets a caller that kept its idempotency claim
   * record the result for the caller's retry.
   */
  onLateAck?(ack: Ack): void;
}

const stillSending = new WeakSet<object>();
/** An ERR_KAFKA_UNAVAILABLE answered at the deadline while the record is still being sent: it may land yet (OutRecord.onLateAck). */
export const isStillSending = (err: unknown): boolean => typeof err === 'object' && err !== null && stillSending.has(err);

/** How long a record is re-sent until it is acknowledged (LogProducer), unless a producer is given another. */
export const PRODUCER_SEND_TIMEOUT_MS = 10_000;
/**
 * The longest a send can wait for its acknowledgement: a first attempt
 * (PRODUCER_SEND_TIMEOUT_MS plus a second at most), re-sends until
 * PRODUCER_SEND_TIMEOUT_MS after that one failed, and a last attempt, plus
 * the queue behind the request in flight. A repartition waits this long past
 * a lost writer's lease before it trusts that writer's sends are all answered.
 */
export const MAX_ACK_DELAY_MS = 3 * PRODUCER_SEND_TIMEOUT_MS + 5000;

export interface Ack {
  topic: string;
  partition: number;
  offset: string;
}

export interface KafkaOptions {
  brokers: string[];
  clientId: string;
  /** kafkajs logs to stdout; silent unless debugging the client itself. */
  debug?: boolean;
  linger?: { ms: number; maxBatch: number };
  compression?: 'none' | 'gzip';
}

function headersOf(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? String(v[0]) : Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  }
  return out;
}

/** Broker-side failures a retry cannot fix are not "unavailable"; the rest are. */
function kafkaError(err: unknown, what: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as { name?: string; message?: string; retriable?: boolean; type?: string };
  const nonRetriable = e.type === 'MESSAGE_TOO_LARGE' || e.type === 'INVALID_RECORD' || e.type === 'UNKNOWN_TOPIC_OR_PARTITION';
  if (nonRetriable) return new AppError('ERR_KAFKA_REJECTED', `${what}: ${e.message}`, { cause: err });
  return new UnavailableError('ERR_KAFKA_UNAVAILABLE', `${what}: ${e.message ?? String(err)}`, { cause: err });
}

interface Pending {
  record: OutRecord;
  resolve(ack: Ack): void;
  reject(err: unknown): void;
  /** When it was first sent: a record left unacknowledged is re-sent until sendTimeoutMs from here. */
  firstSentAt?: number;
  /** Why its last send failed, for the error it gets once sendTimeoutMs has passed. */
  lastError?: AppError;
  /** Rejected already (past its deadline) while its batch is still being sent. */
  answered?: boolean;
}

/** One partition's queue: one request in flight at a time keeps its records in order and its idempotent sequence gapless. */
interface Lane {
  topic: string;
  partition: number;
  queue: Pending[];
  inFlight: Promise<void> | undefined;
  /**
   * A batch whose request failed without saying whether it landed: sent
   * again as it was, before anything else. kafkajs leaves the partition's
   * idempotent sequence where it was after a failure, so the same batch
   * again is deduplicated by the broker if it had landed — while a different
   * batch under that sequence would be taken for the duplicate and dropped
   * with a success (acknowledged, never written: what a re-send merged with
   * newer records did in `chaos -- registry-kill` on a starved machine).
   */
  resend: Pending[] | undefined;
}

export class LogProducer {
  private readonly producer: Producer;
  /** Records not yet given a partition, in the order they were sent. */
  private intake: Pending[] = [];
  private distributing: Promise<void> | undefined;
  /**
   * A queue per partition, each with its own request in flight. One batch
   * for every partition at once stalled every room when one partition's
   * leader was lost: the next batch waited for the stuck partition, and no
   * write was acknowledged for the broker session timeout and the retries
   * after it (npm run chaos -- broker3-kill: 0 writes/s acked while one
   * broker of three was down). Now only that partition's records wait.
   */
  private readonly lanes = new Map<string, Lane>();
  private timer: NodeJS.Timeout | undefined;
  private connected = false;

  constructor(
    kafka: Kafka,
    private readonly opts: { lingerMs: number; maxBatch: number; compression: 'none' | 'gzip'; sendTimeoutMs: number },
  ) {
    // maxInFlightRequests 1 keeps idempotent sequence numbers gapless in kafkajs;
    // the batching below is what buys throughput back.
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, retry: { retries: 5, maxRetryTime: 2000 } });
  }

  async connect(): Promise<void> {
    try {
      await this.producer.connect();
      this.connected = true;
    } catch (err) {
      throw kafkaError(err, 'producer connect');
    }
  }

  /** Resolves once Kafka acknowledged the record (acks=all), with its partition and offset. */
  send(record: OutRecord): Promise<Ack> {
    return new Promise<Ack>((resolve, reject) => {
      this.intake.push({ record, resolve, reject });
      this.schedule();
    });
  }

  sendMany(records: OutRecord[]): Promise<Ack[]> {
    return Promise.all(records.map((r) => this.send(r)));
  }

  private schedule(): void {
    if (this.distributing) return; // the distribution under way schedules again when it ends
    if (this.intake.length >= this.opts.maxBatch || this.opts.lingerMs === 0) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.opts.lingerMs);
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.distributing || this.intake.length === 0) return;
    const list = this.intake.splice(0);
    this.distributing = this.distribute(list).finally(() => {
      this.distributing = undefined;
      if (this.intake.length > 0) this.schedule();
    });
  }

  /**
   * Gives each record its partition, in the order sent (one distribution at a
   * time, so two records of a key never swap), and starts the lanes. Partitions
   * are chosen here, with kafkajs's Java-compatible murmur2 partitioner, so
   * each record's ack (base offset of its partition + its index there) can be
   * mapped back to it.
   */
  private async distribute(list: Pending[]): Promise<void> {
    const counts = new Map<string, number | AppError>();
    const touched = new Set<Lane>();
    for (const p of list) {
      const topic = p.record.topic;
      let count = counts.get(topic);
      if (count === undefined) {
        count = await this.partitionCount(topic).catch((err: unknown) => kafkaError(err, 'produce'));
        counts.set(topic, count);
      }
      if (typeof count !== 'number') {
        p.reject(count);
        continue;
      }
      const partition = murmur2Partition(p.record.key, count);
      const k = `${topic}/${partition}`;
      let lane = this.lanes.get(k);
      if (!lane) this.lanes.set(k, (lane = { topic, partition, queue: [], inFlight: undefined, resend: undefined }));
      lane.queue.push(p);
      touched.add(lane);
    }
    for (const lane of touched) this.pump(lane);
  }

  private pump(lane: Lane): void {
    if (lane.inFlight) return;
    let batch: Pending[];
    if (lane.resend) {
      batch = lane.resend;
      lane.resend = undefined;
    } else {
      if (lane.queue.length === 0) return;
      batch = lane.queue.splice(0, this.opts.maxBatch);
    }
    lane.inFlight = this.sendLane(lane, batch).then((failed) => {
      lane.inFlight = undefined;
      // After a failure, a pause before the next try: kafkajs has retried
      // already, and a partition without a leader would otherwise spin.
      if (failed) setTimeout(() => this.pump(lane), 100).unref();
      else this.pump(lane);
    });
  }

  /** Sends one partition's batch; true when it failed and is to be sent again. */
  private async sendLane(lane: Lane, list: Pending[]): Promise<boolean> {
    const { topic, partition } = lane;
    const started = Date.now();
    for (const p of list) p.firstSentAt ??= started;
    // One request per partition at a time, until it settles: callers past their deadline are
    // answered while it is still out (ERR_KAFKA_UNAVAILABLE, their retry is idempotent), but no
    // other request goes to the partition before it settles (see Lane.resend).
    const deadline = setTimeout(() => this.expire(list, undefined), this.opts.sendTimeoutMs + 1000);
    deadline.unref();
    let result: RecordMetadata[];
    try {
      result = await this.producer.send({
        topic,
        acks: -1,
        timeout: this.opts.sendTimeoutMs,
        compression: this.opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        messages: list.map((p) => ({ partition, key: p.record.key, value: p.record.value, headers: p.record.headers })),
      });
    } catch (err) {
      const e = kafkaError(err, 'produce');
      if (e.code !== 'ERR_KAFKA_UNAVAILABLE') {
        // Rejected by the broker (too large, …): not sent again.
        for (const p of list) p.reject(e);
        return false;
      }
      // A lost leader, a timeout, a connection refused: sent again, the same batch.
      return this.failed(lane, list, e);
    } finally {
      clearTimeout(deadline);
    }
    const m = result.find((r) => r.partition === partition);
    // kafkajs (unmaintained) can return without an ack for a partition whose
    // leader moved during its retries (tulios/kafkajs#1798): sent again.
    if (!m) return this.failed(lane, list, undefined);
    const base = BigInt(m.baseOffset ?? '0');
    list.forEach((p, i) => {
      const ack = { topic, partition, offset: String(base + BigInt(i)) };
      if (p.answered) p.record.onLateAck?.(ack);
      else p.resolve(ack);
    });
    return false;
  }

  /** The batch goes again, whole; callers past their deadline are answered now, and so are records waiting behind it. */
  private failed(lane: Lane, list: Pending[], err: AppError | undefined): boolean {
    if (err) for (const p of list) p.lastError = err;
    this.expire(list, err);
    // Not sent yet: dropped from the queue once past their deadline (no sequence to keep).
    const now = Date.now();
    const late = lane.queue.filter((p) => now - (p.firstSentAt ??= now) > this.opts.sendTimeoutMs);
    if (late.length > 0) {
      this.expire(late, err);
      lane.queue = lane.queue.filter((p) => !late.includes(p));
    }
    lane.resend = list;
    return true;
  }

  /** Rejects (once) the records past sendTimeoutMs from their first send; the others keep waiting. */
  private expire(list: Pending[], err: AppError | undefined): void {
    const now = Date.now();
    for (const p of list) {
      if (p.answered || now - (p.firstSentAt ?? now) <= this.opts.sendTimeoutMs) continue;
      p.answered = true;
      const e = new UnavailableError('ERR_KAFKA_UNAVAILABLE', `no acknowledgement for ${p.record.topic} within ${this.opts.sendTimeoutMs} ms (${(err ?? p.lastError)?.message ?? 'a broker was lost'}; retry)`);
      stillSending.add(e);
      p.reject(e);
    }
  }

  /** Set by LogClient: partition count of a topic (cached there). */
  partitionCount: (topic: string) => Promise<number> = async () => 1;

  /**
   * Sends what is queued and waits for it, for at most sendTimeoutMs + 5 s:
   * with the cluster unable to acknowledge (two brokers of three gone, and
   * min.insync.replicas=2), a batch is sent again forever, and a disconnect
   * that waited for it never returned (a test's 300 s bound was hit once).
   * Whatever is still unanswered then gets ERR_KAFKA_UNAVAILABLE: its fate is
   * unknown, and a retry is idempotent.
   */
  async disconnect(): Promise<void> {
    const until = Date.now() + this.opts.sendTimeoutMs + 5000;
    const left = () => Math.max(0, until - Date.now());
    const within = (p: Promise<unknown> | undefined) => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([p, new Promise((r) => (t = setTimeout(r, left())))]).finally(() => clearTimeout(t));
    };
    while (left() > 0) {
      this.flush();
      if (this.distributing) await within(this.distributing);
      const busy = [...this.lanes.values()].filter((l) => l.inFlight || l.queue.length > 0);
      if (busy.length === 0 && this.intake.length === 0) break;
      for (const l of busy) this.pump(l);
      await within(Promise.all(busy.map((l) => l.inFlight)));
      // A lane waiting out its pause after a failure: the next turn pumps it.
      if (busy.every((l) => !l.inFlight)) await new Promise((r) => setTimeout(r, 100));
    }
    const gone = new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'the producer was closed before Kafka acknowledged this record (retry)');
    for (const l of this.lanes.values()) {
      for (const p of [...l.queue, ...(l.resend ?? [])]) {
        if (p.answered) continue;
        p.answered = true;
        p.reject(gone);
      }
      l.queue = [];
    }
    for (const p of this.intake.splice(0)) p.reject(gone);
    if (this.connected) await this.producer.disconnect().catch(() => {});
    this.connected = false;
  }
}

export interface BatchContext {
  /** Commits `offset` (the next offset to read) for this batch's partition. */
  commit(nextOffset: string): Promise<void>;
  heartbeat(): Promise<void>;
  /** False once the consumer is stopping, lost this partition in a rebalance, or was told to seek it. */
  isActive(): boolean;
  /**
   * Reads this partition again from `offset` (earlier or later): the batch in
   * hand is dropped (the caller returns without committing it), and the next
   * batch of the partition starts at `offset`. Nothing is committed by the seek.
   */
  seek(offset: string): void;
}

export interface ConsumerOptions {
  sessionTimeoutMs?: number;
  /** Most bytes one fetch returns per partition: the upper bound of a batch. */
  maxBytesPerPartition?: number;
  /**
   * Batches of different partitions handled at once (kafkajs's
   * partitionsConsumedConcurrently); a partition's own batches stay in order,
   * one at a time.
   */
  partitionsConsumedConcurrently?: number;
}

export interface ConsumerRunOptions {
  eachBatch(records: LogRecord[], ctx: BatchContext): Promise<void>;
}

export class LogConsumer {
  private readonly consumer: Consumer;
  private running = false;
  private readonly concurrency: number;

  constructor(
    kafka: Kafka,
    readonly groupId: string,
    opts: ConsumerOptions = {},
  ) {
    this.concurrency = Math.max(1, opts.partitionsConsumedConcurrently ?? 1);
    this.consumer = kafka.consumer({
      groupId,
      sessionTimeout: opts.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: 1000,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 1024 * 1024,
      // A fetch returns the partitions' batches together (up to maxBytes), and
      // kafkajs fetches again only once all of them are handled: keep the total
      // above what every partition may bring, so no partition waits a round.
      maxBytes: Math.max(10 * 1024 * 1024, (opts.maxBytesPerPartition ?? 1024 * 1024) * this.concurrency),
      allowAutoTopicCreation: false,
      // Backoff bounded at 2 s: kafkajs restarts a crashed consumer after the
      // last backoff it computed, and with its defaults (up to 30 s) one broker
      // lost of three stalled the processors for 20 s and more while the
      // partitions' new leaders were elected in 4 (npm run chaos -- broker3-kill).
      retry: { initialRetryTime: 200, retries: 10, maxRetryTime: 2000 },
    });
  }

  async connect(): Promise<void> {
    try {
      await this.consumer.connect();
    } catch (err) {
      throw kafkaError(err, `consumer ${this.groupId} connect`);
    }
  }

  async subscribe(topics: string[], fromBeginning = true): Promise<void> {
    for (const topic of topics) await this.consumer.subscribe({ topic, fromBeginning });
  }

  async run(opts: ConsumerRunOptions): Promise<void> {
    this.running = true;
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.concurrency,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        const records: LogRecord[] = batch.messages.map((m) => ({
          topic: batch.topic,
          partition: batch.partition,
          offset: m.offset,
          key: m.key,
          value: m.value,
          headers: headersOf(m.headers),
          timestamp: Number(m.timestamp),
        }));
        await opts.eachBatch(records, {
          commit: async (nextOffset) => {
            await this.consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }]);
            // kafkajs resolves the previous offset: the last processed one.
            resolveOffset((BigInt(nextOffset) - 1n).toString());
          },
          heartbeat,
          isActive: () => this.running && isRunning() && !isStale(),
          seek: (offset) => this.consumer.seek({ topic: batch.topic, partition: batch.partition, offset }),
        });
      },
    });
  }

  /**
   * Reads an assigned partition from `offset` from its next fetch on (a batch
   * of it in hand is then stale: see BatchContext.isActive). Nothing is
   * committed; a partition this member does not own is left alone.
   */
  seek(topic: string, partition: number, offset: string): void {
    if (this.running) this.consumer.seek({ topic, partition, offset });
  }

  /**
   * The consumer stopped for good. kafkajs also emits CRASH for failures it
   * restarts from by itself (`restart: true`: a broker that went away, a
   * leader that moved); those are not reported, or a broker restart would
   * take the archiver down with it (found by `npm run chaos -- broker-kill`,
   * issue 14: the archiver died and its service process exited).
   */
  onCrash(listener: (err: Error) => void): void {
    this.consumer.on(this.consumer.events.CRASH, (e) => {
      if (!e.payload.restart) listener(e.payload.error);
    });
  }

  onGroupJoin(listener: (assigned: Record<string, number[]>) => void): void {
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => listener(e.payload.memberAssignment));
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.consumer.stop().catch(() => {});
  }

  async disconnect(): Promise<void> {
    this.running = false;
    await this.consumer.disconnect().catch(() => {});
  }
}

export interface TopicSpec {
  name: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, string>;
}

export interface TopicState {
  name: string;
  partitions: number;
  /** Replicas of its partitions (the smallest, should they differ). */
  replicationFactor: number;
  configs: Record<string, string>;
}

export class LogAdmin {
  private readonly admin: Admin;
  constructor(kafka: Kafka) {
    this.admin = kafka.admin();
  }
  async connect(): Promise<void> {
    try {
      await this.admin.connect();
    } catch (err) {
      throw kafkaError(err, 'admin connect');
    }
  }
  async disconnect(): Promise<void> {
    await this.admin.disconnect().catch(() => {});
  }
  async listTopics(): Promise<string[]> {
    return this.admin.listTopics();
  }
  async createTopics(specs: TopicSpec[]): Promise<void> {
    if (specs.length === 0) return;
    try {
      await this.admin.createTopics({
        waitForLeaders: false,
        topics: specs.map((s) => ({
          topic: s.name,
          numPartitions: s.partitions,
          replicationFactor: s.replicationFactor,
          configEntries: Object.entries(s.configs).map(([name, value]) => ({ name, value })),
        })),
      });
    } catch (err) {
      throw kafkaError(err, 'create topics');
    }
    // kafkajs's own wait for leaders gives up when the broker it asks does not
    // know the topic yet (UNKNOWN_TOPIC_OR_PARTITION), which on several brokers
    // happens for a moment after creation: wait here until every partition has
    // a leader, on whichever broker answers.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const meta = await this.admin.fetchTopicMetadata({ topics: specs.map((s) => s.name) });
        if (meta.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) return;
      } catch (err) {
        if (Date.now() > deadline) throw kafkaError(err, 'waiting for the new topics\' leaders');
      }
      if (Date.now() > deadline) throw new UnavailableError('ERR_KAFKA_UNAVAILABLE', `new topics ${specs.map((s) => s.name).join(', ')} have no leaders after 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async describeTopics(names: string[]): Promise<TopicState[]> {
    if (names.length === 0) return [];
    const meta = await this.admin.fetchTopicMetadata({ topics: names });
    const cfg = await this.admin.describeConfigs({ includeSynonyms: false, resources: names.map((name) => ({ type: 2 /* TOPIC */, name })) });
    return meta.topics.map((t) => {
      const res = cfg.resources.find((r) => r.resourceName === t.name);
      const configs: Record<string, string> = {};
      for (const e of res?.configEntries ?? []) configs[e.configName] = e.configValue;
      return { name: t.name, partitions: t.partitions.length, replicationFactor: Math.min(...t.partitions.map((p) => p.replicas.length)), configs };
    });
  }
  async deleteTopics(names: string[]): Promise<void> {
    await this.admin.deleteTopics({ topics: names });
  }
  /** Latest offsets per partition (the high watermark: next offset to be written). */
  async endOffsets(topic: string): Promise<Map<number, string>> {
    const o = await this.admin.fetchTopicOffsets(topic);
    return new Map(o.map((p) => [p.partition, p.high]));
  }
  /** Deletes a partition's records below `offset` (what retention does; for tests and operators). */
  async deleteRecordsBefore(topic: string, partition: number, offset: string): Promise<void> {
    try {
      // kafkajs finds partition leaders only for topics already in the admin's metadata.
      await this.admin.fetchTopicMetadata({ topics: [topic] });
      await this.admin.deleteTopicRecords({ topic, partitions: [{ partition, offset }] });
    } catch (err) {
      throw kafkaError(err, `deleting records of ${topic}/${partition} below ${offset}`);
    }
  }
  /** Committed offsets of a group per partition ('-1' when none). */
  /** Ids of the consumer groups the cluster knows. */
  async listGroups(): Promise<string[]> {
    try {
      return (await this.admin.listGroups()).groups.map((g) => g.groupId);
    } catch (err) {
      throw kafkaError(err, 'list groups');
    }
  }

  /** Members of a consumer group right now (0 when it is empty or unknown). */
  async groupMembers(groupId: string): Promise<number> {
    try {
      const { groups } = await this.admin.describeGroups([groupId]);
      return groups[0]?.members.length ?? 0;
    } catch (err) {
      throw kafkaError(err, `describe group ${groupId}`);
    }
  }

  /** Deletes consumer groups that have no members (their committed offsets go with them). */
  async deleteGroups(groupIds: string[]): Promise<void> {
    if (groupIds.length === 0) return;
    try {
      await this.admin.deleteGroups(groupIds);
    } catch (err) {
      throw kafkaError(err, `delete groups ${groupIds.join(', ')}`);
    }
  }

  async committedOffsets(groupId: string, topic: string): Promise<Map<number, string>> {
    const res = await this.admin.fetchOffsets({ groupId, topics: [topic] });
    const t = res.find((r) => r.topic === topic);
    return new Map((t?.partitions ?? []).map((p) => [p.partition, p.offset]));
  }
}

/** Builds producers, consumers and admins on one connection config. */
export class LogClient {
  private readonly kafka: Kafka;
  constructor(private readonly opts: KafkaOptions) {
    this.kafka = new Kafka({
      brokers: opts.brokers,
      clientId: opts.clientId,
      logLevel: opts.debug ? KafkaLogLevel.INFO : KafkaLogLevel.NOTHING,
      connectionTimeout: 3000,
      retry: { initialRetryTime: 100, retries: 5, maxRetryTime: 3000 },
    });
  }
  producer(overrides: Partial<{ lingerMs: number; maxBatch: number; sendTimeoutMs: number }> = {}): LogProducer {
    const p = new LogProducer(this.kafka, {
      lingerMs: overrides.lingerMs ?? this.opts.linger?.ms ?? 5,
      maxBatch: overrides.maxBatch ?? this.opts.linger?.maxBatch ?? 500,
      compression: this.opts.compression ?? 'none',
      sendTimeoutMs: overrides.sendTimeoutMs ?? PRODUCER_SEND_TIMEOUT_MS,
    });
    p.partitionCount = (topic) => this.partitionCount(topic);
    return p;
  }
  consumer(groupId: string, opts: ConsumerOptions = {}): LogConsumer {
    return new LogConsumer(this.kafka, groupId, opts);
  }
  admin(): LogAdmin {
    return new LogAdmin(this.kafka);
  }
  private readonly counts = new Map<string, { n: number; at: number }>();
  private metaAdmin: Admin | undefined;

  /**
   * Partition count per topic from metadata, cached for 30 s (partitions are
   * only ever added). A stale count is answered at once while it is refreshed
   * in the background: asking the cluster on the write path stalled every
   * write when a broker had just been lost.
   */
  async partitionCount(topic: string): Promise<number> {
    const c = this.counts.get(topic);
    if (c && Date.now() - c.at < 30_000) return c.n;
    if (c) {
      if (!this.refreshing.has(topic)) {
        this.refreshing.add(topic);
        void this.fetchCount(topic).catch(() => {}).finally(() => this.refreshing.delete(topic));
      }
      return c.n;
    }
    return this.fetchCount(topic);
  }
  private readonly refreshing = new Set<string>();

  private async fetchCount(topic: string): Promise<number> {
    if (!this.metaAdmin) {
      const admin = this.kafka.admin();
      this.metaAdmin = admin;
      await admin.connect().catch((err: unknown) => {
        if (this.metaAdmin === admin) this.metaAdmin = undefined;
        throw err;
      });
    }
    const meta = await this.metaAdmin.fetchTopicMetadata({ topics: [topic] });
    const n = meta.topics[0]?.partitions.length ?? 0;
    if (n === 0) throw new AppError('ERR_KAFKA_REJECTED', `topic ${topic} does not exist (topics are declared in topics/; run \`npm run topics -- apply\`)`);
    this.counts.set(topic, { n, at: Date.now() });
    return n;
  }


  private rangeAdminReady: Promise<Admin> | undefined;

  /** An admin for offset look-ups, connected once and shared (the metadata one when it exists). */
  private async offsetsAdmin(): Promise<Admin> {
    if (this.metaAdmin) return this.metaAdmin;
    this.rangeAdminReady ??= (async () => {
      const a = this.kafka.admin();
      try {
        await a.connect();
      } catch (err) {
        this.rangeAdminReady = undefined;
        throw kafkaError(err, 'admin connect');
      }
      return a;
    })();
    return this.rangeAdminReady;
  }

  /** Low watermark (first offset still held) and high watermark (next offset to be written) of one partition. */
  async watermarks(topic: string, partition: number): Promise<{ low: string; high: string }> {
    const admin = await this.offsetsAdmin();
    let offsets: { partition: number; low: string; high: string }[];
    try {
      offsets = await admin.fetchTopicOffsets(topic);
    } catch (err) {
      throw kafkaError(err, `offsets of ${topic}`);
    }
    const p = offsets.find((o) => o.partition === partition);
    if (!p) throw new AppError('ERR_KAFKA_REJECTED', `topic ${topic} has no partition ${partition}`);
    return { low: p.low, high: p.high };
  }

  /** The first offset the partition still holds (older ones were deleted by retention). */
  async lowWatermark(topic: string, partition: number): Promise<string> {
    return (await this.watermarks(topic, partition)).low;
  }

  /**
   * Reads the records of one partition from `fromOffset` to `toOffsetInclusive`
   * (clamped to what the partition holds), in offset order. A throwaway
   * consumer group with a random id is joined and seeks to the start: kafkajs
   * has no assign(), so the group is how partitions are reached; nothing is
   * ever committed, and the group is deleted after, so none is left behind.
   * Rejects with ERR_KAFKA_UNAVAILABLE after `timeoutMs`.
   */
  async readRange(topic: string, partition: number, fromOffset: string | number, toOffsetInclusive: string | number, opts: { timeoutMs?: number } = {}): Promise<LogRecord[]> {
    const from = BigInt(fromOffset);
    let to = BigInt(toOffsetInclusive);
    if (to < from) return [];
    const { low, high } = await this.watermarks(topic, partition);
    if (from < BigInt(low)) throw new AppError('ERR_LOG_OFFSET_GONE', `${topic}/${partition} no longer holds offset ${from} (low watermark ${low})`);
    if (to > BigInt(high) - 1n) to = BigInt(high) - 1n;
    if (to < from) return [];

    const timeoutMs = opts.timeoutMs ?? 20_000;
    const groupId = `${this.opts.clientId}.range.${randomUUID()}`;
    const consumer = this.kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxWaitTimeInMs: 100,
      retry: { retries: 3 },
    });
    const out: LogRecord[] = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: false });
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const finish = (err?: unknown) => {
          if (settled) return;
          settled = true;
          if (err) reject(err);
          else resolve();
        };
        timer = setTimeout(
          () => finish(new UnavailableError('ERR_KAFKA_UNAVAILABLE', `reading ${topic}/${partition} offsets ${from}..${to}: not done within ${timeoutMs} ms (${out.length} records read)`)),
          timeoutMs,
        );
        consumer.on(consumer.events.CRASH, (e) => {
          if (!e.payload.restart) finish(kafkaError(e.payload.error, `reading ${topic}/${partition}`));
        });
        // Records of the range seen so far; until the first one, a fetch may still come from before the seek.
        let started = false;
        let last = from - 1n;
        // Where the range goes on from, after every join: kafkajs restarts a consumer that crashed
        // (a coordinator lost with its broker) as a new member, which forgets an earlier seek, and a
        // seek before its group is initialized throws. Both made a read with one broker of three
        // gone fail or wait out its whole timeout (infra/kafka-cluster.int.spec.ts, once in CI).
        const seek = () => {
          try {
            consumer.seek({ topic, partition, offset: String(last + 1n) });
          } catch {
            // Not initialized yet: the next GROUP_JOIN seeks.
          }
        };
        consumer.on(consumer.events.GROUP_JOIN, () => seek());
        consumer
          .run({
            autoCommit: false,
            eachBatchAutoResolve: false,
            eachBatch: async ({ batch }) => {
              if (settled || batch.topic !== topic || batch.partition !== partition) return;
              for (const m of batch.messages) {
                const o = BigInt(m.offset);
                if (o < from || o <= last) continue;
                if (o > to) {
                  if (started) return finish();
                  continue; // fetched before the seek took effect
                }
                started = true;
                last = o;
                out.push({ topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value, headers: headersOf(m.headers), timestamp: Number(m.timestamp) });
                if (o >= to) return finish();
              }
              // Offsets may skip (control records): the partition's end also ends the range.
              if (started && BigInt(batch.highWatermark) - 1n <= last) finish();
            },
          })
          .then(() => seek())
          .catch((err: unknown) => finish(kafkaError(err, `reading ${topic}/${partition}`)));
      });
    } catch (err) {
      throw kafkaError(err, `reading ${topic}/${partition}`);
    } finally {
      if (timer) clearTimeout(timer);
      await consumer.disconnect().catch(() => {});
      // An empty group (it never committed) would linger in the broker's group list.
      await this.offsetsAdmin()
        .then((a) => a.deleteGroups([groupId]))
        .catch(() => {});
    }
    return out;
  }

  async close(): Promise<void> {
    await this.metaAdmin?.disconnect().catch(() => {});
    this.metaAdmin = undefined;
    const ranged = this.rangeAdminReady;
    this.rangeAdminReady = undefined;
    if (ranged) await (await ranged.catch(() => undefined))?.disconnect().catch(() => {});
  }
}

const defaultPartitioner = Partitioners.DefaultPartitioner();

/** The partition a key lands in: murmur2(key) mod partitions, as the Java client does. */
export function murmur2Partition(key: string, partitions: number): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({ partitionId: i, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0, offlineReplicas: [] }));
  return defaultPartitioner({ topic: '', partitionMetadata, message: { key, value: null } });
}
