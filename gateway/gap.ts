/**
 * Filling a gap from the log: a client resumes from a position older than
 * anything Redis still holds for the room (Redis keeps the newest
 * FEED_MAX_ITEMS), so the items it missed are rebuilt from the event log
 * itself — the room's partition, from its position to the room's current one
 * — with the ordered feed's own mapping (feedEntryOf, removalTarget), so they
 * look exactly like what Redis would have served.
 */
import type { FeedEntry, FeedItem, Tombstone } from '../pipelines/projection.ts';
import { feedEntryOf, isShadowed, nextShadow, removalTarget } from '../pipelines/projections/feed.ts';
import { readRoomState } from '../pipelines/read.ts';
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
 * in the range, so it is seeded with the room's current shadow mutes — a
 * comment from before a mute that is active now is marked too (hidden from
 * others), which errs on the side of not showing what should be hidden.
 */
export async function itemsFromLog(deps: GatewayDeps, room: string, afterOffset: number, untilOffset: number): Promise<FeedItem[] | undefined> {
  const topic = deps.topics.roomEvents;
  const partition = murmur2Partition(room, await deps.log.partitionCount(topic));
  const low = Number(await deps.log.lowWatermark(topic, partition));
  if (afterOffset + 1 < low) return undefined;
  if (untilOffset <= afterOffset) return [];

  const [records, state] = await Promise.all([
    deps.log.readRange(topic, partition, afterOffset + 1, untilOffset),
    readRoomState(deps.redis, deps.naming, room, deps.now()),
  ]);
  let shadow: Record<string, number | null> = {};
  for (const [userId, m] of Object.entries(state.muted)) if (m.kind === 'shadow') shadow[userId] = m.untilMs;

  const items: (FeedItem | undefined)[] = [];
  const commentAt = new Map<string, number>();
  for (const r of records) {
    if (r.key && r.key.toString('utf8') !== room) continue; // other rooms of the partition: skip without decoding
    let event: RoomEvent;
    try {
      event = await deps.codec.decode(r.value);
    } catch {
      continue; // dead-lettered by the processors too: never part of a projection
    }
    if (event.roomId !== room) continue;
    const offset = Number(r.offset);
    const entry: FeedEntry | undefined = feedEntryOf(event, offset);
    if (entry) {
      if (isShadowed(shadow, entry.userId, entry.occurredAt)) entry.shadow = true;
      commentAt.set(entry.eventId, items.push(entry) - 1);
      continue;
    }
    const rm = removalTarget(event);
    if (rm) {
      const at = commentAt.get(rm.target);
      if (at !== undefined) {
        items[at] = undefined;
        commentAt.delete(rm.target);
      }
      const tomb: Tombstone = { kind: 'delete', offset, eventId: rm.target, deletionId: event.eventId, occurredAt: event.occurredAt, reason: rm.reason };
      items.push(tomb);
      continue;
    }
    shadow = nextShadow(shadow, event);
  }
  return items.filter((i): i is FeedItem => i !== undefined);
}
