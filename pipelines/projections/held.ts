/**
 * The review queue: per room, the comments moderation held for a moderator
 * (ModerationDecided, verdict hold) that no moderator has released
 * (CommentReleased) or deleted (CommentDeleted) yet. Moderators list it
 * (GET /v1/rooms/:room/moderation/held), authors their own (`?mine=true`).
 *
 * A hold names its comment, not its text, which is in the comment's own
 * event earlier in the log. So the projection remembers recent comments as
 * per-comment fields (`recent`: comment id → FeedEntry JSON; the UserFields
 * machinery, keyed by comment instead of user), each kept for `lookback`
 * positions of the room's partition — the unit moderation lags in, since it
 * writes its decision to that partition after reading the comment there. A
 * batch loads only the fields its holds name, so nothing is read or rewritten
 * per event beyond the comment's own field, and each comment drops the fields
 * that fell out of the lookback. A hold further behind its comment than that
 * (moderation far behind) is listed without its text (`text: null`); the
 * gateway then takes the text from the archive to release it. A comment
 * deleted before it was held leaves a marker instead, so it is not queued.
 *
 * Layout, as the feeds': sorted set `z` (score = the hold's position, member =
 * HeldEntry JSON) and hash `idx` (comment id → score), at most `maxItems`
 * entries — the oldest hold leaves the queue beyond that and stays hidden.
 * No deltas: nothing is pushed to viewers from here (the feeds announce the
 * removal and the release).
 */
import type { DisplayMode, CommentSize } from '../../schemas/events.ts';
import { userKeys, type Cmd, type FeedEntry, type Projection, type UserFields } from '../projection.ts';
import { feedEntryOf } from './feed.ts';

/** Nothing per room: the queue and the recent comments are in Redis only. */
export type HeldState = Record<string, never>;

/** A held comment, as the queue holds it and the API lists it. */
export interface HeldEntry {
  kind: 'held';
  /** The held comment. */
  eventId: string;
  /** Its author ('' when unknown). */
  userId: string;
  role: string;
  /** Null when the hold came more than HELD_LOOKBACK_RECORDS positions after the comment. */
  text: string | null;
  mode: DisplayMode;
  color: number;
  size: CommentSize;
  replyTo: string | null;
  videoOffsetMs: number | null;
  /** The comment's position (null when its text is unknown too). */
  offset: number | null;
  /** The comment's event time (the hold's when the comment is unknown). */
  occurredAt: number;
  /** The hold: its event, its position (the queue's order), and why. */
  holdId: string;
  heldAt: number;
  rule: string;
  labels: string[];
  score: number;
}

/** What a deleted comment's field holds: a hold of it afterwards is not queued. */
const DELETED = 'deleted';

/** Recent comments as per-comment fields: a hold reads its comment's. */
export const RECENT: UserFields = {
  suffix: 'recent',
  readsOf: (e) => (e.payload.type === 'ModerationDecided' && e.payload.verdict === 'hold' ? [e.payload.targetEventId] : []),
};

export function heldProjection(maxItems: number, lookback: number): Projection<HeldState> {
  return {
    name: 'held',
    keySuffixes: ['z', 'idx'],
    initial: () => ({}),
    users: RECENT,
    apply(state, e, keys, recent) {
      const p = e.event.payload;
      const r = userKeys(keys, RECENT);
      const q = { key: keys.key('z'), index: keys.key('idx') };
      const effect = (cmds: Cmd[]) => ({ state, cmds, deltas: [] });
      switch (p.type) {
        case 'CommentPosted': {
          const c = feedEntryOf(e.event, e.offset)!;
          return effect([
            { op: 'fieldsExpire', ...r, upTo: e.offset },
            { op: 'fieldSet', ...r, field: c.eventId, value: JSON.stringify(c), expireAt: e.offset + lookback },
          ]);
        }
        case 'ModerationDecided': {
          if (p.verdict !== 'hold') return effect([]);
          const raw = recent.get(p.targetEventId);
          if (raw === DELETED) return effect([]);
          const c = raw === undefined ? undefined : (JSON.parse(raw) as FeedEntry);
          const held: HeldEntry = {
            kind: 'held',
            eventId: p.targetEventId,
            userId: c?.userId ?? p.targetUserId ?? '',
            role: c?.role ?? 'viewer',
            text: c?.text ?? null,
            mode: c?.mode ?? 'scroll',
            color: c?.color ?? 0xffffff,
            size: c?.size ?? 'medium',
            replyTo: c?.replyTo ?? null,
            videoOffsetMs: c ? c.videoOffsetMs : e.event.videoOffsetMs,
            offset: c?.offset ?? null,
            occurredAt: c?.occurredAt ?? e.event.occurredAt,
            holdId: e.event.eventId,
            heldAt: e.offset,
            rule: p.rule,
            labels: p.labels,
            score: p.score,
          };
          // A second hold of a queued comment (another stage) is a no-op: feedAdd keeps the first.
          return effect([
            { op: 'feedAdd', ...q, eventId: held.eventId, offset: e.offset, member: JSON.stringify(held) },
            { op: 'feedTrim', ...q, keep: maxItems },
          ]);
        }
        case 'CommentDeleted':
          return effect([
            { op: 'feedRemove', ...q, eventId: p.targetEventId },
            { op: 'fieldSet', ...r, field: p.targetEventId, value: DELETED, expireAt: e.offset + lookback },
          ]);
        case 'CommentReleased':
          return effect([{ op: 'feedRemove', ...q, eventId: p.targetEventId }]);
        default:
          return effect([]);
      }
    },
  };
}
