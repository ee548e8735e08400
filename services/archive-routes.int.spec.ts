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
import type { GatewayDeps } from '../gateway/deps.ts';
import { replayPlugin } from '../gateway/replay.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { mixedStream } from '../test/streams.ts';
import { archiveReaderFor } from './root.ts';

const kit = await archiveKit();
const { base } = kit;
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
    const downCfg = testConfig({ CLICKHOUSE_URL: 'http://127.0.0.1:1' });
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

});
