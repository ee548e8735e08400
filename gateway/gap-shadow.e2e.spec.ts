/**
 * A gap filled from the log must not show a shadow-muted comment to others,
 * even when the mute has ended since: the fold starts where the gap begins,
 * and the mutes in force there come from the feed's history of shadow mutes
 * (pipelines/projections/feed.ts SHADOW_HISTORY), not from today's mutes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { makeEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { logClient } from '../topics/client.ts';
import type { FeedResponse } from './protocol.ts';

let w: World;
beforeAll(async () => {
  // Redis keeps 10 comments per room, so a short burst pushes the muted comment out of it.
  w = await startWorld({ env: { FEED_MAX_ITEMS: '10', MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '1000' } });
});
afterAll(async () => {
  await w?.stop();
});

async function post(room: string, user: string, text: string): Promise<string> {
  const res = await fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token(user)}` }, body: JSON.stringify({ text }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { eventId: string }).eventId;
}
async function poll(room: string, since?: string, user?: string, url = w.url): Promise<FeedResponse> {
  const q = since ? `?since=${since}&limit=500` : '?limit=500';
  const res = await fetch(`${url}/v1/rooms/${room}/feed${q}`, { headers: user ? { authorization: `Bearer ${w.token(user)}` } : {} });
  expect(res.status).toBe(200);
  return (await res.json()) as FeedResponse;
}
const ids = (f: FeedResponse) => f.events.filter((e) => e.kind === 'comment').map((e) => e.eventId);

describe('catch-up from the log and shadow mutes', () => {
  it('keeps a comment written under a shadow mute from others after the mute ended and Redis forgot the comment', async () => {
    const room = randomName('gap-shadow');
    // A shadow mute of 2 s, written as the moderation processor writes it.
    const untilMs = Date.now() + 2_000;
    const client = logClient(w.cfg, 'gap-shadow');
    const producer = client.producer();
    await producer.connect();
    const codec = new EventCodec({ registry: createRegistry(w.cfg.registry.url), subject: subjectFor(w.env.TOPIC_ROOM_EVENTS!) });
    await codec.init();
    try {
      const mute = makeEvent({ roomId: room, actor: { userId: 'moderation', role: 'system' }, payload: { type: 'UserMuted', userId: 'shady', untilMs, kind: 'shadow', reason: 'testing gaps' } });
      await producer.send({ topic: w.env.TOPIC_ROOM_EVENTS!, key: room, value: codec.encode(mute) });
    } finally {
      await producer.disconnect();
      await client.close();
    }
    // The position a poller will resume from lies after the mute: the gap it reads holds no mute event.
    const first = await post(room, 'alice', 'before the gap');
    const start = await waitFor(async () => {
      const f = await poll(room);
      return ids(f).includes(first) ? f.position : undefined;
    }, { what: 'the first comment' });
    const hidden = await post(room, 'shady', 'written under a shadow mute');
    await waitFor(async () => (ids(await poll(room, undefined, 'shady')).includes(hidden) ? true : undefined), { what: 'the shadowed comment, seen by its author' });
    expect(ids(await poll(room))).not.toContain(hidden);

    // The mute ends; then enough comments that Redis no longer holds the shadowed one.
    await waitFor(() => (Date.now() > untilMs + 100 ? true : undefined), { what: 'the mute to end', timeoutMs: 5_000 });
    const later: string[] = [];
    for (let i = 0; i < 15; i++) later.push(await post(room, `u${i % 3}`, `after the mute ${i}`));
    await waitFor(async () => {
      const f = await poll(room);
      return ids(f).includes(later.at(-1)!) && !ids(f).includes(first) ? true : undefined;
    }, { what: 'Redis to forget the start of the room' });

    // A poller resuming from before the mute, on a gateway that never saw the room (nothing in its
    // memory window): its gap is read from the log.
    const fresh = (await w.startGateway()).url;
    const since = `${start.epoch}.${start.offset}`;
    const anonymous = await poll(room, since, undefined, fresh);
    expect(anonymous.unrecoverable).toBeUndefined();
    expect(ids(anonymous)).toEqual(later); // everything after `since` but the shadowed comment
    const someone = await poll(room, since, 'bob', fresh);
    expect(ids(someone)).not.toContain(hidden);
    // Its author still sees it, where it belongs.
    const author = await poll(room, since, 'shady', fresh);
    expect(ids(author)).toEqual([hidden, ...later]);
  });
});
