/**
 * The client protocol: what the gateway sends over WebSocket and returns from
 * polling. Shared by the gateway and the TypeScript client (browser + Node),
 * so the two cannot drift. JSON, one message per WebSocket frame.
 *
 * Positions: a client's place in a room is {offset, epoch}. On the wire (the
 * `since` query parameter) it is written `<epoch>.<offset>`, e.g. `0.1234`;
 * `-1` as offset means "before anything". A different epoch than the room's
 * means the projections were rebuilt: the client must drop what it has and
 * take the fresh snapshot it is sent.
 */
import type { FeedEntry, FeedItem, GiftItem, GiftSender, Leaderboard, PinState, RoomSettings, Tombstone } from '../pipelines/projection.ts';

export type { FeedEntry, FeedItem, GiftItem, GiftSender, Leaderboard, PinState, RoomSettings, Tombstone };

export interface Position {
  offset: number;
  epoch: number;
}

export type View = 'ordered' | 'sampled';

export function formatPosition(p: Position): string {
  return `${p.epoch}.${p.offset}`;
}

/** The largest time or duration, in ms, the API takes (either sign): the range of a JavaScript Date, ±273,790 years. */
export const MAX_TIME_MS = 8.64e15;
/** The largest log offset or epoch a position may name: both must stay exact as JavaScript numbers. */
export const MAX_POSITION_PART = Number.MAX_SAFE_INTEGER;
/** `<epoch>.<offset>` as a pattern (route schemas): decimal digits, at most 16 each (parsePosition checks the value). */
export const POSITION_PATTERN = '^(\\d{1,16})\\.(-1|\\d{1,16})$';
const POSITION = new RegExp(POSITION_PATTERN);

/** `<epoch>.<offset>`, or undefined when it is not one: other syntax, or a part above MAX_POSITION_PART. */
export function parsePosition(s: string): Position | undefined {
  const m = POSITION.exec(s);
  if (!m) return undefined;
  const p = { epoch: Number(m[1]), offset: Number(m[2]) };
  return p.epoch <= MAX_POSITION_PART && p.offset <= MAX_POSITION_PART ? p : undefined;
}

export interface Tallies {
  totals: Record<string, number>;
  /** second (unix s) → emoji → count, for the last 10 s. */
  lastSeconds: Record<string, Record<string, number>>;
}

/** First message on every socket (and the answer to a resync). */
export interface SnapshotMessage {
  type: 'snapshot';
  room: string;
  view: View;
  position: Position;
  /** Recent feed items, oldest first (comments and tombstones). */
  items: FeedItem[];
  pinned: PinState | null;
  tallies: Tallies;
  /** The room's gift leaderboard: top senders by total value, and totals (absent from gateways older than gifts). */
  leaderboard?: Leaderboard;
  /** Concurrent viewers of the room across gateways: sockets plus recent pollers. */
  viewers: number;
  /** Distinct viewers of the room's stream so far (HyperLogLog estimate; absent from gateways older than it). */
  uniqueViewers?: number;
  settings: RoomSettings;
  /** Sampling rate of the sampled view (1 = everything shown). */
  rate: number;
  /**
   * Why a snapshot was sent instead of a resume: absent on a fresh connection;
   * `resubscribed` to live sockets after the gateway's Redis subscriber
   * reconnected (notifications published meanwhile never reached it);
   * `recovered` to a socket degraded for reading slowly that caught up:
   * back on its view (what it missed while degraded is in the snapshot).
   */
  reason?: 'unrecoverable' | 'epoch' | 'resubscribed' | 'recovered';
}

/** Items a client missed, sent after the snapshot when it resumed (no gap, no duplicate). */
export interface CatchUpMessage {
  type: 'catchup';
  room: string;
  items: FeedItem[];
  position: Position;
  /** Where the items came from: Redis, or the log for positions Redis no longer holds. */
  source: 'redis' | 'log';
}

export type PushEvent =
  | { t: 'comment'; entry: FeedEntry }
  | { t: 'delete'; eventId: string; offset: number; reason: string; deletionId?: string; occurredAt?: number }
  | { t: 'tally'; totals: Record<string, number>; second: number; burst: Record<string, number> }
  | { t: 'pin'; pin: PinState | null }
  | { t: 'settings'; settings: RoomSettings }
  | { t: 'rate'; rate: number }
  /** A gift was sent: the gift, and the room's leaderboard with it counted. */
  | { t: 'gift'; gift: GiftItem; leaderboard: Leaderboard };

/** Deltas gathered over one batch interval, in log order. */
export interface BatchMessage {
  type: 'batch';
  room: string;
  position: Position;
  events: PushEvent[];
}

/** The viewer counts changed (sent at most every PRESENCE_INTERVAL_MS). */
export interface ViewersMessage {
  type: 'viewers';
  room: string;
  /** Concurrent viewers across gateways: sockets plus recent pollers. */
  count: number;
  /** Distinct viewers of the room's stream so far (HyperLogLog estimate; absent from gateways older than it). */
  uniqueViewers?: number;
}

/** The server changed what this socket gets because it reads too slowly. */
export interface DegradedMessage {
  type: 'degraded';
  room: string;
  mode: 'sampled' | 'tallies';
}

export type ServerMessage = SnapshotMessage | CatchUpMessage | BatchMessage | ViewersMessage | DegradedMessage;

// ---------------------------------------------------------------- writes over the socket

/**
 * Writes a client sends as text frames on its room's socket (the socket's
 * room; a token given at the upgrade with `?token=`). `id` is the client's
 * correlation id (1–64 characters), echoed in the answer. The other fields
 * are those of the HTTP bodies, validated, normalised and limited the same
 * way (gateway/ingest.ts).
 */
export interface CommentFrame {
  type: 'comment';
  id: string;
  text: string;
  mode?: 'scroll' | 'top' | 'bottom';
  color?: number;
  size?: 'small' | 'medium' | 'large';
  videoOffsetMs?: number;
  /** Idempotency key shared with HTTP: a retry (on the socket or over HTTP) returns the first result. */
  clientMsgId?: string;
}

export interface ReactionFrame {
  type: 'reaction';
  id: string;
  emoji: string;
  /** 1–100 (default 1). */
  count?: number;
  clientMsgId?: string;
}

export interface DeleteFrame {
  type: 'delete';
  id: string;
  /** The comment to delete: its author, or a moderator of the room and above. */
  eventId: string;
}

export interface GiftFrame {
  type: 'gift';
  id: string;
  /** A gift id of the catalogue (GIFTS). */
  giftId: string;
  /** 1–GIFT_MAX_COUNT (default 1). */
  count?: number;
  clientMsgId?: string;
}

export type WriteFrame = CommentFrame | ReactionFrame | DeleteFrame | GiftFrame;

/**
 * The write is durable in Kafka (acks=all). For a reaction: the aggregated
 * ReactionAdded event that holds it is (its eventId and position).
 */
export interface AckMessage {
  type: 'ack';
  id: string;
  eventId: string;
  position: Position;
  /** Set when the clientMsgId was seen before: this is the first result again. */
  duplicate?: true;
}

/** The write was refused or failed: nothing of it is in the log. `code` is the one HTTP would answer. */
export interface NackMessage {
  type: 'nack';
  /** The frame's id; null when it could not be read (not JSON, no valid id). */
  id: string | null;
  code: string;
  message: string;
  /** When to try again (rate limits, slow mode, in progress, Kafka unavailable). */
  retryAfterSec?: number;
  /** As in HTTP error bodies (e.g. a mute's untilMs and reason, validation issues). */
  details?: Record<string, unknown>;
}

/** What a write frame is answered with. */
export type WriteReply = AckMessage | NackMessage;

/**
 * WebSocket subprotocols: the wire format of one socket. `msgpack`: binary
 * MessagePack frames (plain maps and arrays) both ways; `json` (also a socket
 * that names none): JSON text frames. The messages are the same.
 */
export const SUBPROTOCOLS = { msgpack: 'danmaku.msgpack.v1', json: 'danmaku.json.v1' } as const;

/** WebSocket close codes the gateway uses (4000–4999 are the application's). */
export const CLOSE = {
  slowConsumer: 4008,
  badRequest: 4000,
  unauthorized: 4001,
  /** The user's token was revoked while the socket was open: get a new token (a revoked one is refused with 4001). */
  revoked: 4401,
  /** The user was visibly muted in this room, or banned (the reason says which). A shadow mute never closes anything. */
  forbidden: 4403,
  /** An operator ended the user's connections (DELETE /v1/admin/users/:user/connections); reconnecting is allowed. */
  disconnected: 4410,
  shuttingDown: 1001,
  /** Too many connects from this client (its read budget, LIMIT_READS): retry after a while. */
  tryAgainLater: 1013,
  /** The socket's token expired and anonymous reads are disabled: reconnect with a new token. */
  tokenExpired: 4402,
} as const;

/** GET /v1/rooms/:room/feed */
export interface FeedResponse {
  events: FeedItem[];
  position: Position;
  /** When to poll again: longer when the room is quiet or the gateway is loaded. */
  nextPollMs: number;
  rate: number;
  /** Set when `since` was older than anything retrievable: reload with `state` and no `since`. */
  unrecoverable?: true;
}

/**
 * GET /v1/connect?room=…&device=…&version=… — the routing service's answer
 * (gateway/routing.ts): how and where this client should connect. The SDK
 * asks before it connects, at each reconnect, and every `recheckMs` while it
 * polls.
 */
export interface ConnectResponse {
  transport: 'ws' | 'polling';
  /** Gateway base URLs, preferred first (the same for the same identity): try the next when one fails. */
  urls: string[];
  /** The room's WebSocket endpoint on the first gateway. */
  wsUrl: string;
  /** Poll no more often than this. */
  pollIntervalMs: number;
  /** While polling, ask /v1/connect again after this long. */
  recheckMs: number;
  /** The rule that decided: deny:user|device|version, allow:user|device|version, or rollout. */
  reason: string;
  /** The client's roll-out bucket (0..9999) when the roll-out decided. */
  bucket: number | null;
  /** Version of the rules (offset of their audit event; -1: the defaults). */
  rulesVersion: number;
}
