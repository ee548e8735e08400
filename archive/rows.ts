/**
 * Events ↔ rows of the `events` table (pure). Typed columns are for analytics;
 * the `payload` column keeps the whole payload as JSON, so replay rebuilds the
 * very event the projections saw live and cannot drift from them.
 */
import type { RoomEvent, RoomEventPayload } from '../schemas/events.ts';

export interface EventRow {
  event_id: string;
  room_id: string;
  kind: RoomEventPayload['type'];
  /** Milliseconds since the epoch (DateTime64(3) parses them as such). */
  occurred_at: number;
  video_offset_ms: number | null;
  user_id: string;
  role: string;
  client_msg_id: string | null;
  text: string;
  display_mode: string;
  color: number;
  size: string;
  reply_to: string | null;
  emoji: string;
  reaction_count: number;
  target_event_id: string;
  target_user_id: string;
  deleted_by: string;
  reason: string;
  verdict: string;
  labels: string[];
  score: number;
  rule: string;
  until_at: number | null;
  mute_kind: string;
  payload: string;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: number;
  kafka_timestamp: number;
}

export interface LogPosition {
  topic: string;
  partition: number;
  offset: string | number;
  timestamp: number;
}

type PayloadColumns = Pick<
  EventRow,
  'text' | 'display_mode' | 'color' | 'size' | 'reply_to' | 'emoji' | 'reaction_count' | 'target_event_id' | 'target_user_id' | 'deleted_by' | 'reason' | 'verdict' | 'labels' | 'score' | 'rule' | 'until_at' | 'mute_kind'
>;

const blank: PayloadColumns = {
  text: '',
  display_mode: '',
  color: 0,
  size: '',
  reply_to: null,
  emoji: '',
  reaction_count: 0,
  target_event_id: '',
  target_user_id: '',
  deleted_by: '',
  reason: '',
  verdict: '',
  labels: [],
  score: 0,
  rule: '',
  until_at: null,
  mute_kind: '',
};

function payloadColumns(p: RoomEventPayload): PayloadColumns {
  switch (p.type) {
    case 'CommentPosted':
      return { ...blank, text: p.text, display_mode: p.mode, color: p.color, size: p.size, reply_to: p.replyTo };
    case 'ReactionAdded':
      return { ...blank, emoji: p.emoji, reaction_count: p.count };
    case 'CommentDeleted':
      return { ...blank, target_event_id: p.targetEventId, deleted_by: p.deletedBy, reason: p.reason };
    case 'CommentPinned':
      return { ...blank, target_event_id: p.targetEventId, until_at: p.untilMs, text: p.text ?? '' };
    case 'CommentUnpinned':
      return { ...blank, target_event_id: p.targetEventId };
    case 'ModerationDecided':
      return { ...blank, target_event_id: p.targetEventId, target_user_id: p.targetUserId ?? '', verdict: p.verdict, labels: p.labels, score: p.score, rule: p.rule };
    case 'UserMuted':
      return { ...blank, target_user_id: p.userId, until_at: p.untilMs, mute_kind: p.kind, reason: p.reason };
    case 'RoomSettingsChanged':
      return { ...blank };
    case 'StreamStarted':
      return { ...blank, text: p.title };
    case 'StreamEnded':
      return { ...blank, reason: p.reason };
    case 'CommentReleased':
      return { ...blank, target_event_id: p.targetEventId, target_user_id: p.authorId, text: p.text, display_mode: p.mode, color: p.color, size: p.size, reply_to: p.replyTo };
    case 'GiftSent':
      // No columns of its own (yet): analytics reads giftId, count and value from `payload` (docs/analytics.md).
      return { ...blank };
    default: {
      const never: never = p;
      throw new Error(`unhandled payload ${JSON.stringify(never)}`);
    }
  }
}

export function rowOf(e: RoomEvent, at: LogPosition): EventRow {
  return {
    event_id: e.eventId,
    room_id: e.roomId,
    kind: e.payload.type,
    occurred_at: e.occurredAt,
    video_offset_ms: e.videoOffsetMs,
    user_id: e.actor.userId,
    role: e.actor.role,
    client_msg_id: e.clientMsgId,
    ...payloadColumns(e.payload),
    payload: JSON.stringify(e.payload),
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: Number(at.offset),
    kafka_timestamp: at.timestamp,
  };
}

/** The columns replay reads back; numbers may arrive as strings (64-bit integers over HTTP). */
export interface StoredEvent {
  event_id: string;
  room_id: string;
  user_id: string;
  role: string;
  occurred_ms: number | string;
  video_offset_ms: number | string | null;
  client_msg_id: string | null;
  payload: string;
}

/**
 * The event as it was produced. Replay leaves the payload out of comments it
 * only folds (outside the requested range): the sampling and shadow rules need
 * the id, the author and the time, not the text.
 */
export function eventOf(r: StoredEvent): RoomEvent {
  const payload: RoomEventPayload = r.payload
    ? (JSON.parse(r.payload) as RoomEventPayload)
    : { type: 'CommentPosted', text: '', mode: 'scroll', color: 0xffffff, size: 'medium', replyTo: null };
  return {
    eventId: r.event_id,
    roomId: r.room_id,
    actor: { userId: r.user_id, role: r.role as RoomEvent['actor']['role'] },
    occurredAt: Number(r.occurred_ms),
    videoOffsetMs: r.video_offset_ms === null ? null : Number(r.video_offset_ms),
    clientMsgId: r.client_msg_id,
    payload,
  };
}
