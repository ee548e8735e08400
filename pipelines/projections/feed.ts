/**
 * Ordered feed: per room, the most recent N comments in log order, each with
 * its offset. Deletions (by authors, moderators, or the moderation pipeline's
 * `delete`/`hold` verdicts) remove the comment and leave a tombstone entry,
 * so a client resuming from a position learns about removals it missed. A
 * held comment a moderator releases (CommentReleased) comes back as a new
 * item at the release's offset, marked `released` (a client that removed it
 * shows it again: gateway/client/state.ts).
 *
 * Layout: sorted set `z` (score = offset, member = JSON item) and hash `idx`
 * (eventId → offset) so a deletion finds its target without scanning.
 * Shadow-muted users are per-user fields (`shadow`: userId → until ms or
 * 'null' = indefinitely, with the expiry index `shadow:exp`), read for the
 * authors of a batch only; each mute drops the mutes that have ended.
 */
import type { RoomEvent } from '../../schemas/events.ts';
import { FieldsView, userKeys, type Cmd, type Delta, type FeedEntry, type PositionedEvent, type Projection, type RoomKeys, type Tombstone, type UserFields, type UserView } from '../projection.ts';

/** Nothing: the feed's only per-room memory, shadow mutes, is per-user fields (SHADOW_USERS). */
export type FeedState = Record<string, never>;

/** Shadow mutes as per-user fields: a comment reads its author's. */
export const SHADOW_USERS: UserFields = {
  suffix: 'shadow',
  readsOf: (e) => (e.payload.type === 'CommentPosted' ? [e.actor.userId] : e.payload.type === 'CommentReleased' ? [e.payload.authorId] : []),
};

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

/**
 * A released comment as a feed item: the comment as posted (the event carries
 * it), at the release's offset. Its shadow mark is decided at the release, as
 * a comment's is at its posting.
 */
export function releasedEntryOf(e: RoomEvent, offset: number): FeedEntry | undefined {
  const p = e.payload;
  if (p.type !== 'CommentReleased') return undefined;
  return {
    kind: 'comment',
    offset,
    eventId: p.targetEventId,
    userId: p.authorId,
    role: p.authorRole,
    text: p.text,
    mode: p.mode,
    color: p.color,
    size: p.size,
    occurredAt: p.postedAt,
    videoOffsetMs: p.postedVideoOffsetMs,
    replyTo: p.replyTo,
    released: true,
  };
}

/** Is the user shadow-muted at time `at`? (Event time, never the wall clock.) */
export function isShadowed(users: UserView, userId: string, at: number): boolean {
  const until = users.get(userId);
  if (until === undefined) return false;
  return until === 'null' || at < Number(until);
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
    deltas: [{ t: 'delete', eventId: targetEventId, offset: e.offset, reason, deletionId: tomb.deletionId, occurredAt: tomb.occurredAt }],
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

/** A view of the shadow fields holding these mutes (userId, until ms or null): a fold that starts from known mutes (gateway/gap.ts). */
export function shadowView(keys: RoomKeys, mutes: [string, number | null][]): FieldsView {
  const k = userKeys(keys, SHADOW_USERS);
  return new FieldsView(k.key, k.index, { fields: new Map(mutes.map(([u, until]) => [u, [String(until), until ?? undefined]])) });
}

/**
 * A mute's effect on the shadow fields: mutes that ended by the mute's time
 * are dropped (so the fields stay as few as the mutes in force), then the
 * user's is set (a shadow mute still running) or removed (a visible mute, or
 * one already over: it replaces any shadow mute).
 */
export function shadowCmds(keys: RoomKeys, e: RoomEvent): Cmd[] {
  const p = e.payload;
  if (p.type !== 'UserMuted') return [];
  const k = userKeys(keys, SHADOW_USERS);
  const cmds: Cmd[] = [{ op: 'fieldsExpire', ...k, upTo: e.occurredAt }];
  if (p.kind === 'shadow' && (p.untilMs === null || p.untilMs > e.occurredAt)) cmds.push({ op: 'fieldSet', ...k, field: p.userId, value: String(p.untilMs), expireAt: p.untilMs ?? -1 });
  else cmds.push({ op: 'fieldDel', ...k, field: p.userId });
  return cmds;
}

/**
 * Shadow mutes as periods (`<userId>@<from>` → JSON [fromMs, untilMs|null]),
 * kept SHADOW_HISTORY_MS after they end. The fields above forget a mute once
 * it ends or is replaced; a gap filled from the log (gateway/gap.ts) starts
 * its fold at some old position and needs the shadow mutes in force then, or
 * comments written under one would reach everyone. A period is never
 * shortened (a later unmute only stops new marks in the live fold), so a gap
 * fill errs on the side of hiding.
 */
export const SHADOW_HISTORY = { key: 'shadow:hist', index: 'shadow:hist:exp' } as const;
/** As long as the log keeps records by default (Kafka's retention.ms: 7 days): no gap reaches further back. */
export const SHADOW_HISTORY_MS = 7 * 24 * 3600 * 1000;

export function shadowHistoryCmds(keys: RoomKeys, e: RoomEvent): Cmd[] {
  const p = e.payload;
  if (p.type !== 'UserMuted') return [];
  const k = { key: keys.key(SHADOW_HISTORY.key), index: keys.key(SHADOW_HISTORY.index) };
  const cmds: Cmd[] = [{ op: 'fieldsExpire', ...k, upTo: e.occurredAt }];
  if (p.kind === 'shadow' && (p.untilMs === null || p.untilMs > e.occurredAt)) {
    cmds.push({ op: 'fieldSet', ...k, field: `${p.userId}@${e.occurredAt}`, value: JSON.stringify([e.occurredAt, p.untilMs]), expireAt: p.untilMs === null ? -1 : p.untilMs + SHADOW_HISTORY_MS });
  }
  return cmds;
}

/** The shadow mutes in force at `atMs`, from a SHADOW_HISTORY hash (as shadowView takes them). */
export function shadowMutesAt(history: Record<string, string>, atMs: number): [string, number | null][] {
  const until = new Map<string, number | null>();
  for (const [field, value] of Object.entries(history)) {
    const userId = field.slice(0, field.lastIndexOf('@'));
    const [from, end] = JSON.parse(value) as [number, number | null];
    if (from > atMs || (end !== null && end <= atMs)) continue;
    const prev = until.get(userId);
    if (prev === undefined || (prev !== null && (end === null || end > prev))) until.set(userId, end);
  }
  return [...until];
}

export function feedProjection(maxItems: number): Projection<FeedState> {
  return {
    name: 'feed',
    keySuffixes: ['z', 'idx', SHADOW_HISTORY.key, SHADOW_HISTORY.index],
    initial: () => ({}),
    users: SHADOW_USERS,
    apply(state, e, keys, users) {
      const entry = feedEntryOf(e.event, e.offset) ?? releasedEntryOf(e.event, e.offset);
      if (entry) {
        if (isShadowed(users, entry.userId, e.event.occurredAt)) entry.shadow = true;
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
      return { state, cmds: [...shadowCmds(keys, e.event), ...shadowHistoryCmds(keys, e.event)], deltas: [] };
    },
  };
}
