// Generated from schemas/room-event.avsc by `npm run schemas -- gen`. Do not edit: change the .avsc and regenerate.
/* eslint-disable */

export type Role = 'viewer' | 'moderator' | 'broadcaster' | 'admin' | 'system';
export const RoleValues = ['viewer', 'moderator', 'broadcaster', 'admin', 'system'] as const;

export interface Actor {
  userId: string;
  role: Role;
}

export type DisplayMode = 'scroll' | 'top' | 'bottom';
export const DisplayModeValues = ['scroll', 'top', 'bottom'] as const;

export type CommentSize = 'small' | 'medium' | 'large';
export const CommentSizeValues = ['small', 'medium', 'large'] as const;

export interface CommentPosted {
  text: string;
  mode: DisplayMode;
  /** RGB as 0xRRGGBB. */
  color: number;
  size: CommentSize;
  /** Event id of the comment this one answers. */
  replyTo: null | string;
}

export interface ReactionAdded {
  /** An emoji code from the configured set. */
  emoji: string;
  /** >= 1: clients may send pre-aggregated bursts. */
  count: number;
}

export interface CommentDeleted {
  targetEventId: string;
  /** User id of who deleted it (the author, a moderator, or the moderation pipeline). */
  deletedBy: string;
  reason: string;
}

export interface CommentPinned {
  targetEventId: string;
  /** Unpinned automatically at this time; null = until unpinned. */
  untilMs: null | number;
  /** The pinned comment's text, so the pin shows even after the comment left the recent feed. */
  text: null | string;
}

export interface CommentUnpinned {
  targetEventId: string;
}

export type Verdict = 'allow' | 'hold' | 'delete';
export const VerdictValues = ['allow', 'hold', 'delete'] as const;

export interface ModerationDecided {
  targetEventId: string;
  targetUserId: null | string;
  verdict: Verdict;
  labels: Array<string>;
  score: number;
  rule: string;
}

export type MuteKind = 'shadow' | 'visible';
export const MuteKindValues = ['shadow', 'visible'] as const;

export interface UserMuted {
  userId: string;
  untilMs: null | number;
  /** shadow: the user's comments are shown only to themselves; visible: rejected with a reason. */
  kind: MuteKind;
  reason: string;
}

export interface RoomSettingsChanged {
  /** null = unchanged; 0 = off. */
  slowModeSec: null | number;
  /** null = unchanged. */
  emoteOnly: null | boolean;
  /** Room for settings added before the schema grows a field for them. */
  extra: Record<string, string>;
}

export interface StreamStarted {
  title: string;
}

export interface StreamEnded {
  reason: string;
}

/** A moderator released a held comment (ModerationDecided verdict hold): it is shown again. It carries the comment as posted, so the feeds put it back from this event alone. */
export interface CommentReleased {
  /** The released comment. */
  targetEventId: string;
  /** User id of the moderator who released it. */
  releasedBy: string;
  /** The comment's author. */
  authorId: string;
  authorRole: Role;
  text: string;
  mode: DisplayMode;
  /** RGB as 0xRRGGBB. */
  color: number;
  size: CommentSize;
  replyTo: null | string;
  /** The comment's own event time. */
  postedAt: number;
  /** The comment's own video offset. */
  postedVideoOffsetMs: null | number;
}

/** A viewer sent a gift from the catalogue (GIFTS). It carries the gift's name and value as the catalogue had them, so projections, replay and analytics read the event alone, whatever the catalogue says later. */
export interface GiftSent {
  /** The gift's id in the catalogue. */
  giftId: string;
  /** Its display name when sent. */
  name: string;
  /** >= 1: how many were sent at once. */
  count: number;
  /** Value of one, in the catalogue's unit (e.g. coins), when sent. */
  unitValue: number;
  /** count × unitValue: what the sender's leaderboard total grows by. */
  value: number;
}

/** One immutable fact about a room. Key = roomId, so a room is totally ordered in its partition. Every field added later needs a default (BACKWARD_TRANSITIVE). */
export interface RoomEvent {
  /** UUIDv7: unique, time-ordered. */
  eventId: string;
  roomId: string;
  actor: Actor;
  /** When the action happened, ms since the Unix epoch. */
  occurredAt: number;
  /** Milliseconds since the stream started, for replay synced to video time. */
  videoOffsetMs: null | number;
  /** The client's id for this action, so a retried write is recognised. */
  clientMsgId: null | string;
  payload: ({ type: 'CommentPosted' } & CommentPosted) | ({ type: 'ReactionAdded' } & ReactionAdded) | ({ type: 'CommentDeleted' } & CommentDeleted) | ({ type: 'CommentPinned' } & CommentPinned) | ({ type: 'CommentUnpinned' } & CommentUnpinned) | ({ type: 'ModerationDecided' } & ModerationDecided) | ({ type: 'UserMuted' } & UserMuted) | ({ type: 'RoomSettingsChanged' } & RoomSettingsChanged) | ({ type: 'StreamStarted' } & StreamStarted) | ({ type: 'StreamEnded' } & StreamEnded) | ({ type: 'CommentReleased' } & CommentReleased) | ({ type: 'GiftSent' } & GiftSent);
}
