/**
 * A repartition under live writes keeps every room's order and every
 * acknowledged event. A private world (processors with moderation, two
 * gateways, as real processes) takes comments in several rooms, each room
 * written by one sequential writer (so the order of its acknowledgements is
 * the room's order), through both gateways, while `repartition` grows the log
 * from 2 to 5 partitions. Then: every acknowledged comment is in its room's
 * feed exactly once, at the position its ack named, in acknowledgement order;
 * acks before the switch are in generation 0 below its sealed ends, acks after
 * are in generation 1; the epoch moved; a viewer connected through the
 * switch was resynced and ends with the same comments in the same order; and a
 * rebuild of the feed, reading both generations, gives the same feed.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { readFeed } from '../pipelines/read.ts';
import { rebuild } from '../pipelines/rebuild.ts';
import type { FeedItem } from '../pipelines/projection.ts';
import { startWorld, type World } from '../services/world.ts';
import { waitFor } from '../test/helpers.ts';
import type { ServerMessage } from '../gateway/protocol.ts';
import { SNAPSHOT_ITEMS } from '../gateway/push/hub.ts';
import { readGenerations, splitPosition } from './generations.ts';
import { murmur2Partition } from './kafka.ts';
import { repartition, type RepartitionResult } from './repartition.ts';

interface Acked {
  eventId: string;
  text: string;
  position: number;
  epoch: number;
}

let world: World;
let redis: RedisClient;
beforeAll(async () => {
  world = await startWorld({ prefix: 'repart', partitions: 2, gateways: 2, env: { LIMIT_COMMENTS: '100000', FEED_MAX_ITEMS: '20000' } });
  redis = openRedis({ ...redisOptions(world.cfg), name: 'repartition-spec' });
});
afterAll(async () => {
  redis?.disconnect();
  await world?.stop();
});

/** One sequential writer per room: each comment is acknowledged before the next is sent; every comment has its own author (nothing for moderation to flag). */
function roomWriter(room: string, n: number) {
  const acked: Acked[] = [];
  const refused: string[] = [];
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const text = `hello ${room} comment ${i}`;
      const token = world.token(`u-${room}-${i}`);
      const clientMsgId = `${room}-${i}`;
      // A 503 (nothing written) or a 409 (the same write in flight) is retried with the same clientMsgId.
      for (let attempt = 0; ; attempt++) {
        const g = world.gateways[(i + n) % world.gateways.length]!;
        const res = await fetch(`${g.url}/v1/rooms/${room}/comments`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ text, clientMsgId }),
        });
        const body = (await res.json()) as { eventId?: string; position?: { offset: number; epoch: number }; code?: string };
        if (res.status === 202) {
          acked.push({ eventId: body.eventId!, text, position: body.position!.offset, epoch: body.position!.epoch });
          break;
        }
        refused.push(`${res.status} ${body.code}`);
        if ((res.status !== 503 && res.status !== 409) || attempt > 50) throw new Error(`${room}: comment ${i} refused: ${res.status} ${JSON.stringify(body)}`);
      }
    }
  })();
  return {
    room,
    acked,
    refused,
    stop: () => {
      stop = true;
      return done;
    },
    done,
  };
}

/** A viewer of the ordered feed over the WebSocket: its view is the last snapshot plus the batches after it. */
function viewer(base: string, room: string) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/rooms/${room}/ws`);
  const messages: ServerMessage[] = [];
  let view: FeedItem[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as ServerMessage;
    messages.push(m);
    if (m.type === 'snapshot') view = m.items.filter((i) => i.kind === 'comment');
    else if (m.type === 'catchup') view = [...view, ...m.items.filter((i) => i.kind === 'comment' && i.offset > (view[view.length - 1]?.offset ?? -1))];
    else if (m.type === 'batch') for (const e of m.events) if (e.t === 'comment' && e.entry.offset > (view[view.length - 1]?.offset ?? -1)) view.push(e.entry);
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, messages, opened, view: () => view };
}

async function feedOf(room: string): Promise<FeedItem[]> {
  const naming = { keyPrefix: world.cfg.redis.keyPrefix, groupPrefix: world.cfg.pipelines.groupPrefix };
  return (await readFeed(redis, naming, room, { view: 'ordered', limit: 20000 })).items;
}

describe('npm run topics -- repartition', () => {
  it('grows the log under live writes, keeping every room\'s order and every acknowledged event', async () => {
    const tag = Date.now().toString(36);
    // Four rooms in each old partition (they spread over the new partitions as murmur2 puts them).
    const rooms: string[] = [];
    for (let i = 0; rooms.length < 8; i++) {
      const r = `rp-${tag}-${i}`;
      if (rooms.filter((x) => murmur2Partition(x, 2) === murmur2Partition(r, 2)).length < 4) rooms.push(r);
    }
    expect(new Set(rooms.map((r) => murmur2Partition(r, 5))).size).toBeGreaterThan(1);
    const watch = viewer(world.gateways[1]!.url, rooms[0]!);
    await watch.opened;
    await waitFor(() => watch.messages.some((m) => m.type === 'snapshot') || undefined, { what: 'the viewer\'s first snapshot' });

    const writers = rooms.map((r, i) => roomWriter(r, i));
    const epochBefore = await waitFor(() => (writers.every((w) => w.acked.length >= 5) ? writers[0]!.acked[0]!.epoch : undefined), { what: 'comments before the switch', timeoutMs: 30_000 });

    const lines: string[] = [];
    let result: RepartitionResult;
    try {
      result = await repartition({ cfg: world.cfg, partitions: 5, log: (m) => lines.push(m), timeoutMs: 60_000 });
    } catch (err) {
      await Promise.all(writers.map((w) => w.stop().catch(() => undefined)));
      throw new Error(`${(err as Error).message}\n${lines.join('\n')}`);
    }
    expect(result.from.generation).toBe(0);
    expect(result.to).toMatchObject({ generation: 1, topic: `${world.id}.g1`, partitions: 5 });
    // The gateways and the moderation processor wrote under a lease: all were waited for.
    expect(result.writers).toBeGreaterThanOrEqual(3);
    // The processors and moderation read generation 0 to its ends before the command returned.
    expect(result.readers.length).toBeGreaterThanOrEqual(2);

    // Writes go on in the new generation.
    const afterSwitch = writers.map((w) => w.acked.length);
    await waitFor(() => writers.every((w, i) => w.acked.length >= afterSwitch[i]! + 5) || undefined, { what: 'comments after the switch', timeoutMs: 30_000 });
    await Promise.all(writers.map((w) => w.stop()));

    const gens = await readGenerations(redis, world.cfg.redis.keyPrefix, world.cfg.topics.roomEvents, 2);
    expect(gens.list.map((g) => [g.generation, g.topic, g.partitions])).toEqual([
      [0, world.id, 2],
      [1, `${world.id}.g1`, 5],
    ]);
    const ends = gens.list[0]!.ends!;
    expect(ends).toBeDefined();

    for (const w of writers) {
      const generations = w.acked.map((a) => splitPosition(a.position).generation);
      // Acks never go back a generation: the room's writes switched once, in order.
      expect(generations).toEqual([...generations].sort((a, b) => a - b));
      expect(generations[0]).toBe(0);
      expect(generations[generations.length - 1]).toBe(1);
      // Every ack of generation 0 lies below the sealed end of the room's old partition.
      const end = Number(ends[String(murmur2Partition(w.room, 2))]);
      for (const a of w.acked) if (splitPosition(a.position).generation === 0) expect(splitPosition(a.position).offset).toBeLessThan(end);
      const positions = w.acked.map((a) => a.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
    }

    // Every acknowledged comment is applied, once, at its position, in its room's order.
    for (const w of writers) {
      const items = await waitFor(
        async () => {
          const f = (await feedOf(w.room)).filter((i) => i.kind === 'comment');
          return f.length >= w.acked.length ? f : undefined;
        },
        { what: `${w.room}: ${w.acked.length} comments in the feed`, timeoutMs: 60_000 },
      );
      const byId = new Map(items.map((i) => [i.eventId, i]));
      expect(byId.size).toBe(items.length);
      for (const a of w.acked) expect(byId.get(a.eventId)?.offset, `${w.room}: ${a.text}`).toBe(a.position);
      // Nothing but the acknowledged comments (a retried write is one comment), in acknowledgement order.
      expect(items.map((i) => (i.kind === 'comment' ? i.text : ''))).toEqual(w.acked.map((a) => a.text));
    }

    // Every room's epoch moved with the switch; the viewer was resynced and sees what the feed holds.
    const state = (await (await fetch(`${world.url}/v1/rooms/${rooms[0]}/state`)).json()) as { position: { epoch: number } };
    expect(state.position.epoch).toBeGreaterThan(epochBefore);
    const expected = writers[0]!.acked.map((a) => a.text);
    const last = writers[0]!.acked[writers[0]!.acked.length - 1]!;
    await waitFor(() => watch.view().some((i) => i.eventId === last.eventId) || undefined, { what: `the viewer's last comment (has ${watch.view().length})`, timeoutMs: 30_000 });
    // A resync's snapshot holds the newest SNAPSHOT_ITEMS: the viewer has a tail of the room, in order, with nothing missing or extra.
    const seen = watch.view().map((i) => (i.kind === 'comment' ? i.text : ''));
    expect(seen.length).toBeGreaterThanOrEqual(Math.min(expected.length, SNAPSHOT_ITEMS));
    expect(seen).toEqual(expected.slice(expected.length - seen.length));
    expect(watch.messages.filter((m) => m.type === 'snapshot').length).toBeGreaterThanOrEqual(2);
    watch.ws.close();

    // A rebuild reads both generations in order: the new version holds the same comments at the same positions.
    const rebuilt = await rebuild({ cfg: world.cfg, projection: 'feed' });
    expect(rebuilt.to).toBe(2);
    for (const w of writers) {
      const items = (await feedOf(w.room)).filter((i) => i.kind === 'comment');
      expect(items.map((i) => [i.eventId, i.offset])).toEqual(w.acked.map((a) => [a.eventId, a.position]));
    }
  }, 240_000);
});
