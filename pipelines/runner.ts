/**
 * The one runner: Kafka in, Redis out, for any projection. Each projection
 * version has its own consumer group (`<prefix>projector.<name>.v<N>`), so a
 * rebuild can read the log from the start beside the live version, and
 * processors scale out by running more instances in the same groups: Kafka
 * splits the partitions, and since a room lives in one partition, each room
 * is handled by one instance at a time.
 *
 * Per partition batch: group the events by room; per room, load the fence and
 * state, fold the events (pure), and apply the effect with the Lua script
 * that checks the fence hasn't moved. Only after every room's effect is
 * durable does the consumer commit the batch's offset. A crash anywhere
 * replays the batch; the fences make the replay a no-op where it was applied.
 *
 * A projection may also emit events (moderation's decisions): they are
 * produced to the log, acks=all, before the room's effect is applied, so the
 * fence never moves past an event whose consequences are not durable yet. A
 * crash in between emits them again; they carry ids derived from their
 * cause, and their own effects are idempotent (see moderation/processor.ts).
 */
import type { RedisClient } from '../core/redis.ts';
import type { EventCodec } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { EventConsumer, type DecodedRecord } from '../topics/consumer.ts';
import type { LogClient, LogProducer } from '../topics/kafka.ts';
import { groupOf, notifyChannel, roomsKey, type Notification, type ProjectionNaming } from './naming.ts';
import { foldRoom, roomKeys, type Delta, type PositionedEvent, type Projection } from './projection.ts';
import { RedisStore } from './store.ts';

/**
 * Cumulative deltas (tallies, rate, pin, settings) only matter in their last
 * value within one batch; comments and deletions all matter, in order.
 */
export function compactDeltas(deltas: Delta[]): Delta[] {
  const lastOf = new Map<string, number>();
  deltas.forEach((d, i) => {
    if (d.t === 'tally' || d.t === 'rate' || d.t === 'pin' || d.t === 'settings') lastOf.set(d.t, i);
  });
  return deltas.filter((d, i) => !lastOf.has(d.t) || lastOf.get(d.t) === i);
}

export interface WorkerOptions<S> {
  client: LogClient;
  redis: RedisClient;
  codec: EventCodec;
  topic: string;
  deadLetterTopic: string;
  naming: ProjectionNaming;
  projection: Projection<S>;
  version: number;
  /** Live workers publish change notifications; a rebuild writes silently. */
  notify: boolean;
  /** Consumer group; defaults to `<prefix>projector.<name>.v<version>`. */
  groupId?: string;
  /** The projection emits events (Effect.emits): the worker opens a producer for them. */
  emits?: boolean;
  /** A room's emitted events are durable in the log (its effect is applied next). */
  onEmitted?(room: string, events: RoomEvent[]): void;
  onApplied?(room: string, applied: number, skipped: number): void;
  onError?(err: unknown): void;
  onAssigned?(partitions: number[]): void;
}

export class ProjectionWorker<S> {
  private consumer: EventConsumer | undefined;
  private producer: LogProducer | undefined;
  private readonly store: RedisStore;
  private readonly knownRooms = new Set<string>();
  applied = 0;
  skipped = 0;

  constructor(private readonly o: WorkerOptions<S>) {
    this.store = new RedisStore(o.redis);
  }

  get groupId(): string {
    return this.o.groupId ?? groupOf(this.o.naming, this.o.projection.name, this.o.version);
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.o.emits) {
      this.producer = this.o.client.producer({ lingerMs: 0 });
      await this.producer.connect();
    }
    this.consumer = new EventConsumer({
      client: this.o.client,
      codec: this.o.codec,
      topic: this.o.topic,
      deadLetterTopic: this.o.deadLetterTopic,
      groupId: this.groupId,
      handle: (events) => this.handle(events),
      onError: this.o.onError,
      onAssigned: this.o.onAssigned,
    });
    await this.consumer.start(signal);
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    await this.producer?.disconnect();
  }

  get consumed(): { processed: number; deadLettered: number } {
    return { processed: this.consumer?.processed ?? 0, deadLettered: this.consumer?.deadLettered ?? 0 };
  }

  async handle(records: DecodedRecord[]): Promise<void> {
    const byRoom = new Map<string, PositionedEvent[]>();
    for (const r of records) {
      const list = byRoom.get(r.event.roomId) ?? [];
      list.push({ event: r.event, offset: Number(r.offset), partition: r.partition });
      byRoom.set(r.event.roomId, list);
    }
    const projection = this.o.projection.forBatch?.() ?? this.o.projection;
    // Rooms are independent: their scripts go out together (auto-pipelined).
    await Promise.all([...byRoom].map(([room, events]) => this.applyRoom(projection, room, events)));
  }

  private async applyRoom(projection: Projection<S>, room: string, events: PositionedEvent[]): Promise<void> {
    const { naming, version } = this.o;
    const keys = roomKeys(naming.keyPrefix, projection.name, version, room);
    for (let attempt = 0; ; attempt++) {
      const meta = await this.store.loadMeta(keys.meta, projection.initial);
      const r = foldRoom(projection, meta, events, keys);
      if (r.applied === 0) {
        this.skipped += r.skipped;
        return;
      }
      if (r.emits.length > 0) await this.emit(room, r.emits);
      const deltas = compactDeltas(r.deltas);
      const notification: Notification | undefined =
        this.o.notify && deltas.length > 0 ? { room, projection: projection.name, version, offset: r.meta.fence!, deltas } : undefined;
      const ok = await this.store.apply(
        keys.meta,
        meta.fence,
        r.meta,
        r.cmds,
        notification ? { channel: notifyChannel(naming, room), message: JSON.stringify(notification) } : undefined,
      );
      if (ok) {
        this.applied += r.applied;
        this.skipped += r.skipped;
        this.o.onApplied?.(room, r.applied, r.skipped);
        if (!this.knownRooms.has(room)) {
          // Outside the script: a set of all rooms spans slots; SADD is idempotent anyway.
          await this.o.redis.sadd(roomsKey(naming), room);
          this.knownRooms.add(room);
        }
        return;
      }
      // The fence moved: another instance (a zombie after a rebalance) applied
      // some of these events first. Reload and fold again; the fence skips them.
      // What this attempt emitted for events still past the moved fence is
      // emitted again by the refold: the same events (same state, same rules,
      // ids derived from the cause), so the log holds duplicates whose effects
      // are no-ops (see moderation/processor.ts).
      if (attempt > 20) throw new Error(`fence of ${keys.meta} keeps moving`);
    }
  }

  /** Produces a room's emitted events and waits until Kafka acknowledged them all (acks=all). */
  private async emit(room: string, events: RoomEvent[]): Promise<void> {
    const producer = this.producer;
    if (!producer) throw new Error(`projection ${this.o.projection.name} emits events, but its worker was not started with emits: true`);
    await Promise.all(
      events.map((e) => producer.send({ topic: this.o.topic, key: room, value: this.o.codec.encode(e), headers: { 'event-type': e.payload.type } })),
    );
    this.o.onEmitted?.(room, events);
  }
}
