/**
 * The sample is the same live and in replay: a busy room's log runs through
 * the live processors (a real child process, Redis) and through the archiver
 * into ClickHouse, and replay's `sampled` view over the same window gives
 * the very items the live sampled feed was given, one for one: the comments
 * kept (ids, order, every field), the tombstones of deletions and holds, the
 * shadow marks.
 *
 * The room is the busiest stretch of a real chat log when ../shared/data is
 * there, and always a generated dense stream (bursts, staff comments,
 * deletions, moderation holds, pins, a shadow mute), so the test runs in CI
 * too. Both rooms share one topic, one processor run and one archive.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type RedisClient } from '../core/redis.ts';
import { liveGroupOf, notifyChannel, type Notification } from '../pipelines/naming.ts';
import type { Delta, FeedEntry, Tombstone } from '../pipelines/projection.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { archiveKit, type ArchiveKit, type World } from '../test/archive-world.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startService } from '../test/processes.ts';
import { busiestStretch, prng } from '../test/streams.ts';
import { measureLag } from '../topics/lag.ts';
import { ArchiveReader } from './reader.ts';
import type { ReplayItem } from './replay.ts';

const T = 1_767_225_600_000;
const PER_SECOND = 4;
const MUTED = 'chatty';

/**
 * A dense room, generated: ~7 comments/s with bursts of 40-70/s, 1 % staff
 * (always kept), a moderator deleting now and then (kept comments or not),
 * moderation holds, pins, and a shadow mute of a chatty user for a minute. Video offsets are
 * the event times since T, so the timeline order is the log order and the
 * two sides compare as sequences.
 */
function denseStream(room: string): RoomEvent[] {
  const rnd = prng(16);
  const events: RoomEvent[] = [];
  const posted: string[] = [];
  const id = (n: number) => `01950000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
  let n = 0;
  const mod = { userId: 'mod', role: 'moderator' as const };
  for (let s = 0; s < 150; s++) {
    const burst = (s >= 30 && s < 45) || (s >= 90 && s < 100) || s === 120;
    const count = burst ? 40 + Math.floor(rnd() * 30) : 3 + Math.floor(rnd() * 8);
    const times = Array.from({ length: count }, () => s * 1000 + Math.floor(rnd() * 1000)).sort((a, b) => a - b);
    for (const ms of times) {
      const at = { roomId: room, occurredAt: T + ms, videoOffsetMs: ms };
      const r = rnd();
      if (s === 60 && posted.length > 0 && events.every((e) => e.payload.type !== 'UserMuted')) {
        events.push(makeEvent({ ...at, videoOffsetMs: null, eventId: id(++n), actor: { userId: 'moderation', role: 'system' }, payload: { type: 'UserMuted', userId: MUTED, untilMs: T + 120_000, kind: 'shadow', reason: 'flood' } }));
      }
      if (r < 0.02 && posted.length > 0) {
        const target = posted[Math.floor(rnd() * posted.length)]!;
        events.push(makeEvent({ ...at, videoOffsetMs: null, eventId: id(++n), actor: mod, payload: { type: 'CommentDeleted', targetEventId: target, deletedBy: 'mod', reason: 'test' } }));
      } else if (r < 0.025 && posted.length > 0) {
        const target = posted[Math.floor(rnd() * posted.length)]!;
        events.push(makeEvent({ ...at, videoOffsetMs: null, eventId: id(++n), actor: mod, payload: { type: 'CommentPinned', targetEventId: target, untilMs: T + ms + 20_000, text: 'pinned' } }));
      } else if (r < 0.03 && posted.length > 0) {
        const target = posted[Math.floor(rnd() * posted.length)]!;
        events.push(makeEvent({ ...at, videoOffsetMs: null, eventId: id(++n), actor: { userId: 'moderation', role: 'system' }, payload: { type: 'ModerationDecided', targetEventId: target, targetUserId: '', verdict: 'hold', labels: ['link'], score: 0.9, rule: 'links' } }));
      } else {
        const actor = r < 0.04 ? { userId: 'host', role: 'broadcaster' as const } : r < 0.1 ? { userId: MUTED, role: 'viewer' as const } : { userId: `u${Math.floor(rnd() * rnd() * 300)}`, role: 'viewer' as const };
        const e = makeEvent({ ...at, eventId: id(++n), actor, payload: comment(`dense ${n} ${'ha'.repeat(n % 7)}`, { color: Math.floor(rnd() * 0xffffff), mode: rnd() < 0.1 ? 'top' : 'scroll' }) });
        posted.push(e.eventId);
        events.push(e);
      }
    }
  }
  return events;
}

/** A feed item as both sides carry it (replay adds its timeline place, which live does not have). */
type Item = FeedEntry | Tombstone;
function fromReplay(i: ReplayItem): Item | undefined {
  if (i.kind === 'pin' || i.kind === 'gift') return undefined;
  const { at: _at, partition: _p, ...item } = i;
  return item;
}
function fromDelta(d: Delta): Item | undefined {
  if (d.t === 'comment') return d.entry;
  if (d.t === 'delete') return { kind: 'delete', offset: d.offset, eventId: d.eventId, deletionId: d.deletionId!, occurredAt: d.occurredAt!, reason: d.reason };
  return undefined;
}

/** The feed that a sequence of items leaves behind (as the projection's commands do: a tombstone replaces its comment). */
function feedOf(items: Item[]): Item[] {
  const feed = new Map<string, Item>();
  for (const i of items) {
    if (i.kind === 'comment') {
      if (!feed.has(i.eventId)) feed.set(i.eventId, i);
    } else {
      feed.delete(i.eventId);
      feed.set(`del:${i.deletionId}`, i);
    }
  }
  return [...feed.values()].sort((a, b) => a.offset - b.offset);
}

describe('the sampled feed, live and in replay', () => {
  let kit: ArchiveKit;
  let w: World;
  let redis: RedisClient;
  let subscriber: RedisClient;
  let reader: ArchiveReader;
  const rooms = new Map<string, RoomEvent[]>();
  /** What the live processor announced for the sampled projection, per room, in order. */
  const pushed = new Map<string, Item[]>();
  const fences = new Map<string, number>();
  let prefix = '';

  beforeAll(async () => {
    kit = await archiveKit();
    w = await kit.world();
    const real = busiestStretch('asoul', T);
    if (real) rooms.set('asoul', real);
    rooms.set('dense', denseStream('dense'));

    const env = {
      ...w.env,
      SAMPLED_PER_SECOND: String(PER_SECOND),
      FEED_MAX_ITEMS: '100000',
      MODERATION_ENABLED: 'false',
    };
    prefix = env.REDIS_KEY_PREFIX;
    const cfg = testConfig(env);
    redis = openRedis({ mode: 'single', url: cfg.redis.url, clusterNodes: cfg.redis.clusterNodes });
    subscriber = openRedis({ mode: 'single', url: cfg.redis.url, clusterNodes: cfg.redis.clusterNodes });
    const naming = { keyPrefix: prefix, groupPrefix: env.PIPELINES_GROUP_PREFIX };
    subscriber.on('smessage', (_channel: string, message: string) => {
      const n = JSON.parse(message) as Notification;
      if (n.projection !== 'sampled') return;
      const list = pushed.get(n.room) ?? [];
      for (const d of n.deltas) {
        const item = fromDelta(d);
        if (item) list.push(item);
      }
      pushed.set(n.room, list);
      fences.set(n.room, n.offset);
    });
    for (const room of rooms.keys()) await subscriber.ssubscribe(notifyChannel(naming, room));

    await w.produce([...rooms.values()].flat());
    const archiver = w.archiver({ batchRows: 2000 });
    await archiver.start();
    const proc = await startService(['pipelines', 'run'], env);
    const group = liveGroupOf(naming);
    try {
      await waitFor(async () => [...(await measureLag(kit.admin, group, w.id)).values()].every((x) => x === 0), { what: 'the live processors to apply the log', timeoutMs: 120_000, intervalMs: 300 });
    } finally {
      await proc.stop();
    }
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 120_000, intervalMs: 300 });
    await archiver.stop();
    // Every effect was announced with the room's fence: wait until the last one arrived.
    for (const room of rooms.keys()) {
      const fence = Number(await redis.hget(`${prefix}sampled:v1:{${room}}:meta`, 'fence'));
      await waitFor(() => fences.get(room) === fence, { what: `the last notification of ${room} (fence ${fence})`, timeoutMs: 15_000 });
    }
    reader = new ArchiveReader({ clickhouse: async () => w.ch, perSecond: cfg.pipelines.sampledPerSecond, maxItems: cfg.pipelines.feedMaxItems, chunkRows: 500, cursorKey: Buffer.from('same-sample') });
  }, 300_000);

  afterAll(async () => {
    subscriber?.disconnect();
    redis?.disconnect();
    await w?.close();
    await kit?.close();
  });

  async function replayed(room: string, q: { fromMs?: number; toMs?: number; viewer?: string | null; limit?: number } = {}): Promise<ReplayItem[]> {
    const items: ReplayItem[] = [];
    let cursor: string | undefined;
    do {
      let next: string | null = null;
      for await (const line of reader.replay({ room, view: 'sampled', nowMs: T + 3_600_000, ...q, cursor })) {
        if (line.type === 'item') items.push(line.item as ReplayItem);
        else next = line.nextCursor;
      }
      cursor = next ?? undefined;
    } while (cursor);
    return items;
  }

  async function liveFeed(room: string): Promise<Item[]> {
    const flat = await redis.zrange(`${prefix}sampled:v1:{${room}}:z`, '0', '-1');
    return flat.map((m) => JSON.parse(m) as Item);
  }

  it('replay gives the items the live sampled feed was given, one for one (every room)', async () => {
    for (const [room, events] of rooms) {
      const live = pushed.get(room) ?? [];
      const comments = events.filter((e) => e.payload.type === 'CommentPosted').length;
      const kept = live.filter((i) => i.kind === 'comment').length;
      expect(kept, room).toBeGreaterThan(100);
      expect(kept, room).toBeLessThan(comments / 2);
      if (room === 'dense') {
        expect(live.some((i) => i.kind === 'comment' && i.shadow)).toBe(true);
        expect(live.some((i) => i.kind === 'delete' && i.reason === 'test')).toBe(true);
        expect(live.some((i) => i.kind === 'delete' && i.reason.startsWith('moderation:hold'))).toBe(true);
        expect(events.some((e) => e.payload.type === 'CommentPinned')).toBe(true);
      }
      // The muted user sees their own comments (marked shadow); anyone else does not see them.
      const asMuted = (await replayed(room, { viewer: MUTED })).map(fromReplay).filter((i) => i !== undefined);
      expect(asMuted, room).toEqual(live);
      const anonymous = (await replayed(room)).map(fromReplay).filter((i) => i !== undefined);
      expect(anonymous, room).toEqual(live.filter((i) => i.kind !== 'comment' || !i.shadow));
      console.log(`${room}: live and replay kept the same ${kept} of ${comments} comments (K = ${PER_SECOND}/s), ${live.length - kept} tombstones`);
    }
  });

  it('the sampled feed in Redis is what the replayed items leave behind', async () => {
    for (const room of rooms.keys()) {
      const items = (await replayed(room, { viewer: MUTED })).map(fromReplay).filter((i) => i !== undefined);
      expect(await liveFeed(room), room).toEqual(feedOf(items));
    }
  });

  it('a window in the middle, page by page, is that part of the whole', async () => {
    const room = 'dense';
    const whole = await replayed(room);
    const [fromMs, toMs] = [40_000, 95_000];
    const window = await replayed(room, { fromMs, toMs, limit: 97 });
    expect(window.length).toBeGreaterThan(97);
    expect(window).toEqual(whole.filter((i) => i.at >= fromMs && i.at < toMs));
  });
});
