/**
 * The archive against the real Kafka and registry and a real (embedded)
 * ClickHouse, in process: ClickHouse failing and recovering, a restart between
 * insert and commit, replay against the hand-worked views, stats
 * against counts from the raw log, the documented SQL, and the same queries
 * through the server code path (a client bound to a database by parameter,
 * 64-bit integers quoted, no session state) with the embedded connection
 * plugged into it.
 *
 * One embedded data directory for the file (one engine per process); each
 * test has its own database, topic and consumer group.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';
import path from 'node:path';
import { createClient, type ClickHouseClient, type ClickHouseClientConfigOptions } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClickHouse, type ClickHouse } from '../core/clickhouse.ts';
import { REPO_ROOT } from '../core/config.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { archiveKit, type World } from '../test/archive-world.ts';
import { waitFor } from '../test/helpers.ts';
import { startScript } from '../test/processes.ts';
import { mixedStream, SHARED_DATA } from '../test/streams.ts';
import type { Archiver } from './archiver.ts';
import { NOW, scenario, T0 } from './fixtures.ts';
import { readChatLines, roomIdFor } from './import.ts';
import { ClickHouseReplaySource, replay, type ReplayItem } from './replay.ts';
import { runSql } from './sql.ts';
import { floorMinute, roomStats, type RoomStats } from './stats.ts';

const kit = await archiveKit();
const { dataDir } = kit;
const world = () => kit.world();
afterAll(() => kit.close());

const num = async (ch: ClickHouse, query: string): Promise<number> => {
  const rs = await ch.client.query({ query, format: 'JSONEachRow' });
  const [row] = await rs.json<Record<string, unknown>>();
  return Number(Object.values(row ?? {})[0]);
};

/** Wraps a handle so that inserts into `events` fail as the test says (before or after they land). */
function flaky(ch: ClickHouse, plan: (n: number) => 'ok' | 'refuse' | 'lose-ack' | 'lose-ack-and-stop', onStop?: () => void): ClickHouse {
  let n = 0;
  const insert: ClickHouseClient['insert'] = async (params) => {
    if (!String(params.table).endsWith('.`events`') && !String(params.table).endsWith('.events')) return ch.client.insert(params);
    const what = plan(++n);
    if (what === 'refuse') throw new Error('connect ECONNREFUSED 127.0.0.1:8123');
    const r = await ch.client.insert(params);
    if (what === 'lose-ack') throw new Error('socket hang up');
    if (what === 'lose-ack-and-stop') {
      onStop?.();
      throw new Error('socket hang up (and the process died)');
    }
    return r;
  };
  return { ...ch, client: new Proxy(ch.client, { get: (t, k) => (k === 'insert' ? insert : Reflect.get(t, k, t)) }) };
}

describe('the archiver', () => {
  it('backs off while ClickHouse refuses inserts or loses their acknowledgement, then catches up: nothing lost, nothing doubled', async () => {
    const w = await world();
    const events = mixedStream({ rooms: ['r1', 'r2', 'r3', 'r4', 'r5'], count: 3000, seed: 21 });
    // Down for the first three attempts; the 4th lands but its answer is lost; the 6th likewise.
    const a = w.archiver({ ch: flaky(w.ch, (n) => (n <= 3 ? 'refuse' : n === 4 || n === 6 ? 'lose-ack' : 'ok')) });
    await a.start();
    await w.produce(events);
    await waitFor(() => w.caughtUp(), { what: 'the archiver to catch up', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    expect(a.failures).toBeGreaterThanOrEqual(5);
    expect(a.logs.join('\n')).toMatch(/insert failed \(attempt 1\): connect ECONNREFUSED.*retrying in \d+ ms/);
    // Not even before merges is a row doubled: the retried blocks carried the same token.
    expect(await num(w.ch, `SELECT count() FROM ${w.ch.database}.events`)).toBe(events.length);
    expect(await num(w.ch, `SELECT uniqExact(event_id) FROM ${w.ch.database}.events`)).toBe(events.length);
    expect(await num(w.ch, `SELECT sum(events) FROM ${w.ch.database}.room_minute`)).toBe(events.length);
    await w.close();
  });

  it('a restart between insert and commit re-sends the same block: the tables and views each keep it once', async () => {
    const w = await world();
    const events = mixedStream({ rooms: ['r1', 'r2', 'r3', 'r4'], count: 2500, seed: 5 });
    await w.produce(events);
    // The 3rd insert lands, then the process "dies" before committing.
    let first: (Archiver & { logs: string[] }) | undefined = undefined;
    first = w.archiver({ ch: flaky(w.ch, (n) => (n === 3 ? 'lose-ack-and-stop' : 'ok'), () => void first!.stop()) });
    await first.start();
    await waitFor(() => first!.logs.some((l) => /insert failed.*process died/.test(l)), { what: 'the simulated crash', timeoutMs: 30_000 });
    await first.stop();
    const landed = await num(w.ch, `SELECT count() FROM ${w.ch.database}.events`);
    expect(landed).toBeLessThan(events.length);
    const second = w.archiver();
    await second.start();
    await waitFor(() => w.caughtUp(), { what: 'the restarted archiver to catch up', timeoutMs: 60_000, intervalMs: 200 });
    await second.stop();
    expect(second.logs.join('\n')).toMatch(/re-sending the insert of offsets \d+-\d+ begun before a restart/);
    expect(await num(w.ch, `SELECT count() FROM ${w.ch.database}.events`)).toBe(events.length);
    const comments = events.filter((e) => e.payload.type === 'CommentPosted').length;
    const reactions = events.reduce((a, e) => a + (e.payload.type === 'ReactionAdded' ? e.payload.count : 0), 0);
    expect(await num(w.ch, `SELECT sum(comments) FROM ${w.ch.database}.room_minute`)).toBe(comments);
    expect(await num(w.ch, `SELECT sum(reactions) FROM ${w.ch.database}.room_minute_reactions`)).toBe(reactions);
    expect(await num(w.ch, `SELECT sum(comments) FROM ${w.ch.database}.chatter_hour`)).toBe(comments);
    await w.close();
  });
});

/**
 * What the stats leave out, as the feed shows it: comments posted under a
 * shadow mute (the author's latest mute at or before the comment, in event
 * time, decides) and the shadow mutes themselves.
 */
function hiddenFromAll(events: RoomEvent[], room: string): Set<string> {
  const hidden = new Set<string>();
  const lastMute = new Map<string, { kind: string; untilMs: number | null }>();
  const isMute = (e: RoomEvent) => (e.payload.type === 'UserMuted' ? 0 : 1);
  for (const e of events.filter((x) => x.roomId === room).sort((a, b) => a.occurredAt - b.occurredAt || isMute(a) - isMute(b))) {
    const p = e.payload;
    if (p.type === 'UserMuted') {
      lastMute.set(p.userId, { kind: p.kind, untilMs: p.untilMs });
      if (p.kind === 'shadow') hidden.add(e.eventId);
    } else if (p.type === 'CommentPosted') {
      const m = lastMute.get(e.actor.userId);
      if (m?.kind === 'shadow' && (m.untilMs === null || e.occurredAt < m.untilMs)) hidden.add(e.eventId);
    }
  }
  return hidden;
}

/** Stats computed from the produced events themselves (the raw log), the way the API defines them: what everyone could see. */
function statsFromLog(events: RoomEvent[], room: string, fromMs?: number, toMs?: number): Omit<RoomStats, 'topChatters' | 'totals' | 'sql'> & { totals: Omit<RoomStats['totals'], 'commentsPerMinute'> } {
  const from = fromMs === undefined ? -Infinity : floorMinute(fromMs);
  const to = toMs === undefined ? Infinity : Math.ceil(toMs / 60_000) * 60_000;
  const hidden = hiddenFromAll(events, room);
  const inRange = events.filter((e) => e.roomId === room && e.occurredAt >= from && e.occurredAt < to && !hidden.has(e.eventId));
  const minutes = new Map<number, { comments: number; reactions: number; chatters: Set<string> }>();
  const emojis = new Map<string, number>();
  const m = { deleted: 0, held: 0, decisions: 0, muted: 0 };
  const giftMinutes = new Map<number, { value: number; gifts: number }>();
  const gifters = new Map<string, { value: number; gifts: number }>();
  for (const e of inRange) {
    const minute = floorMinute(e.occurredAt);
    const b = minutes.get(minute) ?? { comments: 0, reactions: 0, chatters: new Set<string>() };
    minutes.set(minute, b);
    const p = e.payload;
    if (p.type === 'CommentPosted') {
      b.comments++;
      b.chatters.add(e.actor.userId);
    } else if (p.type === 'ReactionAdded') {
      b.reactions += p.count;
      emojis.set(p.emoji, (emojis.get(p.emoji) ?? 0) + p.count);
    } else if (p.type === 'CommentDeleted') m.deleted++;
    else if (p.type === 'ModerationDecided') {
      m.decisions++;
      if (p.verdict === 'hold') m.held++;
    } else if (p.type === 'UserMuted') m.muted++;
    else if (p.type === 'GiftSent') {
      const g = giftMinutes.get(minute) ?? { value: 0, gifts: 0 };
      giftMinutes.set(minute, { value: g.value + p.value, gifts: g.gifts + p.count });
      const u = gifters.get(e.actor.userId) ?? { value: 0, gifts: 0 };
      gifters.set(e.actor.userId, { value: u.value + p.value, gifts: u.gifts + p.count });
    }
  }
  const giftsSorted = [...giftMinutes].sort((a, b) => a[0] - b[0]).map(([minute, g]) => ({ minute, ...g }));
  const sorted = [...minutes].sort((a, b) => a[0] - b[0]);
  const comments = sorted.reduce((a, [, b]) => a + b.comments, 0);
  return {
    room,
    fromMs: fromMs === undefined ? (sorted[0]?.[0] ?? null) : from,
    toMs: toMs === undefined ? (sorted.length ? sorted[sorted.length - 1]![0] + 60_000 : null) : to,
    minutes: sorted.map(([minute, b]) => ({ minute, comments: b.comments, reactions: b.reactions, chatters: b.chatters.size })),
    totals: {
      events: inRange.length,
      comments,
      reactions: sorted.reduce((a, [, b]) => a + b.reactions, 0),
      uniqueChatters: new Set(inRange.filter((e) => e.payload.type === 'CommentPosted').map((e) => e.actor.userId)).size,
    },
    topEmojis: [...emojis].map(([emoji, count]) => ({ emoji, count })).sort((a, b) => b.count - a.count || (a.emoji < b.emoji ? -1 : 1)).slice(0, 10),
    moderation: { ...m, rate: comments > 0 ? (m.deleted + m.held) / comments : 0 },
    gifts: {
      minutes: giftsSorted,
      totalValue: giftsSorted.reduce((a, g) => a + g.value, 0),
      totalGifts: giftsSorted.reduce((a, g) => a + g.gifts, 0),
      topGifters: [...gifters]
        .map(([userId, g]) => ({ userId, ...g }))
        .sort((a, b) => b.value - a.value || (a.userId < b.userId ? -1 : 1))
        .slice(0, 10),
    },
  };
}

/** The gifts statsStream sends (value of one each), chosen so several gifters tie on value. */
const STATS_GIFTS = [
  { giftId: 'rose', name: 'Rose', unitValue: 10 },
  { giftId: 'cake', name: 'Cake', unitValue: 50 },
  { giftId: 'rocket', name: 'Rocket', unitValue: 200 },
];

/** A stream with every kind of moderation action, and gifts, over several minutes and rooms. */
function statsStream(rooms: string[]): RoomEvent[] {
  const events = mixedStream({ rooms, count: 4000, seed: 77, startMs: T0 });
  const extra: RoomEvent[] = [];
  events.forEach((e, i) => {
    if (e.payload.type === 'CommentPosted' && i % 17 === 0) {
      const g = STATS_GIFTS[i % STATS_GIFTS.length]!;
      const count = 1 + (i % 3);
      extra.push({ ...e, eventId: `${e.eventId}-g`, occurredAt: e.occurredAt + 30, clientMsgId: null, payload: { type: 'GiftSent', ...g, count, value: count * g.unitValue } });
    }
    if (e.payload.type === 'CommentPosted' && i % 23 === 0) {
      extra.push({ ...e, eventId: `${e.eventId}-v`, actor: { userId: 'moderation', role: 'system' }, occurredAt: e.occurredAt + 50, videoOffsetMs: null, payload: { type: 'ModerationDecided', targetEventId: e.eventId, targetUserId: e.actor.userId, verdict: i % 2 ? 'hold' : 'allow', labels: [], score: 0.5, rule: i % 2 ? 'links' : '' } });
    }
  });
  return [...events, ...extra].sort((a, b) => a.occurredAt - b.occurredAt);
}

describe('stats and documented SQL', () => {
  let w: World;
  let events: RoomEvent[];
  const rooms = ['demo', 'stats-a', 'stats-b'];
  beforeAll(async () => {
    w = await world();
    events = statsStream(rooms);
    await w.produce([...events, ...scenario('demo')]);
    const a = w.archiver({ batchRows: 700 });
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
  });
  afterAll(async () => {
    await w?.close();
  });

  it('stats equal the counts computed from the raw log, whole and for a range', async () => {
    const all = [...events, ...scenario('demo')];
    for (const room of rooms) {
      const s = await roomStats(w.ch, room);
      const { commentsPerMinute, ...totals } = s.totals;
      expect({ ...s, totals, topChatters: undefined, sql: undefined }).toEqual({ ...statsFromLog(all, room), topChatters: undefined });
      // The SQL shown beside each figure gives that figure when pasted into `npm run sql`.
      const [pasted] = (await runSql(w.ch, s.sql.totals)).rows as Record<string, unknown>[];
      expect(Number(pasted!.comments_n)).toBe(s.totals.comments);
      expect(Number(pasted!.chatters_n)).toBe(s.totals.uniqueChatters);
      expect(((await runSql(w.ch, s.sql.minutes)).rows as Record<string, unknown>[]).map((r) => [Number(r.comments_n), Number(r.chatters_n)])).toEqual(s.minutes.map((x) => [x.comments, x.chatters]));
      expect(Number(((await runSql(w.ch, s.sql.moderation)).rows as Record<string, unknown>[]).find((r) => r.action === 'muted')?.n ?? 0)).toBe(s.moderation.muted);
      expect(((await runSql(w.ch, s.sql.topChatters)).rows as Record<string, unknown>[]).map((r) => r.user_id)).toEqual(s.topChatters.map((c) => c.userId));
      expect(commentsPerMinute).toBeCloseTo(totals.comments / ((s.toMs! - s.fromMs!) / 60_000), 6);
      expect(s.moderation.held).toBeGreaterThan(0);
      expect(s.moderation.deleted).toBeGreaterThan(0);
      // Gifts: value per minute and top gifters, and their SQL gives the figures shown.
      expect(s.gifts.totalValue).toBeGreaterThan(0);
      expect(s.gifts.topGifters.length).toBeGreaterThan(1);
      const giftRows = (await runSql(w.ch, s.sql.giftsPerMinute)).rows as Record<string, unknown>[];
      expect(giftRows.map((r) => Number(r.value_n))).toEqual(s.gifts.minutes.map((g) => g.value));
      expect(((await runSql(w.ch, s.sql.topGifters)).rows as Record<string, unknown>[]).map((r) => [r.user_id, Number(r.value_n)])).toEqual(s.gifts.topGifters.map((g) => [g.userId, g.value]));
    }
    const fromMs = T0 + 61_234;
    const toMs = T0 + 150_000;
    const s = await roomStats(w.ch, 'stats-a', { fromMs, toMs });
    const { commentsPerMinute: _c, ...totals } = s.totals;
    expect({ ...s, totals, topChatters: undefined, sql: undefined }).toEqual({ ...statsFromLog(all, 'stats-a', fromMs, toMs), topChatters: undefined });
    // Top chatters: exact over the widened range, leaving out comments posted
    // under a shadow mute (the author's latest mute before the comment decides).
    const counts = new Map<string, number>();
    const lastMute = new Map<string, { kind: string; untilMs: number | null }>();
    let shadowed = 0;
    for (const e of [...all].sort((a, b) => a.occurredAt - b.occurredAt)) {
      if (e.roomId !== 'stats-a') continue;
      const p = e.payload;
      if (p.type === 'UserMuted') lastMute.set(p.userId, { kind: p.kind, untilMs: p.untilMs });
      if (p.type !== 'CommentPosted' || e.occurredAt < s.fromMs! || e.occurredAt >= s.toMs!) continue;
      const m = lastMute.get(e.actor.userId);
      if (m?.kind === 'shadow' && (m.untilMs === null || e.occurredAt < m.untilMs)) {
        shadowed++;
        continue;
      }
      counts.set(e.actor.userId, (counts.get(e.actor.userId) ?? 0) + 1);
    }
    expect(shadowed, 'the stream has comments under shadow mutes').toBeGreaterThan(0);
    const top = [...counts].map(([userId, comments]) => ({ userId, comments })).sort((a, b) => b.comments - a.comments || (a.userId < b.userId ? -1 : 1)).slice(0, 10);
    expect(s.topChatters).toEqual(top);
  });

  it('every query in docs/analytics.md runs (against room demo)', async () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'analytics.md'), 'utf8');
    const queries = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(queries.length).toBeGreaterThanOrEqual(10);
    let withRows = 0;
    for (const q of queries) {
      const r = await runSql(w.ch, q).catch((err: Error) => {
        throw new Error(`docs query failed: ${err.message}\n${q}`);
      });
      expect(r.returnsRows, q).toBe(true);
      if (r.rows.length > 0) withRows++;
    }
    // All but "today" (the test data is in 2026-01-01) return rows.
    expect(withRows).toBeGreaterThanOrEqual(queries.length - 1);
  });

  it('the same queries through the embedded handle and the server code path give the same answers', async () => {
    // The server path: database bound by parameter (the embedded engine ignores it, so
    // every statement must name its database), 64-bit integers quoted in JSON as a server
    // does, no session state shared with the embedded handle.
    const { createChdbConnection } = await import('chdb/connection');
    // (Typed as in core/clickhouse.ts: chDB declares the connection against its own copy of client-common.)
    const connection = createChdbConnection({ path: path.resolve(dataDir) }) as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>;
    const serverClient = createClient({ connection, database: w.ch.database, clickhouse_settings: { output_format_json_quote_64bit_integers: 1 } });
    const server: ClickHouse = { client: serverClient, mode: 'server', database: w.ch.database, close: () => serverClient.close() };
    expect((await (await serverClient.query({ query: 'SELECT currentDatabase() AS db, toUInt64(1) AS one', format: 'JSONEachRow' })).json())[0]).toEqual({ db: 'default', one: '1' });

    // (The SQL shown names each side's own database.)
    const figures = async (ch: typeof server, room: string) => ({ ...(await roomStats(ch, room, { fromMs: T0, toMs: T0 + 600_000 })), sql: undefined });
    for (const room of rooms) expect(await figures(server, room)).toEqual(await figures(w.ch, room));
    for (const view of ['live', 'moderated', 'sampled'] as const) {
      const run = async (ch: ClickHouse) => {
        const out = [];
        for await (const o of replay(new ClickHouseReplaySource(ch), { room: 'demo', view, limit: 300, perSecond: 5, maxItems: 500, nowMs: NOW, chunkRows: 400 })) out.push(o);
        return out;
      };
      expect(await run(server)).toEqual(await run(w.ch));
    }

    // And the archiver itself through the server path: more events, inserted over it, read over both.
    const more = mixedStream({ rooms: ['via-server'], count: 800, seed: 8, startMs: T0 + 3_600_000 });
    await w.produce(more);
    const a = w.archiver({ ch: server });
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archiver on the server path', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    expect({ ...(await roomStats(w.ch, 'via-server')), sql: undefined }).toEqual({ ...(await roomStats(server, 'via-server')), sql: undefined });
    // Every event but what only one user saw (comments under a shadow mute, and the shadow mutes).
    const hidden = hiddenFromAll(more, 'via-server').size;
    expect(hidden).toBeGreaterThan(0);
    expect((await roomStats(w.ch, 'via-server')).totals.events).toBe(more.length - hidden);
    await server.close();
  });
});

describe('import', () => {
  /** Runs `npm run import` as a process against the world's topic. */
  async function importCli(w: World, args: string[]): Promise<string[]> {
    const p = startScript('archive/import-cli.ts', args, w.env);
    expect(await p.exited, p.output.join('\n')).toBe(0);
    return p.output;
  }

  async function archiveAll(w: World): Promise<void> {
    const a = w.archiver({ batchRows: 5000 });
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
  }

  async function timeline(ch: ClickHouse, room: string): Promise<ReplayItem[]> {
    const items: ReplayItem[] = [];
    for await (const o of replay(new ClickHouseReplaySource(ch), { room, view: 'live', perSecond: 5, maxItems: 500, nowMs: Date.now(), chunkRows: 1000 })) if (o.type === 'item') items.push(o.item);
    return items;
  }

  it('simulates a live stream at 3x speed from a JSON Lines file, every room on one clock', async () => {
    const w = await world();
    const file = path.join(dataDir, `chat-${w.id}.jsonl.gz`);
    const lines = [];
    for (let i = 0; i < 60; i++) {
      lines.push({ room: 'Room A 一', offset_ms: i * 25, ts: null, user: `a${i % 7}`, text: `a-${i} 弾幕`, kind: 'comment', extra: { pos: i % 2 ? 'ue' : 'naka', size: 'big', color: 'red' } });
      lines.push({ room: 'nico:x1', offset_ms: 12 + i * 25, ts: 1_657_817_647_000 + i, user: null, text: `b-${i}`, kind: 'comment', extra: { mode: 4, size: 18, color: '#00ff00' } });
    }
    fs.writeFileSync(file, zlib.gzipSync(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
    const out = await importCli(w, [file, '--speed', '3']);
    expect(out.join('\n')).toMatch(/Room A 一 → room Room-A-[0-9a-f]{8}: 60 comments/);
    expect(out.join('\n')).toMatch(/import \[.*\] \d+% \| \d+\/124 events/); // the progress bar
    expect(out.join('\n')).toMatch(/done: 124 events/);
    await archiveAll(w);

    const roomA = roomIdFor('Room A 一');
    const a = await timeline(w.ch, roomA);
    expect(a.map((i) => (i.kind === 'comment' ? [i.at, i.text, i.mode, i.size, i.color, i.userId] : i.kind))).toEqual(
      lines.filter((l) => l.room === 'Room A 一').map((l, i) => [l.offset_ms, l.text, i % 2 ? 'top' : 'scroll', 'large', 0xff0000, l.user]),
    );
    // Paced by offset_ms at 3x: the 59 x 25 ms of the file took about 1475 / 3 ms of event time.
    const times = a.map((i) => i.occurredAt);
    expect(times[times.length - 1]! - times[0]!).toBeGreaterThanOrEqual(1475 / 3 - 50);
    expect(times[times.length - 1]! - times[0]!).toBeLessThan(1475);
    const b = await timeline(w.ch, 'nico:x1');
    expect(b.map((i) => (i.kind === 'comment' ? [i.at, i.mode, i.size, i.color, i.userId] : i.kind))).toEqual(
      lines.filter((l) => l.room === 'nico:x1').map((l) => [l.offset_ms, 'bottom', 'small', 0x00ff00, 'anonymous']),
    );
    await w.close();
  });

  const real = path.join(SHARED_DATA, 'bilibili_asoul_live.jsonl.gz');
  it.skipIf(!fs.existsSync(real))('loads a recorded stream as fast as possible; importing it twice keeps one copy of each event in the archive (skipped without ../shared/data)', async () => {
    const w = await world();
    const source = 'bili:2020.12.15 嘉然 今天和嘉然一起画画吧~';
    const args = [real, '--room', 'drawing', '--from-room', source, '--limit', '3000', '--as-fast-as-possible'];
    await importCli(w, args);
    await importCli(w, args);
    await archiveAll(w);
    const expected = (await readChatLines(real)).filter((l) => l.room === source).sort((x, y) => x.offset_ms - y.offset_ms).slice(0, 3000);
    const items = await timeline(w.ch, 'drawing');
    expect(items.map((i) => (i.kind === 'comment' ? [i.at, i.text] : i.kind))).toEqual(expected.map((l) => [l.offset_ms, l.text]));
    expect(await num(w.ch, `SELECT count() FROM ${w.ch.database}.events FINAL WHERE room_id = 'drawing'`)).toBe(3002);
    expect((await roomStats(w.ch, 'drawing')).totals.uniqueChatters).toBe(1); // this recording has no user ids: all "anonymous"
    await w.close();
  });
});

describe('commands', () => {
  it('npm run archiver -- migrate applies the migrations once; npm run sql prints a table, and says who holds a busy directory', async () => {
    const dir = path.join(dataDir, 'cli');
    const run = async (script: string, args: string[], env: Record<string, string> = { CLICKHOUSE_DATA_DIR: dir }) => {
      const p = startScript(script, args, env);
      return { code: await p.exited, out: p.output.join('\n') };
    };
    const first = await run('services/cli.ts', ['archiver', 'migrate']);
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/applied: 0001_events, 0002_views, 0003_event_id_index; already applied: none \(embedded, database danmaku\)/);
    const again = await run('services/cli.ts', ['archiver', 'migrate']);
    expect(again.out).toMatch(/applied: none; already applied: 0001_events, 0002_views, 0003_event_id_index/);

    const sql = await run('archive/sql-cli.ts', ["SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND name LIKE 'room_minute%' ORDER BY name"]);
    expect(sql.code, sql.out).toBe(0);
    expect(sql.out).toMatch(/│ name\s+│ engine\s+│/);
    expect(sql.out).toMatch(/│ room_minute\s+│ AggregatingMergeTree\s+│/);
    expect(sql.out).toMatch(/│ room_minute_reactions_mv\s+│ MaterializedView\s+│/);
    expect(sql.out).toMatch(/4 rows in [\d.]+ s \(embedded, database danmaku\)/);
    const cjk = await run('archive/sql-cli.ts', ['--json', "SELECT '弹幕' AS text, toUInt64(7) AS n"]);
    expect(cjk.out).toMatch(/\{"text":"弹幕","n":(7|"7")\}/);

    // While this test process holds a data directory, another process cannot open it.
    const holder = await openClickHouse({ dataDir, database: 'held' });
    try {
      const held = await run('archive/sql-cli.ts', ['SELECT 1'], { CLICKHOUSE_DATA_DIR: dataDir });
      expect(held.code).toBe(1);
      expect(held.out).toMatch(new RegExp(`held by another process \\(pid ${process.pid}`));
    } finally {
      await holder.close();
    }
  });
});
