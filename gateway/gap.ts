/**
 * Filling a gap from the log: a client resumes from a position older than
 * anything Redis still holds for the room (Redis keeps the newest
 * FEED_MAX_ITEMS), so the items it missed are rebuilt from the event log
 * itself — the room's partition, from its position to the room's current one
 * — by folding them with the feed projection into a MemoryStore, as replay
 * does, so they are exactly what Redis would have served.
 */
import { foldRoom, roomKeys, type FeedItem, type PositionedEvent } from '../pipelines/projection.ts';
import { feedProjection, type FeedState } from '../pipelines/projections/feed.ts';
import { readRoomState } from '../pipelines/read.ts';
import { MemoryStore } from '../pipelines/store.ts';
import type { RoomEvent } from '../schemas/events.ts';
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
 */
export async function itemsFromLog(deps: GatewayDeps, room: string, afterOffset: number, untilOffset: number): Promise<FeedItem[] | undefined> {
  const topic = deps.topics.roomEvents;
  const partition = murmur2Partition(room, await deps.log.partitionCount(topic));
  const low = Number(await deps.log.lowWatermark(topic, partition));
  if (afterOffset + 1 < low) return undefined;
  if (untilOffset <= afterOffset) return [];

  const [records, roomState] = await Promise.all([
    deps.log.readRange(topic, partition, afterOffset + 1, untilOffset),
    readRoomState(deps.redis, deps.naming, room, deps.now()),
  ]);
  const shadow: FeedState['shadow'] = {};
  for (const [userId, m] of Object.entries(roomState.muted)) if (m.kind === 'shadow') shadow[userId] = m.untilMs;

  const events: PositionedEvent[] = [];
  for (const r of records) {
    if (r.key && r.key.toString('utf8') !== room) continue; // other rooms of the partition: skip without decoding
    let event: RoomEvent;
    try {
      event = await deps.codec.decode(r.value);
    } catch {
      continue; // dead-lettered by the processors too: never part of a projection
    }
    if (event.roomId === room) events.push({ event, offset: Number(r.offset), partition });
  }
  // Each event adds at most one item, so keeping as many as there are events
  // means trimming never drops an item of the range, however long the gap.
  const projection = feedProjection(Math.max(1, events.length));
  const keys = roomKeys('gap:', projection.name, 0, room);
  const folded = foldRoom(projection, { fence: undefined, state: { shadow } }, events, keys);
  const store = new MemoryStore();
  store.exec(folded.cmds);
  return store.sortedMembers(keys.key('z')).map(([member]) => JSON.parse(member) as FeedItem);
}
