/**
 * Scale-out: two gateway processes share nothing but Redis. Viewers on each
 * receive every event of a room, in the same (log) order, whichever gateway
 * took the write; the viewer count covers both gateways.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers.ts';
import { startWorld as startSystem, type World as System } from '../services/world.ts';
import type { ServerMessage } from './protocol.ts';

let sys: System;
beforeAll(async () => {
  sys = await startSystem({ gateways: 2, env: { LIMIT_COMMENTS: '100000', MODERATION_ENABLED: 'false', PRESENCE_INTERVAL_MS: '300' } });
});
afterAll(async () => {
  await sys?.stop();
});

function viewer(base: string, room: string) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/rooms/${room}/ws`);
  const messages: ServerMessage[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data)) as ServerMessage));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const comments = () =>
    messages.flatMap((m) => (m.type === 'batch' ? m.events.flatMap((e) => (e.t === 'comment' ? [e.entry] : [])) : m.type === 'snapshot' || m.type === 'catchup' ? m.items.filter((i) => i.kind === 'comment') : []));
  return { ws, messages, opened, comments };
}

describe('two gateways', () => {
  it('both deliver every event of a room in order, and count viewers across both', async () => {
    const room = `scale-${Date.now().toString(36)}`;
    const [g1, g2] = sys.gateways;
    const a = viewer(g1!.url, room);
    const b = viewer(g2!.url, room);
    await Promise.all([a.opened, b.opened]);
    await waitFor(() => a.messages[0]?.type === 'snapshot' && b.messages[0]?.type === 'snapshot', { what: 'both snapshots' });

    const token = sys.token('writer');
    const total = 120;
    for (let i = 0; i < total; i++) {
      // Alternate the gateway that takes the write; each is acknowledged before the next is sent.
      const g = i % 2 === 0 ? g1! : g2!;
      const res = await fetch(`${g.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text: `n${i}` }) });
      expect(res.status).toBe(202);
    }
    await waitFor(() => (a.comments().length >= total && b.comments().length >= total) || undefined, {
      what: `all comments on both sockets (a ${a.comments().length}, b ${b.comments().length})`,
      timeoutMs: 30_000,
    });
    const expected = Array.from({ length: total }, (_, i) => `n${i}`);
    expect(a.comments().map((c) => (c.kind === 'comment' ? c.text : ''))).toEqual(expected);
    expect(b.comments().map((c) => (c.kind === 'comment' ? c.text : ''))).toEqual(expected);
    const offsets = a.comments().map((c) => c.offset);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));

    // Presence: one socket on each gateway → both report 2.
    await waitFor(() => {
      const last = (v: typeof a) => [...v.messages].reverse().find((m) => m.type === 'viewers');
      const la = last(a);
      const lb = last(b);
      return la?.type === 'viewers' && lb?.type === 'viewers' && la.count === 2 && lb.count === 2 ? true : undefined;
    }, { what: 'viewer count 2 on both gateways', timeoutMs: 15_000 });
    a.ws.close();
    b.ws.close();
  });
});
