import { describe, expect, it } from 'vitest';
import type { BatchMessage, CatchUpMessage, FeedEntry, FeedResponse, SnapshotMessage, Tombstone } from '../protocol.ts';
import { tokenSubject } from './client.ts';
import { backoffDelay, initialState, needsResync, recentBurst, reduce, snapshotFromHttp, type ClientEvent, type ClientInput, type ClientState } from './state.ts';

const room = 'r1';

function comment(offset: number, text = `c${offset}`, over: Partial<FeedEntry> = {}): FeedEntry {
  return {
    kind: 'comment',
    offset,
    eventId: `e${offset}`,
    userId: 'u1',
    role: 'viewer',
    text,
    mode: 'scroll',
    color: 0xffffff,
    size: 'medium',
    occurredAt: 1_700_000_000_000 + offset,
    videoOffsetMs: null,
    replyTo: null,
    ...over,
  };
}

function tombstone(offset: number, eventId: string): Tombstone {
  return { kind: 'delete', offset, eventId, deletionId: `d${offset}`, occurredAt: 1_700_000_000_000 + offset, reason: 'moderation' };
}

function snapshot(offset: number, items: SnapshotMessage['items'], over: Partial<SnapshotMessage> = {}): SnapshotMessage {
  return {
    type: 'snapshot',
    room,
    view: 'ordered',
    position: { epoch: 0, offset },
    items,
    pinned: null,
    tallies: { totals: {}, lastSeconds: {} },
    viewers: 1,
    settings: { slowModeSec: 0, emoteOnly: false, extra: {} },
    rate: 1,
    ...over,
  };
}

function batch(offset: number, events: BatchMessage['events'], epoch = 0): BatchMessage {
  return { type: 'batch', room, position: { epoch, offset }, events };
}

function run(inputs: ClientInput[], start: ClientState = initialState(room, 'ordered'), maxItems?: number, me?: string): { state: ClientState; events: ClientEvent[] } {
  let state = start;
  const events: ClientEvent[] = [];
  for (const i of inputs) {
    const step = reduce(state, i, { maxItems, me });
    state = step.state;
    events.push(...step.events);
  }
  return { state, events };
}

const offsets = (s: ClientState) => s.items.map((i) => i.offset);

describe('client reducer', () => {
  it('takes the snapshot, then applies batches in order', () => {
    const { state, events } = run([
      snapshot(2, [comment(1), comment(2)]),
      batch(4, [{ t: 'comment', entry: comment(3) }, { t: 'comment', entry: comment(4) }]),
      batch(6, [{ t: 'comment', entry: comment(6) }]),
    ]);
    expect(offsets(state)).toEqual([1, 2, 3, 4, 6]);
    expect(state.position).toEqual({ epoch: 0, offset: 6 });
    expect(events.filter((e) => e.type === 'comment').map((e) => (e as { entry: FeedEntry }).entry.offset)).toEqual([3, 4, 6]);
    expect(events[0]).toMatchObject({ type: 'snapshot', reason: 'fresh' });
  });

  it('ignores batches before the first snapshot', () => {
    const { state } = run([batch(3, [{ t: 'comment', entry: comment(3) }])]);
    expect(state.items).toEqual([]);
    expect(state.position).toBeNull();
  });

  it('dedupes by offset: overlapping batches, catch-up and polled pages add nothing twice', () => {
    const feed: FeedResponse = { events: [comment(4), comment(5)], position: { epoch: 0, offset: 5 }, nextPollMs: 1000, rate: 1 };
    const { state, events } = run([
      snapshot(3, [comment(1), comment(2), comment(3)]),
      batch(3, [{ t: 'comment', entry: comment(3) }]), // races the snapshot
      batch(4, [{ t: 'comment', entry: comment(3) }, { t: 'comment', entry: comment(4) }]),
      { type: 'feed', response: feed },
      { type: 'catchup', room, items: [comment(2), comment(5)], position: { epoch: 0, offset: 5 }, source: 'redis' } satisfies CatchUpMessage,
    ]);
    expect(offsets(state)).toEqual([1, 2, 3, 4, 5]);
    const emitted = events.filter((e) => e.type === 'comment').map((e) => (e as { entry: FeedEntry }).entry.offset);
    expect(emitted).toEqual([4, 5]);
  });

  it('a resume snapshot merges, keeps the position until the catch-up fills the gap', () => {
    const first = run([snapshot(2, [comment(1), comment(2)])]).state;
    // Reconnected with since=0.2: the snapshot shows recent items up to 6, the catch-up brings 3..6.
    const afterSnap = run([snapshot(6, [comment(5), comment(6)])], first);
    expect(afterSnap.events[0]).toMatchObject({ type: 'snapshot', reason: 'resume' });
    expect(afterSnap.state.position).toEqual({ epoch: 0, offset: 2 }); // a drop now resumes from 2 again
    expect(offsets(afterSnap.state)).toEqual([1, 2, 5, 6]);
    const { state, events } = run([{ type: 'catchup', room, items: [comment(3), comment(4), comment(5), comment(6)], position: { epoch: 0, offset: 6 }, source: 'log' }], afterSnap.state);
    expect(offsets(state)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(state.position).toEqual({ epoch: 0, offset: 6 });
    expect(events.map((e) => (e as { entry: FeedEntry }).entry.offset)).toEqual([3, 4]);
  });

  it('tombstones remove comments (in the snapshot, in batches, and before their comment arrives)', () => {
    const { state, events } = run([
      snapshot(4, [comment(1), comment(2), tombstone(3, 'e1'), comment(4)]),
      batch(6, [{ t: 'comment', entry: comment(5) }, { t: 'delete', eventId: 'e4', offset: 6, reason: 'deleted' }]),
      batch(7, [{ t: 'delete', eventId: 'e4', offset: 6, reason: 'deleted' }]), // redelivered
    ]);
    expect(offsets(state)).toEqual([2, 5]);
    expect(events.filter((e) => e.type === 'delete')).toEqual([{ type: 'delete', eventId: 'e4', offset: 6, reason: 'deleted' }]);

    // Merge order can bring the tombstone before the comment: the comment never shows.
    const late = run([snapshot(9, [tombstone(9, 'e8')]), { type: 'catchup', room, items: [comment(8)], position: { epoch: 0, offset: 9 }, source: 'redis' }]);
    expect(late.state.items).toEqual([]);
  });

  it('an epoch change replaces everything; stale batches of the old epoch are ignored', () => {
    const before = run([
      snapshot(5, [comment(4), comment(5)], { pinned: { eventId: 'e4', text: 'pinned', untilMs: null, by: 'm', offset: 5 }, tallies: { totals: { heart: 3 }, lastSeconds: {} } }),
    ]).state;
    const { state, events } = run(
      [
        batch(9, [{ t: 'comment', entry: comment(9) }], 0), // still in flight from the old epoch
        snapshot(2, [comment(1), comment(2)], { position: { epoch: 1, offset: 2 }, reason: 'epoch' }),
        batch(7, [{ t: 'comment', entry: comment(7) }], 0),
        batch(3, [{ t: 'comment', entry: comment(3) }], 1),
      ],
      before,
    );
    expect(offsets(state)).toEqual([1, 2, 3]);
    expect(state.position).toEqual({ epoch: 1, offset: 3 });
    expect(state.pinned).toBeNull();
    expect(state.tallies.totals).toEqual({});
    expect(events.find((e) => e.type === 'snapshot')).toMatchObject({ reason: 'epoch' });
  });

  it('an unrecoverable snapshot of the same epoch also replaces everything', () => {
    const before = run([snapshot(5, [comment(4), comment(5)])]).state;
    const { state } = run([snapshot(900, [comment(899), comment(900)], { reason: 'unrecoverable' })], before);
    expect(offsets(state)).toEqual([899, 900]);
    expect(state.position).toEqual({ epoch: 0, offset: 900 });
  });

  it('keeps at most maxItems and treats anything older as a duplicate', () => {
    const { state } = run(
      [snapshot(5, [1, 2, 3, 4, 5].map((o) => comment(o))), { type: 'catchup', room, items: [comment(1), comment(2)], position: { epoch: 0, offset: 5 }, source: 'log' }],
      undefined,
      3,
    );
    expect(offsets(state)).toEqual([3, 4, 5]);
  });

  it('tallies, pins, settings, viewers, rate and degradation', () => {
    const { state, events } = run([
      snapshot(1, [comment(1)], { view: 'sampled', rate: 1 }),
      batch(3, [
        { t: 'tally', totals: { heart: 2 }, second: 100, burst: { heart: 2 } },
        { t: 'tally', totals: { heart: 5, fire: 1 }, second: 101, burst: { heart: 3, fire: 1 } },
        { t: 'pin', pin: { eventId: 'e1', text: 'hello', untilMs: null, by: 'mod', offset: 2 } },
        { t: 'settings', settings: { slowModeSec: 5, emoteOnly: false, extra: {} } },
        { t: 'rate', rate: 0.25 },
      ]),
      { type: 'viewers', room, count: 42 },
      { type: 'degraded', room, mode: 'tallies' },
    ]);
    expect(state.tallies.totals).toEqual({ heart: 5, fire: 1 });
    expect(recentBurst(state.tallies, 101_500)).toEqual({ heart: 5, fire: 1 });
    expect(recentBurst(state.tallies, 110_500)).toEqual({ heart: 3, fire: 1 });
    expect(recentBurst(state.tallies, 200_000)).toEqual({});
    expect(state.pinned?.text).toBe('hello');
    expect(state.settings.slowModeSec).toBe(5);
    expect(state.rate).toBe(0.25);
    expect(state.viewers).toBe(42);
    expect(state.degraded).toBe('tallies');
    expect(events.map((e) => e.type)).toEqual(['snapshot', 'tally', 'tally', 'pin', 'settings', 'rate', 'viewers', 'degraded']);
  });

  it('polling: pages advance the position, state refreshes only report changes, resync is detected', () => {
    const st = { pinned: null, tallies: { totals: { clap: 1 }, lastSeconds: {} }, viewers: 3, settings: { slowModeSec: 0, emoteOnly: false, extra: {} }, position: { epoch: 0, offset: 2 } };
    const page: FeedResponse = { events: [comment(1), comment(2)], position: { epoch: 0, offset: 2 }, nextPollMs: 1000, rate: 1 };
    const { state, events } = run([
      snapshotFromHttp(room, 'ordered', st, page),
      { type: 'feed', response: { events: [comment(3)], position: { epoch: 0, offset: 7 }, nextPollMs: 1000, rate: 0.5 } },
      { type: 'state', state: st },
      { type: 'state', state: { ...st, viewers: 4 } },
    ]);
    expect(offsets(state)).toEqual([1, 2, 3]);
    expect(state.position).toEqual({ epoch: 0, offset: 7 });
    expect(events.map((e) => e.type)).toEqual(['snapshot', 'comment', 'rate', 'viewers']);
    expect(needsResync(state, { events: [], position: { epoch: 0, offset: 9 }, nextPollMs: 1, rate: 1 })).toBe(false);
    expect(needsResync(state, { events: [], position: { epoch: 1, offset: 0 }, nextPollMs: 1, rate: 1 })).toBe(true);
    expect(needsResync(state, { events: [], position: { epoch: 0, offset: 9 }, nextPollMs: 1, rate: 1, unrecoverable: true })).toBe(true);
  });

  it('never mutates the state it was given', () => {
    const s0 = run([snapshot(2, [comment(1), comment(2)])]).state;
    const copy = { items: [...s0.items], seen: new Set(s0.seen), position: s0.position };
    reduce(s0, batch(4, [{ t: 'comment', entry: comment(3) }, { t: 'delete', eventId: 'e1', offset: 4, reason: 'x' }]));
    expect(s0.items).toEqual(copy.items);
    expect(s0.seen).toEqual(copy.seen);
    expect(s0.position).toEqual(copy.position);
  });
});

describe('held comments and their release', () => {
  const hold = (offset: number, eventId: string): BatchMessage['events'][number] => ({ t: 'delete', eventId, offset, reason: 'moderation:hold:link', deletionId: `h${offset}`, occurredAt: 1 });
  const released = (offset: number, of: FeedEntry): FeedEntry => ({ ...of, offset, released: true });
  const mine = comment(2, 'see example.com', { userId: 'alice' });

  it('a viewer\'s client removes a held comment, and shows it again, once, when a moderator releases it', () => {
    const { state, events } = run([
      snapshot(1, [comment(1)]),
      batch(2, [{ t: 'comment', entry: mine }]),
      batch(3, [hold(3, 'e2')]),
      batch(5, [{ t: 'comment', entry: comment(4) }, { t: 'comment', entry: released(5, mine) }]),
      batch(6, [{ t: 'comment', entry: released(6, mine) }]), // a second release of the same comment
    ], undefined, undefined, 'bob');
    expect(state.items.map((i) => [i.eventId, i.offset])).toEqual([['e1', 1], ['e4', 4], ['e2', 5]]);
    expect(events.filter((e) => e.type !== 'snapshot').map((e) => e.type)).toEqual(['comment', 'delete', 'comment', 'comment']);
    expect(state.items.some((i) => i.pending)).toBe(false);
  });

  it('in any merge order: a release after the removal shows the comment, a removal after the release hides it', () => {
    // The snapshot already holds the hold's tombstone and the release; the catch-up brings the comment itself.
    const late = run([snapshot(5, [tombstone(3, 'e2'), released(5, mine)]), { type: 'catchup', room, items: [mine], position: { epoch: 0, offset: 5 }, source: 'log' }]);
    expect(late.state.items.map((i) => [i.eventId, i.offset])).toEqual([['e2', 5]]);
    // A deletion after the release came first: the release (older) does not bring it back.
    const deleted = run([snapshot(7, [tombstone(7, 'e2')]), { type: 'catchup', room, items: [tombstone(3, 'e2'), released(5, mine)], position: { epoch: 0, offset: 7 }, source: 'log' }]);
    expect(deleted.state.items).toEqual([]);
    // In log order, the same.
    const inOrder = run([snapshot(1, []), batch(7, [{ t: 'comment', entry: mine }, hold(3, 'e2'), { t: 'comment', entry: released(5, mine) }, { t: 'delete', eventId: 'e2', offset: 7, reason: 'moderator' }])]);
    expect(inOrder.state.items).toEqual([]);
  });

  it('its author\'s client keeps it, marked pending; a release makes it an ordinary comment, a deletion removes it', () => {
    const held = run([snapshot(1, [comment(1)]), batch(2, [{ t: 'comment', entry: mine }]), batch(3, [hold(3, 'e2')])], undefined, undefined, 'alice');
    expect(held.state.items.map((i) => [i.eventId, i.pending ?? false])).toEqual([['e1', false], ['e2', true]]);
    expect(held.events.at(-1)).toEqual({ type: 'pending', entry: { ...mine, pending: true }, reason: 'moderation:hold:link' });
    expect(held.events.some((e) => e.type === 'delete')).toBe(false);
    // Someone else's client, same messages: gone.
    const other = run([snapshot(1, [comment(1)]), batch(2, [{ t: 'comment', entry: mine }]), batch(3, [hold(3, 'e2')])], undefined, undefined, 'bob');
    expect(other.state.items.map((i) => i.eventId)).toEqual(['e1']);
    // Anonymous (no `me`): gone too.
    expect(run([snapshot(1, []), batch(3, [{ t: 'comment', entry: mine }, hold(3, 'e2')])]).state.items).toEqual([]);

    const releasedOne = run([batch(5, [{ t: 'comment', entry: released(5, mine) }])], held.state, undefined, 'alice');
    expect(releasedOne.state.items.map((i) => [i.eventId, i.offset, i.pending ?? false])).toEqual([['e1', 1, false], ['e2', 5, false]]);
    expect(releasedOne.events).toEqual([{ type: 'comment', entry: released(5, mine) }]);

    const deletedOne = run([batch(5, [{ t: 'delete', eventId: 'e2', offset: 5, reason: 'moderation:review' }])], held.state, undefined, 'alice');
    expect(deletedOne.state.items.map((i) => i.eventId)).toEqual(['e1']);
    expect(deletedOne.events).toEqual([{ type: 'delete', eventId: 'e2', offset: 5, reason: 'moderation:review' }]);
  });

  it('a removal for another reason (a deletion) removes the author\'s own comment like anyone\'s', () => {
    const { state } = run([snapshot(1, []), batch(3, [{ t: 'comment', entry: mine }, { t: 'delete', eventId: 'e2', offset: 3, reason: 'moderation:wordlist' }])], undefined, undefined, 'alice');
    expect(state.items).toEqual([]);
  });
});

describe('tokenSubject', () => {
  it('reads the sub of a JWT without verifying it (base64url, UTF-8), and nothing of a non-token', () => {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    expect(tokenSubject(`${enc({ alg: 'HS256' })}.${enc({ sub: 'ユーザー-1', exp: 1 })}.sig`)).toBe('ユーザー-1');
    expect(tokenSubject('not-a-token')).toBeUndefined();
    expect(tokenSubject(undefined)).toBeUndefined();
    expect(tokenSubject(`x.${enc({ sub: 5 })}.y`)).toBeUndefined();
  });
});

describe('backoff', () => {
  it('grows exponentially from the base and is capped', () => {
    const mid = () => 0.5;
    const d = [0, 1, 2, 3, 4, 10, 50].map((a) => backoffDelay(a, { baseMs: 100, maxMs: 2000 }, mid));
    expect(d).toEqual([75, 150, 300, 600, 1200, 1500, 1500]);
    expect(backoffDelay(1000, { baseMs: 100, maxMs: 2000 }, () => 1)).toBe(2000);
  });

  it('is jittered between half and all of the capped delay, never zero', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const cap = Math.min(30_000, 500 * 2 ** attempt);
      expect(backoffDelay(attempt, {}, () => 0)).toBe(cap / 2);
      expect(backoffDelay(attempt, {}, () => 1)).toBe(cap);
    }
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(5)));
    expect(spread.size).toBeGreaterThan(10);
    for (const v of spread) expect(v).toBeGreaterThanOrEqual(8000);
    for (const v of spread) expect(v).toBeLessThanOrEqual(16_000);
  });
});

describe('pins that expire on the client\'s clock', () => {
  const pin = (untilMs: number | null) => ({ eventId: 'e1', text: 'hello', untilMs, by: 'mod', offset: 3 });

  it('given a pin past its untilMs, when the clock ticks, then it is hidden and a pin(null) event says so', () => {
    const start = { ...initialState(room, 'ordered'), pinned: pin(1_000) };
    const { state, events } = reduce(start, { type: 'clock', now: 1_000 });
    expect(state.pinned).toBeNull();
    expect(events).toEqual([{ type: 'pin', pin: null }]);
  });

  it('given a pin not yet expired, or without a duration, or none, then the clock changes nothing', () => {
    for (const pinned of [pin(1_001), pin(null), null]) {
      const start = { ...initialState(room, 'ordered'), pinned };
      const step = reduce(start, { type: 'clock', now: 1_000 });
      expect(step.state).toBe(start);
      expect(step.events).toEqual([]);
    }
  });
});
