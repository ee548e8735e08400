/**
 * The one runner: Kafka in, Redis out, for any set of projections. A worker
 * reads the log in one consumer group and applies each batch to its *lanes*
 * (projection + version). The live set of a process shares one group
 * (`<prefix>processors`): each record is fetched and decoded once, whatever
 * the number of projections. A rebuild runs one lane alone in its own group
 * (`<prefix>projector.<name>.v<N>`), so it can read the log from the start
 * beside the live version; moderation runs in `<prefix>moderator.v1`.
 * Processors scale out by running more instances in the same group: Kafka
 * splits the partitions, and since a room lives in one partition, each room
 * is handled by one instance at a time. Batches of different partitions are
 * handled concurrently.
 *
 * Per partition batch: group the events by room; per lane and room, load the
 * fence and state (and the per-user fields the events read), fold the events
 * (pure), and apply the effect with the Lua script that checks the fence
 * hasn't moved. Every lane has its own fence (its own meta key), so a
 * redelivered record is skipped per lane. Only after every lane's effect is
 * durable does the consumer commit the batch's offset. A crash anywhere
 * replays the batch; the fences make the replay a no-op where it was applied.
 *
 * Lanes sharing a group also keep a position per partition (the next offset
 * they need, `positionsKey`): the group's committed offset is where the
 * group is, a lane's position where that lane is. A lane behind the batch
 * (a version a rebuild just switched to, whose position is where the rebuild
 * stopped; a projection added to the set) rewinds the partition to its
 * position; lanes ahead of a record skip it without folding, and records
 * every lane is past are not even decoded.
 *
 * A projection may also emit events (moderation's decisions): they are
 * produced to the log, acks=all, before the room's effect is applied, so the
 * fence never moves past an event whose consequences are not durable yet. A
 * crash in between emits them again; they carry ids derived from their
 * cause, and their own effects are idempotent (see moderation/processor.ts).
 *
 * A worker reads one generation of the log (topics/generations.ts). Events
 * are placed by their position (generation · 2^40 + offset), so fences and
 * feed scores order a room across generations, and an event of an older
 * generation is never applied after one of a newer. Once the generation is
 * sealed, records at or past its ends (never acknowledged to anyone) are
 * left out; the service starts the next generation's worker only once this
 * one has read to the ends (pipelines/service.ts).
 */
import type { RedisClient } from '../core/redis.ts';
import type { EventCodec } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { EventConsumer, type BatchStart, type DecodedRecord } from '../topics/consumer.ts';
import { generationTopic, positionOf, splitPosition } from '../topics/generations.ts';
import { murmur2Partition, type LogAdmin, type LogClient, type LogProducer } from '../topics/kafka.ts';
import type { LogWriter } from '../topics/writer.ts';
import { notifyChannel, positionField, positionsKey, switchesKey, type Notification, type ProjectionNaming } from './naming.ts';
import { expiringKeys, fieldsRead, FieldsView, foldRoom, HISTORY_SUFFIX, roomKeys, userKeys, type Delta, type PositionedEvent, type Projection, type RoomMeta } from './projection.ts';
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

/** Events of one room folded into one script; a larger batch of a room goes as several, pipelined. */
const CHUNK = 1000;

/** A room's events in chunks of CHUNK at most, none straddling `boundary`. */
function chunks(events: PositionedEvent[], boundary: number): PositionedEvent[][] {
  if (events.length <= CHUNK && (events[0]!.offset >= boundary || events.at(-1)!.offset < boundary)) return [events];
  const out: PositionedEvent[][] = [];
  let cur: PositionedEvent[] = [];
  for (const e of events) {
    if (cur.length === CHUNK || (cur.length > 0 && cur[0]!.offset < boundary && e.offset >= boundary)) {
      out.push(cur);
      cur = [];
    }
    cur.push(e);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** One projection at one version, as a worker applies it. */
export interface Lane {
  projection: Projection<unknown>;
  version: number;
}

export interface WorkerOptions {
  client: LogClient;
  redis: RedisClient;
  codec: EventCodec;
  /** The topic of `generation`. */
  topic: string;
  /** The log generation this worker reads (default 0, the declared topic). */
  generation?: number;
  /** Where a sealed generation ends in a partition (undefined while it is not sealed): records from there on are left out. */
  until?(partition: number): number | undefined;
  deadLetterTopic: string;
  naming: ProjectionNaming;
  groupId: string;
  /** The lanes, asked once per batch: a version switch applies from the next batch on. */
  lanes(): Lane[];
  /** Live workers publish change notifications; a rebuild writes silently. */
  notify: boolean;
  /** Keep the lanes' positions per partition (the live set's shared group; see above). */
  positions?: boolean;
  /** A lane emits events (Effect.emits): the worker opens a producer for them. */
  emits?: boolean;
  /** Emitted events go through it, to the log's current generation (else to `topic`). */
  writer?: LogWriter;
  partitionsConsumedConcurrently?: number;
  /** Kafka session timeout of the group (PIPELINES_SESSION_TIMEOUT_MS). */
  sessionTimeoutMs?: number;
  /** A room's keys expire this long after its last event, and come back from the log on its next (ROOM_IDLE_TTL_SEC; 0/absent = never). */
  idleTtlSec?: number;
  /** A room's emitted events are durable in the log (its effect is applied next). */
  onEmitted?(room: string, events: RoomEvent[]): void;
  onApplied?(projection: string, room: string, applied: number, skipped: number): void;
  /** A room's keys had expired; its state came back from `events` of the log. */
  onRestored?(projection: string, version: number, room: string, events: number): void;
  /** A batch was committed: records fetched, ms taken. */
  onBatch?(partition: number, records: number, ms: number): void;
  onError?(err: unknown): void;
  onAssigned?(partitions: number[]): void;
}

/** What a batch of a partition applies: its lanes and where each starts (set by `position`, read by `handle`). */
interface BatchPlan {
  lanes: Lane[];
  /** Per lane: records below this offset are applied already. */
  from: number[];
}

export class ProjectionWorker {
  private consumer: EventConsumer | undefined;
  private producer: LogProducer | undefined;
  private readonly store: RedisStore;
  /** Position field → the next offset that lane needs, as this worker last read or wrote it. */
  private readonly positions = new Map<string, number>();
  /** Partition → where it was when Redis lost its data (recoverFromWipe): rooms' first effects below that carry `resync`. */
  private readonly rebuildUntil = new Map<number, number>();
  private readonly plans = new Map<number, BatchPlan>();
  /** Partition → the offset after the last batch this worker committed. */
  private readonly next = new Map<number, number>();
  private assigned: number[] = [];
  private admin: LogAdmin | undefined;
  private adminReady = false;
  applied = 0;
  skipped = 0;
  /** Rooms (× lanes) whose state came back from the log after their keys expired. */
  restored = 0;

  constructor(private readonly o: WorkerOptions) {
    this.store = new RedisStore(o.redis);
  }

  get groupId(): string {
    return this.o.groupId;
  }

  get generation(): number {
    return this.o.generation ?? 0;
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.o.emits && !this.o.writer) {
      this.producer = this.o.client.producer({ lingerMs: 0 });
      await this.producer.connect();
    }
    this.consumer = new EventConsumer({
      client: this.o.client,
      codec: this.o.codec,
      topic: this.o.topic,
      deadLetterTopic: this.o.deadLetterTopic,
      groupId: this.groupId,
      partitionsConsumedConcurrently: this.o.partitionsConsumedConcurrently,
      sessionTimeoutMs: this.o.sessionTimeoutMs,
      position: this.o.positions ? (partition, first) => this.position(partition, Number(first)) : undefined,
      handle: (events, partition, next) => this.handle(events, partition, Number(next)),
      onError: this.o.onError,
      onBatch: this.o.onBatch,
      onAssigned: (partitions) => {
        // Another instance may have moved what we cached: read positions afresh.
        this.positions.clear();
        this.next.clear();
        this.assigned = partitions;
        this.o.onAssigned?.(partitions);
        if (this.o.positions) void this.checkPositions().catch((err: unknown) => this.o.onError?.(err));
      },
    });
    await this.consumer.start(signal);
  }

  /** The lanes changed (a version switch): partitions where a lane is now behind are read again from there. */
  async lanesChanged(): Promise<void> {
    if (this.o.positions) await this.checkPositions();
  }

  /**
   * Not only when a batch comes: a partition with no new records would
   * otherwise leave a lane that is behind the group (a version just switched
   * to, a projection just added) behind until its next record. For each
   * assigned partition the group has read, if a lane needs records before
   * where the group is, the partition is read again from there.
   */
  private async checkPositions(): Promise<void> {
    const partitions = this.assigned;
    if (partitions.length === 0) return;
    const admin = (this.admin ??= this.o.client.admin());
    if (!this.adminReady) {
      await admin.connect();
      this.adminReady = true;
    }
    const committed = await admin.committedOffsets(this.groupId, this.o.topic);
    const lanes = this.o.lanes();
    for (const partition of partitions) {
      const at = this.next.get(partition) ?? Number(committed.get(partition) ?? '-1');
      if (at < 0) continue; // nothing read yet: the group starts at the log's start anyway
      const fields = lanes.map((l) => positionField(l.projection.name, l.version, partition, this.generation));
      const stored = await this.o.redis.hmget(positionsKey(this.o.naming), ...fields);
      let min = Math.min(...stored.map((v) => (v === null || v === undefined ? 0 : Number(v))));
      if (min < at) min = Math.max(min, Number(await this.o.client.lowWatermark(this.o.topic, partition)));
      if (min < at) {
        this.positions.clear();
        this.consumer?.seek(partition, String(min));
      }
    }
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    await this.producer?.disconnect();
    if (this.adminReady) await this.admin?.disconnect();
  }

  get consumed(): { processed: number; deadLettered: number } {
    return { processed: this.consumer?.processed ?? 0, deadLettered: this.consumer?.deadLettered ?? 0 };
  }

  /**
   * Where a batch starting at `first` must start for these lanes. Cached
   * positions are trusted while batches follow each other (every lane's
   * position is where the batch starts); otherwise they are read again.
   */
  private async position(partition: number, first: number): Promise<BatchStart> {
    const lanes = this.o.lanes();
    const fields = lanes.map((l) => positionField(l.projection.name, l.version, partition, this.generation));
    if (fields.some((f) => this.positions.get(f) !== first)) {
      const stored = await this.o.redis.hmget(positionsKey(this.o.naming), ...fields);
      // No position: never applied in this group, the lane needs the partition from its start.
      fields.forEach((f, i) => this.positions.set(f, Number(stored[i] ?? 0)));
    }
    let from = fields.map((f) => this.positions.get(f)!);
    if (Math.min(...from) < first) {
      // Records below the low watermark are gone (retention): nothing there to apply, nothing to rewind to.
      const low = Number(await this.o.client.lowWatermark(this.o.topic, partition));
      from = from.map((p) => Math.max(p, low));
      const min = Math.min(...from);
      if (min < first) {
        this.positions.clear(); // re-read after the rewind
        return { rewindTo: String(min) };
      }
    }
    const min = Math.min(...from);
    this.plans.set(partition, { lanes, from });
    return { skipBelow: String(min) };
  }

  async handle(records: DecodedRecord[], partition: number, next: number): Promise<void> {
    const plan = this.o.positions ? this.plans.get(partition) : undefined;
    const lanes = plan?.lanes ?? this.o.lanes();
    const byRoom = new Map<string, PositionedEvent[]>();
    const gen = this.generation;
    // Past a sealed generation's end nothing was acknowledged (a writer's send that timed out yet landed): never applied.
    const until = this.o.until?.(partition);
    for (const r of records) {
      if (until !== undefined && Number(r.offset) >= until) continue;
      let list = byRoom.get(r.event.roomId);
      if (!list) byRoom.set(r.event.roomId, (list = []));
      list.push({ event: r.event, offset: positionOf(gen, r.offset), partition: r.partition });
    }
    // Lanes and rooms are independent: their scripts go out together (auto-pipelined).
    const work: Promise<void>[] = [];
    const projections = await Promise.all(
      lanes.map((lane) => (lane.projection.prepare ? lane.projection.prepare(records.map((r) => r.event)) : Promise.resolve(lane.projection.forBatch?.() ?? lane.projection))),
    );
    lanes.forEach((lane, i) => {
      const projection = projections[i]!;
      const from = positionOf(gen, plan?.from[i] ?? 0);
      for (const [room, events] of byRoom) {
        const todo = from > events[0]!.offset ? events.filter((e) => e.offset >= from) : events;
        if (todo.length > 0) work.push(this.applyRoom(lane, projection, room, todo));
      }
    });
    await Promise.all(work);
    if (plan) {
      const moved = new Map<string, number>();
      // Fields that held a position when this batch started (read or written before): all of them gone means Redis lost its data.
      const held = new Set<string>();
      for (const [i, lane] of lanes.entries()) {
        const f = positionField(lane.projection.name, lane.version, partition, gen);
        if ((plan.from[i] ?? 0) > 0) held.add(f);
        moved.set(f, next);
        this.positions.set(f, next);
      }
      // After every lane's effect is durable, before the commit: a position never runs ahead of the effects.
      if (!(await this.store.advance(positionsKey(this.o.naming), moved, held))) {
        await this.recoverFromWipe(lanes, [...byRoom.keys()], partition, next);
        return;
      }
      this.next.set(partition, next);
    }
  }

  /**
   * Redis lost its data under this worker (FLUSHALL, a restart without its
   * AOF): the positions it wrote are gone, and with them the fences and the
   * projections. Without this, the worker went on applying new events onto
   * the hole — rooms' feeds and tallies silently short of everything before,
   * epochs unchanged, so clients never knew (found by `npm run chaos --
   * redis-wipe`, issue 14). Now: this batch may have been applied onto the
   * hole, so its rooms' keys are removed (the keyspace holds only what was
   * written since the loss: one SCAN); the cached positions are dropped, so
   * the next batch reads them absent and `position()` rewinds the partition to
   * the log's start, and the fences make the rebuild exact; every room's epoch
   * moves past any it had (the switch counter raised to the time in ms), and
   * each room's first effect of the rebuild carries `resync`, so open sockets
   * take a fresh snapshot and pollers get `unrecoverable`. No operator needed.
   */
  private async recoverFromWipe(lanes: Lane[], rooms: string[], partition: number, next: number): Promise<void> {
    const { naming } = this.o;
    const prefixes = lanes.flatMap((l) => rooms.map((room) => roomKeys(naming.keyPrefix, l.projection.name, l.version, room).meta.replace(/meta$/, '')));
    const removed = await this.store.removeUnder(`${naming.keyPrefix}*`, prefixes);
    await this.store.raise(switchesKey(naming), Date.now());
    // Every partition this worker had applied lost its data too (one Redis): each is rebuilt, and
    // remembers where it was (its first effects resync; what it emitted below is not emitted again).
    const where = new Map(this.next);
    where.set(partition, next);
    this.positions.clear();
    this.next.clear();
    for (const [p, n] of where) {
      this.rebuildUntil.set(p, Math.max(this.rebuildUntil.get(p) ?? -1, positionOf(this.generation, n)));
      // Read again from the log's start now, not at the partition's next record: a quiet partition
      // would otherwise stay without its projections until someone writes to it.
      this.consumer?.seek(p, String(await this.o.client.lowWatermark(this.o.topic, p)));
    }
    this.o.onError?.(new Error(`Redis lost the projections (positions gone): rebuilding from the log's start, epochs moved; removed ${removed} keys written onto the hole`));
  }

  /**
   * A room's events for one lane. A busy room's batch is folded and applied
   * in chunks of CHUNK events: each chunk's script expects the fence the one
   * before leaves, so they all go out at once (one connection: Redis runs
   * them in order) and Redis applies one while the next is folded.
   */
  private async applyRoom(lane: Lane, projection: Projection<unknown>, room: string, events: PositionedEvent[], restoring = false): Promise<void> {
    const { naming } = this.o;
    const { version } = lane;
    const keys = roomKeys(naming.keyPrefix, projection.name, version, room);
    const ttl = this.o.idleTtlSec ?? 0;
    const expire = ttl > 0 ? { ttlSec: ttl, keys: expiringKeys(projection, keys), history: keys.key(HISTORY_SUFFIX) } : undefined;
    let restored = restoring;
    let resyncAfterRestore = false;
    for (let attempt = 0; ; attempt++) {
      let meta: RoomMeta<unknown>;
      let view: FieldsView | undefined;
      if (projection.users) {
        // The fields of the batch's users only, read with the fence they belong to.
        const k = userKeys(keys, projection.users);
        const loaded = await this.store.loadMetaAndFields(keys.meta, projection.initial, k.key, k.index, fieldsRead(projection, undefined, events));
        meta = loaded.meta;
        view = new FieldsView(k.key, k.index, loaded.loaded);
      } else {
        meta = await this.store.loadMeta(keys.meta, projection.initial);
      }
      if (meta.fence === undefined && expire && !restored) {
        restored = true;
        // No keys, yet a history: the room was idle, its keys expired; its state comes back from the log first.
        const history = await this.store.history(expire.history);
        if (history) {
          await this.restoreRoom(lane, room, events[0]!.partition, history);
          resyncAfterRestore = true;
          continue;
        }
      }
      const sent: { applied: number; skipped: number; ok: Promise<boolean> }[] = [];
      let skipped = 0;
      // The room's first effect in this generation: its clients resync (the repartition moved every epoch).
      let resync = meta.fence !== undefined && meta.fence >= 0 && splitPosition(meta.fence).generation < this.generation;
      // Restored after its keys expired: viewers who read the room meanwhile saw it empty.
      if (resyncAfterRestore) resync = true;
      // Rebuilding after Redis lost its data (recoverFromWipe): a room's first effect makes its clients resync too.
      if (meta.fence === undefined && events[0]!.offset < (this.rebuildUntil.get(events[0]!.partition) ?? -1)) resync = true;
      let failure: unknown;
      // Rebuilding after Redis lost its data: what events below where the partition was had to emit
      // is in the log already (emitted before the positions moved past them), so it is not emitted again.
      const emittedBelow = this.rebuildUntil.get(events[0]!.partition) ?? -1;
      try {
        for (const chunk of chunks(events, emittedBelow)) {
          const r = foldRoom(projection, meta, chunk, keys, view);
          if (r.applied === 0) {
            skipped += r.skipped;
            continue;
          }
          // Emitted events are durable before the script that moves the fence past their cause goes out.
          // (A restore folds history whose emits and outside writes were made the first time.)
          if (r.emits.length > 0 && chunk[0]!.offset >= emittedBelow && !restoring) await this.emit(projection.name, room, r.emits);
          // So are writes outside the room's keys (idempotent: a crash before the fence moves writes them again).
          if (r.external.length > 0 && !restoring) await this.store.writeExternal(r.external);
          const deltas = compactDeltas(r.deltas);
          const notification: Notification | undefined =
            this.o.notify && !restoring && deltas.length > 0 ? { room, projection: projection.name, version, offset: r.meta.fence!, deltas, ...(resync ? { resync: true as const } : {}) } : undefined;
          if (notification) resync = false;
          const message = notification ? { channel: notifyChannel(naming, room), message: JSON.stringify(notification) } : undefined;
          const ex = expire && { ...expire, first: chunk[0]!.offset };
          sent.push({ applied: r.applied, skipped: r.skipped, ok: this.store.apply(keys.meta, meta.fence, r.meta, r.cmds, message, ex) });
          meta = r.meta;
        }
      } catch (err) {
        failure = err;
      }
      const results = await Promise.allSettled(sent.map((x) => x.ok));
      if (failure !== undefined) throw failure;
      let moved = false;
      for (const [i, res] of results.entries()) {
        if (res.status === 'rejected') throw res.reason;
        if (!res.value) {
          moved = true;
          continue;
        }
        this.applied += sent[i]!.applied;
        skipped += sent[i]!.skipped;
        this.o.onApplied?.(projection.name, room, sent[i]!.applied, 0);
      }
      this.skipped += skipped;
      if (skipped) this.o.onApplied?.(projection.name, room, 0, skipped);
      if (!moved) return;
      // The fence moved: another instance (a zombie after a rebalance) applied
      // some of these events first. Reload and fold again; the fence skips them.
      // What this attempt emitted for events still past the moved fence is
      // emitted again by the refold: the same events (same state, same rules,
      // ids derived from the cause), so the log holds duplicates whose effects
      // are no-ops (see moderation/processor.ts).
      if (attempt > 20) throw new Error(`fence of ${keys.meta} keeps moving`);
    }
  }

  /**
   * A room whose keys expired (ROOM_IDLE_TTL_SEC) gets an event again: its
   * events from the history record's `first` to `last` are read back from the
   * log (every generation they span; what retention deleted is gone) and
   * folded onto the empty room, silently, before the new events are applied:
   * the same fold as live, so the room is as it was. Costs one read of the
   * room's partition over that range, for this partition's batch only (other
   * partitions go on). Limit: across a repartition, records an older
   * generation holds past its seal (a send that timed out yet landed, never
   * acknowledged) are not told apart here.
   */
  private async restoreRoom(lane: Lane, room: string, partition: number, history: { first: number; last: number }): Promise<void> {
    const f = splitPosition(history.first);
    const l = splitPosition(history.last);
    const gen = this.generation;
    const base = gen === 0 ? this.o.topic : this.o.topic.slice(0, -`.g${gen}`.length);
    const events: PositionedEvent[] = [];
    for (let g = f.generation; g <= l.generation; g++) {
      const topic = generationTopic(base, g);
      const p = g === gen ? partition : murmur2Partition(room, await this.o.client.partitionCount(topic));
      const low = Number(await this.o.client.lowWatermark(topic, p));
      const from = Math.max(low, g === f.generation ? f.offset : 0);
      const to = g === l.generation ? l.offset : Number.MAX_SAFE_INTEGER;
      if (to < from) continue;
      for (const r of await this.o.client.readRange(topic, p, from, to, { timeoutMs: 120_000 })) {
        if (r.key && r.key.toString('utf8') !== room) continue; // the partition's other rooms: not even decoded
        let event: RoomEvent;
        try {
          event = await this.o.codec.decode(r.value);
        } catch {
          continue; // dead-lettered the first time: never part of a projection
        }
        if (event.roomId === room) events.push({ event, offset: positionOf(g, r.offset), partition: p });
      }
    }
    if (events.length === 0) return;
    const projection = lane.projection.prepare ? await lane.projection.prepare(events.map((e) => e.event)) : (lane.projection.forBatch?.() ?? lane.projection);
    await this.applyRoom(lane, projection, room, events, true);
    this.restored++;
    this.o.onRestored?.(lane.projection.name, lane.version, room, events.length);
  }

  /** Produces a room's emitted events and waits until Kafka acknowledged them all (acks=all). */
  private async emit(projection: string, room: string, events: RoomEvent[]): Promise<void> {
    const { writer } = this.o;
    if (writer) {
      // To the current generation: the room's events there are applied after all of this one's.
      await Promise.all(events.map((e) => writer.send({ key: room, value: this.o.codec.encode(e), headers: { 'event-type': e.payload.type } })));
      this.o.onEmitted?.(room, events);
      return;
    }
    const producer = this.producer;
    if (!producer) throw new Error(`projection ${projection} emits events, but its worker was not started with emits: true`);
    await Promise.all(
      events.map((e) => producer.send({ topic: this.o.topic, key: room, value: this.o.codec.encode(e), headers: { 'event-type': e.payload.type } })),
    );
    this.o.onEmitted?.(room, events);
  }
}
