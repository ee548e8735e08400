/**
 * The event vocabulary as code uses it. The shapes come from the `.avsc`
 * through `types.gen.ts`; this file only adds names and constructors.
 */
import { v7 as uuidv7 } from 'uuid';
import type { Actor, RoomEvent } from './types.gen.ts';

export * from './types.gen.ts';

export type RoomEventPayload = RoomEvent['payload'];
export type PayloadType = RoomEventPayload['type'];
export type PayloadOf<T extends PayloadType> = Extract<RoomEventPayload, { type: T }>;
export type EventOf<T extends PayloadType> = Omit<RoomEvent, 'payload'> & { payload: PayloadOf<T> };

export const PAYLOAD_TYPES = [
  'CommentPosted',
  'ReactionAdded',
  'CommentDeleted',
  'CommentPinned',
  'CommentUnpinned',
  'ModerationDecided',
  'UserMuted',
  'RoomSettingsChanged',
  'StreamStarted',
  'StreamEnded',
  'CommentReleased',
  'GiftSent',
] as const satisfies readonly PayloadType[];

/** UUIDv7: unique and time-ordered, so ids sort roughly by creation. */
export function newEventId(): string {
  return uuidv7();
}

export interface NewEvent<P extends RoomEventPayload = RoomEventPayload> {
  roomId: string;
  actor: Actor;
  payload: P;
  eventId?: string;
  occurredAt?: number;
  videoOffsetMs?: number | null;
  clientMsgId?: string | null;
}

export function makeEvent<P extends RoomEventPayload>(e: NewEvent<P>): Omit<RoomEvent, 'payload'> & { payload: P } {
  return {
    eventId: e.eventId ?? newEventId(),
    roomId: e.roomId,
    actor: e.actor,
    occurredAt: e.occurredAt ?? Date.now(),
    videoOffsetMs: e.videoOffsetMs ?? null,
    clientMsgId: e.clientMsgId ?? null,
    payload: e.payload,
  };
}

/** Payload with every field at its Avro default, for concise construction. */
export function comment(text: string, extra: Partial<Omit<PayloadOf<'CommentPosted'>, 'type' | 'text'>> = {}): PayloadOf<'CommentPosted'> {
  return { type: 'CommentPosted', text, mode: 'scroll', color: 0xffffff, size: 'medium', replyTo: null, ...extra };
}
