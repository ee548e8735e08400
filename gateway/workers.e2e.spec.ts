/**
 * GATEWAY_WORKERS=2: one gateway service, two worker processes on one port.
 * Writes through the port work (HTTP and socket); sockets connected through
 * the port land on both workers and all receive the room's pushes; presence
 * counts the sockets of both; the service is ready when both listen, and a
 * worker killed with kill -9 is restarted (degraded meanwhile).
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World, type WorldGateway } from '../services/world.ts';
import { waitFor } from '../test/helpers.ts';
import { wsWriter, type WsWriter } from '../test/ws-writer.ts';

let sys: World;
let g: WorldGateway;
const sockets: WsWriter[] = [];

beforeAll(async () => {
  sys = await startWorld({ gateways: 0, env: { MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '1000', PRESENCE_INTERVAL_MS: '300' } });
  g = await sys.startGateway({ GATEWAY_WORKERS: '2' });
});
afterAll(async () => {
  for (const s of sockets) s.close();
  await sys?.stop();
});

/** The worker processes of the gateway service (children of its process). */
function workerPids(): number[] {
  const pid = g.proc.pid;
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function gatewaysOf(user: string): Promise<string[]> {
  const res = await fetch(`${g.url}/v1/admin/users/${user}/connections`, { headers: { authorization: `Bearer ${sys.token('ops', 'admin')}` } });
  const body = (await res.json()) as { connections: { gateway: string }[] };
  return body.connections.map((c) => c.gateway);
}

describe('GATEWAY_WORKERS=2', () => {
  it('is ready when both workers listen', () => {
    expect(g.proc.lastReport?.services.gateway).toEqual({ status: 'ok', detail: '2/2 workers listening' });
    expect(workerPids()).toHaveLength(2);
  });

  it('takes writes through one port, and sockets on both workers all receive the pushes and are counted', async () => {
    const room = `workers-${Date.now().toString(36)}`;
    // Connect until the port has handed sockets to both workers (the connection registry says which).
    const where = new Map<string, string>();
    const socketOf = new Map<string, WsWriter>();
    for (let i = 0; i < 12 && new Set(where.values()).size < 2; i++) {
      const user = `viewer-${i}`;
      const s = wsWriter(g.url, room, sys.token(user));
      sockets.push(s);
      socketOf.set(user, s);
      await s.ready;
      const gws = await waitFor(async () => {
        const x = await gatewaysOf(user);
        return x.length > 0 ? x : undefined;
      }, { what: `the registry entry of ${user}` });
      where.set(user, gws[0]!);
    }
    const ids = [...new Set(where.values())].sort();
    expect(ids).toEqual([`gw-${new URL(g.url).port}-w1`, `gw-${new URL(g.url).port}-w2`]);

    // Writes through the port: over HTTP and over a socket on each worker.
    const res = await fetch(`${g.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${sys.token('writer')}` }, body: JSON.stringify({ text: 'over http' }) });
    expect(res.status).toBe(202);
    const texts = ['over http'];
    for (const id of ids) {
      const user = [...where].find(([, gw]) => gw === id)![0];
      const m = await socketOf.get(user)!.send({ type: 'comment', text: `over a socket of ${id}` });
      expect(m.type, JSON.stringify(m)).toBe('ack');
      texts.push(`over a socket of ${id}`);
    }
    // Every socket, whichever worker holds it, receives every comment.
    const pushed = (s: WsWriter) => s.messages.flatMap((m) => (m.type === 'batch' ? m.events.flatMap((e) => (e.t === 'comment' ? [e.entry.text] : [])) : []));
    await waitFor(() => sockets.every((s) => texts.every((t) => pushed(s).includes(t))) || undefined, { what: 'every comment on every socket', timeoutMs: 20_000 });
    // Presence counts the sockets of both workers.
    const viewers = (s: WsWriter) => [...s.messages].reverse().find((m) => m.type === 'viewers' || m.type === 'snapshot') as { viewers?: number; count?: number } | undefined;
    await waitFor(() => sockets.every((s) => (viewers(s)?.count ?? viewers(s)?.viewers) === sockets.length) || undefined, {
      what: `viewer count ${sockets.length} on every socket`,
      timeoutMs: 15_000,
    });
  });

  it('restarts a worker killed with kill -9, degraded until it listens again', async () => {
    const [victim] = workerPids();
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => g.proc.lastReport?.services.gateway?.status === 'degraded' || undefined, { what: 'degraded health', timeoutMs: 10_000, intervalMs: 20 });
    await waitFor(() => (g.proc.lastReport?.services.gateway?.status === 'ok' && workerPids().length === 2 && !workerPids().includes(victim!)) || undefined, { what: 'the worker restarted', timeoutMs: 60_000 });
    expect(g.proc.health().status).toBe('ok');
    // The port serves on.
    const res = await fetch(`${g.url}/v1/rooms/after-restart/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${sys.token('writer')}` }, body: JSON.stringify({ text: 'still here' }) });
    expect(res.status).toBe(202);
  });

  it('reports itself down when a worker keeps dying (a crash loop), which the root sees', async () => {
    // Kill the same worker slot again and again: each restart's new process is the victim of the next kill.
    let victim = workerPids().at(-1)!;
    for (let i = 0; i < 8 && g.proc.exitCode === undefined; i++) {
      const before = workerPids();
      process.kill(victim, 'SIGKILL');
      const next = await waitFor(() => {
        if (g.proc.exitCode !== undefined) return -1;
        const now = workerPids();
        const fresh = now.filter((p) => !before.includes(p));
        return now.length === 2 && fresh.length === 1 ? fresh[0] : undefined;
      }, { what: 'a restart or the end', timeoutMs: 30_000, intervalMs: 20 });
      victim = next;
    }
    await g.proc.exited;
    expect(g.proc.health()).toEqual({ status: 'down', detail: 'exited with 1' });
  });
});
