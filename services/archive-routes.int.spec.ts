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
import { archiveKit, type World } from '../archive/testing.ts';
import { replayPlugin } from '../gateway/replay.ts';
import { buildGateway } from '../gateway/app.ts';
import { tokenSigner } from '../gateway/auth.ts';
import { createGatewayDeps, type GatewayDeps } from '../gateway/deps.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
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


describe('stats over HTTP', () => {
  let w: World;
  beforeAll(async () => {
    w = await world();
    await w.produce([...mixedStream({ rooms: ['stats-b'], count: 600, seed: 5, startMs: T0 }), ...scenario('stats-b')]);
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
    const cfg = testConfig({
      TOPIC_ROOM_EVENTS: w.id,
      TOPIC_DEAD_LETTER: `${w.id}.dlq`,
      REDIS_KEY_PREFIX: `${w.id}:`,
      PIPELINES_GROUP_PREFIX: `${w.id}.`,
      CLICKHOUSE_DATABASE: w.cfg.clickhouse.database,
      JWT_SECRET: secret,
    });
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
