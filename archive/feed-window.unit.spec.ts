/**
 * The feed window's shadow rule against the projection itself: for every
 * comment of a log of mutes and comments (with event times out of log order),
 * `shadowedAt` must say what the feed projection marked.
 */
import { describe, expect, it } from 'vitest';
import { applyOne, roomKeys, type FieldsView, type PositionedEvent } from '../pipelines/projection.ts';
import { feedProjection, shadowView } from '../pipelines/projections/feed.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { shadowedAt } from './feed-window.ts';

const room = 'r';
const sys = { userId: 'moderation', role: 'system' as const };
const mute = (userId: string, at: number, untilMs: number | null, kind: 'shadow' | 'visible' = 'shadow') =>
  makeEvent({ roomId: room, actor: sys, occurredAt: at, payload: { type: 'UserMuted', userId, untilMs, kind, reason: 't' } });
const post = (userId: string, at: number) => makeEvent({ roomId: room, actor: { userId, role: 'viewer' }, occurredAt: at, payload: comment('x') });

/** What the projection marks, comment by comment (eventId → shadow). */
function projected(events: RoomEvent[]): Map<string, boolean> {
  const p = feedProjection(1000);
  const keys = roomKeys('t:', 'feed', 1, room);
  const users: FieldsView = shadowView(keys, []);
  let state = p.initial();
  const marks = new Map<string, boolean>();
  events.forEach((event, offset) => {
    const eff = applyOne(p, state, { event, partition: 0, offset } as PositionedEvent, keys, users);
    state = eff.state;
    for (const d of eff.deltas) if (d.t === 'comment') marks.set(d.entry.eventId, d.entry.shadow === true);
  });
  return marks;
}

function ours(events: RoomEvent[]): Map<string, boolean> {
  const mutes = events.flatMap((e, offset) => (e.payload.type === 'UserMuted' ? [{ offset, occurredAt: e.occurredAt, userId: e.payload.userId, kind: e.payload.kind, untilMs: e.payload.untilMs }] : []));
  return new Map(events.flatMap((e, offset) => (e.payload.type === 'CommentPosted' ? [[e.eventId, shadowedAt(mutes, e.actor.userId, offset, e.occurredAt)] as [string, boolean]] : [])));
}

describe('shadowedAt', () => {
  it('agrees with the feed projection: indefinite, timed, replaced, lifted, and dropped as ended by a later mute', () => {
    const events = [
      post('a', 100),
      mute('a', 1000, null),
      post('a', 1100),
      post('b', 1100),
      mute('b', 2000, 5000),
      post('b', 4000),
      post('b', 6000),
      // Event time out of log order: before the mute ended, but the mute of c below (at 7000) dropped b's as ended.
      mute('c', 7000, 9000, 'visible'),
      post('b', 4500),
      mute('a', 8000, 9000, 'visible'),
      post('a', 8100),
      mute('d', 8000, 7000),
      post('d', 7500),
      mute('e', 8000, 20_000),
      post('e', 9000),
      post('e', 25_000),
    ];
    const want = projected(events);
    expect([...want.values()].filter(Boolean).length).toBeGreaterThan(1);
    expect(ours(events)).toEqual(want);
  });

  it('agrees on random logs', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let run = 0; run < 200; run++) {
      const events: RoomEvent[] = [];
      for (let i = 0; i < 40; i++) {
        const user = `u${rnd(3)}`;
        const at = 1000 * i + rnd(5000) - 2500;
        if (rnd(4) === 0) events.push(mute(user, at, rnd(3) === 0 ? null : at + rnd(8000) - 1000, rnd(3) === 0 ? 'visible' : 'shadow'));
        else events.push(post(user, at));
      }
      expect(ours(events), `run ${run}`).toEqual(projected(events));
    }
  });
});
