/**
 * The TypeScript client against the running system (processors + gateway as
 * real processes): comments posted over HTTP arrive in order; when its
 * WebSocket path breaks it falls back to polling, comes back to WebSocket,
 * and across all of it its items have no gap and no duplicate.
 *
 * The WebSocket path goes through a small TCP proxy the test can cut and
 * restore (`wsUrl`); polling and writes go to the gateway directly.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomName, waitFor } from '../../test/helpers.ts';
import { startWorld as startSystem, type World as System } from '../../services/world.ts';
import type { FeedEntry, FeedResponse } from '../protocol.ts';
import { DanmakuClient, type ModeInfo } from './client.ts';

let sys: System;
const clients: DanmakuClient[] = [];

beforeAll(async () => {
  sys = await startSystem({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', POLL_MIN_MS: '100' } });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await sys?.stop();
});

async function post(room: string, text: string, user = 'poster'): Promise<{ eventId: string }> {
  const res = await fetch(`${sys.url}/v1/rooms/${room}/comments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${sys.token(user)}` },
    body: JSON.stringify({ text }),
  });
  const body = (await res.json()) as { eventId: string };
  expect(res.status, JSON.stringify(body)).toBe(202);
  return body;
}

/** Every comment of the room as the gateway serves it (the reference to compare with). */
async function allComments(room: string): Promise<FeedEntry[]> {
  const res = await fetch(`${sys.url}/v1/rooms/${room}/feed?limit=500&since=0.-1`);
  const f = (await res.json()) as FeedResponse;
  return f.events.filter((e): e is FeedEntry => e.kind === 'comment');
}

function expectGapFree(items: readonly FeedEntry[], reference: FeedEntry[]): void {
  const offsets = items.map((i) => i.offset);
  expect(new Set(offsets).size, 'no duplicate').toBe(offsets.length);
  expect([...offsets].sort((a, b) => a - b), 'in log order').toEqual(offsets);
  expect(items.map((i) => [i.offset, i.eventId, i.text])).toEqual(reference.map((i) => [i.offset, i.eventId, i.text]));
}

const texts = (c: DanmakuClient) => c.items.map((i) => i.text);

/** A TCP proxy to the gateway that can be cut (every connection dropped, new ones refused) and restored. */
async function tcpProxy(targetPort: number) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((down) => {
        const up = net.connect(targetPort, '127.0.0.1');
        const kill = () => {
          down.destroy();
          up.destroy();
        };
        for (const x of [down, up]) {
          sockets.add(x);
          x.on('error', kill).on('close', () => {
            sockets.delete(x);
            kill();
          });
        }
        down.pipe(up).pipe(down);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  const cut = () =>
    new Promise<void>((resolve) => {
      for (const x of sockets) x.destroy();
      sockets.clear();
      if (!server) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  await start();
  return { url: () => `ws://127.0.0.1:${port}`, cut, restore: start };
}

describe('DanmakuClient (Node, ws)', () => {
  it('receives comments posted over HTTP, in order, after its snapshot', async () => {
    const room = randomName('cli');
    await post(room, 'before-0');
    await waitFor(async () => (await allComments(room)).length === 1, { what: 'the first comment in the feed' });

    const client = new DanmakuClient({ baseUrl: sys.url, room, WebSocket });
    clients.push(client);
    const modes: ModeInfo['transport'][] = [];
    client.on('mode', (m) => modes.push(m.transport));
    const seen: string[] = [];
    client.on('comment', (c) => seen.push(c.text));
    await client.ready;
    expect(client.mode.transport).toBe('ws');
    expect(texts(client)).toEqual(['before-0']);

    const sent = Array.from({ length: 10 }, (_, i) => `live-${i}`);
    for (const t of sent) await post(room, t);
    await waitFor(() => client.items.length === 11, { what: 'all 11 comments at the client', timeoutMs: 20_000 });
    expect(texts(client)).toEqual(['before-0', ...sent]);
    expect(seen).toEqual(sent);
    expectGapFree(client.items, await allComments(room));
    expect(client.position?.offset).toBeGreaterThanOrEqual(client.items[10]!.offset);
    expect(modes).not.toContain('polling');
  });

  it('falls back to polling when WebSocket keeps failing, returns to WebSocket, and never has a gap or a duplicate', async () => {
    const room = randomName('cli');
    const gatewayPort = Number(new URL(sys.url).port);
    const proxy = await tcpProxy(gatewayPort);
    const client = new DanmakuClient({
      baseUrl: sys.url,
      wsUrl: proxy.url(),
      room,
      WebSocket,
      backoff: { baseMs: 50, maxMs: 400 },
      wsRetryMs: 1500,
      connectTimeoutMs: 3000,
      maxPollMs: 500, // the test does not wait for a quiet room's long poll interval
    });
    clients.push(client);
    const transports: ModeInfo['transport'][] = [];
    client.on('mode', (m) => {
      if (transports[transports.length - 1] !== m.transport) transports.push(m.transport);
    });
    await client.ready;
    expect(client.mode.transport).toBe('ws');

    const phase = async (label: string, n: number) => {
      const sent = Array.from({ length: n }, (_, i) => `${label}-${i}`);
      for (const t of sent) await post(room, t, `u-${label}`);
      return sent;
    };
    const all: string[] = [];
    const arrived = (what: string) => waitFor(() => texts(client).length === all.length && texts(client).every((t, i) => t === all[i]), { what, timeoutMs: 30_000 });

    all.push(...(await phase('ws', 3)));
    await arrived('comments over WebSocket');

    // The WebSocket path breaks: posts keep coming while the client reconnects and gives up.
    await proxy.cut();
    all.push(...(await phase('cut', 3)));
    await waitFor(() => client.mode.transport === 'polling', { what: 'the fallback to polling', timeoutMs: 20_000 });
    expect(client.mode.wsFailures).toBeGreaterThanOrEqual(3);
    await arrived('comments posted during the cut, over polling');
    all.push(...(await phase('poll', 3)));
    await arrived('comments posted while polling');
    expect(client.mode.transport).toBe('polling');

    // The path comes back: the client tries WebSocket again on its own and resumes from its position.
    await proxy.restore();
    await waitFor(() => client.mode.transport === 'ws', { what: 'the return to WebSocket', timeoutMs: 20_000 });
    all.push(...(await phase('back', 3)));
    await arrived('comments over WebSocket again');

    expect(transports).toEqual(['ws', 'connecting', 'polling', 'ws']);
    expectGapFree(client.items, await allComments(room));
    client.close();
    await proxy.cut();
  });
});

describe('DanmakuClient writes', () => {
  /** `ws`'s WebSocket, recording the frames the client sends. */
  const frames: { type: string; id: string }[] = [];
  class RecordingWebSocket extends WebSocket {
    override send(data: unknown, ...rest: unknown[]): void {
      frames.push(JSON.parse(String(data)) as { type: string; id: string });
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }

  it('posts and reacts over its socket, resolving on acks; a nack rejects with the code HTTP gives', async () => {
    const room = randomName('cliw');
    const client = new DanmakuClient({ baseUrl: sys.url, room, WebSocket: RecordingWebSocket, token: sys.token('sdk') });
    clients.push(client);
    await client.ready;
    const before = frames.length;
    const posted = await client.post('over the socket', { color: 0x00ff00 });
    expect(posted.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(posted.position.epoch).toBe(0);
    const reacted = await client.react('heart', 3);
    expect(reacted.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(frames.slice(before).map((f) => f.type)).toEqual(['comment', 'reaction']);
    await waitFor(() => client.items.some((c) => c.eventId === posted.eventId) || undefined, { what: 'the comment pushed back' });
    await waitFor(() => client.snapshot.tallies.totals.heart === 3 || undefined, { what: 'the tally pushed back' });
    // Refusals: the catalogue's code and status.
    await expect(client.react('poop')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_EMOJI', status: 400 });
    await expect(client.post('\u200b')).rejects.toMatchObject({ code: 'ERR_TEXT_LENGTH', status: 400 });
    // A retried post (same clientMsgId) is the first result again.
    const again = await client.post('over the socket', { clientMsgId: 'sdk-1' });
    expect(await client.post('over the socket', { clientMsgId: 'sdk-1' })).toEqual({ ...again, duplicate: true });
  });

  it('reopens its socket with a token given later, then writes over it', async () => {
    const room = randomName('cliw');
    const client = new DanmakuClient({ baseUrl: sys.url, room, WebSocket: RecordingWebSocket });
    clients.push(client);
    await client.ready;
    client.setToken(sys.token('late'));
    const before = frames.length;
    const posted = await client.post('after the token');
    expect(frames.slice(before).map((f) => f.type)).toEqual(['comment']);
    await waitFor(() => client.items.some((c) => c.eventId === posted.eventId && c.userId === 'late') || undefined, { what: 'the comment as the user' });
    expect(client.mode.transport).toBe('ws');
  });

  it('writes over HTTP while polling', async () => {
    const room = randomName('cliw');
    const client = new DanmakuClient({ baseUrl: sys.url, room, token: sys.token('poller'), maxPollMs: 500 });
    clients.push(client);
    await client.ready;
    expect(client.mode.transport).toBe('polling');
    const posted = await client.post('over http');
    const reacted = await client.react('fire');
    expect([posted.eventId, reacted.eventId].every((id) => /^[0-9a-f-]{36}$/.test(id))).toBe(true);
    await waitFor(() => client.items.some((c) => c.eventId === posted.eventId) || undefined, { what: 'the comment polled back' });
  });
});
