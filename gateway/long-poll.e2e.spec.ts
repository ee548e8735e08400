/**
 * Polls without waste: a long poll sleeps until the push hub sees news of
 * its room (one look at the feed when it starts, one when a comment comes),
 * never re-reading Redis on a timer; and with a socket in the room, polls
 * are answered from the room's window in memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import type { FeedResponse } from './protocol.ts';

let w: World;

beforeAll(async () => {
  w = await startWorld({ partitions: 1, env: { PUSH_MEMORY_SNAPSHOTS: 'true', MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '1000' } });
});
afterAll(async () => {
  await w?.stop();
});

const post = (room: string, text: string) =>
  fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token('poller')}` }, body: JSON.stringify({ text }) });
const poll = async (room: string, q: string) => (await (await fetch(`${w.url}/v1/rooms/${room}/feed?${q}`)).json()) as FeedResponse;

async function pollReads(): Promise<{ redis: number; memory: number }> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const of = (source: string) => Number(new RegExp(`^danmaku_poll_reads_total\\{source="${source}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { redis: of('redis'), memory: of('memory') };
}
const total = (r: { redis: number; memory: number }) => r.redis + r.memory;

describe('polls', () => {
  it('a long poll is woken by the room\'s news, and looks at the feed only then', async () => {
    const room = randomName('lp');
    expect((await post(room, 'first')).status).toBe(202);
    const start = await waitFor(async () => {
      const p = await poll(room, '');
      return p.events.length > 0 ? p : undefined;
    }, { what: 'the first comment' });
    const since = `since=${start.position.epoch}.${start.position.offset}`;
    // An idle long poll of 2 s: one look at the start, one at its deadline (a timer re-reading Redis every 100 ms would look ~20 times).
    const before = await pollReads();
    const t0 = Date.now();
    expect((await poll(room, `${since}&wait=2`)).events).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(total(await pollReads()) - total(before)).toBeLessThanOrEqual(2);
    // A comment wakes a waiting long poll at once.
    const waiting = poll(room, `${since}&wait=20`);
    const t1 = Date.now();
    expect((await post(room, 'second')).status).toBe(202);
    const got = await waiting;
    expect(got.events.map((e) => (e.kind === 'comment' ? e.text : e.kind))).toEqual(['second']);
    expect(Date.now() - t1).toBeLessThan(10_000);
  });

  it('with a socket in the room, polls are answered from the window in memory', async () => {
    const room = randomName('win');
    for (let i = 0; i < 5; i++) expect((await post(room, `c${i}`)).status).toBe(202);
    const ws = new WebSocket(`${w.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws`);
    await new Promise<void>((resolve) => ws.once('message', () => resolve()));
    await waitFor(async () => (await poll(room, '')).events.length === 5 || undefined, { what: 'all five comments' });
    const before = await pollReads();
    const page = await poll(room, 'limit=2');
    expect(page.events.map((e) => (e.kind === 'comment' ? e.text : e.kind))).toEqual(['c0', 'c1']);
    const next = await poll(room, `since=${page.position.epoch}.${page.position.offset}`);
    expect(next.events.map((e) => (e.kind === 'comment' ? e.text : e.kind))).toEqual(['c2', 'c3', 'c4']);
    const after = await pollReads();
    expect(after.memory - before.memory).toBe(2);
    expect(after.redis - before.redis).toBe(0);
    ws.terminate();
  });
});
