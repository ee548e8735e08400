/**
 * Given events, when a projection folds them, then these effects — applied
 * to the in-memory store, which runs the same command vocabulary as the Lua
 * script. Every projection is also checked the way Emmett checks
 * idempotency: the same events applied twice give the same state.
 */
import { describe, expect, it } from 'vitest';
import { comment, makeEvent, type RoomEvent, type RoomEventPayload } from '../schemas/events.ts';
import { fieldsRead, foldRoom, roomKeys, type PositionedEvent, type Projection, type RoomMeta } from './projection.ts';
import { foldInBatches, loadFields, mixedStream, prng } from '../test/streams.ts';
import { feedProjection } from './projections/feed.ts';
import { compareSenders, giftsProjection } from './projections/gifts.ts';
import type { Leaderboard } from './projection.ts';
import { heldProjection, type HeldEntry } from './projections/held.ts';
import { roomStateProjection } from './projections/room-state.ts';
import { hash01, sampledProjection } from './projections/sampled.ts';
import { talliesProjection } from './projections/tallies.ts';
import { compactRuns, MemoryStore } from './store.ts';

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

/** Runs events through a projection the way the runner does: load the batch's per-user fields, fold, then apply commands. */
function run<S>(p: Projection<S>, batches: PositionedEvent[][], store = new MemoryStore(), meta: RoomMeta<S> = { fence: undefined, state: p.initial() }) {
  const keys = roomKeys('t:', p.name, 1, ROOM);
  const deltas = [];
  for (const batch of batches) {
    const r = foldRoom(p, meta, batch, keys, loadFields(store, p as Projection<unknown>, keys, fieldsRead(p as Projection<unknown>, meta.fence, batch)));
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
    expect(deltas.filter((x) => x.t === 'delete')).toEqual([{ t: 'delete', eventId: c.event.eventId, offset: d.offset, reason: 'typo', deletionId: d.event.eventId, occurredAt: d.event.occurredAt }]);
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

  it('always keeps broadcaster and moderator comments; a pin adds nothing to the sample (it reaches viewers as the room pin)', () => {
    const events = [...burst(100, 2000), ...burst(20, 2000, 'moderator')];
    const { store, keys, deltas } = run(sampledProjection(2, 1000), [events]);
    const ids = new Set(feedItems(store, keys.key('z')).map((i) => i.eventId));
    for (const m of events.slice(100)) expect(ids.has(m.event.eventId)).toBe(true);
    // Not kept: pinning it writes nothing a push or replay would not show.
    const dropped = events.slice(0, 100).find((m) => !ids.has(m.event.eventId))!;
    const pin = ev({ type: 'CommentPinned', targetEventId: dropped.event.eventId, untilMs: null, text: 'm3' }, { role: 'broadcaster', at: 2000_500 });
    const pinned = run(sampledProjection(2, 1000), [[...events, pin]]);
    expect(pinned.store.sortedMembers(pinned.keys.key('z'))).toEqual(store.sortedMembers(keys.key('z')));
    expect(pinned.deltas).toEqual(deltas);
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

/** A comment with a link, held by moderation, then released by a moderator (the events as the gateway writes them). */
function heldThenReleased(text = 'see example.com', user = 'u3'): PositionedEvent[] {
  const c = ev(comment(text, { color: 0x00ff00 }), { user });
  const hold = ev({ type: 'ModerationDecided', targetEventId: c.event.eventId, targetUserId: user, verdict: 'hold', labels: ['link'], score: 0.5, rule: 'link' }, { user: 'moderation', role: 'system', at: c.event.occurredAt });
  const release = ev(released(c, 'mod'), { user: 'mod', role: 'moderator' });
  return [c, hold, release];
}

function released(c: PositionedEvent, by: string): RoomEventPayload {
  const p = c.event.payload as Extract<RoomEventPayload, { type: 'CommentPosted' }>;
  return {
    type: 'CommentReleased',
    targetEventId: c.event.eventId,
    releasedBy: by,
    authorId: c.event.actor.userId,
    authorRole: c.event.actor.role,
    text: p.text,
    mode: p.mode,
    color: p.color,
    size: p.size,
    replyTo: p.replyTo,
    postedAt: c.event.occurredAt,
    postedVideoOffsetMs: c.event.videoOffsetMs,
  };
}

const hold = (c: PositionedEvent, rule = 'link') =>
  ev({ type: 'ModerationDecided', targetEventId: c.event.eventId, targetUserId: c.event.actor.userId, verdict: 'hold', labels: [rule], score: 0.5, rule }, { user: 'moderation', role: 'system', at: c.event.occurredAt });

const queue = (store: MemoryStore, keys: { key(s: string): string }) => store.sortedMembers(keys.key('z')).map(([m]) => JSON.parse(m) as HeldEntry);

describe('the review queue (held)', () => {
  it('given a hold, then the comment is queued with its text, author and the hold\'s rule, ordered by the hold', () => {
    const a = ev(comment('first example.com', { mode: 'top', size: 'large' }), { user: 'alice' });
    const noise = [ev(comment('hello')), ev({ type: 'ReactionAdded', emoji: 'heart', count: 1 })];
    const b = ev(comment('second example.org'), { user: 'bob' });
    const ha = hold(a);
    const allow = ev({ type: 'ModerationDecided', targetEventId: noise[0]!.event.eventId, targetUserId: 'u1', verdict: 'allow', labels: [], score: 0, rule: '' }, { role: 'system' });
    const hb = hold(b, 'reputation');
    const { store, keys, deltas } = run(heldProjection(100, 1000), [[a, ...noise, b], [ha, allow], [hb]]);
    expect(queue(store, keys)).toEqual([
      { kind: 'held', eventId: a.event.eventId, userId: 'alice', role: 'viewer', text: 'first example.com', mode: 'top', color: 0xffffff, size: 'large', replyTo: null, videoOffsetMs: null, offset: a.offset, occurredAt: a.event.occurredAt, holdId: ha.event.eventId, heldAt: ha.offset, rule: 'link', labels: ['link'], score: 0.5 },
      expect.objectContaining({ eventId: b.event.eventId, userId: 'bob', text: 'second example.org', rule: 'reputation', heldAt: hb.offset }),
    ]);
    expect(deltas).toEqual([]);
  });

  it('given a release or a deletion of a held comment, then it leaves the queue; a second hold of a queued comment changes nothing', () => {
    const d = ev(comment('spam example.net'), { user: 'troll' });
    const hd = hold(d);
    const again = hold(d, 'model:alt-profanity-check');
    const [c, h, r] = heldThenReleased();
    const del = ev({ type: 'CommentDeleted', targetEventId: d.event.eventId, deletedBy: 'mod', reason: 'moderation:review' }, { user: 'mod', role: 'moderator' });
    const before = run(heldProjection(100, 1000), [[d, hd, again, c!, h!]]);
    expect(queue(before.store, before.keys).map((q) => [q.eventId, q.rule])).toEqual([
      [d.event.eventId, 'link'],
      [c!.event.eventId, 'link'],
    ]);
    const after = run(heldProjection(100, 1000), [[r!, del]], before.store, before.meta);
    expect(queue(after.store, after.keys)).toEqual([]);
    expect(after.store.hash(after.keys.key('idx')).size).toBe(0);
  });

  it('a comment deleted before its hold is not queued; a hold too long after its comment is queued without its text', () => {
    const gone = ev(comment('gone example.com'));
    const del = ev({ type: 'CommentDeleted', targetEventId: gone.event.eventId, deletedBy: 'moderation', reason: 'moderation:wordlist' }, { role: 'system' });
    const old = ev(comment('old example.com'), { user: 'slowpoke' });
    const filler = Array.from({ length: 20 }, (_, i) => ev(comment(`filler ${i}`)));
    const { store, keys } = run(heldProjection(100, 10), [[gone, del, hold(gone), old, ...filler], [hold(old)]]);
    expect(queue(store, keys)).toEqual([expect.objectContaining({ eventId: old.event.eventId, userId: 'slowpoke', text: null, offset: null })]);
  });

  it('is bounded: at most maxItems holds queued (the oldest leave), and remembered comments only within the lookback', () => {
    const events: PositionedEvent[] = [];
    for (let i = 0; i < 300; i++) {
      const c = ev(comment(`c${i} example.com`), { user: `u${i % 7}` });
      events.push(c);
      if (i % 3 === 0) events.push(hold(c));
    }
    const p = heldProjection(20, 50);
    const { store, keys } = run(p, [events.slice(0, 150), events.slice(150)]);
    const q = queue(store, keys);
    expect(q).toHaveLength(20);
    expect(q.every((h) => h.text !== null)).toBe(true);
    expect(store.hash(keys.key('idx')).size).toBe(20);
    expect(store.hash(keys.key('recent')).size).toBeLessThanOrEqual(50);
    // Folded in other batches, the same.
    const whole = run(p, [events]);
    expect(whole.store).toEqual(store);
  });
});

describe('a released comment in the feeds', () => {
  it('ordered feed: it comes back at the release\'s offset, marked released, and a deletion removes it again', () => {
    const [c, h, r] = heldThenReleased('look example.com', 'carol');
    const { store, keys, deltas } = run(feedProjection(10), [[c!, h!, r!]]);
    const items = feedItems(store, keys.key('z'));
    expect(items.map((i) => [i.kind, i.eventId])).toEqual([
      ['delete', c!.event.eventId],
      ['comment', c!.event.eventId],
    ]);
    const back = deltas.find((d) => d.t === 'comment' && d.entry.released);
    expect(back).toEqual({
      t: 'comment',
      entry: { kind: 'comment', offset: r!.offset, eventId: c!.event.eventId, userId: 'carol', role: 'viewer', text: 'look example.com', mode: 'scroll', color: 0x00ff00, size: 'medium', occurredAt: c!.event.occurredAt, videoOffsetMs: null, replyTo: null, released: true },
    });
    const del = ev({ type: 'CommentDeleted', targetEventId: c!.event.eventId, deletedBy: 'mod', reason: 'moderator' }, { role: 'moderator' });
    const after = run(feedProjection(10), [[del]], store, { fence: r!.offset, state: {} });
    expect(feedItems(after.store, keys.key('z')).map((i) => i.kind)).toEqual(['delete', 'delete']);
  });

  it('sampled feed: a released comment is always kept, even in a burst, and counts nothing in the window', () => {
    const burst = Array.from({ length: 100 }, (_, i) => ev(comment(`m${i}`), { at: 7000_000 + i, user: `b${i}` }));
    const [c, h, r] = heldThenReleased('back example.com');
    const withRelease = run(sampledProjection(2, 1000), [[...burst.slice(0, 50), c!, h!, ...burst.slice(50), r!]]);
    const items = feedItems(withRelease.store, withRelease.keys.key('z'));
    expect(items.filter((i) => i.kind === 'comment' && i.eventId === c!.event.eventId)).toHaveLength(1);
    expect(items.at(-1)).toMatchObject({ kind: 'comment', eventId: c!.event.eventId, text: 'back example.com' });
  });

  it('a released comment of a shadow-muted author is marked shadow (its author alone sees it)', () => {
    const mute = ev({ type: 'UserMuted', userId: 'sly', untilMs: null, kind: 'shadow', reason: 'r' }, { role: 'system' });
    const [c, h, r] = heldThenReleased('mine example.com', 'sly');
    const { deltas } = run(feedProjection(10), [[mute, c!, h!, r!]]);
    expect(deltas.find((d) => d.t === 'comment' && d.entry.released)).toMatchObject({ entry: { shadow: true, userId: 'sly' } });
  });
});

function gift(giftId: string, count: number, unitValue: number): RoomEventPayload {
  return { type: 'GiftSent', giftId, name: giftId, count, unitValue, value: count * unitValue };
}

describe('gift leaderboard', () => {
  const board = (store: MemoryStore, key: string) => JSON.parse(store.strings.get(key)!) as Leaderboard;

  it('given gifts, then senders are ranked by total value, with the totals of the room; only gifts count', () => {
    const events = [
      ev(gift('rose', 3, 10), { user: 'ann' }), // ann 30
      ev(comment('hi'), { user: 'bob' }),
      ev(gift('rocket', 1, 200), { user: 'bob' }), // bob 200
      ev({ type: 'ReactionAdded', emoji: 'heart', count: 5 }, { user: 'cat' }),
      ev(gift('cake', 1, 50), { user: 'cat' }), // cat 50
      ev(gift('cake', 4, 50), { user: 'ann' }), // ann 230: passes bob
    ];
    const { store, keys, deltas, meta } = run(giftsProjection(10), [events.slice(0, 3), events.slice(3)]);
    const b = board(store, keys.key('board'));
    expect(b.top.map((s) => [s.userId, s.value, s.gifts])).toEqual([
      ['ann', 230, 7],
      ['bob', 200, 1],
      ['cat', 50, 1],
    ]);
    expect([b.totalValue, b.totalGifts, b.senders]).toEqual([480, 7 + 1 + 1, 3]);
    expect(meta.state).toEqual(b);
    // Each gift is pushed with the leaderboard as it stands after it.
    expect(deltas.map((d) => d.t)).toEqual(['gift', 'gift', 'gift', 'gift']);
    const last = deltas.at(-1)!;
    expect(last).toMatchObject({ t: 'gift', gift: { kind: 'gift', userId: 'ann', giftId: 'cake', count: 4, value: 200, offset: events[5]!.offset, eventId: events[5]!.event.eventId }, leaderboard: b });
    // Every sender's own total is a per-user field, whatever the size of the top.
    expect(JSON.parse(store.hashes.get(keys.key('senders'))!.get('cat')!)).toMatchObject({ value: 50, gifts: 1 });
  });

  it('ties: equal totals rank by who reached that total first; the top is cut at its size and stays exact when someone climbs back', () => {
    const events = [
      ev(gift('rose', 5, 10), { user: 'zed' }), // zed 50 first
      ev(gift('cake', 1, 50), { user: 'amy' }), // amy 50 later: below zed, though her id sorts first
      ev(gift('rose', 4, 10), { user: 'kim' }), // kim 40
      ev(gift('rose', 2, 10), { user: 'lou' }), // lou 20: out of a top 3
    ];
    const p = giftsProjection(3);
    const first = run(p, [events]);
    expect(board(first.store, first.keys.key('board')).top.map((s) => s.userId)).toEqual(['zed', 'amy', 'kim']);
    // lou, outside the top, climbs back with a gift: the total comes from her own field (20 + 40 = 60).
    const more = [ev(gift('rose', 4, 10), { user: 'lou' }), ev(gift('rose', 1, 10), { user: 'amy' })]; // lou 60, then amy 60 (later)
    const after = run(p, [more], first.store, first.meta);
    const b = board(after.store, after.keys.key('board'));
    expect(b.top.map((s) => [s.userId, s.value])).toEqual([
      ['lou', 60],
      ['amy', 60],
      ['zed', 50],
    ]);
    expect(b.senders).toBe(4);
    expect([...b.top].sort(compareSenders)).toEqual(b.top);
  });

  it('rebuild determinism: a fold from the start, in any batching, gives the same board and fields as live', () => {
    const rnd = prng(11);
    const events: PositionedEvent[] = [];
    for (let i = 0; i < 3000; i++) {
      const user = `u${Math.floor(rnd() * 40)}`;
      if (rnd() < 0.3) events.push(ev(comment(`c${i}`), { user }));
      else events.push(ev(gift(['rose', 'cake', 'rocket'][Math.floor(rnd() * 3)]!, 1 + Math.floor(rnd() * 3), [10, 50, 200][Math.floor(rnd() * 3)]!), { user }));
    }
    const p = giftsProjection(10);
    const whole = run(p, [events]);
    const chunked: PositionedEvent[][] = [];
    for (let i = 0; i < events.length; ) {
      const n = 1 + Math.floor(rnd() * 60);
      chunked.push(events.slice(i, i + n));
      i += n;
    }
    const batched = run(p, chunked);
    expect(batched.store).toEqual(whole.store);
    expect(batched.meta).toEqual(whole.meta);
    // The top agrees with a leaderboard computed from every total (values only grow, so keeping the top is exact).
    const totals = new Map<string, { value: number; at: number }>();
    for (const e of events) {
      const g = e.event.payload;
      if (g.type !== 'GiftSent') continue;
      const t = totals.get(e.event.actor.userId) ?? { value: 0, at: -1 };
      totals.set(e.event.actor.userId, { value: t.value + g.value, at: e.offset });
    }
    const expected = [...totals].map(([userId, t]) => ({ userId, ...t })).sort((a, b) => b.value - a.value || a.at - b.at).slice(0, 10);
    const b = board(whole.store, whole.keys.key('board'));
    expect(b.top.map((s) => [s.userId, s.value])).toEqual(expected.map((s) => [s.userId, s.value]));
    expect(b.senders).toBe(totals.size);
    expect(Object.keys(whole.meta.state)).toEqual(['top', 'totalValue', 'totalGifts', 'senders']);
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
      ev(gift('rose', 2, 10), { user: 'u3' }),
      ev(gift('rocket', 1, 200), { user: 'u2' }),
      ...heldThenReleased(),
    ];
  };
  const projections: Projection<unknown>[] = [feedProjection(5), sampledProjection(1, 100), talliesProjection(), roomStateProjection(), heldProjection(10, 100), giftsProjection(2)] as Projection<unknown>[];
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

describe('state that is O(1) per event and bounded (replay and batching agree)', () => {
  /** Splits events into batches of random sizes, as fetches do. */
  const batches = (events: PositionedEvent[], seed: number) => {
    const rnd = prng(seed);
    const out: PositionedEvent[][] = [];
    for (let i = 0; i < events.length; ) {
      const n = 1 + Math.floor(rnd() * 40);
      out.push(events.slice(i, i + n));
      i += n;
    }
    return out;
  };

  it('feed and sampled: shadow marks read per batch from the per-user fields equal one fold of the whole stream, and ended mutes leave', () => {
    const rnd = prng(5);
    const events: PositionedEvent[] = [];
    let t = 1_700_000_000_000;
    for (let i = 0; i < 3000; i++) {
      t += Math.floor(rnd() * 200);
      const user = `u${Math.floor(rnd() * 300)}`;
      if (rnd() < 0.05) {
        const until = rnd() < 0.1 ? null : t + Math.floor(rnd() * 20_000);
        events.push(ev({ type: 'UserMuted', userId: user, untilMs: until, kind: rnd() < 0.8 ? 'shadow' : 'visible', reason: 'r' }, { role: 'system', at: t }));
      } else events.push(ev(comment(`c${i}`), { user, at: t }));
    }
    for (const p of [feedProjection(5000), sampledProjection(3, 5000)] as Projection<unknown>[]) {
      const keys = roomKeys('t:', p.name, 1, ROOM);
      const whole = foldInBatches(p, keys, [events]);
      const batched = foldInBatches(p, keys, batches(events, 9));
      expect(batched.store, p.name).toEqual(whole.store);
      expect(batched.meta, p.name).toEqual(whole.meta);
      // The state carries no users; the fields hold the mutes in force at the last mute (and ones with no end).
      expect(JSON.stringify(whole.meta.state).length).toBeLessThan(200);
      const shadow = whole.store.hashes.get(keys.key('shadow')) ?? new Map();
      const lastMute = [...events].reverse().find((e) => e.event.payload.type === 'UserMuted')!.event.occurredAt;
      for (const [, until] of shadow) expect(until === 'null' || Number(until) > lastMute).toBe(true);
      expect(shadow.size).toBeLessThan(60);
    }
  });

  it('tallies: the same buckets and totals as keeping every second in the state, with a state that does not grow', () => {
    // The tallies as they were folded before: every bucket of the window in the state.
    const reference = (events: PositionedEvent[]) => {
      const total = new Map<string, number>();
      const sec = new Map<string, number>();
      const buckets = new Map<number, Set<string>>();
      for (const e of events) {
        const p = e.event.payload;
        if (p.type !== 'ReactionAdded') continue;
        const s = Math.floor(e.event.occurredAt / 1000);
        total.set(p.emoji, (total.get(p.emoji) ?? 0) + p.count);
        sec.set(`${s}:${p.emoji}`, (sec.get(`${s}:${p.emoji}`) ?? 0) + p.count);
        buckets.set(s, (buckets.get(s) ?? new Set()).add(p.emoji));
        const newest = Math.max(...buckets.keys());
        for (const [b, emojis] of buckets) {
          if (b > newest - 60) continue;
          for (const em of emojis) sec.delete(`${b}:${em}`);
          buckets.delete(b);
        }
      }
      return { total: Object.fromEntries([...total].map(([k, v]) => [k, String(v)])), sec: Object.fromEntries([...sec].map(([k, v]) => [k, String(v)])) };
    };
    const rnd = prng(17);
    const events: PositionedEvent[] = [];
    let t = 1_700_000_000_000;
    for (let i = 0; i < 4000; i++) {
      // Mostly forward, sometimes a jump of minutes, sometimes a reaction a few seconds late.
      t += rnd() < 0.01 ? 90_000 + Math.floor(rnd() * 60_000) : Math.floor(rnd() * 300);
      const at = rnd() < 0.05 ? t - Math.floor(rnd() * 70_000) : t;
      events.push(ev({ type: 'ReactionAdded', emoji: ['heart', 'fire', 'clap'][Math.floor(rnd() * 3)]!, count: 1 + Math.floor(rnd() * 3) }, { at }));
    }
    const p = talliesProjection();
    const keys = roomKeys('t:', p.name, 1, ROOM);
    const ref = reference(events);
    for (const split of [[events], batches(events, 3)]) {
      const { store, meta } = foldInBatches(p, keys, split);
      expect(Object.fromEntries(store.hashes.get(keys.key('total'))!)).toEqual(ref.total);
      expect(Object.fromEntries([...(store.hashes.get(keys.key('sec')) ?? [])].sort())).toEqual(Object.fromEntries(Object.entries(ref.sec).sort()));
      expect(Object.keys(meta.state)).toEqual(['totals', 'newest', 'burst']);
      expect(Object.keys(meta.state.burst).length).toBeLessThanOrEqual(3);
    }
  });

  it('room state: the muted hash keeps its reader format and holds the mutes in force, not every mute ever', () => {
    let t = 1_700_000_000_000;
    const events: PositionedEvent[] = [];
    for (let i = 0; i < 2000; i++) {
      t += 1000;
      events.push(ev({ type: 'UserMuted', userId: `u${i}`, untilMs: t + 30_000, kind: i % 2 ? 'shadow' : 'visible', reason: 'flood' }, { role: 'system', at: t }));
    }
    events.push(ev({ type: 'UserMuted', userId: 'forever', untilMs: null, kind: 'visible', reason: 'abuse' }, { role: 'system', at: t + 1000 }));
    const { store, keys } = run(roomStateProjection(), batches(events, 4));
    const muted = store.hashes.get(keys.key('muted'))!;
    expect(muted.size).toBeLessThanOrEqual(32);
    expect(JSON.parse(muted.get('forever')!)).toMatchObject({ untilMs: null, kind: 'visible', reason: 'abuse' });
    expect(JSON.parse(muted.get('u1999')!)).toMatchObject({ untilMs: t + 30_000, kind: 'shadow', reason: 'flood' });
    expect(muted.has('u0')).toBe(false);
  });
});

describe('what Redis runs for the feeds (compactRuns) leaves them as the commands one by one do', () => {
  for (const [name, p] of [['feed', feedProjection(50)], ['sampled', sampledProjection(2, 50)]] as const) {
    it(`${name}: on mixed streams, batch by batch`, () => {
      for (const seed of [1, 2, 3]) {
        const events = mixedStream({ rooms: [ROOM], count: 1500, seed }).map((event, i) => ({ event, offset: i, partition: 0 }));
        const keys = roomKeys('t:', p.name, 1, ROOM);
        const plain = new MemoryStore();
        const compacted = new MemoryStore();
        let meta: RoomMeta<unknown> = { fence: undefined, state: p.initial() };
        for (let i = 0; i < events.length; i += 97) {
          const batch = events.slice(i, i + 97);
          const q = p as Projection<unknown>;
          const r = foldRoom(q, meta, batch, keys, loadFields(plain, q, keys, fieldsRead(q, meta.fence, batch)));
          plain.exec(r.cmds);
          compacted.exec(compactRuns(r.cmds));
          meta = r.meta;
        }
        expect(compacted.sortedMembers(keys.key('z'))).toEqual(plain.sortedMembers(keys.key('z')));
        expect(compacted.hash(keys.key('idx'))).toEqual(plain.hash(keys.key('idx')));
      }
    });
  }
});
