/**
 * Moderation's judging state is per user, loaded per batch for the batch's
 * authors only, and bounded: it must decide exactly what judging with every
 * user's full history decides, however the log is cut into batches, while
 * the stored histories stay as few as the recently active users.
 */
import { describe, expect, it } from 'vitest';
import { comment, makeEvent } from '../../schemas/events.ts';
import { foldInBatches, prng } from '../../test/streams.ts';
import { roomKeys, type PositionedEvent, type Projection } from '../projection.ts';
import { historyExpiresAt, moderationProjection } from './processor.ts';
import { defaultModerationSettings, judge, wordMatcher, type UserHistory } from './rules.ts';

const WORDS = wordMatcher(['badword', 'spamlink']);
const S = { ...defaultModerationSettings, offensesToMute: 2 };
const ROOM = 'mod-room';

/** A busy room: many users, bad words, repeats and floods, with quiet spells longer than every window. */
function stream(n: number, seed: number): PositionedEvent[] {
  const rnd = prng(seed);
  const texts = ['hello', 'nice play', 'badword!', 'gg', 'lol', 'visit spamlink now', 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwww'];
  const events: PositionedEvent[] = [];
  let t = 1_700_000_000_000;
  for (let i = 0; i < n; i++) {
    t += rnd() < 0.002 ? 900_000 : Math.floor(rnd() * 400);
    const active = rnd() < 0.7 ? 20 : 400; // a few regulars, many passers-by
    const userId = `u${Math.floor(rnd() * active)}`;
    const role = rnd() < 0.02 ? 'moderator' : rnd() < 0.01 ? 'system' : 'viewer';
    const text = rnd() < 0.3 ? 'same again' : texts[Math.floor(rnd() * texts.length)]!;
    events.push({ offset: i, partition: 0, event: makeEvent({ eventId: `e${i}`, roomId: ROOM, actor: { userId, role }, occurredAt: t, payload: comment(text) }) });
  }
  return events;
}

/** What judging with every user's whole history (never forgotten) decides: the decided comments and mutes. */
function reference(events: PositionedEvent[]): string[] {
  const histories = new Map<string, UserHistory>();
  const out: string[] = [];
  for (const { event: e } of events) {
    if (e.payload.type !== 'CommentPosted' || e.actor.role === 'system') continue;
    const { judgement, history } = judge({ eventId: e.eventId, userId: e.actor.userId, role: e.actor.role, text: e.payload.text, occurredAt: e.occurredAt }, histories.get(e.actor.userId), WORDS, S);
    histories.set(e.actor.userId, history);
    if (judgement.verdict !== 'allow') out.push(`${e.eventId} ${judgement.verdict} ${judgement.rule}`);
    if (judgement.mute) out.push(`mute ${e.actor.userId} until ${judgement.mute.untilMs}`);
  }
  return out;
}

const decided = (emits: ReturnType<typeof foldInBatches>['results'][number]['emits']): string[] =>
  emits.flatMap((e) => {
    const p = e.payload;
    if (p.type === 'ModerationDecided') return [`${p.targetEventId} ${p.verdict} ${p.rule}`];
    if (p.type === 'UserMuted') return [`mute ${p.userId} until ${p.untilMs}`];
    return [];
  });

describe('moderation state per user', () => {
  const events = stream(6000, 31);
  const p = moderationProjection(S, () => WORDS).forBatch!() as Projection<unknown>;
  const keys = roomKeys('t:', 'moderation', 1, ROOM);

  it('decides what judging with every user\'s whole history decides, in one fold or in batches of any size', () => {
    const expected = reference(events);
    expect(expected.length).toBeGreaterThan(100);
    const rnd = prng(2);
    const cuts: PositionedEvent[][] = [];
    for (let i = 0; i < events.length; ) {
      const n = 1 + Math.floor(rnd() * 300);
      cuts.push(events.slice(i, i + n));
      i += n;
    }
    for (const split of [[events], cuts, events.map((e) => [e])]) {
      const { results } = foldInBatches(p, keys, split);
      expect(results.flatMap((r) => decided(r.emits))).toEqual(expected);
    }
  });

  it('keeps no history in the room state, and only the histories that can still change a verdict', () => {
    const { store, meta } = foldInBatches(p, keys, [events]);
    expect(meta.state).toEqual({});
    const users = store.hashes.get(keys.key('users')) ?? new Map<string, string>();
    const last = events.at(-1)!.event.occurredAt;
    for (const [, raw] of users) expect(historyExpiresAt(JSON.parse(raw) as UserHistory, S)).toBeGreaterThan(last - 60_000);
    // Hundreds of users passed by; what is kept is the last minutes' authors, and the offenders
    // whose share of reputation has not decayed yet (it outlasts the windows on purpose).
    const authors = new Set(events.filter((e) => e.event.occurredAt > last - 600_000).map((e) => e.event.actor.userId));
    for (const [user, raw] of users) if (!authors.has(user)) expect((JSON.parse(raw) as UserHistory).rep?.s ?? 0).toBeGreaterThan(0);
    expect(store.zsets.get(keys.key('users:exp'))?.size).toBe(users.size);
  });

  it('with reputation off, keeps only about the last minutes\' authors', () => {
    const off = { ...S, reputation: { ...S.reputation, holdAt: 0, shadowAt: 0 } };
    const q = moderationProjection(off, () => WORDS).forBatch!() as Projection<unknown>;
    const { store } = foldInBatches(q, keys, [events]);
    const users = store.hashes.get(keys.key('users')) ?? new Map<string, string>();
    const last = events.at(-1)!.event.occurredAt;
    const authors = new Set(events.filter((e) => e.event.occurredAt > last - 600_000).map((e) => e.event.actor.userId));
    expect(users.size).toBeLessThanOrEqual(authors.size);
    for (const [, raw] of users) expect((JSON.parse(raw) as UserHistory).rep).toBeUndefined();
  });
});
