/**
 * A connect storm answered from memory: once one socket's snapshot was read
 * from Redis, the gateway keeps the room's snapshot current from its
 * notifications (window.ts) and answers the next sockets from it — while
 * comments keep arriving, each socket still sees every comment once, in
 * order (snapshot, then batches), and the same feed Redis holds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World } from '../../services/world.ts';
import { randomName, waitFor } from '../../test/helpers.ts';
import type { FeedResponse, ServerMessage } from '../protocol.ts';

let w: World;
const room = randomName('storm');
const SOCKETS = 300;

beforeAll(async () => {
  w = await startWorld({ partitions: 1, env: { PUSH_MEMORY_SNAPSHOTS: 'true', MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '10000', LIMIT_READS: '100000' } });
});
afterAll(async () => {
  await w?.stop();
});

const post = (text: string) =>
  fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token('stormer')}` }, body: JSON.stringify({ text }) });

async function snapshotReads(): Promise<{ redis: number; memory: number }> {
  const text = await (await fetch(`${w.url}/metrics`)).text();
  const of = (source: string) => Number(new RegExp(`^danmaku_push_snapshot_reads_total\\{source="${source}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { redis: of('redis'), memory: of('memory') };
}

interface Viewer {
  ws: WebSocket;
  /** Comment texts in the order the socket learnt of them (snapshot items, then batches). */
  seen: string[];
  deleted: Set<string>;
}

function connect(): Promise<Viewer> {
  const v: Viewer = { ws: new WebSocket(`${w.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws`), seen: [], deleted: new Set() };
  let snap = false;
  v.ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString('utf8')) as ServerMessage;
    if (m.type === 'snapshot') {
      snap = true;
      v.seen = m.items.flatMap((i) => (i.kind === 'comment' ? [i.text] : []));
    } else if (m.type === 'batch') {
      for (const e of m.events) if (e.t === 'comment') v.seen.push(e.entry.text);
    }
  });
  return waitFor(() => snap && v, { what: 'a snapshot', timeoutMs: 30_000 });
}

describe('a connect storm', () => {
  it('costs one Redis read; every socket still gets every comment once, in order', async () => {
    for (let i = 0; i < 20; i++) expect((await post(`before ${i}`)).status).toBe(202);
    const first = await connect();
    await waitFor(() => first.seen.includes('before 19') || undefined, { what: 'the first socket to see the comments' });
    const before = await snapshotReads();

    // The storm, with comments still coming in.
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) expect((await post(`during ${n++}`)).status).toBe(202);
    })();
    const viewers: Viewer[] = [];
    for (let i = 0; i < SOCKETS; i += 50) viewers.push(...(await Promise.all(Array.from({ length: 50 }, () => connect()))));
    writing = false;
    await writer;
    expect((await post('after the storm')).status).toBe(202);

    const after = await snapshotReads();
    expect(after.memory - before.memory).toBeGreaterThanOrEqual(SOCKETS);
    expect(after.redis - before.redis).toBeLessThanOrEqual(1);

    // Every socket ends with the feed Redis holds: no gap, no duplicate, log order.
    // (202 means Kafka has it; the feed has it once a processor applied it.)
    const expected = await waitFor(async () => {
      const feed = (await (await fetch(`${w.url}/v1/rooms/${room}/feed?limit=500`)).json()) as FeedResponse;
      const texts = feed.events.flatMap((e) => (e.kind === 'comment' ? [e.text] : []));
      return texts.at(-1) === 'after the storm' ? texts : undefined;
    }, { what: 'the last comment in the feed' });
    for (const v of [first, ...viewers]) {
      await waitFor(() => v.seen.at(-1) === 'after the storm' || undefined, { what: 'the last comment on every socket' });
      const tail = v.seen.slice(-expected.length);
      expect(new Set(v.seen).size).toBe(v.seen.length);
      expect(tail).toEqual(expected.slice(-tail.length));
    }
    expect(n).toBeGreaterThan(0);
    for (const v of [first, ...viewers]) v.ws.terminate();
  });
});
