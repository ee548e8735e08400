/**
 * A short chaos run inside the suite (`npm run chaos` is the full one): under
 * a steady load of comments and reactions, one of two processor processes and
 * then one of two gateways is killed with SIGKILL. Every acknowledged write is
 * in the log, the feed and the tallies exactly once, and every viewer —
 * WebSocket viewers resuming on the other gateway, HTTP pollers — was shown
 * every comment once. Only the private world's own processes are killed, so
 * it runs on the suite's shared servers.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testConfig } from '../test/helpers.ts';
import type { Servers } from './faults.ts';
import { runPhase, type PhaseOptions } from './run.ts';
import { dupOf, lostOf } from './verify.ts';
import { ChaosWorld } from './world.ts';

const cfg = testConfig();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chaos-e2e-'));
const lines: string[] = [];
const log = (m: string) => lines.push(m);
const world = new ChaosWorld({ prefix: 'chaos-e2e', servers: {}, clickhouseDir: dir, archiver: false, log });
// The shared servers are never killed here: only the world's processes are.
const shared: Servers = {
  kill9: () => Promise.reject(new Error('the suite does not kill shared servers')),
  up: () => Promise.reject(new Error('the suite does not restart shared servers')),
  redis: () => new Redis(cfg.redis.url),
};
const opts: PhaseOptions = { seconds: 12, repeats: 1, rate: 150, reactionRate: 40, rooms: 6, log };

beforeAll(async () => {
  await world.start();
}, 240_000);
afterAll(async () => {
  await world.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

for (const fault of ['processor-kill', 'gateway-kill'] as const) {
  it(`${fault}: no acknowledged write lost or duplicated, viewers resume without gaps`, { timeout: 240_000 }, async () => {
    const p = await runPhase(fault, world, shared, opts);
    const r = p.row;
    const context = `${JSON.stringify(r)}\n${lines.slice(-20).join('\n')}`;
    expect(r.acked, context).toBeGreaterThan(500);
    expect(lostOf(r), context).toBe(0);
    expect(dupOf(r), context).toBe(0);
    expect(r.viewerGaps, context).toBe(0);
    expect(r.viewerDups, context).toBe(0);
    expect(r.recoverySec.every(Number.isFinite), context).toBe(true);
  });
}
