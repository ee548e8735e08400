/**
 * Asynchronous, event-sourced moderation: a processor reads comments from the
 * log, judges each one (pure rules in rules.ts), and writes its decisions back
 * to the log as events — ModerationDecided, CommentDeleted, UserMuted — which
 * the projections then apply like any other event. A comment shows first; its
 * removal follows through the feed.
 *
 * Exactly-once in effect: the per-room judging state (user histories) sits in
 * Redis behind the same fence as every projection. For each batch the
 * decisions are computed from that state, produced to Kafka (acks=all), and
 * only then is the state advanced and the offset committed. A crash between
 * the two produces the same decisions again — same inputs, same rules, and
 * event ids derived from the judged comment — and every projection's effect
 * of such a duplicate is a no-op (removing a removed comment, muting a muted
 * user, a tombstone keyed by the same deletion id).
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../../core/redis.ts';
import type { EventCodec } from '../../schemas/codec.ts';
import { makeEvent, type RoomEvent } from '../../schemas/events.ts';
import { EventConsumer, type DecodedRecord } from '../../topics/consumer.ts';
import type { LogClient, LogProducer } from '../../topics/kafka.ts';
import { roomKeys } from '../projection.ts';
import type { ProjectionNaming } from '../runner.ts';
import { RedisStore } from '../store.ts';
import { judge, type ModerationSettings, type UserHistory, type WordMatcher } from './rules.ts';

export interface ModerationState {
  users: Record<string, UserHistory>;
}

export const MODERATOR = { userId: 'moderation', role: 'system' as const };

/**
 * A UUIDv7-shaped id derived from the judged comment: its time prefix (so ids
 * still sort by time) and a hash of (comment, decision kind) for the rest.
 */
export function derivedEventId(targetEventId: string, kind: string, occurredAt: number): string {
  const hex = createHash('sha256').update(`${targetEventId}|${kind}`).digest('hex');
  const ts = Math.max(0, Math.floor(occurredAt)).toString(16).padStart(12, '0').slice(-12);
  const variant = ((parseInt(hex[15]!, 16) & 0x3) | 0x8).toString(16);
  return `${ts.slice(0, 8)}-${ts.slice(8, 12)}-7${hex.slice(0, 3)}-${variant}${hex.slice(3, 6)}-${hex.slice(6, 18)}`;
}

/** Forgets users with nothing left to remember, so the state stays bounded. */
function prune(users: Record<string, UserHistory>, now: number): Record<string, UserHistory> {
  const out: Record<string, UserHistory> = {};
  for (const [u, h] of Object.entries(users)) {
    const active = h.recent.some((r) => now - r.at < 600_000) || h.offenses.length > 0 || (h.mutedUntil !== null && h.mutedUntil > now);
    if (active) out[u] = h;
  }
  return out;
}

/** Pure: the events moderation writes for one event, and the next state. */
export function moderate(state: ModerationState, e: RoomEvent, words: WordMatcher, s: ModerationSettings): { state: ModerationState; emits: RoomEvent[] } {
  const p = e.payload;
  if (p.type !== 'CommentPosted' || e.actor.role === 'system') return { state, emits: [] };
  const { judgement, history } = judge(
    { eventId: e.eventId, userId: e.actor.userId, role: e.actor.role, text: p.text, occurredAt: e.occurredAt },
    state.users[e.actor.userId],
    words,
    s,
  );
  const users = prune({ ...state.users, [e.actor.userId]: history }, e.occurredAt);
  if (judgement.verdict === 'allow') return { state: { users }, emits: [] };
  const at = e.occurredAt;
  const base = { roomId: e.roomId, actor: MODERATOR, occurredAt: at, videoOffsetMs: e.videoOffsetMs };
  const emits: RoomEvent[] = [
    makeEvent({
      ...base,
      eventId: derivedEventId(e.eventId, 'decided', at),
      payload: { type: 'ModerationDecided', targetEventId: e.eventId, targetUserId: e.actor.userId, verdict: judgement.verdict, labels: judgement.labels, score: judgement.score, rule: judgement.rule },
    }),
  ];
  if (judgement.verdict === 'delete') {
    emits.push(
      makeEvent({ ...base, eventId: derivedEventId(e.eventId, 'deleted', at), payload: { type: 'CommentDeleted', targetEventId: e.eventId, deletedBy: MODERATOR.userId, reason: `moderation:${judgement.rule}` } }),
    );
  }
  if (judgement.mute) {
    emits.push(
      makeEvent({ ...base, eventId: derivedEventId(e.eventId, 'muted', at), payload: { type: 'UserMuted', userId: e.actor.userId, untilMs: judgement.mute.untilMs, kind: judgement.mute.kind, reason: judgement.mute.reason } }),
    );
  }
  return { state: { users }, emits };
}

export interface ModerationWorkerOptions {
  client: LogClient;
  redis: RedisClient;
  codec: EventCodec;
  topic: string;
  deadLetterTopic: string;
  naming: ProjectionNaming;
  settings: ModerationSettings;
  /** Called per batch, so a changed word list applies without a restart. */
  words: () => WordMatcher;
  onError?(err: unknown): void;
  onAssigned?(partitions: number[]): void;
  onDecided?(e: RoomEvent): void;
}

export class ModerationWorker {
  private consumer: EventConsumer | undefined;
  private producer: LogProducer | undefined;
  private readonly store: RedisStore;
  decided = 0;

  constructor(private readonly o: ModerationWorkerOptions) {
    this.store = new RedisStore(o.redis);
  }

  get groupId(): string {
    return `${this.o.naming.groupPrefix}moderator.v1`;
  }

  async start(signal?: AbortSignal): Promise<void> {
    this.producer = this.o.client.producer({ lingerMs: 0 });
    await this.producer.connect();
    this.consumer = new EventConsumer({
      client: this.o.client,
      codec: this.o.codec,
      topic: this.o.topic,
      deadLetterTopic: this.o.deadLetterTopic,
      groupId: this.groupId,
      handle: (events) => this.handle(events),
      onError: this.o.onError,
      onAssigned: this.o.onAssigned,
    });
    await this.consumer.start(signal);
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    await this.producer?.disconnect();
  }

  private async handle(records: DecodedRecord[]): Promise<void> {
    const words = this.o.words();
    const byRoom = new Map<string, DecodedRecord[]>();
    for (const r of records) byRoom.set(r.event.roomId, [...(byRoom.get(r.event.roomId) ?? []), r]);
    await Promise.all(
      [...byRoom].map(async ([room, list]) => {
        const keys = roomKeys(this.o.naming.keyPrefix, 'moderation', 1, room);
        const meta = await this.store.loadMeta<ModerationState>(keys.meta, () => ({ users: {} }));
        let state = meta.state;
        let fence = meta.fence;
        const emits: RoomEvent[] = [];
        for (const r of list) {
          const off = Number(r.offset);
          if (fence !== undefined && off <= fence) continue;
          const m = moderate(state, r.event, words, this.o.settings);
          state = m.state;
          emits.push(...m.emits);
          fence = off;
        }
        if (fence === meta.fence) return;
        // Decisions are durable in the log before the state that produced them moves on.
        await Promise.all(emits.map((e) => this.producer!.send({ topic: this.o.topic, key: room, value: this.o.codec.encode(e), headers: { 'event-type': e.payload.type } })));
        for (const e of emits) this.o.onDecided?.(e);
        this.decided += emits.length;
        // A concurrent instance that got here first has produced the same events; either write wins.
        await this.store.apply(keys.meta, meta.fence, { fence, state }, []);
      }),
    );
  }
}
