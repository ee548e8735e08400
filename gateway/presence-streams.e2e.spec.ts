/**
 * Unique viewers count the room's current stream: when a StreamStarted is
 * applied, the count starts again — with whoever is still watching — and the
 * stream before keeps its figure among the room's past streams.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, redisOptions } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { makeEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { logClient } from '../topics/client.ts';
import { readPastStreams } from './presence.ts';

let w: World;
const sockets: WebSocket[] = [];
beforeAll(async () => {
  w = await startWorld({ env: { PRESENCE_INTERVAL_MS: '300', MODERATION_ENABLED: 'false' } });
});
afterAll(async () => {
  for (const s of sockets) s.terminate();
  await w?.stop();
});

async function watch(room: string, user: string): Promise<WebSocket> {
  const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/${room}/ws?token=${w.token(user)}`);
  sockets.push(ws);
  await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
  return ws;
}
async function leave(ws: WebSocket): Promise<void> {
  const closed = new Promise((r) => ws.once('close', r));
  ws.close();
  await closed;
}
async function state(room: string): Promise<{ viewers: number; uniqueViewers: number }> {
  return (await (await fetch(`${w.url}/v1/rooms/${room}/state`)).json()) as { viewers: number; uniqueViewers: number };
}
const says = (room: string, viewers: number, unique: number) =>
  waitFor(async () => {
    const s = await state(room);
    return s.viewers === viewers && s.uniqueViewers === unique ? s : undefined;
  }, { what: `${viewers} viewers, ${unique} unique`, timeoutMs: 20_000 });

async function startStream(room: string, title: string): Promise<number> {
  const client = logClient(w.cfg, 'presence-streams');
  const producer = client.producer();
  await producer.connect();
  const codec = new EventCodec({ registry: createRegistry(w.cfg.registry.url), subject: subjectFor(w.env.TOPIC_ROOM_EVENTS!) });
  await codec.init();
  try {
    const e = makeEvent({ roomId: room, actor: { userId: 'studio', role: 'system' }, payload: { type: 'StreamStarted', title } });
    await producer.send({ topic: w.env.TOPIC_ROOM_EVENTS!, key: room, value: codec.encode(e) });
    return e.occurredAt;
  } finally {
    await producer.disconnect();
    await client.close();
  }
}

describe('unique viewers per stream', () => {
  it('start again at each StreamStarted, with the viewers still there; the stream before keeps its count', async () => {
    const room = randomName('streams');
    const first = await startStream(room, 'first');
    const alice = await watch(room, 'alice');
    const bob = await watch(room, 'bob');
    const carol = await watch(room, 'carol');
    await says(room, 3, 3);
    await leave(bob);
    await leave(carol);
    await says(room, 1, 3);

    // The next stream: alice, still watching, is its first viewer.
    const second = await startStream(room, 'second');
    await says(room, 1, 1);
    await watch(room, 'dave');
    await says(room, 2, 2);

    const redis = openRedis({ ...redisOptions(w.cfg), name: 'presence-streams-check' });
    try {
      expect(await readPastStreams(redis, w.cfg.redis.keyPrefix, room)).toEqual([{ stream: first, uniqueViewers: 3 }]);
    } finally {
      redis.disconnect();
    }
    expect(second).toBeGreaterThan(first);
    await leave(alice);
  });
});
