/**
 * The ordered feed by time (GET /v1/rooms/:room/feed/window), wired as the
 * root wires it: the real processors (FEED_MAX_ITEMS=10) fill Redis, the real
 * archiver fills an embedded ClickHouse, and a real gateway answers from both.
 * A room has more comments than Redis keeps, so a window spans the archive
 * and Redis; the answer must equal exactly the comments the test wrote in the
 * window, in order, with deletions, holds, releases and a shadow mute as the
 * live feed has them — and say when it cannot be complete.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../gateway/app.ts';
import { tokenSigner } from '../gateway/auth.ts';
import { DanmakuClient } from '../gateway/client/client.ts';
import { createGatewayDeps, type GatewayDeps } from '../gateway/deps.ts';
import type { FeedWindowPage } from '../gateway/feed-window.ts';
import type { FeedResponse } from '../gateway/protocol.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { archiveKit, type ArchiveKit, type World } from '../test/archive-world.ts';
import { randomName, testConfig, waitFor } from '../test/helpers.ts';
import { archiveReaderFor } from './root.ts';
import { ServiceProcess } from './spawn.ts';

const N = 30;
const SHADY = 'shady';
const T0 = Date.now() - 3_600_000;
/** Event time of video offset 0: the room's StreamStarted (videoOffsetMs 0). */
const ORIGIN = T0 - 5_000;

let kit: ArchiveKit;
let w: World;
let processors: ServiceProcess;
const apps: FastifyInstance[] = [];
const depsList: GatewayDeps[] = [];
let url: string;
let bare: FastifyInstance;
const room = randomName('win');

// Event times are a permutation of the comments' log order, so time order is not log order;
// video offsets another, with every fifth comment without one (placed from the origin, as replay does).
// No two comments share a time or a video position, so the expected order needs no log positions.
const posted = Array.from({ length: N }, (_, i) =>
  makeEvent({
    roomId: room,
    eventId: `c${i}-${room}`,
    actor: { userId: i % 7 === 3 ? SHADY : `u${i % 3}`, role: 'viewer' },
    occurredAt: T0 + ((i * 7) % N) * 1000,
    videoOffsetMs: i % 5 === 0 ? null : ((i * 11) % N) * 1000 + 500,
    payload: comment(`comment ${i}`),
  }),
);
const id = (i: number) => posted[i]!.eventId;
const DELETED = [2, 27];
const HELD_RELEASED = 8;

const timeOf = (e: RoomEvent, by: 'event' | 'video') => (by === 'event' ? e.occurredAt : (e.videoOffsetMs ?? e.occurredAt - ORIGIN));

/** The comments a viewer is shown in [from, to], in time order, computed from what the test wrote. */
function expected(by: 'event' | 'video', from: number, to: number, viewer: string | null): string[] {
  return posted
    .map((e, i) => ({ e, i }))
    .filter(({ e, i }) => !DELETED.includes(i) && (e.actor.userId !== SHADY || viewer === SHADY))
    .filter(({ e }) => timeOf(e, by) >= from && timeOf(e, by) <= to)
    .sort((a, b) => timeOf(a.e, by) - timeOf(b.e, by))
    .map(({ e }) => e.eventId);
}

async function gateway(archive: boolean): Promise<{ app: FastifyInstance; url: string }> {
  const cfg = testConfig({ ...w.env, FEED_MAX_ITEMS: '10', CLICKHOUSE_DATABASE: w.cfg.clickhouse.database, JWT_SECRET: w.env.JWT_SECRET });
  const deps = await createGatewayDeps(cfg, archive ? { archive: archiveReaderFor(cfg, async () => w.ch) } : {});
  depsList.push(deps);
  const app = await buildGateway(deps);
  apps.push(app);
  return { app, url: await app.listen({ host: '127.0.0.1', port: 0 }) };
}

const feedOf = async (base: string, r: string) => (await (await fetch(`${base}/v1/rooms/${r}/feed?limit=500`)).json()) as FeedResponse;

/** Waits until the processors applied `last` (the room's last event) to Redis. */
async function applied(base: string, r: string, last: (f: FeedResponse) => boolean): Promise<void> {
  await waitFor(async () => last(await feedOf(base, r)), { what: `the feed of ${r} in Redis`, timeoutMs: 60_000, intervalMs: 100 });
}

async function windowPages(base: string, r: string, q: string, limit: number, token?: string): Promise<{ pages: FeedWindowPage[]; items: FeedWindowPage['items'] }> {
  const pages: FeedWindowPage[] = [];
  let after = '';
  for (;;) {
    const res = await fetch(`${base}/v1/rooms/${r}/feed/window?${q}&limit=${limit}${after ? `&after=${after}` : ''}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const body = (await res.json()) as FeedWindowPage;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.items.length).toBeLessThanOrEqual(limit);
    pages.push(body);
    if (!body.nextCursor) return { pages, items: pages.flatMap((p) => p.items) };
    after = body.nextCursor;
    if (pages.length > 100) throw new Error('too many pages');
  }
}

beforeAll(async () => {
  kit = await archiveKit();
  w = await kit.world();
  processors = new ServiceProcess(['processors'], { env: { ...w.env, FEED_MAX_ITEMS: '10', MODERATION_ENABLED: 'false' } });
  await processors.start();
  url = (await gateway(true)).url;
  bare = (await gateway(false)).app;

  // In log order (each produce awaited before the next): the stream's start and the shadow mute, the comments, then the removals and the release.
  const mod = { userId: 'mod', role: 'moderator' as const };
  await w.produce([makeEvent({ roomId: room, actor: { userId: 'host', role: 'broadcaster' }, occurredAt: ORIGIN, videoOffsetMs: 0, payload: { type: 'StreamStarted', title: 'window' } })]);
  await w.produce([makeEvent({ roomId: room, actor: { userId: 'moderation', role: 'system' }, occurredAt: T0 - 1000, payload: { type: 'UserMuted', userId: SHADY, untilMs: null, kind: 'shadow', reason: 'testing windows' } })]);
  for (const e of posted) await w.produce([e]);
  for (const i of DELETED) await w.produce([makeEvent({ roomId: room, actor: mod, occurredAt: T0 + 40_000, payload: { type: 'CommentDeleted', targetEventId: id(i), deletedBy: 'mod', reason: 'deleted' } })]);
  const c = posted[HELD_RELEASED]!;
  const cp = c.payload as Extract<RoomEvent['payload'], { type: 'CommentPosted' }>;
  await w.produce([makeEvent({ roomId: room, actor: { userId: 'moderation', role: 'system' }, occurredAt: T0 + 41_000, payload: { type: 'ModerationDecided', targetEventId: c.eventId, targetUserId: c.actor.userId, verdict: 'hold', labels: ['links'], score: 1, rule: 'links' } })]);
  const release = makeEvent({
    roomId: room,
    actor: mod,
    occurredAt: T0 + 42_000,
    payload: { type: 'CommentReleased', targetEventId: c.eventId, releasedBy: 'mod', authorId: c.actor.userId, authorRole: 'viewer', text: cp.text, mode: cp.mode, color: cp.color, size: cp.size, replyTo: null, postedAt: c.occurredAt, postedVideoOffsetMs: c.videoOffsetMs },
  });
  await w.produce([release]);
  await applied(url, room, (f) => f.events.some((e) => e.kind === 'comment' && e.eventId === c.eventId && e.released));
  const a = w.archiver();
  await a.start();
  await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
  await a.stop();
});

afterAll(async () => {
  for (const app of apps) await app.close().catch(() => undefined);
  for (const d of depsList) await d.close().catch(() => undefined);
  await processors?.stop();
  await w?.close();
  await kit?.close();
});

describe('feed window across Redis and the archive', () => {
  it('by event time: exactly the comments in the window, in order, paged, deleted ones left out, a released one once', async () => {
    const from = T0 + 3000;
    const to = T0 + 26_000;
    const want = expected('event', from, to, null);
    const { pages, items } = await windowPages(url, room, `from=${from}&to=${to}&by=event`, 4);
    expect(items.map((i) => i.eventId)).toEqual(want);
    expect(pages.length).toBe(Math.ceil(want.length / 4));
    expect(pages.every((p) => p.complete && p.incomplete === null)).toBe(true);
    // Both sides of the boundary: Redis keeps 10 items, the rest came from the archive.
    const oldest = pages[0]!.redisOldestOffset!;
    expect(oldest).toEqual(expect.any(Number));
    expect(items.some((i) => i.offset < oldest)).toBe(true);
    expect(items.some((i) => i.offset >= oldest)).toBe(true);
    // Both ends are inclusive (the window's ends are comment times).
    expect(want[0]).toBe(posted.find((e) => e.occurredAt === from)!.eventId);
    expect(want.at(-1)).toBe(posted.find((e) => e.occurredAt === to)!.eventId);
    // The held and released comment: once, from its release, at its own time.
    const released = items.filter((i) => i.eventId === id(HELD_RELEASED));
    expect(released).toEqual([expect.objectContaining({ released: true, t: posted[HELD_RELEASED]!.occurredAt, text: `comment ${HELD_RELEASED}` })]);
    expect(items.find((i) => i.eventId === id(1))).toMatchObject({ kind: 'comment', userId: 'u1', text: 'comment 1', occurredAt: posted[1]!.occurredAt, videoOffsetMs: posted[1]!.videoOffsetMs, t: posted[1]!.occurredAt });
    // The whole room, in one page, through the TS client.
    const client = new DanmakuClient({ baseUrl: url, room, autoConnect: false, route: false });
    const all = await client.window({ from: T0 - 10_000, to: T0 + 60_000, limit: 500 });
    client.close();
    expect(all.items.map((i) => i.eventId)).toEqual(expected('event', T0 - 10_000, T0 + 60_000, null));
    expect(all.nextCursor).toBeNull();
  });

  it('by video time: videoOffsetMs, or event time minus the origin for comments without one', async () => {
    const from = 2000;
    const to = 31_000;
    const want = expected('video', from, to, null);
    const { items, pages } = await windowPages(url, room, `from=${from}&to=${to}&by=video`, 5);
    expect(items.map((i) => i.eventId)).toEqual(want);
    expect(pages.every((p) => p.complete)).toBe(true);
    const noOffset = items.find((i) => i.videoOffsetMs === null)!;
    expect(noOffset.t).toBe(noOffset.occurredAt - ORIGIN);
    const oldest = pages[0]!.redisOldestOffset!;
    expect(items.some((i) => i.offset < oldest) && items.some((i) => i.offset >= oldest)).toBe(true);
  });

  it('a shadow-muted author\'s comments: never to an anonymous caller or another user, to the author on both sides of the boundary', async () => {
    const q = `from=${T0 - 10_000}&to=${T0 + 60_000}`;
    const shadyIds = posted.filter((e) => e.actor.userId === SHADY).map((e) => e.eventId);
    const anon = await windowPages(url, room, q, 7);
    expect(anon.items.filter((i) => shadyIds.includes(i.eventId))).toEqual([]);
    const signer = tokenSigner(w.env.JWT_SECRET, 600);
    const other = await windowPages(url, room, q, 7, signer({ sub: 'u1' }));
    expect(other.items.map((i) => i.eventId)).toEqual(expected('event', T0 - 10_000, T0 + 60_000, null));
    const own = await windowPages(url, room, q, 7, signer({ sub: SHADY }));
    expect(own.items.map((i) => i.eventId)).toEqual(expected('event', T0 - 10_000, T0 + 60_000, SHADY));
    const oldest = own.pages[0]!.redisOldestOffset!;
    const shown = own.items.filter((i) => shadyIds.includes(i.eventId));
    expect(shown.every((i) => i.shadow === true)).toBe(true);
    expect(shown.some((i) => i.offset < oldest) && shown.some((i) => i.offset >= oldest)).toBe(true);
  });

  it('without an archive: what Redis has, marked incomplete; a room Redis holds whole is complete', async () => {
    const from = T0 - 10_000;
    const to = T0 + 60_000;
    const res = await bare.inject({ url: `/v1/rooms/${room}/feed/window?from=${from}&to=${to}` });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<FeedWindowPage>();
    expect(body.complete).toBe(false);
    expect(body.incomplete).toMatchObject({ reason: 'no-archive' });
    const oldest = body.redisOldestOffset!;
    expect(body.items.length).toBeGreaterThan(0);
    expect(body.items.every((i) => i.offset >= oldest)).toBe(true);
    // Exactly the Redis part of the full answer.
    const full = await windowPages(url, room, `from=${from}&to=${to}`, 500);
    expect(body.items.map((i) => i.eventId)).toEqual(full.items.filter((i) => i.offset >= oldest).map((i) => i.eventId));

    // A small room (fewer items than FEED_MAX_ITEMS): Redis holds its whole feed, no archive needed.
    const small = randomName('win-small');
    const events = [3, 1, 2].map((k) => makeEvent({ roomId: small, actor: { userId: 'u', role: 'viewer' }, occurredAt: T0 + k * 1000, videoOffsetMs: k * 100, payload: comment(`s${k}`) }));
    for (const e of events) await w.produce([e]);
    await applied(url, small, (f) => f.events.length === 3);
    const s = (await bare.inject({ url: `/v1/rooms/${small}/feed/window?from=${T0}&to=${T0 + 10_000}` })).json<FeedWindowPage>();
    expect(s).toMatchObject({ complete: true, incomplete: null, nextCursor: null });
    expect(s.items.map((i) => i.text)).toEqual(['s1', 's2', 's3']);
    const v = (await bare.inject({ url: `/v1/rooms/${small}/feed/window?from=0&to=1000&by=video` })).json<FeedWindowPage>();
    expect(v.items.map((i) => i.text)).toEqual(['s1', 's2', 's3']);
  });

  it('an archive that has not caught up with Redis: incomplete, never silently partial', async () => {
    // The archiver is stopped: this room's events reach Redis, not the archive.
    const behind = randomName('win-behind');
    for (let i = 0; i < 14; i++) await w.produce([makeEvent({ roomId: behind, eventId: `b${i}-${behind}`, actor: { userId: 'u', role: 'viewer' }, occurredAt: T0 + i * 1000, payload: comment(`b${i}`) })]);
    await applied(url, behind, (f) => f.events.some((e) => e.eventId === `b13-${behind}`));
    const res = await fetch(`${url}/v1/rooms/${behind}/feed/window?from=${T0}&to=${T0 + 20_000}`);
    const body = (await res.json()) as FeedWindowPage;
    expect(res.status).toBe(200);
    expect(body).toMatchObject({ complete: false, incomplete: { reason: 'archive-behind' } });
    expect(body.items.map((i) => i.text)).toEqual(['b4', 'b5', 'b6', 'b7', 'b8', 'b9', 'b10', 'b11', 'b12', 'b13']);
  });

  it('refuses bad windows, limits and cursors with a code', async () => {
    const get = async (q: string) => {
      const res = await fetch(`${url}/v1/rooms/${room}/feed/window?${q}`);
      return [res.status, ((await res.json()) as { code: string }).code];
    };
    expect(await get(`from=${T0}&to=${T0}`)).toEqual([400, 'ERR_RANGE_INVALID']);
    expect(await get(`from=${T0}&to=${T0 - 1}`)).toEqual([400, 'ERR_RANGE_INVALID']);
    expect(await get(`from=0&to=${24 * 3600 * 1000 + 1}`)).toEqual([400, 'ERR_RANGE_INVALID']);
    expect(await get(`from=abc&to=10`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=1e3&to=10000`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`to=10`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=${-9e15}&to=10`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=0&to=10&limit=0`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=0&to=10&limit=501`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=0&to=10&by=wall`)).toEqual([400, 'ERR_VALIDATION']);
    expect(await get(`from=0&to=10&after=not-a-cursor`)).toEqual([400, 'ERR_CURSOR_INVALID']);
    const first = (await (await fetch(`${url}/v1/rooms/${room}/feed/window?from=${T0 - 10_000}&to=${T0 + 60_000}&limit=2`)).json()) as FeedWindowPage;
    expect(first.nextCursor).toEqual(expect.any(String));
    expect(await get(`from=${T0 - 10_001}&to=${T0 + 60_000}&limit=2&after=${first.nextCursor}`)).toEqual([400, 'ERR_CURSOR_MISMATCH']);
    expect(await get(`from=${T0 - 10_000}&to=${T0 + 60_000}&by=video&after=${first.nextCursor}`)).toEqual([400, 'ERR_CURSOR_MISMATCH']);
    // Documented in the OpenAPI.
    const docs = (await (await fetch(`${url}/docs/json`)).json()) as { paths: Record<string, { get?: { parameters?: { name: string }[] } }> };
    expect(docs.paths['/v1/rooms/{room}/feed/window']?.get?.parameters?.map((p) => p.name)).toEqual(expect.arrayContaining(['from', 'to', 'by', 'limit', 'after']));
  });
});
