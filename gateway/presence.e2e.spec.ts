/**
 * Presence across two gateway processes, on a single Redis and on a Redis
 * Cluster: sockets and pollers spread over both gateways are counted once
 * everywhere (pushed to every socket and in the state API of both), and the
 * unique-viewer HyperLogLog grows with distinct viewers only — a user (or an
 * anonymous device) that reconnects, even to the other gateway, or polls again
 * is the same viewer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomName, testConfig, waitFor } from '../test/helpers.ts';
import { ServiceProcess } from '../services/spawn.ts';
import { freePort, startWorld, type World } from '../services/world.ts';
import type { ServerMessage } from './protocol.ts';

const modes = testConfig().test.redisModes.split(',').map((m) => m.trim()).filter((m): m is 'single' | 'cluster' => m === 'single' || m === 'cluster');

interface Viewer {
  ws: WebSocket;
  /** The latest counts this socket was told (snapshot or viewers message). */
  counts: { viewers: number; unique: number | undefined } | undefined;
  opened: Promise<void>;
}

describe.each(modes)('presence across two gateways (Redis %s)', (mode) => {
  let sys: World;
  const open: WebSocket[] = [];
  beforeAll(async () => {
    sys = await startWorld({ processor: false, gateways: 2, env: { REDIS_MODE: mode, PRESENCE_INTERVAL_MS: '300', MODERATION_ENABLED: 'false' } });
  });
  afterAll(async () => {
    for (const ws of open) ws.terminate();
    await sys?.stop();
  });

  function viewer(base: string, room: string, who: { user?: string; device?: string }): Viewer {
    const q = new URLSearchParams();
    if (who.user) q.set('token', sys.token(who.user));
    if (who.device) q.set('device', who.device);
    const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/rooms/${room}/ws?${q}`);
    open.push(ws);
    const v: Viewer = { ws, counts: undefined, opened: new Promise((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject))) };
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as ServerMessage;
      if (m.type === 'snapshot') v.counts = { viewers: m.viewers, unique: m.uniqueViewers };
      if (m.type === 'viewers') v.counts = { viewers: m.count, unique: m.uniqueViewers };
    });
    return v;
  }

  async function close(v: Viewer): Promise<void> {
    const closed = new Promise((r) => v.ws.once('close', r));
    v.ws.close();
    await closed;
  }

  async function poll(base: string, room: string, who: { user?: string; device?: string }): Promise<void> {
    const q = new URLSearchParams(who.device ? { device: who.device } : {});
    const res = await fetch(`${base}/v1/rooms/${room}/feed?${q}`, { headers: who.user ? { authorization: `Bearer ${sys.token(who.user)}` } : {} });
    expect(res.status).toBe(200);
  }

  async function state(base: string, room: string): Promise<{ viewers: number; uniqueViewers: number }> {
    const res = await fetch(`${base}/v1/rooms/${room}/state`);
    expect(res.status).toBe(200);
    return (await res.json()) as { viewers: number; uniqueViewers: number };
  }

  /** Waits until the state API of both gateways reports these counts, and returns them. */
  async function bothSay(room: string, viewers: number, unique?: number): Promise<void> {
    await waitFor(
      async () => {
        const all = await Promise.all(sys.gateways.map((g) => state(g.url, room)));
        return all.every((s) => s.viewers === viewers && (unique === undefined || s.uniqueViewers === unique)) ? true : undefined;
      },
      { what: `${viewers} viewers${unique === undefined ? '' : `, ${unique} unique`} on both gateways`, timeoutMs: 15_000 },
    );
  }

  it('counts sockets and pollers of both gateways once everywhere; reconnects and repeated polls are not new viewers, distinct users are', async () => {
    const room = randomName('presence');
    const [g1, g2] = sys.gateways as [World['gateways'][0], World['gateways'][0]];
    // Five sockets (four signed-in users, one anonymous device) and two pollers (a user, an anonymous device), spread over both gateways.
    const sockets = [
      viewer(g1.url, room, { user: 'alice' }),
      viewer(g1.url, room, { user: 'bob' }),
      viewer(g2.url, room, { user: 'carol' }),
      viewer(g2.url, room, { user: 'dave' }),
      viewer(g2.url, room, { device: 'anon-socket' }),
    ];
    await Promise.all(sockets.map((s) => s.opened));
    await poll(g1.url, room, { user: 'erin' });
    await poll(g2.url, room, { device: 'anon-poller' });
    const n = 7;

    await bothSay(room, n, n);
    // Pushed to every socket, whichever gateway holds it.
    await waitFor(() => (sockets.every((s) => s.counts?.viewers === n && s.counts.unique === n) ? true : undefined), {
      what: `every socket told ${n} viewers, ${n} unique (${JSON.stringify(sockets.map((s) => s.counts))})`,
    });

    // alice reconnects, to the other gateway: one viewer less, then the same viewer again.
    await close(sockets[0]!);
    await bothSay(room, n - 1);
    sockets[0] = viewer(g2.url, room, { user: 'alice' });
    await sockets[0].opened;
    // The count that includes her new socket was written in the same script as her PFADD: unique must not have moved.
    await bothSay(room, n, n);
    // So does the anonymous device; and the pollers poll again, each on the other gateway: still one viewer each.
    await close(sockets[4]!);
    await bothSay(room, n - 1);
    sockets[4] = viewer(g1.url, room, { device: 'anon-socket' });
    await sockets[4].opened;
    await poll(g2.url, room, { user: 'erin' });
    await poll(g1.url, room, { device: 'anon-poller' });
    await bothSay(room, n, n);

    // Three distinct users more: both figures grow by three.
    const more = [viewer(g1.url, room, { user: 'frank' }), viewer(g2.url, room, { user: 'grace' }), viewer(g2.url, room, { user: 'heidi' })];
    await Promise.all(more.map((s) => s.opened));
    await bothSay(room, n + 3, n + 3);
    await waitFor(() => ([...sockets, ...more].every((s) => s.counts?.viewers === n + 3 && s.counts.unique === n + 3) ? true : undefined), {
      what: `every socket told ${n + 3} viewers and unique viewers`,
    });

    // Everyone leaves: nobody is watching, the stream's unique viewers stay.
    await Promise.all([...sockets, ...more].map(close));
    await waitFor(
      async () => {
        const all = await Promise.all(sys.gateways.map((g) => state(g.url, room)));
        // The two pollers count until they have not polled for a while (POLL_MAX_MS × 2).
        return all.every((s) => s.viewers === 2 && s.uniqueViewers === n + 3) ? true : undefined;
      },
      { what: 'only the pollers left, unique viewers kept' },
    );
  });
});

describe('unique viewers in the analytics API', () => {
  it('GET /stats adds the stream\'s unique and concurrent viewers from Redis beside the archive\'s figures', async () => {
    // The gateway served from the archiver's process (embedded ClickHouse), as `npm start` runs it.
    const sys = await startWorld({ processor: false, gateways: 0, env: { PRESENCE_INTERVAL_MS: '300', MODERATION_ENABLED: 'false' } });
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'danmaku-presence-stats-'));
    const port = await freePort();
    const proc = new ServiceProcess(['archiver', 'gateway'], { env: { ...sys.env, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(port), GATEWAY_ID: `gw-${port}`, CLICKHOUSE_DATA_DIR: dataDir } });
    const sockets: WebSocket[] = [];
    try {
      await proc.start();
      const base = `http://127.0.0.1:${port}`;
      const room = randomName('stats-viewers');
      const join = async (q: string) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${room}/ws?${q}`);
        sockets.push(ws);
        await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
        return ws;
      };
      const first = await join(`token=${sys.token('ann')}`);
      await join(`token=${sys.token('ben')}`);
      await join('device=anon-stats');
      first.close();
      await join(`token=${sys.token('ann')}`); // ann again: not a new viewer
      const stats = await waitFor(
        async () => {
          const res = await fetch(`${base}/v1/rooms/${room}/stats`);
          if (res.status !== 200) return undefined;
          const body = (await res.json()) as { viewers?: { unique: number; concurrent: number }; totals: { comments: number } };
          return body.viewers?.unique === 3 && body.viewers.concurrent === 3 ? body : undefined;
        },
        { what: 'stats with 3 unique and 3 concurrent viewers', timeoutMs: 60_000, intervalMs: 200 },
      );
      expect(stats.totals.comments).toBe(0); // the archive's figures are there too (nothing was said)
    } finally {
      for (const ws of sockets) ws.terminate();
      await proc.stop();
      await sys.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
