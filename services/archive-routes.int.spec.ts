/**
 * The archive's HTTP surface, wired the way the root wires it: the gateway's
 * replay and analytics routes reading an ArchiveReader over a real (embedded)
 * ClickHouse filled by the real archiver from the real Kafka. Here, in the
 * root's folder, because it is the one place that may see both sides.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import { describeItem, EXPECTED_LIVE, EXPECTED_MODERATED, EXPECTED_SAMPLED, NOW, scenario, T0 } from '../archive/fixtures.ts';
import type { ReplayItem } from '../archive/replay.ts';
import { roomStats } from '../archive/stats.ts';
import { runSql } from '../archive/sql.ts';
import { replayPlugin } from '../gateway/replay.ts';
import { buildGateway } from '../gateway/app.ts';
import { tokenSigner } from '../gateway/auth.ts';
import { createGatewayDeps, type GatewayDeps } from '../gateway/deps.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { archiveKit, type World } from '../test/archive-world.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { mixedStream } from '../test/streams.ts';
import { archiveReaderFor } from './root.ts';

const kit = await archiveKit();
// The routes sign replay cursors with a key derived from the JWT secret.
const base = testConfig({ JWT_SECRET: `archive-routes-secret-${Date.now()}-${Math.random()}` });
const world = () => kit.world();
afterAll(() => kit.close());

async function appWith(deps: Partial<GatewayDeps>): Promise<FastifyInstance> {
  const app = Fastify();
  app.decorate('deps', { cfg: base, now: () => NOW, ...deps } as GatewayDeps);
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const e = err instanceof AppError ? err : err.validation ? new AppError('ERR_VALIDATION', err.message) : new AppError('ERR_INTERNAL', err.message);
    void reply.status(e.status).send(e.toJSON());
  });
  await app.register(replayPlugin);
  return app;
}

describe('replay over HTTP', () => {
  let w: World;
  let app: FastifyInstance;
  const room = 'scene-1';
  beforeAll(async () => {
    w = await world();
    await w.produce(scenario(room));
    await w.produce(mixedStream({ rooms: ['other-room'], count: 300, seed: 2 }));
    const a = w.archiver();
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    app = await appWith({ archive: archiveReaderFor(base, async () => w.ch) });
  });
  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  async function pages(query: string, limit: number): Promise<{ items: ReplayItem[]; pages: number }> {
    const items: ReplayItem[] = [];
    let cursor = '';
    for (let pages = 1; ; pages++) {
      const res = await app.inject({ url: `/v1/rooms/${room}/replay?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}` });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ items: ReplayItem[]; nextCursor: string | null }>();
      items.push(...body.items);
      if (!body.nextCursor) return { items, pages };
      cursor = body.nextCursor;
    }
  }

  it.each([
    ['live', EXPECTED_LIVE],
    ['moderated', EXPECTED_MODERATED],
    ['sampled', EXPECTED_SAMPLED],
  ] as const)('%s view, in JSON pages with a cursor and as NDJSON, equals the hand-worked timeline', async (view, expected) => {
    const paged = await pages(`view=${view}`, 4);
    expect(paged.items.map(describeItem)).toEqual(expected);
    expect(paged.pages).toBe(Math.ceil(expected.length / 4));
    const res = await app.inject({ url: `/v1/rooms/${room}/replay?view=${view}&format=ndjson` });
    expect(res.headers['content-type']).toMatch(/application\/x-ndjson/);
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as ReplayItem | { kind: 'end'; items: number; nextCursor: null });
    expect(lines.at(-1)).toEqual({ kind: 'end', items: expected.length, nextCursor: null });
    expect((lines.slice(0, -1) as ReplayItem[]).map(describeItem)).toEqual(expected);
  });

  it('a range of the video timeline, and the live items as they were shown', async () => {
    const { items } = await pages('view=live&fromMs=2500&toMs=8000', 100);
    expect(items.map(describeItem)).toEqual(['2500 comment c4', '3000 comment c3', '3500 pin c3', '4000 delete c2', '5500 delete c4']);
    expect(items[1]).toMatchObject({ kind: 'comment', eventId: 'c3', text: 'hi all', mode: 'top', color: 0xff0000, userId: 'carol', occurredAt: T0 + 3000, videoOffsetMs: 3000, at: 3000 });
    expect(items[4]).toMatchObject({ kind: 'delete', eventId: 'c4', deletionId: 'hold-c4', reason: 'moderation:hold:links' });
  });

  it('refuses a tampered cursor: a character changed in the middle or at the end, another secret\'s, another room\'s or view\'s', async () => {
    const page = async (a: FastifyInstance, url: string) => {
      const res = await a.inject({ url });
      expect(res.statusCode, res.body).toBe(200);
      const next = res.json<{ nextCursor: string | null }>().nextCursor;
      expect(next, url).toEqual(expect.any(String));
      return next!;
    };
    const cursor = await page(app, `/v1/rooms/${room}/replay?view=live&limit=2`);
    const refused = async (c: string, code: string, what: string, url = `/v1/rooms/${room}/replay?view=live&limit=2`) => {
      const res = await app.inject({ url: `${url}&cursor=${encodeURIComponent(c)}` });
      expect([res.statusCode, res.json().code], `${what}: ${res.body}`).toEqual([400, code]);
    };
    // The real one works, and tells nothing: no room, no user, no JSON in it.
    expect((await app.inject({ url: `/v1/rooms/${room}/replay?view=live&limit=2&cursor=${encodeURIComponent(cursor)}` })).statusCode).toBe(200);
    expect(Buffer.from(cursor, 'base64url').toString('latin1')).not.toMatch(/scene|eve|"v"|resume/);
    const swap = (c: string, i: number) => c.slice(0, i) + (c[i] === 'A' ? 'B' : 'A') + c.slice(i + 1);
    const mid = Math.floor(cursor.length / 2);
    await refused(swap(cursor, mid), 'ERR_CURSOR_INVALID', 'a character flipped in the middle');
    await refused(swap(cursor, cursor.length - 1), 'ERR_CURSOR_INVALID', 'the last character flipped');
    await refused(cursor.slice(0, -1), 'ERR_CURSOR_INVALID', 'cut by one');
    // Sealed under another secret: one derived from another JWT secret, and an operator's own.
    const secrets: Record<string, string>[] = [{ JWT_SECRET: `another-secret-${Date.now()}-0123456789abcdef` }, { JWT_SECRET: base.auth.jwtSecret!, REPLAY_CURSOR_SECRET: `an-operator-cursor-secret-${Math.random()}` }];
    for (const env of secrets) {
      const cfg = testConfig(env);
      const other = await appWith({ cfg, archive: archiveReaderFor(cfg, async () => w.ch) });
      const foreign = await page(other, `/v1/rooms/${room}/replay?view=live&limit=2`);
      await other.close();
      await refused(foreign, 'ERR_CURSOR_INVALID', `a cursor sealed under another secret (${Object.keys(env).join(', ')})`);
    }
    // A genuine cursor, but of another room or another view: the request it came from must be repeated.
    const otherRoom = await page(app, '/v1/rooms/other-room/replay?view=live&limit=2');
    await refused(otherRoom, 'ERR_CURSOR_MISMATCH', 'a cursor of another room');
    await refused(cursor, 'ERR_CURSOR_MISMATCH', 'a cursor of another room, sent there', '/v1/rooms/other-room/replay?view=live&limit=2');
    await refused(cursor, 'ERR_CURSOR_MISMATCH', 'a cursor of the live view, sent to sampled', `/v1/rooms/${room}/replay?view=sampled&limit=2`);
    await refused(cursor, 'ERR_CURSOR_MISMATCH', 'a cursor of another range', `/v1/rooms/${room}/replay?view=live&limit=2&fromMs=1000`);
  });

  it('an operator\'s cursor secret shorter than 32 characters fails closed, naming REPLAY_CURSOR_SECRET (DEV_MODE allows it)', () => {
    const jwt = base.auth.jwtSecret!;
    expect(() => archiveReaderFor(testConfig({ JWT_SECRET: jwt, DEV_MODE: 'false', REPLAY_CURSOR_SECRET: 'short' }), async () => w.ch)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringMatching(/REPLAY_CURSOR_SECRET is shorter than 32/) }));
    expect(archiveReaderFor(testConfig({ JWT_SECRET: jwt, DEV_MODE: 'false', REPLAY_CURSOR_SECRET: 'x'.repeat(32) }), async () => w.ch)).toBeDefined();
    expect(archiveReaderFor(testConfig({ JWT_SECRET: jwt, DEV_MODE: 'true', REPLAY_CURSOR_SECRET: 'short' }), async () => w.ch)).toBeDefined();
  });

  it('answers errors with a code: bad cursor, cursor of another view, bad range, no archive', async () => {
    const bad = await app.inject({ url: `/v1/rooms/${room}/replay?cursor=bm9wZQ` });
    expect([bad.statusCode, bad.json().code]).toEqual([400, 'ERR_CURSOR_INVALID']);
    const first = (await app.inject({ url: `/v1/rooms/${room}/replay?view=live&limit=2` })).json<{ nextCursor: string }>();
    const other = await app.inject({ url: `/v1/rooms/${room}/replay?view=sampled&limit=2&cursor=${first.nextCursor}` });
    expect([other.statusCode, other.json().code]).toEqual([400, 'ERR_CURSOR_MISMATCH']);
    const range = await app.inject({ url: `/v1/rooms/${room}/replay?fromMs=10&toMs=5` });
    expect([range.statusCode, range.json().code]).toEqual([400, 'ERR_RANGE_INVALID']);
    const none = await appWith({});
    // A server that does not answer: the real HTTP client fails to connect.
    const downCfg = testConfig({ CLICKHOUSE_URL: 'http://127.0.0.1:1', JWT_SECRET: base.auth.jwtSecret! });
    const down = await appWith({ cfg: downCfg, archive: archiveReaderFor(downCfg) });
    for (const a of [none, down]) {
      for (const url of [`/v1/rooms/${room}/replay`, `/v1/rooms/${room}/stats`]) {
        const res = await a.inject({ url });
        expect([res.statusCode, res.json().code], res.body).toEqual([503, 'ERR_ARCHIVE_UNAVAILABLE']);
      }
      await a.close();
    }
  });
});


/**
 * Two rooms with the same stream, one of them with shadow-muted users in it
 * too: `ghost` shadow-muted for good, whose comments fall in busy minutes and
 * in a minute of their own, `half` who commented before the mute (seen by
 * all, in both rooms) and after it in the same minute and the next, and
 * `past`, whose shadow mute had ended when they commented (seen by all).
 */
const SHADOW_PLAIN = 'shadow-plain';
const SHADOW_MUTED = 'shadow-muted';
function shadowTwins(): RoomEvent[] {
  const common = mixedStream({ rooms: [SHADOW_PLAIN], count: 400, seed: 11, startMs: T0 });
  const system = { userId: 'moderation', role: 'system' } as const;
  const at = (userId: string, dt: number, text: string) => ({ actor: { userId, role: 'viewer' as const }, occurredAt: T0 + dt, videoOffsetMs: dt, payload: comment(text) });
  const seenByAll = [at('half', 10_000, 'before the mute'), at('past', 50_000, 'after the mute ended')];
  const mute = (userId: string, dt: number, untilMs: number | null) =>
    makeEvent({ roomId: SHADOW_MUTED, actor: system, occurredAt: T0 + dt, videoOffsetMs: null, payload: { type: 'UserMuted', userId, untilMs, kind: 'shadow', reason: 'test' } });
  const mutes = [mute('ghost', 1000, null), mute('half', 20_000, null), mute('past', 30_000, T0 + 40_000)];
  const onlyTheirs = [at('ghost', 2000, 'boo'), at('ghost', 15_000, 'boo'), at('ghost', 75_000, 'boo'), at('ghost', 3 * 3_600_000, 'alone in its minute'), at('half', 25_000, 'after'), at('half', 65_000, 'next minute')];
  const plain = [...common, ...seenByAll.map((e) => makeEvent({ roomId: SHADOW_PLAIN, ...e }))];
  const muted = [
    ...plain.map((e) => ({ ...e, roomId: SHADOW_MUTED, eventId: `${e.eventId}-m` })),
    ...mutes,
    ...onlyTheirs.map((e) => makeEvent({ roomId: SHADOW_MUTED, ...e })),
  ];
  return [...plain, ...muted].sort((a, b) => a.occurredAt - b.occurredAt);
}

describe('stats over HTTP', () => {
  let w: World;
  beforeAll(async () => {
    w = await world();
    await w.produce([...mixedStream({ rooms: ['stats-b'], count: 600, seed: 5, startMs: T0 }), ...scenario('stats-b'), ...shadowTwins()]);
    const a = w.archiver();
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
  });
  afterAll(async () => {
    await w?.close();
  });

  it('the stats route answers the same over HTTP', async () => {
    const app = await appWith({ archive: archiveReaderFor(base, async () => w.ch) });
    const res = await app.inject({ url: `/v1/rooms/stats-b/stats?fromMs=${T0}&toMs=${T0 + 120_000}` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual(JSON.parse(JSON.stringify(await roomStats(w.ch, 'stats-b', { fromMs: T0, toMs: T0 + 120_000 }))));
    await app.close();
  });

  it('a shadow-muted user\'s comments do not change the anonymous stats: every figure, the whole room and a range', async () => {
    const app = await appWith({ archive: archiveReaderFor(base, async () => w.ch) });
    // The log does hold them (or this proves nothing).
    const rs = await w.ch.client.query({ query: `SELECT count() AS n FROM ${w.ch.database}.events WHERE room_id = {room:String} AND user_id IN ('ghost', 'half')`, query_params: { room: SHADOW_MUTED }, format: 'JSONEachRow' });
    expect(Number((await rs.json<{ n: string }>())[0]!.n)).toBe(7);
    for (const range of ['', `?fromMs=${T0}&toMs=${T0 + 90_000}`, `?fromMs=${T0 + 60_000}&toMs=${T0 + 4 * 3_600_000}`]) {
      const [plain, muted] = await Promise.all([SHADOW_PLAIN, SHADOW_MUTED].map((room) => app.inject({ url: `/v1/rooms/${room}/stats${range}` })));
      expect(plain!.statusCode, plain!.body).toBe(200);
      expect(muted!.statusCode, muted!.body).toBe(200);
      const figures = (body: Record<string, unknown>) => ({ ...body, room: undefined, sql: undefined });
      expect(figures(muted!.json()), `stats${range}`).toEqual(figures(plain!.json()));
      expect(JSON.stringify(muted!.json().topChatters)).not.toMatch(/ghost|"half"/);
    }
    await app.close();
  });

  it('the tally timeline of a replay window: reactions per emoji per second of video time, as many as the archive holds', async () => {
    const app = await appWith({ archive: archiveReaderFor(base, async () => w.ch) });
    const whole = await app.inject({ url: `/v1/rooms/stats-b/replay/tallies?fromMs=-3600000&toMs=${23 * 3_600_000}` });
    expect(whole.statusCode, whole.body).toBe(200);
    const t = whole.json<{ seconds: { second: number; counts: Record<string, number> }[]; totals: Record<string, number> }>();
    const stats = await roomStats(w.ch, 'stats-b');
    expect(Object.values(t.totals).reduce((a, b) => a + b, 0)).toBe(stats.totals.reactions);
    expect(stats.totals.reactions).toBeGreaterThan(0);
    expect(t.totals).toEqual(Object.fromEntries(stats.topEmojis.map((e) => [e.emoji, e.count])));
    // Buckets are whole seconds, in order, and add up to the totals.
    expect(t.seconds.every((b, i) => b.second % 1000 === 0 && (i === 0 || b.second > t.seconds[i - 1]!.second))).toBe(true);
    const summed: Record<string, number> = {};
    for (const b of t.seconds) for (const [e, n] of Object.entries(b.counts)) summed[e] = (summed[e] ?? 0) + n;
    expect(summed).toEqual(t.totals);
    // A window is a window: the first second alone holds only that second's reactions.
    const first = t.seconds[0]!;
    const one = (await app.inject({ url: `/v1/rooms/stats-b/replay/tallies?fromMs=${first.second}&toMs=${first.second + 1000}` })).json<{ seconds: unknown[]; totals: Record<string, number> }>();
    expect(one.seconds).toEqual([first]);
    expect((await app.inject({ url: '/v1/rooms/stats-b/replay/tallies?fromMs=0&toMs=90000000' })).json()).toMatchObject({ code: 'ERR_RANGE_INVALID' });
    await app.close();
  });

});

/**
 * Gifts (issue 17, item 1) in the archive: every replay view shows each gift
 * at its place on the timeline (its video offset, else its event time minus
 * the room's origin), and the stats add gift value per minute and the top
 * gifters, whose SQL gives the same figures.
 */
describe('gifts in replay and stats', () => {
  let w: World;
  let app: FastifyInstance;
  const room = 'gift-scene';
  const gift = (id: string, userId: string, dt: number, videoOffsetMs: number | null, giftId: string, count: number, unitValue: number): RoomEvent =>
    makeEvent({ eventId: id, roomId: room, actor: { userId, role: 'viewer' }, occurredAt: T0 + dt, videoOffsetMs, payload: { type: 'GiftSent', giftId, name: giftId, count, unitValue, value: count * unitValue } });
  // g2 has no video offset: placed by its event time. alice (g3) is muted now: her gift still shows, moderated too.
  const gifts = [gift('g1', 'ann', 1500, 1500, 'rose', 3, 10), gift('g2', 'bob', 2600, null, 'rocket', 1, 200), gift('g3', 'alice', 8500, 8500, 'rose', 1, 10)];
  /** The hand-worked timeline with the gifts in their places. */
  const withGifts = (expected: string[]) =>
    [...expected, '1500 gift g1', '2600 gift g2', '8500 gift g3'].map((s, i) => ({ s, i, at: Number(s.split(' ')[0]) })).sort((a, b) => a.at - b.at || a.i - b.i).map((x) => x.s);

  beforeAll(async () => {
    w = await world();
    await w.produce([...scenario(room), ...gifts].sort((a, b) => a.occurredAt - b.occurredAt));
    const a = w.archiver();
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    app = await appWith({ archive: archiveReaderFor(base, async () => w.ch) });
  });
  afterAll(async () => {
    await app?.close();
    await w?.close();
  });

  it.each([
    ['live', EXPECTED_LIVE],
    ['moderated', EXPECTED_MODERATED],
    ['sampled', EXPECTED_SAMPLED],
  ] as const)('%s view: every gift at its place on the timeline', async (view, expected) => {
    const res = await app.inject({ url: `/v1/rooms/${room}/replay?view=${view}&format=ndjson` });
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as ReplayItem | { kind: 'end' });
    expect((lines.slice(0, -1) as ReplayItem[]).map(describeItem)).toEqual(withGifts(expected));
  });

  it('a window of the timeline holds the gifts in it, with who sent what', async () => {
    const res = await app.inject({ url: `/v1/rooms/${room}/replay?view=live&fromMs=1400&toMs=2700` });
    expect(res.statusCode, res.body).toBe(200);
    const items = res.json<{ items: ReplayItem[] }>().items;
    expect(items.map(describeItem)).toEqual(['1500 gift g1', '2000 comment c2', '2500 comment c4', '2600 gift g2']);
    expect(items[0]).toEqual({ kind: 'gift', eventId: 'g1', userId: 'ann', giftId: 'rose', name: 'rose', count: 3, value: 30, occurredAt: T0 + 1500, videoOffsetMs: 1500, offset: expect.any(Number), partition: expect.any(Number), at: 1500 });
    expect(items[3]).toMatchObject({ kind: 'gift', eventId: 'g2', userId: 'bob', value: 200, videoOffsetMs: null, at: 2600 });
  });

  it('stats: gift value per minute and top gifters, and their SQL gives the figures (over HTTP: "the stats route answers the same")', async () => {
    const s = await roomStats(w.ch, room);
    expect(s.gifts).toEqual({
      minutes: [{ minute: T0, value: 240, gifts: 5 }],
      totalValue: 240,
      totalGifts: 5,
      topGifters: [
        { userId: 'bob', value: 200, gifts: 1 },
        { userId: 'ann', value: 30, gifts: 3 },
        { userId: 'alice', value: 10, gifts: 1 },
      ],
    });
    const top = (await runSql(w.ch, s.sql.topGifters)).rows as Record<string, unknown>[];
    expect(top.map((r) => [r.user_id, Number(r.value_n)])).toEqual([['bob', 200], ['ann', 30], ['alice', 10]]);
    const perMinute = (await runSql(w.ch, s.sql.giftsPerMinute)).rows as Record<string, unknown>[];
    expect(perMinute.map((r) => [Number(r.minute_ms), Number(r.value_n), Number(r.gifts_n)])).toEqual([[T0, 240, 5]]);
  });
});

/**
 * The whole gateway (buildGateway: its parsers, validators and error handler)
 * over the archive, with no processor running: Redis holds none of these
 * comments, so pins and deletions can only find them in the archive.
 */
describe('the gateway over the archive: number ranges, and pins and deletions of archived comments', () => {
  let w: World;
  let app: FastifyInstance;
  let deps: GatewayDeps;
  let sign: ReturnType<typeof tokenSigner>;
  const room = 'archived-room';
  const other = 'archived-other';
  const alice = { userId: 'alice', role: 'viewer' } as const;
  const seed: RoomEvent[] = [
    makeEvent({ eventId: 'old-c1', roomId: room, actor: alice, occurredAt: T0, videoOffsetMs: 1000, payload: comment('from the archive') }),
    makeEvent({ eventId: 'old-c2', roomId: room, actor: alice, occurredAt: T0 + 1000, videoOffsetMs: 2000, payload: comment('mine, and old') }),
    makeEvent({ eventId: 'old-c3', roomId: room, actor: alice, occurredAt: T0 + 2000, videoOffsetMs: 3000, payload: comment('not yours') }),
    makeEvent({ eventId: 'other-c1', roomId: other, actor: alice, occurredAt: T0, videoOffsetMs: 1000, payload: comment('another room') }),
    makeEvent({ eventId: 'old-r1', roomId: room, actor: alice, occurredAt: T0 + 3000, videoOffsetMs: 4000, payload: { type: 'ReactionAdded', emoji: 'heart', count: 1 } }),
  ];

  async function archiveAll(): Promise<void> {
    const a = w.archiver();
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
  }

  beforeAll(async () => {
    w = await world();
    await w.produce(seed);
    await archiveAll();
    const secret = `secret-of-${w.id}-0123456789abcdef`;
    const cfg = testConfig({ ...w.env, JWT_SECRET: secret });
    deps = await createGatewayDeps(cfg, { archive: archiveReaderFor(cfg, async () => w.ch) });
    app = await buildGateway(deps);
    sign = tokenSigner(secret, 600);
  });
  afterAll(async () => {
    await app?.close();
    await deps?.close();
    await w?.close();
  });

  const send = async (method: 'GET' | 'POST' | 'DELETE', url: string, o: { token?: string; body?: unknown } = {}) => {
    const res = await app.inject({ method, url, headers: o.token ? { authorization: `Bearer ${o.token}` } : {}, ...(o.body === undefined ? {} : { payload: o.body as object }) });
    return { status: res.statusCode, body: res.body ? (res.json() as Record<string, any>) : undefined };
  };
  const expectCode = (res: { status: number; body?: Record<string, any> }, status: number, code: string, what: string) =>
    expect([res.status, res.body?.code], `${what}: ${JSON.stringify(res.body)}`).toEqual([status, code]);

  it('refuses every out-of-range number of replay and stats with 400 ERR_VALIDATION, never a 500', async () => {
    // The two that answered 500 before (the archive client refuses numbers past 2^53; 1e400 was Infinity).
    expectCode(await send('GET', `/v1/rooms/${room}/replay?fromMs=9223372036854775807`), 400, 'ERR_VALIDATION', 'replay fromMs=2^63-1');
    expectCode(await send('GET', `/v1/rooms/${room}/stats?fromMs=1e400`), 400, 'ERR_VALIDATION', 'stats fromMs=1e400');
    const BAD = ['9223372036854775807', '9007199254740993', '1e3', '1e400', '-1e400', 'NaN', 'Infinity', '-Infinity', '1.5', '', ' 1', '0x10', 'abc'];
    const params: [string, string][] = [
      ['replay', 'fromMs'],
      ['replay', 'toMs'],
      ['replay', 'limit'],
      ['stats', 'fromMs'],
      ['stats', 'toMs'],
    ];
    for (const [route, param] of params) {
      for (const v of BAD) expectCode(await send('GET', `/v1/rooms/${room}/${route}?${param}=${encodeURIComponent(v)}`), 400, 'ERR_VALIDATION', `${route} ${param}=${v}`);
    }
    // Times stay within a Date's range, ±8.64e15 ms; a count is at least 1.
    for (const [route, param] of params.filter(([, p]) => p !== 'limit')) {
      for (const v of ['8640000000000001', '-8640000000000001']) expectCode(await send('GET', `/v1/rooms/${room}/${route}?${param}=${v}`), 400, 'ERR_VALIDATION', `${route} ${param}=${v}`);
    }
    for (const v of ['0', '-1']) expectCode(await send('GET', `/v1/rooms/${room}/replay?limit=${v}`), 400, 'ERR_VALIDATION', `replay limit=${v}`);
    expectCode(await send('GET', `/v1/rooms/${room}/replay?limit=9007199254740991`), 400, 'ERR_LIMIT_TOO_LARGE', 'a JSON page of 2^53 - 1 items');
    expectCode(await send('GET', `/v1/rooms/${room}/replay?cursor=%ED%A0%80`), 400, 'ERR_VALIDATION', 'a cursor that is not base64url');
    // The bounds themselves are ranges the archive answers.
    const edge = `fromMs=-8640000000000000&toMs=8640000000000000`;
    const replayed = await send('GET', `/v1/rooms/${room}/replay?${edge}`);
    expect(replayed.status, JSON.stringify(replayed.body)).toBe(200);
    expect(replayed.body!.items.map((i: { kind: string; eventId?: string }) => i.eventId)).toEqual(['old-c1', 'old-c2', 'old-c3']);
    const streamed = await app.inject({ url: `/v1/rooms/${room}/replay?${edge}&format=ndjson&limit=9007199254740991` });
    expect(streamed.statusCode).toBe(200);
    expect(streamed.body.trim().split('\n').at(-1)).toBe(JSON.stringify({ kind: 'end', items: 3, nextCursor: null }));
    const stats = await send('GET', `/v1/rooms/${room}/stats?${edge}`);
    expect(stats.status, JSON.stringify(stats.body)).toBe(200);
    expect(stats.body!.totals).toMatchObject({ comments: 3, reactions: 1 });
  });

  it('finds a comment by room and id in the archive, and nothing for another room or an unknown id', async () => {
    const reader = deps.archive!;
    expect(await reader.findComment(room, 'old-c1')).toEqual({ eventId: 'old-c1', userId: 'alice', text: 'from the archive', occurredAt: T0 });
    expect(await reader.findComment(room, 'other-c1')).toBeUndefined();
    expect(await reader.findComment(room, 'old-r1')).toBeUndefined(); // a reaction is not a comment
    expect(await reader.findComment(room, 'nope')).toBeUndefined();
  });

  it('pins an archived comment with its text, lets its author delete it, and refuses ids the room does not have', async () => {
    const mod = sign({ sub: 'mia', rooms: { [room]: 'moderator' } });
    const ali = sign({ sub: 'alice' });
    const bob = sign({ sub: 'bob' });
    expect((await send('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: 'old-c1' } })).status).toBe(202);
    expect((await send('DELETE', `/v1/rooms/${room}/comments/old-c2`, { token: ali })).status).toBe(202);
    expectCode(await send('DELETE', `/v1/rooms/${room}/comments/old-c3`, { token: bob }), 403, 'ERR_FORBIDDEN', 'someone else\'s old comment');
    expectCode(await send('DELETE', `/v1/rooms/${room}/comments/ghost`, { token: mod }), 404, 'ERR_COMMENT_NOT_FOUND', 'a moderator deletes a ghost');
    expectCode(await send('DELETE', `/v1/rooms/${room}/comments/ghost`, { token: ali }), 404, 'ERR_COMMENT_NOT_FOUND', 'a viewer deletes a ghost');
    expectCode(await send('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: 'other-c1' } }), 404, 'ERR_COMMENT_NOT_FOUND', 'pin a comment of another room');
    expectCode(await send('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: 'old-r1' } }), 404, 'ERR_COMMENT_NOT_FOUND', 'pin a reaction');
    expectCode(await send('DELETE', `/v1/rooms/${room}/comments/other-c1`, { token: ali }), 404, 'ERR_COMMENT_NOT_FOUND', 'her comment, in another room');

    // What reached the log: the pin with the archived text, the author's deletion, nothing else.
    await archiveAll();
    const rs = await w.ch.client.query({
      query: `SELECT kind, target_event_id, text, reason FROM ${w.cfg.clickhouse.database}.events WHERE room_id = {room:String} AND kind IN ('CommentPinned', 'CommentDeleted') ORDER BY kind`,
      query_params: { room },
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([
      { kind: 'CommentDeleted', target_event_id: 'old-c2', text: '', reason: 'author' },
      { kind: 'CommentPinned', target_event_id: 'old-c1', text: 'from the archive', reason: '' },
    ]);
  });

  it('answers 503 when the archive does not answer, rather than claiming the comment does not exist', async () => {
    const mod = sign({ sub: 'mia', rooms: { [room]: 'moderator' } });
    const up = deps.archive;
    // A server that does not answer: the real HTTP client fails to connect.
    const down = archiveReaderFor(testConfig({ CLICKHOUSE_URL: 'http://127.0.0.1:1', JWT_SECRET: deps.cfg.auth.jwtSecret! }))!;
    deps.archive = down;
    try {
      const res = await send('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: 'old-c3' } });
      expectCode(res, 503, 'ERR_ARCHIVE_UNAVAILABLE', 'pin while the archive is down');
    } finally {
      deps.archive = up;
      await down.close();
    }
  });
});
