/**
 * A gateway's Redis subscriber that loses its connection misses whatever was
 * published until it is back (pub/sub keeps nothing): when it reconnects, the
 * hub subscribes its rooms again and sends every live socket a fresh snapshot
 * (reason `resubscribed`), so a comment published during the cut still
 * reaches the viewer.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World } from '../../services/world.ts';
import { randomName, waitFor } from '../../test/helpers.ts';
import type { ServerMessage, SnapshotMessage } from '../protocol.ts';

let w: World;
let redis: Redis;
const room = randomName('resub');

beforeAll(async () => {
  w = await startWorld({ partitions: 1, env: { MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '1000' } });
  redis = new Redis(w.cfg.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await w?.stop();
});

const post = (text: string) =>
  fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token('resub-writer')}` }, body: JSON.stringify({ text }) });

describe('the Redis subscriber reconnects', () => {
  it('resubscribes and resyncs live sockets: a comment published while it was cut still arrives', async () => {
    const msgs: ServerMessage[] = [];
    const ws = new WebSocket(`${w.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws`);
    ws.on('message', (d: Buffer) => msgs.push(JSON.parse(d.toString('utf8')) as ServerMessage));
    await waitFor(() => msgs.some((m) => m.type === 'snapshot') || undefined, { what: 'the first snapshot' });
    expect((await post('before the cut')).status).toBe(202);
    const texts = () =>
      msgs.flatMap((m): string[] =>
        m.type === 'snapshot' ? m.items.flatMap((i) => (i.kind === 'comment' ? [i.text] : []))
        : m.type === 'batch' ? m.events.flatMap((e) => (e.t === 'comment' ? [e.entry.text] : []))
        : [],
      );
    await waitFor(() => texts().includes('before the cut') || undefined, { what: 'the first comment pushed' });

    // Cut the gateway's subscriber connection (named gateway-sub-<GATEWAY_ID>), as a network blip would.
    const gatewayId = `gw-${new URL(w.url).port}`;
    const list = (await redis.client('LIST')) as string;
    const line = list.split('\n').find((l) => l.includes(` name=gateway-sub-${gatewayId} `));
    expect(line, 'the gateway subscriber in CLIENT LIST').toBeDefined();
    const id = /\bid=(\d+)/.exec(line!)![1]!;
    await redis.client('KILL', 'ID', id);
    expect((await post('during the cut')).status).toBe(202);

    const resynced = await waitFor(() => msgs.find((m): m is SnapshotMessage => m.type === 'snapshot' && m.reason === 'resubscribed'), { what: 'a resubscribed snapshot', timeoutMs: 20_000 });
    expect(resynced.room).toBe(room);
    await waitFor(() => texts().includes('during the cut') || undefined, { what: 'the comment published during the cut' });
    // And live pushes go on after it.
    expect((await post('after the cut')).status).toBe(202);
    await waitFor(() => texts().includes('after the cut') || undefined, { what: 'a comment after the reconnect' });
    ws.terminate();
  });
});
