/**
 * Asynchronous, event-sourced moderation: a processor reads comments from the
 * log, judges each one (pure rules in rules.ts), and writes its decisions back
 * to the log as events — ModerationDecided, CommentDeleted, UserMuted — which
 * the projections then apply like any other event. A comment shows first; its
 * removal follows through the feed.
 *
 * It is a projection like the others (`moderationProjection`), run by the one
 * runner (runner.ts) in its own consumer group, with its decisions as the
 * effect's `emits` and no Redis commands or notifications of its own.
 *
 * Exactly-once in effect: the per-room judging state (user histories) sits in
 * Redis behind the same fence as every projection. For each batch the
 * decisions are computed from that state, produced to Kafka (acks=all), and
 * only then is the state advanced and the offset committed. A crash between
 * the two produces the same decisions again — same inputs, same rules, and
 * event ids derived from the judged comment — and every projection's effect
 * of such a duplicate is a no-op (removing a removed comment, muting a muted
 * user, a tombstone keyed by the same deletion id). The same holds when two
 * instances race on a room (a zombie after a rebalance): the loser's fence
 * check fails, it refolds past the winner's fence and emits, for the events
 * still ahead, the decisions the winner may have emitted too.
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../../core/redis.ts';
import type { EventCodec } from '../../schemas/codec.ts';
import { makeEvent, type RoomEvent } from '../../schemas/events.ts';
import type { LogClient } from '../../topics/kafka.ts';
import type { ProjectionNaming } from '../naming.ts';
import type { Projection } from '../projection.ts';
import { ProjectionWorker } from '../runner.ts';
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

/**
 * Moderation as a projection: its state is the user histories, its effect
 * the events it decides. The word list is read once per batch (`forBatch`),
 * so a changed list applies from the next batch on, and within a batch —
 * and a refold of it — every comment is judged by the same list.
 */
export function moderationProjection(settings: ModerationSettings, words: () => WordMatcher): Projection<ModerationState> {
  const judgedBy = (list: () => WordMatcher): Projection<ModerationState> => ({
    name: 'moderation',
    initial: () => ({ users: {} }),
    apply(state, e) {
      const m = moderate(state, e.event, list(), settings);
      return { state: m.state, cmds: [], deltas: [], emits: m.emits };
    },
  });
  // Folded directly (outside a runner), each event reads the current list.
  return {
    ...judgedBy(words),
    forBatch() {
      const list = words();
      return judgedBy(() => list);
    },
  };
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

/**
 * The moderation processor: the runner with the moderation projection, in
 * the group `<prefix>moderator.v1`, its state under
 * `roomKeys(prefix, 'moderation', 1, room)`.
 */
export class ModerationWorker {
  private readonly worker: ProjectionWorker<ModerationState>;
  decided = 0;

  constructor(o: ModerationWorkerOptions) {
    this.worker = new ProjectionWorker({
      client: o.client,
      redis: o.redis,
      codec: o.codec,
      topic: o.topic,
      deadLetterTopic: o.deadLetterTopic,
      naming: o.naming,
      projection: moderationProjection(o.settings, o.words),
      version: 1,
      groupId: `${o.naming.groupPrefix}moderator.v1`,
      // Moderation changes nothing viewers see by itself: the projections
      // that apply its events announce those.
      notify: false,
      emits: true,
      onEmitted: (_room, events) => {
        for (const e of events) o.onDecided?.(e);
        this.decided += events.length;
      },
      onError: o.onError,
      onAssigned: o.onAssigned,
    });
  }

  get groupId(): string {
    return this.worker.groupId;
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.worker.start(signal);
  }

  stop(): Promise<void> {
    return this.worker.stop();
  }
}
