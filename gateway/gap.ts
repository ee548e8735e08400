/**
 * Filling a gap from the log: a client resumes from a position older than
 * anything Redis still holds for the room (Redis keeps the newest
 * FEED_MAX_ITEMS), so the items it missed are rebuilt from the event log
 * itself — the room's partition, from its position to the room's current one
 * — by folding them with the feed projection into a MemoryStore, as replay
 * does, so they are exactly what Redis would have served.
 */
import { foldRoom, roomKeys, type FeedItem, type PositionedEvent } from '../pipelines/projection.ts';
import { activeVersion } from '../pipelines/naming.ts';
import { feedProjection, SHADOW_HISTORY, shadowMutesAt, shadowView } from '../pipelines/projections/feed.ts';
import { readRoomState } from '../pipelines/read.ts';
import { MemoryStore } from '../pipelines/store.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { generationTopic, positionOf, splitPosition } from '../topics/generations.ts';
import { murmur2Partition } from '../topics/kafka.ts';
import type { GatewayDeps } from './deps.ts';

/**
 * Feed items of `room` in (afterOffset, untilOffset], oldest first: comments,
 * and tombstones of removals; a comment removed later within the range is
 * left out (its tombstone stays), as the feed projection does. Undefined when
 * the log no longer holds afterOffset + 1 (deleted by retention): the gap
 * cannot be filled, the client needs a fresh snapshot.
 *
 * Shadow mutes: the feed projection marks comments of shadow-muted users, and
 * those must never reach other viewers. The mute state before the range is not
 * in the range, so the fold starts from the room's current shadow mutes — a
 * comment from before a mute that is active now is marked too (hidden from
 * others), which errs on the side of not showing what should be hidden.
 *
 * Cost is bounded per request and per gateway, since any anonymous client can
 * ask for any position: a gap spanning more than CATCHUP_LOG_MAX_RECORDS
 * records of the partition is not read (undefined: the client reloads a
 * snapshot), and at most CATCHUP_LOG_CONCURRENCY reads run at once per
 * gateway, a few more wait their turn, and beyond that a client is answered
 * as if the gap were gone.
 *
 * Positions name a log generation and an offset in it (topics/generations.ts):
 * a gap within one generation is read from that generation's topic; one that
 * spans a repartition is not (the epoch moved at the switch, so such a client
 * takes a fresh snapshot anyway).
 */
export async function itemsFromLog(deps: GatewayDeps, room: string, afterPosition: number, untilPosition: number): Promise<FeedItem[] | undefined> {
  const { catchUpMaxRecords } = deps.cfg.push;
  if (untilPosition <= afterPosition) return [];
  if (untilPosition - afterPosition > catchUpMaxRecords) return undefined;
  const after = splitPosition(afterPosition);
  const until = splitPosition(untilPosition);
  if (after.generation !== until.generation) return undefined;
  const generation = until.generation;
  const topic = generationTopic(deps.topics.roomEvents, generation);
  const partition = murmur2Partition(room, await deps.log.partitionCount(topic));
  const low = Number(await deps.log.lowWatermark(topic, partition));
  if (after.offset + 1 < low) return undefined;
  const release = await readSlots(deps).acquire();
  if (!release) return undefined;
  try {
    return await readGap(deps, room, topic, generation, partition, after.offset, until.offset);
  } finally {
    release();
  }
}

/** A counting semaphore with a bounded queue: acquire() resolves a release function, or undefined when the queue is full. */
export class Slots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(
    private readonly size: number,
    private readonly maxQueue: number,
  ) {}

  async acquire(): Promise<(() => void) | undefined> {
    if (this.busy >= this.size) {
      if (this.waiting.length >= this.maxQueue) return undefined;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.busy++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.busy--;
    };
  }
}

const slotsOf = new WeakMap<GatewayDeps, Slots>();
function readSlots(deps: GatewayDeps): Slots {
  let s = slotsOf.get(deps);
  if (!s) slotsOf.set(deps, (s = new Slots(deps.cfg.push.catchUpConcurrency, deps.cfg.push.catchUpConcurrency * 4)));
  return s;
}

async function readGap(deps: GatewayDeps, room: string, topic: string, generation: number, partition: number, afterOffset: number, untilOffset: number): Promise<FeedItem[]> {

  const feedVersion = await activeVersion(deps.redis, deps.naming, 'feed');
  const [records, roomState, history] = await Promise.all([
    deps.log.readRange(topic, partition, afterOffset + 1, untilOffset),
    readRoomState(deps.redis, deps.naming, room, deps.now()),
    deps.redis.hgetall(roomKeys(deps.naming.keyPrefix, 'feed', feedVersion, room).key(SHADOW_HISTORY.key)),
  ]);

  const events: PositionedEvent[] = [];
  for (const r of records) {
    if (r.key && r.key.toString('utf8') !== room) continue; // other rooms of the partition: skip without decoding
    let event: RoomEvent;
    try {
      event = await deps.codec.decode(r.value);
    } catch {
      continue; // dead-lettered by the processors too: never part of a projection
    }
    if (event.roomId === room) events.push({ event, offset: positionOf(generation, r.offset), partition });
  }
  // Each event adds at most one item, so keeping as many as there are events
  // means trimming never drops an item of the range, however long the gap.
  // The shadow mutes in force where the range begins (the feed's history of them), and — for
  // mutes older than that history — those in force now, which errs on the side of hiding.
  const shadow = new Map<string, number | null>(events.length > 0 ? shadowMutesAt(history, events[0]!.event.occurredAt) : []);
  for (const [userId, m] of Object.entries(roomState.muted)) if (m.kind === 'shadow' && !shadow.has(userId)) shadow.set(userId, m.untilMs);
  const projection = feedProjection(Math.max(1, events.length));
  const keys = roomKeys('gap:', projection.name, 0, room);
  const folded = foldRoom(projection, { fence: undefined, state: projection.initial() }, events, keys, shadowView(keys, [...shadow]));
  const store = new MemoryStore();
  store.exec(folded.cmds);
  return store.sortedMembers(keys.key('z')).map(([member]) => JSON.parse(member) as FeedItem);
}
