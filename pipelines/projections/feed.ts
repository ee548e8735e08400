/**
 * Ordered feed: per room, the most recent N comments in log order, each with
 * its offset. Deletions (by authors, moderators, or the moderation pipeline's
 * `delete`/`hold` verdicts) remove the comment and leave a tombstone entry,
 * so a client resuming from a position learns about removals it missed.
 *
 * Layout: sorted set `z` (score = offset, member = JSON item) and hash `idx`
 * (eventId → offset) so a deletion finds its target without scanning.
 */
import type { RoomEvent } from '../../schemas/events.ts';
import type { Cmd, Delta, FeedEntry, PositionedEvent, Projection, RoomKeys, Tombstone } from '../projection.ts';

export interface FeedState {
  /** Shadow-muted users (userId → until ms, null = indefinitely): their comments are marked. */
  shadow: Record<string, number | null>;
}

export function feedEntryOf(e: RoomEvent, offset: number): FeedEntry | undefined {
  const p = e.payload;
  if (p.type !== 'CommentPosted') return undefined;
  return {
    kind: 'comment',
    offset,
    eventId: e.eventId,
    userId: e.actor.userId,
    role: e.actor.role,
    text: p.text,
    mode: p.mode,
    color: p.color,
    size: p.size,
    occurredAt: e.occurredAt,
    videoOffsetMs: e.videoOffsetMs,
    replyTo: p.replyTo,
  };
}

/** Is the user shadow-muted at time `at`? (Event time, never the wall clock.) */
export function isShadowed(shadow: Record<string, number | null>, userId: string, at: number): boolean {
  if (!(userId in shadow)) return false;
  const until = shadow[userId];
  return until === null || until === undefined || at < until;
}

/** Effects shared by the ordered and the sampled feed. */
export function removal(keys: RoomKeys, e: PositionedEvent, targetEventId: string, reason: string): { cmds: Cmd[]; deltas: Delta[] } {
  const tomb: Tombstone = { kind: 'delete', offset: e.offset, eventId: targetEventId, deletionId: e.event.eventId, occurredAt: e.event.occurredAt, reason };
  return {
    cmds: [
      { op: 'feedRemove', key: keys.key('z'), index: keys.key('idx'), eventId: targetEventId },
      // The tombstone's own id is the deletion event's, so a second deletion of the same comment adds its own entry.
      { op: 'feedAdd', key: keys.key('z'), index: keys.key('idx'), eventId: `del:${e.event.eventId}`, offset: e.offset, member: JSON.stringify(tomb) },
    ],
    deltas: [{ t: 'delete', eventId: targetEventId, offset: e.offset, reason }],
  };
}

/**
 * What removes a comment from the feeds: a deletion, or a moderation hold.
 * (A moderation `delete` verdict is always followed by its CommentDeleted,
 * which does the removal; reacting to both would leave two tombstones.)
 */
export function removalTarget(e: RoomEvent): { target: string; reason: string } | undefined {
  const p = e.payload;
  if (p.type === 'CommentDeleted') return { target: p.targetEventId, reason: p.reason || 'deleted' };
  if (p.type === 'ModerationDecided' && p.verdict === 'hold') return { target: p.targetEventId, reason: `moderation:hold:${p.rule}` };
  return undefined;
}

export function nextShadow(shadow: Record<string, number | null>, e: RoomEvent): Record<string, number | null> {
  const p = e.payload;
  if (p.type !== 'UserMuted') return shadow;
  const next = { ...shadow };
  // Forget expired mutes so the state stays small.
  for (const [u, until] of Object.entries(next)) if (until !== null && until <= e.occurredAt) delete next[u];
  if (p.kind === 'shadow' && (p.untilMs === null || p.untilMs > e.occurredAt)) next[p.userId] = p.untilMs;
  else delete next[p.userId];
  return next;
}

export function feedProjection(maxItems: number): Projection<FeedState> {
  return {
    name: 'feed',
    initial: () => ({ shadow: {} }),
    apply(state, e, keys) {
      const entry = feedEntryOf(e.event, e.offset);
      if (entry) {
        if (isShadowed(state.shadow, entry.userId, entry.occurredAt)) entry.shadow = true;
        return {
          state,
          cmds: [
            { op: 'feedAdd', key: keys.key('z'), index: keys.key('idx'), eventId: entry.eventId, offset: e.offset, member: JSON.stringify(entry) },
            { op: 'feedTrim', key: keys.key('z'), index: keys.key('idx'), keep: maxItems },
          ],
          deltas: [{ t: 'comment', entry }],
        };
      }
      const rm = removalTarget(e.event);
      if (rm) {
        const r = removal(keys, e, rm.target, rm.reason);
        return { state, cmds: [...r.cmds, { op: 'feedTrim', key: keys.key('z'), index: keys.key('idx'), keep: maxItems }], deltas: r.deltas };
      }
      const shadow = nextShadow(state.shadow, e.event);
      return { state: shadow === state.shadow ? state : { shadow }, cmds: [], deltas: [] };
    },
  };
}
