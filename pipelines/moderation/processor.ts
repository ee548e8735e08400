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
 * Redis behind the same fence as every projection — one field per user
 * (`moderation:v1:{room}:users`, JSON UserHistory) with an expiry index in
 * event time (`users:exp`): a batch loads the histories of its authors only,
 * writes back the ones it changed, and each comment drops the histories that
 * can no longer change a verdict (see historyExpiresAt). For each batch the
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
import type { LogWriter } from '../../topics/writer.ts';
import { moderatorGroupOf, type ProjectionNaming } from '../naming.ts';
import { userKeys, type Cmd, type ExternalWrite, type Projection, type RoomKeys, type UserFields, type UserView } from '../projection.ts';
import { ProjectionWorker } from '../runner.ts';
import { addScore, decayed, emptyHistory, judge, REP_EPSILON, reputationOn, type ModerationSettings, type RepScore, type UserHistory, type WordMatcher } from './rules.ts';

/** Nothing per room: the user histories are per-user fields (MODERATION_USERS). */
export type ModerationState = Record<string, never>;

/** The histories as per-user fields: a judged comment reads its author's. */
export const MODERATION_USERS: UserFields = {
  suffix: 'users',
  readsOf: (e) => {
    if (e.payload.type === 'CommentPosted') return e.actor.role !== 'system' ? [e.actor.userId] : [];
    const target = otherStageVerdict(e);
    return target ? [target.userId] : [];
  },
};

export const MODERATOR = { userId: 'moderation', role: 'system' as const };

/**
 * A removal or hold decided by another stage (the model, `moderation-model`):
 * it weighs on its target's reputation like the rules' own. (A moderator's
 * CommentDeleted names no author, so it does not.)
 */
function otherStageVerdict(e: RoomEvent): { userId: string; verdict: 'hold' | 'delete' } | undefined {
  const p = e.payload;
  if (p.type !== 'ModerationDecided' || e.actor.role !== 'system' || e.actor.userId === MODERATOR.userId) return undefined;
  if (!p.targetUserId || (p.verdict !== 'delete' && p.verdict !== 'hold')) return undefined;
  return { userId: p.targetUserId, verdict: p.verdict };
}

/**
 * Where each user's reputation lives: one hash per user (`reputation:{user}`,
 * its own hash slot), a field per room holding that room's share (RepScore
 * JSON). Written by the moderation projection (Effect.external) from the
 * room's fold, so a rebuild from the log writes the same values again.
 */
export interface ReputationStore {
  key(userId: string): string;
  /** user → room → share, for the given users. */
  read(users: readonly string[]): Promise<Map<string, Map<string, RepScore>>>;
}

export function reputationStore(redis: RedisClient, keyPrefix: string): ReputationStore {
  const key = (userId: string) => `${keyPrefix}reputation:{${userId}}`;
  return {
    key,
    async read(users) {
      const out = new Map<string, Map<string, RepScore>>();
      const all = await Promise.all(users.map((u) => redis.hgetall(key(u))));
      users.forEach((u, i) => {
        const rooms = new Map<string, RepScore>();
        for (const [room, raw] of Object.entries(all[i] ?? {})) {
          try {
            const r = JSON.parse(raw) as RepScore;
            if (Number.isFinite(r.s) && Number.isFinite(r.at)) rooms.set(room, r);
          } catch {
            // a field that is not a share: ignored
          }
        }
        out.set(u, rooms);
      });
      return out;
    },
  };
}

/** The user's reputation from the rooms other than `room`, decayed to `now`. */
export type Elsewhere = (userId: string, room: string, now: number) => number;
const NOWHERE: Elsewhere = () => 0;

/** How long a share is worth keeping: until it decays below REP_EPSILON (at least an hour). */
function shareTtlMs(r: RepScore, s: ModerationSettings): number {
  const h = s.reputation.halfLifeMs;
  return Math.max(3_600_000, Math.ceil(h > 0 ? h * Math.log2(Math.max(1, r.s / REP_EPSILON)) : 30 * 24 * 3_600_000));
}

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

/**
 * From when a history is as good as none: every entry `judge` would still
 * look at has left its window (a recent comment at `a` counts for a comment
 * at `now` only while a > now - window; an offense likewise) and the mute has
 * ended. A comment at or after that time gets the same verdict and leaves the
 * same history as with no history at all, so dropping it then changes no
 * decision (for comments in time order; one older than a drop that already
 * happened is judged as if its author had been quiet). -Infinity: empty.
 */
export function historyExpiresAt(h: UserHistory, s: ModerationSettings): number {
  let at = h.mutedUntil ?? -Infinity;
  for (const r of h.recent) at = Math.max(at, r.at + Math.max(s.repeatWindowMs, s.floodWindowMs));
  for (const o of h.offenses) at = Math.max(at, o + s.offenseWindowMs);
  // A share of the reputation is kept until it decays below REP_EPSILON.
  if (h.rep && s.reputation.halfLifeMs > 0) at = Math.max(at, h.rep.at + Math.ceil(s.reputation.halfLifeMs * Math.log2(Math.max(1, h.rep.s / REP_EPSILON))));
  else if (h.rep) at = Infinity;
  return at;
}

/**
 * Pure: the events moderation writes for one comment (judged against its
 * author's history as it was), and the author's history after it (undefined:
 * nothing to remember).
 */
export function moderate(
  history: UserHistory | undefined,
  e: RoomEvent,
  words: WordMatcher,
  s: ModerationSettings,
  /** The author's reputation from the other rooms, as of the comment. */
  elsewhere = 0,
): { history: UserHistory | undefined; emits: RoomEvent[] } {
  const p = e.payload;
  if (p.type !== 'CommentPosted' || e.actor.role === 'system') return { history, emits: [] };
  const { judgement, history: next } = judge(
    { eventId: e.eventId, userId: e.actor.userId, role: e.actor.role, text: p.text, occurredAt: e.occurredAt },
    history,
    words,
    s,
    elsewhere,
  );
  if (judgement.verdict === 'allow') return { history: next, emits: [] };
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
  return { history: next, emits };
}

/**
 * One comment's effect on the history fields: histories that expired by the
 * comment's time are dropped (what keeps the hash to the room's recently
 * active users), then the author's is written if it changed.
 */
function historyCmds(keys: RoomKeys, e: RoomEvent, userId: string, before: string | undefined, history: UserHistory | undefined, s: ModerationSettings): Cmd[] {
  const k = userKeys(keys, MODERATION_USERS);
  const cmds: Cmd[] = [{ op: 'fieldsExpire', ...k, upTo: e.occurredAt }];
  const expireAt = history ? historyExpiresAt(history, s) : -Infinity;
  if (expireAt <= e.occurredAt) {
    // As good as none already (an exempt author's old history): not kept.
    if (before !== undefined) cmds.push({ op: 'fieldDel', ...k, field: userId });
    return cmds;
  }
  const value = JSON.stringify(history);
  if (value !== before) cmds.push({ op: 'fieldSet', ...k, field: userId, value, expireAt });
  return cmds;
}

/** The room's share of the user's reputation, written to the user's hash when it changed. */
function shareWrites(rep: ReputationStore | undefined, room: string, userId: string, before: UserHistory | undefined, after: UserHistory | undefined, s: ModerationSettings): ExternalWrite[] {
  if (!rep) return [];
  const a = before?.rep;
  const b = after?.rep;
  if (a?.s === b?.s && a?.at === b?.at) return [];
  return [{ key: rep.key(userId), field: room, value: b ? JSON.stringify(b) : null, ttlMs: b ? shareTtlMs(b, s) : 0 }];
}

/**
 * Moderation as a projection: its state is the user histories, its effect
 * the events it decides. The word list is read once per batch (`forBatch`),
 * so a changed list applies from the next batch on, and within a batch —
 * and a refold of it — every comment is judged by the same list.
 */
export function moderationProjection(settings: ModerationSettings, words: () => WordMatcher, reputation?: ReputationStore): Projection<ModerationState> {
  const judgedBy = (list: () => WordMatcher, elsewhere: Elsewhere): Projection<ModerationState> => ({
    name: 'moderation',
    keySuffixes: [],
    initial: () => ({}),
    users: MODERATION_USERS,
    apply(state, e, keys, users: UserView) {
      const ev = e.event;
      const other = reputationOn(settings) ? otherStageVerdict(ev) : undefined;
      if (other) {
        // Another stage removed or held the user's comment: it weighs on their reputation here.
        const raw = users.get(other.userId);
        const before = raw === undefined ? undefined : (JSON.parse(raw) as UserHistory);
        const h = before ?? emptyHistory();
        const w = other.verdict === 'delete' ? settings.reputation.deleteWeight : settings.reputation.holdWeight;
        const repAfter = addScore(h.rep, ev.occurredAt, w, settings.reputation.halfLifeMs);
        const { rep: _, ...rest } = h;
        const after: UserHistory = repAfter ? { ...rest, rep: repAfter } : rest;
        return { state, cmds: historyCmds(keys, ev, other.userId, raw, after, settings), deltas: [], external: shareWrites(reputation, ev.roomId, other.userId, before, after, settings) };
      }
      if (ev.payload.type !== 'CommentPosted' || ev.actor.role === 'system') return { state, cmds: [], deltas: [] };
      const raw = users.get(ev.actor.userId);
      const before = raw === undefined ? undefined : (JSON.parse(raw) as UserHistory);
      const m = moderate(before, ev, list(), settings, elsewhere(ev.actor.userId, ev.roomId, ev.occurredAt));
      return {
        state,
        cmds: historyCmds(keys, ev, ev.actor.userId, raw, m.history, settings),
        deltas: [],
        emits: m.emits,
        external: shareWrites(reputation, ev.roomId, ev.actor.userId, before, m.history, settings),
      };
    },
  });
  // Folded directly (outside a runner), each event reads the current list and no other room.
  const direct = judgedBy(words, NOWHERE);
  if (!reputation) {
    return {
      ...direct,
      forBatch() {
        const list = words();
        return judgedBy(() => list, NOWHERE);
      },
    };
  }
  return {
    ...direct,
    /**
     * Per batch: the word list, and the authors' shares in every room, read
     * once. A comment is judged with the other rooms' shares as this read
     * found them (its own room's comes from the fold). Not a pure function of
     * the room's log, unlike the rest of moderation: a replay may find other
     * rooms further along; the decisions it acts on are events in the log.
     */
    async prepare(events) {
      const list = words();
      const authors = [...new Set(events.filter((e) => e.payload.type === 'CommentPosted' && e.actor.role === 'viewer').map((e) => e.actor.userId))];
      const shares = authors.length > 0 ? await reputation.read(authors) : new Map<string, Map<string, RepScore>>();
      const halfLife = settings.reputation.halfLifeMs;
      return judgedBy(
        () => list,
        (userId, room, now) => {
          let sum = 0;
          for (const [r, share] of shares.get(userId) ?? []) if (r !== room) sum += decayed(share, now, halfLife);
          return sum;
        },
      );
    },
  };
}

export interface ModerationWorkerOptions {
  client: LogClient;
  redis: RedisClient;
  codec: EventCodec;
  /** The topic of `generation` (see WorkerOptions in runner.ts). */
  topic: string;
  generation?: number;
  until?(partition: number): number | undefined;
  /** Its group for this generation (default `<prefix>moderator.v1`). */
  groupId?: string;
  /** Decisions are written through it, to the log's current generation. */
  writer?: LogWriter;
  deadLetterTopic: string;
  naming: ProjectionNaming;
  settings: ModerationSettings;
  /** Where users' reputation across rooms is kept (absent: judged on each room's history alone). */
  reputation?: ReputationStore;
  /** Called per batch, so a changed word list applies without a restart. */
  words: () => WordMatcher;
  onError?(err: unknown): void;
  onAssigned?(partitions: number[]): void;
  onDecided?(e: RoomEvent): void;
  /** Batches of different partitions judged at once. */
  partitionsConsumedConcurrently?: number;
  /** Kafka session timeout of the group. */
  sessionTimeoutMs?: number;
  /** Idle rooms' keys expire after this many seconds (ROOM_IDLE_TTL_SEC). */
  idleTtlSec?: number;
}

/**
 * The moderation processor: the runner with the moderation projection, in
 * the group `<prefix>moderator.v1`, its state under
 * `roomKeys(prefix, 'moderation', 1, room)`.
 */
export class ModerationWorker {
  private readonly worker: ProjectionWorker;
  decided = 0;

  constructor(o: ModerationWorkerOptions) {
    const lane = { projection: moderationProjection(o.settings, o.words, o.reputation) as Projection<unknown>, version: 1 };
    this.worker = new ProjectionWorker({
      client: o.client,
      redis: o.redis,
      codec: o.codec,
      topic: o.topic,
      generation: o.generation,
      until: o.until,
      writer: o.writer,
      deadLetterTopic: o.deadLetterTopic,
      naming: o.naming,
      lanes: () => [lane],
      groupId: o.groupId ?? moderatorGroupOf(o.naming),
      partitionsConsumedConcurrently: o.partitionsConsumedConcurrently,
      sessionTimeoutMs: o.sessionTimeoutMs,
      idleTtlSec: o.idleTtlSec,
      // Moderation changes nothing viewers see by itself: the projections
      // that apply its events announce those.
      notify: false,
      // Its positions in Redis (like the live group's): when Redis loses its
      // data, the histories and reputation shares are rebuilt from the log's
      // start, without emitting again the decisions already in the log.
      positions: true,
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
