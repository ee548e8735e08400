/**
 * A room's snapshot kept in the gateway's memory (issue: a connect storm of
 * 5,000 sockets must not cost 5,000 reads of Redis). Once one snapshot of a
 * room's view has been read, the hub keeps it current by applying the room's
 * notifications to it — the same deltas the sockets get — so the next socket
 * is answered from memory: its items are the feed as Redis holds it (newest
 * FEED_MAX_ITEMS, tombstones where comments were removed), its tallies, pin
 * and settings the last ones announced.
 *
 * Pure: the hub owns the I/O and decides when a window is started, dropped
 * (resync, epoch, a lost subscription) or cannot be kept exactly (a
 * notification without what a tombstone needs), see `applyNotification`.
 */
import type { Delta, FeedItem, Tombstone } from '../../pipelines/projection.ts';
import type { FeedPage } from '../../pipelines/read.ts';
import type { SnapshotMessage, Tallies, View } from '../protocol.ts';

/** A snapshot as the plugin reads it from Redis: every item held, with the highest item offset and the oldest. */
export interface WindowRead {
  msg: SnapshotMessage;
  /** Highest item offset (items at or below it are in the snapshot). */
  floor: number;
  /** Oldest offset the feed holds (undefined when it holds nothing; absent: the oldest item's). */
  oldestOffset?: number | undefined;
}

export interface RoomWindow extends WindowRead {
  view: View;
  oldestOffset: number | undefined;
}

/** The projections whose notifications a view's window follows. */
export function followedBy(view: View, projection: string): boolean {
  if (projection === 'tallies' || projection === 'state' || projection === 'gifts') return true;
  return view === 'ordered' ? projection === 'feed' : projection === 'sampled';
}

/** A window from a snapshot just read (its own copy: the read is also sent as is). */
export function startWindow(view: View, read: WindowRead): RoomWindow {
  const msg: SnapshotMessage = { ...read.msg, items: [...read.msg.items] };
  delete msg.reason;
  return { view, msg, floor: read.floor, oldestOffset: 'oldestOffset' in read ? read.oldestOffset : read.msg.items[0]?.offset };
}

/**
 * Applies one notification of `projection` to the window, in place. Returns
 * false when the window can no longer be kept exactly (the caller drops it
 * and reads Redis next time): a deletion without its tombstone's fields.
 * Items at or below the window's floor are already in it (a notification
 * published before the read, delivered after): skipped, as the sockets'
 * `release(floor)` skips them.
 */
export function applyNotification(w: RoomWindow, projection: string, deltas: readonly Delta[], maxItems: number): boolean {
  if (!followedBy(w.view, projection)) return true;
  const feed = projection === 'feed' || projection === 'sampled';
  for (const d of deltas) {
    switch (d.t) {
      case 'comment':
        if (!feed || d.entry.offset <= w.floor) break;
        w.msg.items.push(d.entry);
        w.floor = d.entry.offset;
        break;
      case 'delete': {
        if (!feed || d.offset <= w.floor) break;
        if (d.deletionId === undefined || d.occurredAt === undefined) return false;
        const at = w.msg.items.findIndex((i) => i.kind === 'comment' && i.eventId === d.eventId);
        if (at >= 0) w.msg.items.splice(at, 1);
        const tomb: Tombstone = { kind: 'delete', offset: d.offset, eventId: d.eventId, deletionId: d.deletionId, occurredAt: d.occurredAt, reason: d.reason };
        w.msg.items.push(tomb);
        w.floor = d.offset;
        break;
      }
      case 'rate':
        if (projection === 'sampled') w.msg.rate = d.rate;
        break;
      case 'tally':
        w.msg.tallies = { totals: d.totals, lastSeconds: { ...w.msg.tallies.lastSeconds, [String(d.second)]: d.burst } };
        break;
      case 'pin':
        w.msg.pinned = d.pin;
        break;
      case 'gift':
        w.msg.leaderboard = d.leaderboard;
        break;
      case 'settings':
        w.msg.settings = d.settings;
        break;
      case 'mute':
        break; // not part of a snapshot
    }
  }
  if (w.msg.items.length > maxItems) w.msg.items.splice(0, w.msg.items.length - maxItems);
  w.oldestOffset = w.msg.items.length > 0 ? w.msg.items[0]!.offset : w.oldestOffset;
  w.msg.position = { offset: Math.max(w.msg.position.offset, w.floor), epoch: w.msg.position.epoch };
  return true;
}

/** Tally seconds older than the last 10 s fall out, as the read from Redis drops them. */
function recentTallies(t: Tallies, nowMs: number): Tallies {
  const oldest = Math.floor(nowMs / 1000) - 10;
  const lastSeconds: Tallies['lastSeconds'] = {};
  for (const [sec, counts] of Object.entries(t.lastSeconds)) if (Number(sec) >= oldest) lastSeconds[sec] = counts;
  return { totals: t.totals, lastSeconds };
}

/** What a new socket is sent from the window: a copy, with the viewer count of now, an expired pin gone, old tally seconds dropped. */
export function readWindow(w: RoomWindow, nowMs: number, viewers: number): WindowRead {
  const pinned = w.msg.pinned && w.msg.pinned.untilMs !== null && w.msg.pinned.untilMs <= nowMs ? null : w.msg.pinned;
  const items: FeedItem[] = [...w.msg.items];
  const msg: SnapshotMessage = { ...w.msg, items, pinned, viewers, tallies: recentTallies(w.msg.tallies, nowMs) };
  delete msg.reason;
  return { msg, floor: w.floor, oldestOffset: w.oldestOffset };
}

/**
 * A poll's page from the window, as `readFeed` reads it from Redis: the
 * oldest `limit` items after `afterOffset`, and the position after the last
 * one given (the window's position when nothing more is held). Undefined
 * without a window: the poll reads Redis.
 */
export function pageFromWindow(w: RoomWindow | undefined, afterOffset: number | undefined, limit: number): FeedPage | undefined {
  if (!w) return undefined;
  const after = afterOffset === undefined ? w.msg.items : w.msg.items.filter((i) => i.offset > afterOffset);
  const items = after.slice(0, limit);
  const last = after.length >= limit && items.length > 0 ? items[items.length - 1]!.offset : w.msg.position.offset;
  return { items, position: { offset: Math.max(last, afterOffset ?? -1), epoch: w.msg.position.epoch }, oldestOffset: w.oldestOffset, rate: w.msg.rate };
}
