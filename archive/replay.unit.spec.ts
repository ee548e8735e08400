/**
 * Replay without I/O: the hand-worked scenario through an in-memory source,
 * pages against one pass, and timeline order against a brute-force sort when
 * video offsets and log order disagree.
 */
import { describe, expect, it } from 'vitest';
import { hash01 } from '../pipelines/projections/sampled.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { prng } from '../test/streams.ts';
import { BURST_B_HASHES, describeItem, EXPECTED_LIVE, EXPECTED_MODERATED, EXPECTED_SAMPLED, NOW, SAMPLED_PER_SECOND, scenario, T0 } from './fixtures.ts';
import {
  compareKeys,
  decodeCursor,
  encodeCursor,
  moderationAsOfNow,
  originOf,
  replay,
  ReplayFold,
  type ItemKey,
  type LogPos,
  type ReplayItem,
  type ReplayRequest,
  type ReplaySource,
  type ReplayView,
  type TimedEvent,
} from './replay.ts';

/** The same reads as the ClickHouse source, over an array in log order. */
class MemorySource implements ReplaySource {
  reads = 0;
  constructor(private readonly log: { event: RoomEvent; partition: number; offset: number }[]) {}

  private room(room: string) {
    return this.log.filter((e) => e.event.roomId === room);
  }
  async origin(room: string): Promise<number> {
    const events = this.room(room);
    const started = events.find((e) => e.event.payload.type === 'StreamStarted');
    const anchored = events.find((e) => e.event.videoOffsetMs !== null);
    return originOf({
      startedAt: started ? started.event.occurredAt - (started.event.videoOffsetMs ?? 0) : undefined,
      anchoredAt: anchored ? anchored.event.occurredAt - anchored.event.videoOffsetMs! : undefined,
      firstAt: events.length ? Math.min(...events.map((e) => e.event.occurredAt)) : undefined,
    });
  }
  private timed(room: string, origin: number, after: LogPos): TimedEvent[] {
    return this.room(room)
      .filter((e) => e.event.payload.type !== 'ReactionAdded' && (e.offset > after.offset || (e.offset === after.offset && e.partition > after.partition)))
      .map((e) => ({ ...e, at: e.event.videoOffsetMs ?? e.event.occurredAt - origin }));
  }
  async chunk(q: { room: string; origin: number; after: LogPos; limit: number; from: number; commentsFrom?: boolean }): Promise<TimedEvent[]> {
    this.reads++;
    return this.timed(q.room, q.origin, q.after)
      .filter((e) => !q.commentsFrom || e.event.payload.type !== 'CommentPosted' || e.at >= q.from)
      .slice(0, q.limit);
  }
  async minAtAfter(q: { room: string; origin: number; after: LogPos }): Promise<number> {
    return Math.min(Infinity, ...this.timed(q.room, q.origin, q.after).map((e) => e.at));
  }
  async moderation(q: { room: string; origin: number }): Promise<TimedEvent[]> {
    return this.timed(q.room, q.origin, { partition: -1, offset: -1 }).filter((e) => ['CommentDeleted', 'ModerationDecided', 'UserMuted', 'CommentReleased'].includes(e.event.payload.type));
  }
}

const KEY = Buffer.from('replay-cursor-key-for-the-unit-spec');
const positioned = (events: RoomEvent[], partition = 0) => events.map((event, offset) => ({ event, partition, offset }));

const base = (room: string, view: ReplayView): ReplayRequest => ({ room, view, perSecond: SAMPLED_PER_SECOND, maxItems: 500, nowMs: NOW, chunkRows: 1000 });

async function collect(src: ReplaySource, r: ReplayRequest): Promise<{ items: ReplayItem[]; next: ReturnType<typeof decodeCursor> | null; folded: number }> {
  const items: ReplayItem[] = [];
  let next = null;
  let folded = 0;
  for await (const o of replay(src, r)) {
    if (o.type === 'item') items.push(o.item);
    else {
      next = o.next;
      folded = o.folded;
    }
  }
  return { items, next, folded };
}

/** Every page, following cursors (through their string form, as clients do). */
async function allPages(src: ReplaySource, r: ReplayRequest): Promise<{ items: ReplayItem[]; pages: number }> {
  const items: ReplayItem[] = [];
  let cursor = r.cursor;
  let pages = 0;
  for (;;) {
    const page = await collect(src, { ...r, cursor });
    pages++;
    items.push(...page.items);
    if (!page.next) return { items, pages };
    cursor = decodeCursor(encodeCursor(page.next, KEY), KEY);
    if (pages > 10_000) throw new Error('pages do not end');
  }
}

describe('replay views (the hand-worked scenario)', () => {
  const room = 'scene';
  const src = new MemorySource(positioned(scenario(room)));

  it('the burst ids hash as the expectations assume', () => {
    for (const [id, h] of BURST_B_HASHES) expect(hash01(id).toFixed(4), id).toBe(h.toFixed(4));
  });

  it.each([
    ['live', EXPECTED_LIVE],
    ['moderated', EXPECTED_MODERATED],
    ['sampled', EXPECTED_SAMPLED],
  ] as const)('%s view', async (view, expected) => {
    const { items, next } = await collect(src, base(room, view));
    expect(items.map((i) => describeItem(i))).toEqual(expected);
    expect(next).toBeNull();
  });

  it('keeps what the live feed showed: text, display attributes, removal reasons, the pin', async () => {
    const { items } = await collect(src, base(room, 'live'));
    const byId = (id: string) => items.find((i) => i.eventId === id);
    expect(byId('c3')).toMatchObject({ kind: 'comment', text: 'hi all', mode: 'top', color: 0xff0000, userId: 'carol', role: 'viewer', occurredAt: T0 + 3000, videoOffsetMs: 3000 });
    expect(items.find((i) => i.kind === 'delete' && i.eventId === 'c4')).toMatchObject({ reason: 'moderation:hold:links', deletionId: 'hold-c4', at: 5500 });
    expect(items.find((i) => i.kind === 'pin' && i.pin)).toMatchObject({ pin: { eventId: 'c3', text: 'hi all', untilMs: null, by: 'm' } });
  });

  it('a range is half-open on the timeline, and folding stops once nothing later can fall in it', async () => {
    const { items, folded } = await collect(src, { ...base(room, 'live'), fromMs: 2500, toMs: 8000 });
    expect(items.map((i) => describeItem(i))).toEqual(['2500 comment c4', '3000 comment c3', '3500 pin c3', '4000 delete c2', '5500 delete c4']);
    expect(folded).toBeLessThan(scenario(room).length - 5);
  });

  it('pages of any size, across chunks of any size, equal one pass', async () => {
    for (const view of ['live', 'moderated', 'sampled'] as const) {
      const whole = (await collect(src, base(room, view))).items;
      for (const [limit, chunkRows] of [[1, 1], [2, 3], [3, 4], [5, 2], [7, 100]] as const) {
        const paged = await allPages(src, { ...base(room, view), limit, chunkRows });
        expect(paged.items, `${view} limit ${limit} chunk ${chunkRows}`).toEqual(whole);
      }
    }
  });

  it('refuses a cursor of another room, view or range, and one it did not issue', async () => {
    const first = await collect(src, { ...base(room, 'live'), limit: 2 });
    await expect(collect(src, { ...base(room, 'sampled'), limit: 2, cursor: first.next! })).rejects.toMatchObject({ code: 'ERR_CURSOR_MISMATCH', status: 400 });
    await expect(collect(src, { ...base('another-room', 'live'), limit: 2, cursor: first.next! })).rejects.toMatchObject({ code: 'ERR_CURSOR_MISMATCH', status: 400 });
    expect(() => decodeCursor('bm90LWEtY3Vyc29y', KEY)).toThrow(expect.objectContaining({ code: 'ERR_CURSOR_INVALID' }));
    // Sealed cursors: a changed byte anywhere (say, one that would make the fold state
    // forget a shadow mute), a cut or lengthened one, or one sealed under another key are
    // all refused before anything in them is used.
    const sealed = encodeCursor(first.next!, KEY);
    expect(sealed).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(sealed, KEY)).toEqual(first.next);
    expect(encodeCursor(first.next!, KEY), 'a fresh IV per cursor').not.toBe(sealed);
    const refused = (bad: string, what: string) => expect(() => decodeCursor(bad, KEY), what).toThrow(expect.objectContaining({ code: 'ERR_CURSOR_INVALID', status: 400 }));
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < sealed.length; i++) {
      // Every character changed to another of the alphabet (the last one too, whose low bits base64 would ignore).
      const other = alphabet[(alphabet.indexOf(sealed[i]!) + 1 + (i % 63)) % 64]!;
      refused(sealed.slice(0, i) + other + sealed.slice(i + 1), `character ${i}`);
    }
    const bytes = Buffer.from(sealed, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      const flipped = Buffer.from(bytes);
      flipped[i] = flipped[i]! ^ (1 << (i % 8));
      refused(flipped.toString('base64url'), `byte ${i}`);
    }
    for (const bad of ['', sealed.slice(0, -1), sealed.slice(0, -4), `${sealed}A`, `${sealed}AAAA`, `${sealed}.${sealed}`, `${sealed}=`, sealed.slice(1), bytes.toString('base64')]) refused(bad, bad.slice(-12));
    expect(() => decodeCursor(sealed, Buffer.from('another-key'))).toThrow(expect.objectContaining({ code: 'ERR_CURSOR_INVALID' }));
    expect(() => decodeCursor(encodeCursor(first.next!, Buffer.from('another-key')), KEY)).toThrow(expect.objectContaining({ code: 'ERR_CURSOR_INVALID' }));
  });

  it('a cursor is opaque: neither its text nor its bytes name the shadow-muted users its fold state carries', async () => {
    // Pages of one item until a cursor resumes a fold in which eve is shadow-muted.
    let cursor: ReplayRequest['cursor'];
    let withEve: NonNullable<ReplayRequest['cursor']> | undefined;
    for (let pages = 0; pages < 100 && !withEve; pages++) {
      const page = await collect(src, { ...base(room, 'live'), limit: 1, cursor });
      if (!page.next) break;
      cursor = page.next;
      if (page.next.resume?.state.shadow?.some(([u]) => u === 'eve')) withEve = page.next;
    }
    expect(withEve, 'a cursor whose fold state has eve shadow-muted').toBeDefined();
    const longId = 'shadow-muted-viewer-4b1c9e';
    const withLong = { ...withEve!, resume: { ...withEve!.resume!, state: { ...withEve!.resume!.state, shadow: [...withEve!.resume!.state.shadow!, [longId, T0 + 60_000]] as [string, number | null][] } } };
    expect(JSON.stringify(withLong), 'the plain cursor names them').toContain(longId);
    for (let i = 0; i < 20; i++) {
      const sealed = encodeCursor(withLong, KEY);
      expect(decodeCursor(sealed, KEY)).toEqual(withLong);
      for (const text of [sealed, Buffer.from(sealed, 'base64url').toString('latin1'), Buffer.from(sealed, 'base64url').toString('utf8'), Buffer.from(sealed, 'base64').toString('latin1')]) {
        expect(text).not.toContain(longId);
        expect(text).not.toContain('"shadow"');
        expect(text).not.toContain(room);
      }
      expect(Buffer.from(sealed, 'base64url').includes('eve')).toBe(false);
      expect(Buffer.from(sealed, 'base64url').includes(String(T0 + 60_000))).toBe(false);
    }
  });

  it('moderation as of now: the last mute of a user wins, expired mutes do not count', () => {
    const events = positioned(scenario(room));
    expect(moderationAsOfNow(events, NOW)).toEqual({ removed: new Set(['c2', 'c4']), mutedNow: new Set(['eve', 'alice']) });
    // Before frank's mute expired, he was muted too.
    expect(moderationAsOfNow(events, T0 + 8800).mutedNow).toEqual(new Set(['eve', 'frank', 'alice']));
  });

  it('folding is idempotent in the Emmett sense: the same events twice give the same items', () => {
    const a = new ReplayFold('live', { perSecond: 5, maxItems: 500 });
    const b = new ReplayFold('live', { perSecond: 5, maxItems: 500 });
    const timed = positioned(scenario(room)).map((e) => ({ ...e, at: e.event.videoOffsetMs ?? e.event.occurredAt - T0 }));
    expect(timed.flatMap((e) => a.push(e))).toEqual(timed.flatMap((e) => b.push(e)));
  });
});

describe('the review queue in replay', () => {
  const room = 'queue';
  const at = (ms: number) => T0 + ms;
  const viewer = (userId: string) => ({ userId, role: 'viewer' as const });
  const mod = { userId: 'm', role: 'moderator' as const };
  const system = { userId: 'moderation', role: 'system' as const };
  const post = (id: string, user: string, ms: number, text: string) => makeEvent({ eventId: id, roomId: room, actor: viewer(user), occurredAt: at(ms), videoOffsetMs: ms, payload: comment(text) });
  const hold = (id: string, target: string, user: string, ms: number) =>
    makeEvent({ eventId: id, roomId: room, actor: system, occurredAt: at(ms), videoOffsetMs: ms, payload: { type: 'ModerationDecided', targetEventId: target, targetUserId: user, verdict: 'hold', labels: ['link'], score: 0.5, rule: 'link' } });
  const events: RoomEvent[] = [
    makeEvent({ eventId: 'start', roomId: room, actor: { userId: 'b', role: 'broadcaster' }, occurredAt: at(0), videoOffsetMs: 0, payload: { type: 'StreamStarted', title: 'q' } }),
    post('r1', 'ann', 1000, 'see example.com'),
    hold('h1', 'r1', 'ann', 1000),
    post('d1', 'bob', 2000, 'buy at example.org'),
    hold('h2', 'd1', 'bob', 2000),
    post('c1', 'cid', 3000, 'plain'),
    // The moderator's decisions, later (no video offset: placed by event time).
    makeEvent({
      eventId: 'rel1', roomId: room, actor: mod, occurredAt: at(6000),
      payload: { type: 'CommentReleased', targetEventId: 'r1', releasedBy: 'm', authorId: 'ann', authorRole: 'viewer', text: 'see example.com', mode: 'scroll', color: 0xffffff, size: 'medium', replyTo: null, postedAt: at(1000), postedVideoOffsetMs: 1000 },
    }),
    makeEvent({ eventId: 'del1', roomId: room, actor: mod, occurredAt: at(7000), payload: { type: 'CommentDeleted', targetEventId: 'd1', deletedBy: 'm', reason: 'moderation:review' } }),
  ];
  const src = new MemorySource(positioned(events));

  it('moderated: a released comment shows at its own place, once; a held-then-deleted one never', async () => {
    const { items } = await collect(src, base(room, 'moderated'));
    expect(items.map((i) => describeItem(i))).toEqual(['1000 comment r1', '3000 comment c1']);
    expect(items[0]).toMatchObject({ text: 'see example.com', userId: 'ann' });
    expect(moderationAsOfNow(positioned(events), NOW).removed).toEqual(new Set(['d1']));
  });

  it('live: as viewers saw it — the hold removed it, the release brought it back when it happened', async () => {
    const { items } = await collect(src, base(room, 'live'));
    expect(items.map((i) => describeItem(i))).toEqual(['1000 comment r1', '1000 delete r1', '2000 comment d1', '2000 delete d1', '3000 comment c1', '6000 comment r1', '7000 delete d1']);
    expect(items.find((i) => i.kind === 'comment' && i.at === 6000)).toMatchObject({ eventId: 'r1', released: true, videoOffsetMs: 1000 });
  });

  it('a release, then another removal: the comment is removed in the moderated view', async () => {
    const later = makeEvent({ eventId: 'del2', roomId: room, actor: mod, occurredAt: at(8000), payload: { type: 'CommentDeleted', targetEventId: 'r1', deletedBy: 'm', reason: 'moderator' } });
    const { items } = await collect(new MemorySource(positioned([...events, later])), base(room, 'moderated'));
    expect(items.map((i) => describeItem(i))).toEqual(['3000 comment c1']);
  });
});

describe('timeline order when video offsets disagree with the log', () => {
  /** Comments whose video offsets jitter by up to ±3 s around their event time, with deletions and pins. */
  function jittery(room: string, n: number, seed: number): RoomEvent[] {
    const rnd = prng(seed);
    const events: RoomEvent[] = [makeEvent({ eventId: `${room}-start`, roomId: room, actor: { userId: 'b', role: 'broadcaster' }, occurredAt: T0, videoOffsetMs: 0, payload: { type: 'StreamStarted', title: '' } })];
    const ids: string[] = [];
    let t = 0;
    for (let i = 0; i < n; i++) {
      t += Math.floor(rnd() * 400);
      const r = rnd();
      if (r < 0.75 || ids.length === 0) {
        const id = `${room}-c${i}`;
        ids.push(id);
        events.push(makeEvent({ eventId: id, roomId: room, actor: { userId: `u${Math.floor(rnd() * 20)}`, role: 'viewer' }, occurredAt: T0 + t, videoOffsetMs: Math.max(0, t + Math.floor((rnd() - 0.5) * 6000)), payload: comment(`c${i}`) }));
      } else if (r < 0.9) {
        events.push(makeEvent({ eventId: `${room}-d${i}`, roomId: room, actor: { userId: 'm', role: 'moderator' }, occurredAt: T0 + t, payload: { type: 'CommentDeleted', targetEventId: ids[Math.floor(rnd() * ids.length)]!, deletedBy: 'm', reason: 'x' } }));
      } else if (r < 0.95) {
        events.push(makeEvent({ eventId: `${room}-p${i}`, roomId: room, actor: { userId: 'm', role: 'moderator' }, occurredAt: T0 + t, payload: { type: 'CommentPinned', targetEventId: ids[Math.floor(rnd() * ids.length)]!, untilMs: null, text: 'p' } }));
      } else {
        events.push(makeEvent({ eventId: `${room}-h${i}`, roomId: room, actor: { userId: 'u1', role: 'viewer' }, occurredAt: T0 + t, videoOffsetMs: t, payload: { type: 'ReactionAdded', emoji: 'heart', count: 1 } }));
      }
    }
    return events;
  }

  /** Brute force: fold everything in log order, then sort by (at, position, index). */
  function bruteForce(events: RoomEvent[], view: ReplayView, from = -Infinity, to = Infinity): ReplayItem[] {
    const fold = new ReplayFold(view, { perSecond: 5, maxItems: 500, ...(view === 'moderated' ? moderationAsOfNow(positioned(events), NOW) : {}) });
    const keyed: { key: ItemKey; item: ReplayItem }[] = [];
    positioned(events).forEach((e) => {
      if (e.event.payload.type === 'ReactionAdded') return;
      const at = e.event.videoOffsetMs ?? e.event.occurredAt - T0;
      fold.push({ ...e, at }).forEach((item, seq) => {
        if (item.at >= from && item.at < to) keyed.push({ key: [at, e.offset, e.partition, seq], item });
      });
    });
    return keyed.sort((a, b) => compareKeys(a.key, b.key)).map((k) => k.item);
  }

  it.each(['live', 'sampled', 'moderated'] as const)('%s: streamed in chunks and paged, equals folding all then sorting', async (view) => {
    const room = `jit-${view}`;
    const events = jittery(room, 1500, view.length);
    const src = new MemorySource(positioned(events));
    const expected = bruteForce(events, view);
    expect(expected.length).toBeGreaterThan(500);
    const req = { ...base(room, view), chunkRows: 97 };
    expect((await collect(src, req)).items).toEqual(expected);
    const paged = await allPages(src, { ...req, limit: 113 });
    expect(paged.items).toEqual(expected);
    // A cursor resumes where the page ended instead of folding from the start: reads stay proportional.
    expect(paged.pages).toBe(Math.ceil(expected.length / 113));
    const ranged = await allPages(src, { ...req, fromMs: 30_000, toMs: 90_000, limit: 50 });
    expect(ranged.items).toEqual(bruteForce(events, view, 30_000, 90_000));
  });

  it('pages resume from their cursor: later pages read only about a page of rows', async () => {
    const room = 'jit-cost';
    const events = jittery(room, 3000, 9);
    const src = new MemorySource(positioned(events));
    const first = await collect(src, { ...base(room, 'live'), chunkRows: 100, limit: 200 });
    let cursor = first.next!;
    for (let p = 0; p < 5; p++) {
      const before = src.reads;
      const page = await collect(src, { ...base(room, 'live'), chunkRows: 100, limit: 200, cursor });
      expect(src.reads - before).toBeLessThanOrEqual(5);
      cursor = page.next!;
    }
  });
});
