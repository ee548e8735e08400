/**
 * Pins that expire on screen (issue 17): a pin with a duration disappears
 * from every live viewer when it expires — the gateway pushes the pin's end
 * to its sockets at `untilMs` (nothing in the log marks that moment) — and
 * later reads no longer show it. Processors and gateway as real processes.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import type { ServerMessage } from './protocol.ts';

let w: World;
const sockets: WebSocket[] = [];

beforeAll(async () => {
  w = await startWorld({ prefix: 'pinexp', env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false' } });
});
afterAll(async () => {
  for (const s of sockets) s.close();
  await w?.stop();
});

async function call(method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${w.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('pins with a duration', () => {
  it('end on every live viewer\'s screen when they expire, pushed by the gateway', async () => {
    const room = randomName('pin');
    const mod = w.token(`mod-${room}`, 'moderator', { rooms: [room] });
    const posted = await call('POST', `/v1/rooms/${room}/comments`, w.token('fan'), { text: 'pin me for a moment' });
    expect(posted.status).toBe(202);
    const id = posted.body.eventId as string;
    await waitFor(async () => ((await (await fetch(`${w.url}/v1/rooms/${room}/feed`)).json()) as { events: { eventId?: string }[] }).events.some((e) => e.eventId === id), { what: 'the comment in the feed', timeoutMs: 30_000 });

    // Two live viewers over WebSocket; every pin state they are pushed, in order.
    const seen: { at: number; pin: unknown }[][] = [[], []];
    await Promise.all(
      seen.map(
        (log) =>
          new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/${room}/ws`);
            sockets.push(ws);
            ws.on('message', (data) => {
              const m = JSON.parse(String(data)) as ServerMessage;
              if (m.type === 'snapshot') resolve();
              if (m.type === 'batch') for (const e of m.events) if (e.t === 'pin') log.push({ at: Date.now(), pin: e.pin });
            });
            ws.on('error', reject);
          }),
      ),
    );

    const pinned = await call('POST', `/v1/rooms/${room}/pin`, mod, { eventId: id, durationSec: 2 });
    expect(pinned.status).toBe(202);
    for (const log of seen) {
      await waitFor(() => log.some((x) => x.pin !== null), { what: 'the pin pushed', timeoutMs: 30_000 });
      const shown = log.find((x) => x.pin !== null)!;
      expect(shown.pin).toMatchObject({ eventId: id, text: 'pin me for a moment' });
      const until = (shown.pin as { untilMs: number }).untilMs;
      // Then its end, pushed at (not before) its expiry, with no unpin written by anyone.
      const ended = await waitFor(() => log.find((x) => x.pin === null), { what: 'the pin\'s end pushed', timeoutMs: 30_000 });
      expect(ended.at).toBeGreaterThanOrEqual(until);
      expect(ended.at - until).toBeLessThan(5_000);
    }
    // A later read agrees: no pin.
    const state = (await (await fetch(`${w.url}/v1/rooms/${room}/state`)).json()) as { pinned: unknown };
    expect(state.pinned).toBeNull();
  }, 90_000);
});
