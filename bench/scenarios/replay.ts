/**
 * replay: reading one long room back from the archive. M CommentPosted events
 * of one room go into a private topic with realistic video offsets (50 events
 * per second of video: 1M events ≈ 5.5 h); the archiver runs with the gateway
 * in the same process (`npm run archiver -- run --gateway`, what embedded mode
 * needs) on a private embedded data directory until its committed offsets
 * reach the end of the log. Then, against that gateway:
 * - the latency of the first JSON page (`view=live&format=json`, the default
 *   page size REPLAY_PAGE_ITEMS) for W random 10-minute windows, one at a time;
 * - the rate of a whole-room `format=ndjson` replay read to its `end` line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../core/config.ts';
import { archiveLog, fillLog } from '../lib/archive.ts';
import { bars, svg } from '../lib/chart.ts';
import { requireInfra } from '../lib/infra.ts';
import { freePort } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { Hist, round, type LatencySummary } from '../lib/stats.ts';
import { worldId, cleanupLog, prepareLog, worldEnv } from '../../services/world.ts';

export interface ReplayOptions {
  events: number;
  windows: number;
  log(m: string): void;
}

export interface ReplayResult {
  params: { events: number; eventsPerVideoSec: number; videoHours: number; windows: number; windowMs: number; pageItems: number; clickhouse: 'embedded' };
  textSource: string;
  produceSeconds: number;
  archive: { startSeconds: number; catchUpSeconds: number; eventsPerSec: number };
  firstPage: LatencySummary & { itemsMean: number; errors: number };
  stream: { items: number; bytes: number; seconds: number; itemsPerSec: number; mbPerSec: number; firstByteMs: number; endLine: boolean };
}

const WINDOW_MS = 600_000;
const EVENTS_PER_VIDEO_SEC = 50;

export async function runReplay(o: ReplayOptions): Promise<ReplayResult> {
  const partitions = 3;
  await requireInfra(loadConfig(), ['kafka', 'redis', 'registry']);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-replay-'));
  const port = await freePort();
  const env = worldEnv(worldId('bench-replay'), partitions, {
    CLICKHOUSE_DATA_DIR: path.join(tmp, 'chdb'),
    ARCHIVER_METRICS_PORT: '0',
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_PORT: String(port),
    GATEWAY_ID: `bench-replay-${port}`,
  });
  const cfg = await prepareLog(env);
  const room = 'replay-0';
  const step = 1000 / EVENTS_PER_VIDEO_SEC;
  const videoMs = o.events * step;
  try {
    o.log(`replay: writing ${o.events} events of room ${room} (${(videoMs / 3_600_000).toFixed(2)} h of video) into ${env.TOPIC_ROOM_EVENTS}`);
    const filled = await fillLog(cfg, env, { events: o.events, roomOf: () => room, videoStepMs: step, keepRows: false, log: o.log });
    o.log(`replay: log written in ${filled.produceSeconds.toFixed(1)} s; running the archiver and the gateway in one process (\`npm run archiver -- run --gateway\`) (embedded, ${env.CLICKHOUSE_DATA_DIR})`);
    const run = await archiveLog(cfg, env, { events: o.events, gateway: true, maxMs: 60 * 60_000, log: o.log });
    try {
      const base = `http://127.0.0.1:${port}/v1/rooms/${room}/replay`;
      o.log(`replay: archived in ${run.catchUpSeconds.toFixed(1)} s; ${o.windows} first pages of random 10-minute windows`);

      // One warm-up page (not counted), then the windows one after another.
      await (await fetch(`${base}?fromMs=0&toMs=${WINDOW_MS}&view=live&format=json`)).arrayBuffer();
      const hist = new Hist();
      let items = 0;
      let errors = 0;
      for (let w = 0; w < o.windows; w++) {
        const a = Math.floor(Math.random() * Math.max(1, videoMs - WINDOW_MS));
        const t0 = performance.now();
        const res = await fetch(`${base}?fromMs=${a}&toMs=${a + WINDOW_MS}&view=live&format=json`);
        const body = (await res.json()) as { items?: unknown[] };
        const ms = performance.now() - t0;
        if (!res.ok) {
          errors++;
          o.log(`  window ${a}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
          continue;
        }
        hist.add(ms);
        items += body.items?.length ?? 0;
      }
      const firstPage = { ...hist.summary(), itemsMean: round(items / Math.max(1, hist.n), 1), errors };
      o.log(`replay: first page p50 ${firstPage.p50} / p99 ${firstPage.p99} ms; whole-room ndjson stream next`);

      const s0 = performance.now();
      const res = await fetch(`${base}?view=live&format=ndjson`);
      if (!res.ok || !res.body) throw new Error(`ndjson replay: HTTP ${res.status} ${await res.text()}`);
      let bytes = 0;
      let lines = 0;
      let firstByteMs = -1;
      let tail = '';
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (firstByteMs < 0) firstByteMs = performance.now() - s0;
        bytes += value.length;
        for (let i = 0; i < value.length; i++) if (value[i] === 10) lines++;
        tail = (tail + Buffer.from(value.subarray(Math.max(0, value.length - 512))).toString('utf8')).slice(-1024);
      }
      const seconds = (performance.now() - s0) / 1000;
      const last = tail.trimEnd().split('\n').pop() ?? '';
      const endLine = /"kind":"end"/.test(last);
      const streamItems = endLine ? lines - 1 : lines;
      const stream = { items: streamItems, bytes, seconds: round(seconds), itemsPerSec: round(streamItems / seconds, 0), mbPerSec: round(bytes / 1e6 / seconds, 2), firstByteMs: round(firstByteMs, 1), endLine };
      o.log(`replay: streamed ${streamItems} items (${(bytes / 1e6).toFixed(1)} MB) in ${seconds.toFixed(1)} s`);
      return {
        params: { events: o.events, eventsPerVideoSec: EVENTS_PER_VIDEO_SEC, videoHours: round(videoMs / 3_600_000), windows: o.windows, windowMs: WINDOW_MS, pageItems: cfg.archive.replayPageItems, clickhouse: 'embedded' },
        textSource: filled.textSource,
        produceSeconds: round(filled.produceSeconds),
        archive: { startSeconds: round(run.startSeconds), catchUpSeconds: round(run.catchUpSeconds), eventsPerSec: round(run.eventsPerSec, 0) },
        firstPage,
        stream,
      };
    } finally {
      await run.child.stop();
    }
  } finally {
    await cleanupLog(cfg, env);
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function replayTable(r: ReplayResult): string {
  const p = r.firstPage;
  const rows = [
    ['measure', 'events', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'items/s', 'MB/s'],
    [`first page, ${r.params.windows} random 10-min windows`, String(r.params.events), String(p.p50), String(p.p95), String(p.p99), String(p.max), '', ''],
    ['whole room, ndjson to the end', String(r.stream.items), '', '', '', '', String(r.stream.itemsPerSec), String(r.stream.mbPerSec)],
  ];
  return [
    textTable(rows),
    `${r.params.events} events, ${r.params.videoHours} h of video at ${r.params.eventsPerVideoSec}/s; pages of ${r.params.pageItems} (mean ${p.itemsMean} items, ${p.errors} errors); stream ${r.stream.seconds} s, first byte ${r.stream.firstByteMs} ms${r.stream.endLine ? '' : ', NO end line'}; archived at ${r.archive.eventsPerSec} events/s`,
  ].join('\n');
}

export function replayChart(r: ReplayResult, machine: string): string {
  const p = r.firstPage;
  const a = bars({ x: 90, y: 80, w: 380, h: 300, title: 'First JSON page, 10-minute window', yLabel: 'ms', groups: ['p50', 'p95', 'p99'], series: [{ name: `${r.params.windows} windows`, values: [p.p50, p.p95, p.p99] }] });
  const b = bars({ x: 580, y: 80, w: 380, h: 300, title: 'Whole-room NDJSON stream', yLabel: 'items/s', groups: ['items/s'], series: [{ name: `${r.stream.items} items, ${r.stream.mbPerSec} MB/s`, values: [r.stream.itemsPerSec] }] });
  return svg(1040, 440, `replay: one room, ${r.params.events} archived events (${r.params.videoHours} h of video)`, machine, [a, b]);
}
