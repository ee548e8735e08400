/**
 * Given events, when a projection folds them, then these effects — applied
 * to the in-memory store, which runs the same command vocabulary as the Lua
 * script. Every projection is also checked the way Emmett checks
 * idempotency: the same events applied twice give the same state.
 */
import { describe, expect, it } from 'vitest';
import { comment, makeEvent, type RoomEvent, type RoomEventPayload } from '../schemas/events.ts';
import { foldRoom, roomKeys, type PositionedEvent, type Projection, type RoomMeta } from './projection.ts';
import { feedProjection } from './projections/feed.ts';
import { roomStateProjection } from './projections/room-state.ts';
import { hash01, sampledProjection } from './projections/sampled.ts';
import { talliesProjection } from './projections/tallies.ts';
import { MemoryStore } from './store.ts';

const ROOM = 'r1';
let clock = 1_700_000_000_000;
let offset = 0;
function ev(payload: RoomEventPayload, opts: { user?: string; role?: RoomEvent['actor']['role']; at?: number; id?: string } = {}): PositionedEvent {
  clock += 10;
  return {
    offset: offset++,
    partition: 0,
    event: makeEvent({ roomId: ROOM, actor: { userId: opts.user ?? 'u1', role: opts.role ?? 'viewer' }, occurredAt: opts.at ?? clock, payload, eventId: opts.id }),
  };
}

/** Runs events through a projection the way the runner does: fold, then apply commands. */
function run<S>(p: Projection<S>, batches: PositionedEvent[][], store = new MemoryStore(), meta: RoomMeta<S> = { fence: undefined, state: p.initial() }) {
  const keys = roomKeys('t:', p.name, 1, ROOM);
  const deltas = [];
  for (const batch of batches) {
    const r = foldRoom(p, meta, batch, keys);
    store.exec(r.cmds);
    deltas.push(...r.deltas);
    meta = r.meta;
  }
  return { store, meta, keys, deltas };
}

const feedItems = (store: MemoryStore, key: string) => store.sortedMembers(key).map(([m]) => JSON.parse(m) as { kind: string; eventId: string; text?: string; shadow?: boolean });

describe('ordered feed', () => {
  it('given comments, then they are kept in log order with their offsets, trimmed to the newest N', () => {
    const events = [1, 2, 3, 4, 5].map((i) => ev(comment(`c${i}`)));
    const { store, keys } = run(feedProjection(3), [events]);
    const items = feedItems(store, keys.key('z'));
    expect(items.map((i) => i.text)).toEqual(['c3', 'c4', 'c5']);
    expect(store.sortedMembers(keys.key('z')).map(([, s]) => s)).toEqual(events.slice(2).map((e) => e.offset));
    // The index holds exactly the kept entries: trimming leaves no garbage behind.
    expect([...store.hashes.get(keys.key('idx'))!.keys()].sort()).toEqual(events.slice(2).map((e) => e.event.eventId).sort());
  });

  it('given a comment, when it is deleted, then it leaves the feed and a tombstone takes its place', () => {
    const c = ev(comment('oops'));
    const kept = ev(comment('kept'));
    const d = ev({ type: 'CommentDeleted', targetEventId: c.event.eventId, deletedBy: 'u1', reason: 'typo' });
    const { store, keys, deltas } = run(feedProjection(10), [[c, kept, d]]);
    const items = feedItems(store, keys.key('z'));
    expect(items.map((i) => [i.kind, i.eventId])).toEqual([['comment', items[0]!.eventId], ['delete', c.event.eventId]]);
    expect(items[0]!.text).toBe('kept');
    expect(deltas.filter((x) => x.t === 'delete')).toEqual([{ t: 'delete', eventId: c.event.eventId, offset: d.offset, reason: 'typo' }]);
  });

  it('given a moderation hold verdict, then the comment is removed; allow (and delete, which its CommentDeleted carries out) leave it', () => {
    const a = ev(comment('fine'));
    const b = ev(comment('bad'));
    const allow = ev({ type: 'ModerationDecided', targetEventId: a.event.eventId, targetUserId: 'u1', verdict: 'allow', labels: [], score: 0, rule: '' }, { role: 'system' });
    const hold = ev({ type: 'ModerationDecided', targetEventId: b.event.eventId, targetUserId: 'u1', verdict: 'hold', labels: ['link'], score: 0.9, rule: 'link' }, { role: 'system' });
    const c = ev(comment('worse'));
    const del = ev({ type: 'ModerationDecided', targetEventId: c.event.eventId, targetUserId: 'u1', verdict: 'delete', labels: ['wordlist'], score: 0.99, rule: 'wordlist' }, { role: 'system' });
    const { store, keys } = run(feedProjection(10), [[a, b, allow, hold, c, del]]);
    expect(feedItems(store, keys.key('z')).map((i) => [i.kind, i.eventId])).toEqual([
      ['comment', a.event.eventId],
      ['delete', b.event.eventId],
      ['comment', c.event.eventId],
    ]);
  });

  it('given a shadow mute, then the user\'s later comments are marked shadow until the mute ends', () => {
    const t0 = clock + 1000;
    const mute = ev({ type: 'UserMuted', userId: 'troll', untilMs: t0 + 5000, kind: 'shadow', reason: 'spam' }, { role: 'system', at: t0 });
    const during = ev(comment('hidden'), { user: 'troll', at: t0 + 1000 });
    const other = ev(comment('visible'), { user: 'u2', at: t0 + 1100 });
    const after = ev(comment('back'), { user: 'troll', at: t0 + 6000 });
    const { store, keys } = run(feedProjection(10), [[mute, during, other, after]]);
    expect(feedItems(store, keys.key('z')).map((i) => [i.text, i.shadow ?? false])).toEqual([
      ['hidden', true],
      ['visible', false],
      ['back', false],
    ]);
  });
});

describe('sampled feed', () => {
  const burst = (n: number, sec: number, role: RoomEvent['actor']['role'] = 'viewer') =>
    Array.from({ length: n }, (_, i) => ev(comment(`m${i}`), { at: sec * 1000 + i, role, user: `u${i}` }));

  it('given a burst far above K per second, then at most K viewer comments per second are kept and the rate drops', () => {
    const events = [...burst(200, 1000), ...burst(200, 1001), ...burst(200, 1002)];
    const { store, keys, meta } = run(sampledProjection(5, 1000), [events]);
    const kept = feedItems(store, keys.key('z')) as unknown as { occurredAt: number }[];
    const perSec = new Map<number, number>();
    for (const k of kept) perSec.set(Math.floor(k.occurredAt / 1000), (perSec.get(Math.floor(k.occurredAt / 1000)) ?? 0) + 1);
    for (const [, n] of perSec) expect(n).toBeLessThanOrEqual(5);
    expect(kept.length).toBeGreaterThan(0);
    expect(meta.state.rate).toBeLessThan(0.1);
  });

  it('always keeps broadcaster and moderator comments, and pinned ones', () => {
    const events = [...burst(100, 2000), ...burst(20, 2000, 'moderator')];
    const pin = ev({ type: 'CommentPinned', targetEventId: events[3]!.event.eventId, untilMs: null, text: 'm3' }, { role: 'broadcaster', at: 2000_500 });
    const { store, keys } = run(sampledProjection(2, 1000), [[...events, pin]]);
    const ids = new Set(feedItems(store, keys.key('z')).map((i) => i.eventId));
    for (const m of events.slice(100)) expect(ids.has(m.event.eventId)).toBe(true);
    expect(ids.has(events[3]!.event.eventId)).toBe(true);
  });

  it('is deterministic: the same input gives the same sample, and a quiet room keeps everything', () => {
    const events = burst(300, 3000);
    const a = run(sampledProjection(4, 1000), [events]);
    const b = run(sampledProjection(4, 1000), [events.slice(0, 120), events.slice(120)]);
    expect(b.store.sortedMembers(b.keys.key('z'))).toEqual(a.store.sortedMembers(a.keys.key('z')));
    const quiet = [ev(comment('a'), { at: 5000_000 }), ev(comment('b'), { at: 5002_000 })];
    expect(feedItems(run(sampledProjection(4, 1000), [quiet]).store, a.keys.key('z'))).toHaveLength(2);
    expect(hash01('abc')).toBe(hash01('abc'));
  });
});

describe('reaction tallies', () => {
  it('given reactions, then totals per emoji and per-second buckets are exact, old buckets dropped', () => {
    const events = [
      ev({ type: 'ReactionAdded', emoji: 'heart', count: 1 }, { at: 10_000 }),
      ev({ type: 'ReactionAdded', emoji: 'heart', count: 4 }, { at: 10_500 }),
      ev({ type: 'ReactionAdded', emoji: 'fire', count: 2 }, { at: 11_000 }),
      ev({ type: 'ReactionAdded', emoji: 'fire', count: 1 }, { at: 200_000 }),
    ];
    const { store, keys, deltas } = run(talliesProjection(), [events]);
    expect(Object.fromEntries(store.hashes.get(keys.key('total'))!)).toEqual({ heart: '5', fire: '3' });
    expect(Object.fromEntries(store.hashes.get(keys.key('sec'))!)).toEqual({ '200:fire': '1' });
    expect(deltas.at(-1)).toEqual({ t: 'tally', totals: { heart: 5, fire: 3 }, second: 200, burst: { fire: 1 } });
  });
});

describe('room state', () => {
  it('pins and unpins, drops the pin when its comment is deleted, merges settings, records mutes', () => {
    const c = ev(comment('pin me'));
    const pin = ev({ type: 'CommentPinned', targetEventId: c.event.eventId, untilMs: 123, text: 'pin me' }, { role: 'moderator', user: 'm' });
    const s1 = ev({ type: 'RoomSettingsChanged', slowModeSec: 5, emoteOnly: null, extra: {} }, { role: 'moderator' });
    const s2 = ev({ type: 'RoomSettingsChanged', slowModeSec: null, emoteOnly: true, extra: { a: 'b' } }, { role: 'moderator' });
    const mute = ev({ type: 'UserMuted', userId: 'x', untilMs: null, kind: 'visible', reason: 'r' }, { role: 'system' });
    const r1 = run(roomStateProjection(), [[c, pin, s1, s2, mute]]);
    expect(JSON.parse(r1.store.strings.get(r1.keys.key('pin'))!)).toEqual({ eventId: c.event.eventId, text: 'pin me', untilMs: 123, by: 'm', offset: pin.offset });
    expect(JSON.parse(r1.store.strings.get(r1.keys.key('settings'))!)).toEqual({ slowModeSec: 5, emoteOnly: true, extra: { a: 'b' } });
    expect(JSON.parse(r1.store.hashes.get(r1.keys.key('muted'))!.get('x')!)).toMatchObject({ untilMs: null, kind: 'visible' });
    const del = ev({ type: 'CommentDeleted', targetEventId: c.event.eventId, deletedBy: 'm', reason: '' });
    const r2 = run(roomStateProjection(), [[del]], r1.store, r1.meta);
    expect(r2.store.strings.has(r1.keys.key('pin'))).toBe(false);
    expect(r2.meta.state.pin).toBeNull();
  });
});

describe('idempotency (Emmett-style): the same events applied twice give the same state', () => {
  const mixed = () => {
    const c1 = ev(comment('one'));
    const c2 = ev(comment('two'), { user: 'u2' });
    return [
      c1,
      c2,
      ev({ type: 'ReactionAdded', emoji: 'heart', count: 3 }),
      ev({ type: 'CommentPinned', targetEventId: c2.event.eventId, untilMs: null, text: 'two' }, { role: 'moderator' }),
      ev({ type: 'CommentDeleted', targetEventId: c1.event.eventId, deletedBy: 'u1', reason: '' }),
      ev({ type: 'UserMuted', userId: 'u2', untilMs: null, kind: 'shadow', reason: '' }, { role: 'system' }),
      ev(comment('three'), { user: 'u2' }),
      ev({ type: 'ReactionAdded', emoji: 'fire', count: 1 }),
    ];
  };
  const projections: Projection<unknown>[] = [feedProjection(5), sampledProjection(1, 100), talliesProjection(), roomStateProjection()] as Projection<unknown>[];
  for (const p of projections) {
    it(`${p.name}: redelivered batches, overlapping batches and a full replay change nothing`, () => {
      const events = mixed();
      const once = run(p, [events]);
      const twice = run(p, [events, events]);
      const overlapping = run(p, [events.slice(0, 5), events.slice(2), events.slice(4)]);
      for (const other of [twice, overlapping]) {
        expect(other.meta).toEqual(once.meta);
        expect(other.store).toEqual(once.store);
      }
    });
  }
});
