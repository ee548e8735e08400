/**
 * Rebuilding the derived tables from the raw log (archive/views.ts): events
 * archived by the real archiver over several hours, the derived tables then
 * damaged (one truncated, one thinned out, one given rows of nothing) and
 * overcounted by duplicates written into the raw table from outside; after
 * the rebuild, the room stats (archive/stats.ts) and the chatters per hour
 * equal what is computed directly from the raw events table (FINAL), the
 * views keep feeding the rebuilt tables, a rebuild that raced the archiver
 * keeps the old tables, and the command line does the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClickHouse, type ClickHouse } from '../core/clickhouse.ts';
import { AppError } from '../core/errors.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { archiveKit, type ArchiveKit, type World } from '../test/archive-world.ts';
import { waitFor } from '../test/helpers.ts';
import { startScript } from '../test/processes.ts';
import { mixedStream } from '../test/streams.ts';
import { T0 } from './fixtures.ts';
import { roomStats, type RoomStats } from './stats.ts';
import { chunksOf, derivedTables, rebuildViews, type RebuildProgress } from './views.ts';

const ROOMS = ['v1', 'v2', 'v3'];
const HOUR = 3_600_000;

/** Six busy stretches an hour apart, with moderation verdicts beside the deletions, mutes and pins of the mix. */
function hours(seed: number, firstHour: number, count: number): RoomEvent[] {
  const out: RoomEvent[] = [];
  for (let h = firstHour; h < firstHour + count; h++) {
    const events = mixedStream({ rooms: ROOMS, count: 600, seed: seed + h, startMs: T0 + h * HOUR + 5 * 60_000 });
    events.forEach((e, i) => {
      out.push(e);
      if (e.payload.type === 'CommentPosted' && i % 17 === 0) {
        out.push({ ...e, eventId: `${e.eventId}-v`, actor: { userId: 'moderation', role: 'system' }, occurredAt: e.occurredAt + 20, videoOffsetMs: null, payload: { type: 'ModerationDecided', targetEventId: e.eventId, targetUserId: e.actor.userId, verdict: i % 2 ? 'hold' : 'allow', labels: [], score: 0.5, rule: i % 2 ? 'links' : '' } });
      }
    });
  }
  return out;
}

type N = number | string;
const rows = async <T>(ch: ClickHouse, query: string, params: Record<string, unknown> = {}): Promise<T[]> => (await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })).json<T>();

/** The stats of a room computed from the raw events table alone (one row per event), in the shape of roomStats: what everyone could see. */
async function rawStats(ch: ClickHouse, room: string): Promise<Omit<RoomStats, 'sql'>> {
  const db = ch.database;
  const where = `room_id = {room:String}`;
  // What everyone could see: not the comments posted under a shadow mute (the author's latest mute decides), nor shadow mutes.
  const visible = `SELECT e.occurred_at AS occurred_at, e.kind AS kind, e.reaction_count AS reaction_count, e.user_id AS user_id, e.verdict AS verdict
     FROM (SELECT * FROM ${db}.events FINAL WHERE ${where}) AS e
     ASOF LEFT JOIN (SELECT target_user_id AS muted_user, occurred_at AS muted_at, mute_kind AS muted_kind, until_at AS muted_until FROM ${db}.events FINAL WHERE ${where} AND kind = 'UserMuted') AS m
     ON e.user_id = m.muted_user AND e.occurred_at >= m.muted_at
     WHERE NOT (e.kind = 'CommentPosted' AND m.muted_kind = 'shadow' AND (m.muted_until IS NULL OR e.occurred_at < m.muted_until)) AND NOT (e.kind = 'UserMuted' AND e.mute_kind = 'shadow')`;
  const minutes = await rows<{ m: N; comments: N; reactions: N; chatters: N }>(
    ch,
    `SELECT toUnixTimestamp(toStartOfMinute(occurred_at)) * 1000 AS m, countIf(kind = 'CommentPosted') AS comments,
            sumIf(reaction_count, kind = 'ReactionAdded') AS reactions, uniqExactIf(user_id, kind = 'CommentPosted') AS chatters
     FROM (${visible}) GROUP BY m ORDER BY m`,
    { room },
  );
  const [t] = await rows<Record<string, N>>(
    ch,
    `SELECT count() AS events, countIf(kind = 'CommentPosted') AS comments, sumIf(reaction_count, kind = 'ReactionAdded') AS reactions,
            uniqExactIf(user_id, kind = 'CommentPosted') AS chatters, countIf(kind = 'CommentDeleted') AS deleted,
            countIf(kind = 'ModerationDecided' AND verdict = 'hold') AS held, countIf(kind = 'ModerationDecided') AS decisions, countIf(kind = 'UserMuted') AS muted
     FROM (${visible})`,
    { room },
  );
  const emojis = await rows<{ emoji: string; n: N }>(
    ch,
    `SELECT emoji, sum(reaction_count) AS n FROM ${db}.events FINAL WHERE ${where} AND kind = 'ReactionAdded' GROUP BY emoji ORDER BY n DESC, emoji LIMIT 10`,
    { room },
  );
  const fromMs = Number(minutes[0]!.m);
  const toMs = Number(minutes[minutes.length - 1]!.m) + 60_000;
  const comments = Number(t!.comments);
  const stats = await roomStats(ch, room); // top chatters: read from the events table by roomStats itself
  return {
    room,
    fromMs,
    toMs,
    minutes: minutes.map((m) => ({ minute: Number(m.m), comments: Number(m.comments), reactions: Number(m.reactions), chatters: Number(m.chatters) })),
    totals: { events: Number(t!.events), comments, reactions: Number(t!.reactions), uniqueChatters: Number(t!.chatters), commentsPerMinute: comments / ((toMs - fromMs) / 60_000) },
    topEmojis: emojis.map((e) => ({ emoji: e.emoji, count: Number(e.n) })),
    topChatters: stats.topChatters,
    gifts: stats.gifts, // read from the events table by roomStats itself, as top chatters
    moderation: { deleted: Number(t!.deleted), held: Number(t!.held), decisions: Number(t!.decisions), muted: Number(t!.muted), rate: comments > 0 ? (Number(t!.deleted) + Number(t!.held)) / comments : 0 },
  };
}

async function viewStats(ch: ClickHouse, room: string): Promise<Omit<RoomStats, 'sql'>> {
  const { sql: _sql, ...s } = await roomStats(ch, room);
  return s;
}

/** chatter_hour as readers sum it, and the same from the raw table. */
async function chatterHours(ch: ClickHouse): Promise<{ view: unknown[]; raw: unknown[] }> {
  const db = ch.database;
  const order = 'ORDER BY room_id, hour, user_id';
  return {
    view: await rows(ch, `SELECT room_id, hour, user_id, sum(comments) AS n FROM ${db}.chatter_hour GROUP BY room_id, hour, user_id ${order}`),
    raw: await rows(ch, `SELECT room_id, toStartOfHour(occurred_at) AS hour, user_id, count() AS n FROM ${db}.events FINAL WHERE kind = 'CommentPosted' GROUP BY room_id, hour, user_id ${order}`),
  };
}

async function expectViewsEqualRaw(ch: ClickHouse): Promise<void> {
  for (const room of ROOMS) expect(await viewStats(ch, room), room).toEqual(await rawStats(ch, room));
  const c = await chatterHours(ch);
  expect(c.view).toEqual(c.raw);
}

/** Damage of every kind a derived table can suffer, and duplicates written to the raw table from outside. */
async function damage(ch: ClickHouse): Promise<void> {
  const db = ch.database;
  await ch.client.command({ query: `TRUNCATE TABLE ${db}.room_minute` });
  await ch.client.command({ query: `ALTER TABLE ${db}.chatter_hour DELETE WHERE cityHash64(user_id) % 2 = 0 SETTINGS mutations_sync = 2` });
  // (No deduplication: the archiver's token sticks to the embedded session and would drop these.)
  await ch.client.command({ query: `INSERT INTO ${db}.moderation_minute SETTINGS insert_deduplicate = 0, insert_deduplication_token = '' VALUES ('v1', now(), 'deleted', 'moderator', '', 42)` });
  // Copies of existing events (same ids): the views count them again; the raw table, read FINAL, does not.
  await ch.client.command({ query: `INSERT INTO ${db}.events SETTINGS insert_deduplicate = 0, insert_deduplication_token = '' SELECT * FROM ${db}.events WHERE kind IN ('ReactionAdded', 'CommentDeleted') ORDER BY event_id LIMIT 40` });
}

describe('npm run archive -- rebuild-views', () => {
  let kit: ArchiveKit;
  let w: World;
  let ch: ClickHouse;
  beforeAll(async () => {
    kit = await archiveKit();
    w = await kit.world();
    ch = w.ch;
    await w.produce(hours(3, 0, 6));
    const a = w.archiver({ batchRows: 700 });
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
  });
  afterAll(async () => {
    await w?.close().catch(() => {}); // its handle was closed for the command line's turn
    await ch?.close().catch(() => {});
    await kit?.close();
  });

  it('knows the derived tables from ClickHouse itself: each view, its target and its SELECT', async () => {
    const tables = await derivedTables(ch);
    expect(tables.map((t) => [t.view, t.table])).toEqual([
      ['chatter_hour_mv', 'chatter_hour'],
      ['moderation_minute_mv', 'moderation_minute'],
      ['room_minute_mv', 'room_minute'],
      ['room_minute_reactions_mv', 'room_minute_reactions'],
    ]);
    expect(tables.every((t) => /^SELECT\b/.test(t.select) && t.select.includes(`${ch.database}.events`))).toBe(true);
  });

  it('recomputes every derived table from the raw log in chunks: the stats then equal those computed from the raw events', async () => {
    await expectViewsEqualRaw(ch); // as archived, before any damage
    await damage(ch);
    expect(await viewStats(ch, 'v1')).not.toEqual(await rawStats(ch, 'v1'));
    const progress: RebuildProgress[] = [];
    let started: { total: number; chunks: number } | undefined;
    const r = await rebuildViews(ch, { chunkRows: 1000, onStart: (total, _t, chunks) => (started = { total, chunks: chunks.length }), onProgress: (p) => void progress.push(p) });
    // Six busy hours, at most 1000 raw rows per chunk: a chunk per hour.
    expect(r.chunks).toBe(6);
    expect(started).toEqual({ total: r.events * 4, chunks: 6 });
    expect(progress.length).toBe(6 * 4);
    expect(progress.at(-1)!.done).toBe(started!.total);
    expect(progress.map((p) => p.done)).toEqual([...progress.map((p) => p.done)].sort((a, b) => a - b));
    await expectViewsEqualRaw(ch);
    expect(r.tables.map((t) => t.table).sort()).toEqual(['chatter_hour', 'moderation_minute', 'room_minute', 'room_minute_reactions']);
    expect(await rows(ch, `SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE '%rebuild%'`, { db: ch.database })).toEqual([]);

    // The views feed the rebuilt tables: more events archived afterwards are counted as before.
    await w.produce(hours(9, 7, 1));
    const a = w.archiver({ batchRows: 700 });
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive of the later events', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    await expectViewsEqualRaw(ch);
    expect((await chunksOf(ch, 1000)).length).toBe(7);
  });

  it('keeps the old tables when events were archived during the rebuild', async () => {
    const before = await viewStats(ch, 'v2');
    let archivedMeanwhile = false;
    const run = rebuildViews(ch, {
      chunkRows: 1000,
      onProgress: async () => {
        if (archivedMeanwhile) return;
        archivedMeanwhile = true;
        await ch.client.command({ query: `INSERT INTO ${ch.database}.events (event_id, room_id, kind, occurred_at, user_id, role, payload) SETTINGS insert_deduplicate = 0, insert_deduplication_token = '' VALUES ('late-1', 'v2', 'CommentPosted', toDateTime64(${(T0 + 7 * HOUR + 600_000) / 1000}, 3, 'UTC'), 'late', 'viewer', '{}')` });
      },
    });
    await expect(run).rejects.toSatisfy((err: unknown) => err instanceof AppError && err.code === 'ERR_REBUILD_RACED');
    expect(await rows(ch, `SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE '%rebuild%'`, { db: ch.database })).toEqual([]);
    // The old tables, fed by the views meanwhile: the late comment is counted.
    const after = await viewStats(ch, 'v2');
    expect(after.totals.comments).toBe(before.totals.comments + 1);
    await expectViewsEqualRaw(ch);
  });

  it('runs from the command line with a progress bar (the engine folder released by this process first)', async () => {
    await damage(ch);
    const database = ch.database;
    await ch.close();
    const p = startScript('archive/archive-cli.ts', ['rebuild-views', '--chunk-rows', '1000'], { CLICKHOUSE_DATA_DIR: kit.dataDir, CLICKHOUSE_DATABASE: database });
    const code = await p.exited;
    const out = p.output.join('\n');
    expect(code, out).toBe(0);
    expect(out).toMatch(/rebuilding chatter_hour, moderation_minute, room_minute, room_minute_reactions from \S+\.events \(embedded\): \d+ events in 7 chunks/);
    expect(out).toMatch(/rebuild-views \[[^\]]*\] 100% \| \w+ \| (\d+)\/\1 rows/);
    expect(out).toMatch(/done: 4 tables from \d+ events in 7 chunks/);
    ch = await openClickHouse({ dataDir: kit.dataDir, database });
    await expectViewsEqualRaw(ch);
  });
});
