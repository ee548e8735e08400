/**
 * A 100k-event room archived by the real archiver process, killed with
 * SIGKILL twice on the way (once while events are still being produced, once
 * while it catches up) and restarted: every event lands exactly once — not
 * once after merges, but once, full stop: no block is ever inserted twice —
 * and the materialized views agree with the log. Embedded ClickHouse with a
 * private data directory: only one process can open it, so this test reads it
 * after the last archiver has exited. Prints the archive rate and replay
 * latencies on the archived room.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openClickHouse } from '../core/clickhouse.ts';
import { measureLag } from '../topics/lag.ts';
import { archiverGroup } from '../pipelines/naming.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startService } from '../test/processes.ts';
import type { ServiceProcess } from '../services/spawn.ts';
import { prepareLog, worldEnv, worldId } from '../services/world.ts';
import { mixedStream } from '../test/streams.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin } from '../topics/kafka.ts';
import { ClickHouseReplaySource, replay } from './replay.ts';

const TOTAL = 100_000;
const base = testConfig();
const client = logClient(base, 'archive-kill-test');
let admin: LogAdmin;
let dataDir: string;

beforeAll(async () => {
  admin = client.admin();
  await admin.connect();
  dataDir = await mkdtemp(path.join(os.tmpdir(), `danmaku-archive-kill-${randomBytes(4).toString('hex')}-`));
});
afterAll(async () => {
  await admin.disconnect();
  await client.close();
  await rm(dataDir, { recursive: true, force: true });
});

it('archives a 100k-event room with no loss and no duplicate across two kill -9 of the archiver', { timeout: 240_000 }, async () => {
  const id = worldId('arch-kill');
  const env = worldEnv(id, 3, {
    CLICKHOUSE_DATA_DIR: dataDir,
    // Smaller inserts: more of them, so the kills are likelier to land between an insert and its commit.
    ARCHIVER_BATCH_ROWS: '2000',
    ARCHIVER_BATCH_MS: '100',
  });
  const cfg = await prepareLog(env);
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(id) });
  await codec.init();
  const group = archiverGroup(cfg.pipelines.groupPrefix);
  const committed = async () => [...(await admin.committedOffsets(group, id)).values()].reduce((a, o) => a + Math.max(0, Number(o)), 0);
  const behind = async () => [...(await measureLag(admin, group, id)).values()].reduce((a, b) => a + b, 0);

  // Video offsets that advance with event time, as a real stream's do (mixedStream's run ahead of it).
  const T0 = 1_767_225_600_000;
  const events = mixedStream({ rooms: ['big-room'], count: TOTAL, seed: 100, startMs: T0 }).map((e) => (e.videoOffsetMs === null ? e : { ...e, videoOffsetMs: e.occurredAt - T0 }));
  const producer = client.producer({ maxBatch: 2000 });
  await producer.connect();
  const produce = (from: number, to: number) => Promise.all(events.slice(from, to).map((e) => producer.send({ topic: id, key: e.roomId, value: codec.encode(e) })));

  const outputs: string[] = [];
  const start = async () => {
    const p = await startService(['archiver', 'run'], env);
    return p;
  };
  const kill = async (p: ServiceProcess) => {
    await p.kill9();
    outputs.push(...p.output);
  };

  // 1. Archive while producing; kill -9 once a good part is archived, mid-stream.
  const tProduce = Date.now();
  const a = await start();
  await produce(0, 40_000);
  await waitFor(async () => ((await committed()) >= 15_000 ? true : undefined), { what: 'the first archiver to make progress', timeoutMs: 60_000, intervalMs: 50 });
  await kill(a);
  const afterFirstKill = await committed();
  expect(afterFirstKill).toBeLessThan(TOTAL);
  await produce(40_000, TOTAL);
  const produceSeconds = (Date.now() - tProduce) / 1000;

  // 2. Restart, kill -9 again while it catches up.
  const b = await start();
  await waitFor(async () => ((await committed()) >= afterFirstKill + 20_000 ? true : undefined), { what: 'the second archiver to make progress', timeoutMs: 60_000, intervalMs: 50 });
  await kill(b);
  const afterSecondKill = await committed();
  expect(afterSecondKill).toBeLessThan(TOTAL);

  // 3. Restart; it catches up; stop it gracefully, so the data directory is free.
  const t0 = Date.now();
  const c = await start();
  const tReady = Date.now();
  await waitFor(async () => ((await behind()) === 0 ? true : undefined), { what: 'the last archiver to catch up', timeoutMs: 120_000, intervalMs: 100 });
  const catchUpSeconds = (Date.now() - tReady) / 1000;
  await c.stop();
  outputs.push(...c.output);
  await producer.disconnect();
  console.log(`[archive-kill] produced ${TOTAL} events in ${produceSeconds.toFixed(1)} s; committed ${afterFirstKill} before the 1st kill, ${afterSecondKill} before the 2nd`);
  console.log(`[archive-kill] last archiver: ${TOTAL - afterSecondKill} events caught up in ${catchUpSeconds.toFixed(1)} s after ready (${Math.round((TOTAL - afterSecondKill) / catchUpSeconds)} events/s; start to ready ${((tReady - t0) / 1000).toFixed(1)} s)`);
  const resent = outputs.filter((l) => /re-sending the insert/.test(l));
  console.log(`[archive-kill] inserts re-sent after a kill: ${resent.length}${resent.length ? ` (${resent.join(' | ')})` : ''}`);

  const ch = await openClickHouse({ dataDir, database: cfg.clickhouse.database });
  try {
    const one = async (q: string) => Number(Object.values((await (await ch.client.query({ query: q, format: 'JSONEachRow' })).json<Record<string, unknown>>())[0] ?? {})[0]);
    // No FINAL: not a single row was inserted twice.
    expect(await one('SELECT count() FROM events')).toBe(TOTAL);
    expect(await one('SELECT uniqExact(event_id) FROM events')).toBe(TOTAL);
    const ids = (await (await ch.client.query({ query: 'SELECT event_id FROM events ORDER BY event_id', format: 'JSONCompactEachRow' })).json<[string]>()).map((r) => r[0]);
    expect(ids).toEqual(events.map((e) => e.eventId).sort());
    // Offsets 0..TOTAL-1 of the room's partition, each once.
    expect(await one('SELECT max(kafka_offset) - min(kafka_offset) + 1 FROM events')).toBe(TOTAL);
    // The views saw every event exactly once too.
    const comments = events.filter((e) => e.payload.type === 'CommentPosted').length;
    const reactions = events.reduce((n, e) => n + (e.payload.type === 'ReactionAdded' ? e.payload.count : 0), 0);
    expect(await one('SELECT sum(events) FROM room_minute')).toBe(TOTAL);
    expect(await one('SELECT sum(comments) FROM room_minute')).toBe(comments);
    expect(await one('SELECT sum(reactions) FROM room_minute_reactions')).toBe(reactions);
    expect(await one('SELECT sum(comments) FROM chatter_hour')).toBe(comments);
    const moderation = events.filter((e) => ['CommentDeleted', 'UserMuted', 'CommentPinned', 'CommentUnpinned'].includes(e.payload.type)).length;
    expect(await one('SELECT sum(actions) FROM moderation_minute')).toBe(moderation);

    // Figures: replay of the 100k-event room, first page and the whole timeline streamed.
    const src = new ClickHouseReplaySource(ch);
    const req = { room: 'big-room', perSecond: 5, maxItems: 500, nowMs: Date.now(), chunkRows: 5000 };
    for (const view of ['live', 'sampled', 'moderated'] as const) {
      let t = performance.now();
      let n = 0;
      for await (const o of replay(src, { ...req, view, limit: 500 })) if (o.type === 'item') n++;
      const firstPage = performance.now() - t;
      const middle = events[TOTAL / 2]!.occurredAt - T0;
      t = performance.now();
      for await (const _ of replay(src, { ...req, view, limit: 500, fromMs: middle })) void _;
      const middlePage = performance.now() - t;
      t = performance.now();
      let all = 0;
      let waitingMax = 0;
      for await (const o of replay(src, { ...req, view })) {
        if (o.type === 'item') all++;
        else waitingMax = o.waitingMax;
      }
      console.log(
        `[archive-kill] replay ${view}: first page (${n} items) ${firstPage.toFixed(0)} ms, a page from the middle ${middlePage.toFixed(0)} ms, ` +
          `whole timeline ${all} items streamed in ${(performance.now() - t).toFixed(0)} ms (at most ${waitingMax} items waiting to be ordered)`,
      );
      expect(n).toBe(500);
    }
  } finally {
    await ch.close();
  }
});
