/**
 * archive: events/s into ClickHouse through the archiver, against a raw insert
 * of the same rows. The log is a private topic filled directly with Avro
 * CommentPosted events over R rooms (as in rebuild); the archiver runs as the
 * real command (`npm run archiver -- run`) in a child process with that world's
 * environment and a private embedded data directory, and is timed from its
 * first partition assignment until its committed offsets reach the end of the
 * log (`measureLag` on its group). Then, in the bench process, a second private
 * embedded directory gets the same migrations and the very same rows (built
 * with archive/rows.ts from the same events and log positions) by plain
 * `client.insert`, in batches of the archiver's batch size (the raw rows are
 * built while producing, so the raw figure leaves out the decoding and row
 * building the archiver does).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openClickHouse } from '../../core/clickhouse.ts';
import { loadConfig } from '../../core/config.ts';
import { migrate, quoteIdent } from '../../archive/migrate.ts';
import { archiveLog, fillLog } from '../lib/archive.ts';
import { bars, svg } from '../lib/chart.ts';
import { requireInfra } from '../lib/infra.ts';
import { textTable } from '../lib/report.ts';
import { round } from '../lib/stats.ts';
import { worldId, cleanupLog, prepareLog, worldEnv } from '../../services/world.ts';

export interface ArchiveOptions {
  events: number;
  rooms: number;
  log(m: string): void;
}

export interface ArchiveResult {
  params: { events: number; rooms: number; partitions: number; batchRows: number; clickhouse: 'embedded' };
  textSource: string;
  produceSeconds: number;
  avroBytes: number;
  archiver: { startSeconds: number; catchUpSeconds: number; eventsPerSec: number; cpuSeconds: number; exitCode: number | null; rowsInserted: number; inserts: number };
  raw: { insertSeconds: number; eventsPerSec: number; inserts: number; rowsInTable: number };
  /** archiver events/s ÷ raw insert events/s. */
  ratio: number;
}

export async function runArchive(o: ArchiveOptions): Promise<ArchiveResult> {
  const partitions = 6;
  await requireInfra(loadConfig(), ['kafka', 'redis', 'registry']);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-archive-'));
  const env = worldEnv(worldId('bench-archive'), partitions, { CLICKHOUSE_DATA_DIR: path.join(tmp, 'archiver'), ARCHIVER_METRICS_PORT: '0' });
  const cfg = await prepareLog(env);
  try {
    o.log(`archive: writing ${o.events} events over ${o.rooms} rooms into ${env.TOPIC_ROOM_EVENTS}`);
    const t0 = performance.now();
    const filled = await fillLog(cfg, env, { events: o.events, roomOf: (i) => `archive-${i % o.rooms}`, videoStepMs: 20, keepRows: true, log: o.log });
    const buildAndProduce = (performance.now() - t0) / 1000;
    o.log(`archive: log written in ${buildAndProduce.toFixed(1)} s; running the archiver (\`npm run archiver -- run\`) (embedded, ${env.CLICKHOUSE_DATA_DIR})`);

    const run = await archiveLog(cfg, env, { events: o.events, gateway: false, maxMs: 30 * 60_000, log: o.log });
    await run.child.stop();
    const exitCode = await run.child.exited;
    o.log(`archive: archiver caught up in ${run.catchUpSeconds.toFixed(1)} s (${Math.round(run.eventsPerSec)} events/s); raw insert next`);

    // Its own account on stopping: `stopped (N rows in M inserts this run, …)`.
    const stopped = /stopped \((\d+) rows in (\d+) inserts/.exec(run.child.output.find((l) => /stopped \(\d+ rows/.test(l)) ?? '');
    const archivedRows = stopped ? Number(stopped[1]) : -1;
    const archiverInserts = stopped ? Number(stopped[2]) : -1;

    const rawDir = path.join(tmp, 'raw');
    const ch = await openClickHouse({ dataDir: rawDir, database: `${cfg.clickhouse.database}_raw` });
    let raw: ArchiveResult['raw'];
    try {
      await migrate(ch);
      const table = `${quoteIdent(ch.database)}.events`;
      const rows = filled.rows;
      const batch = run.batchRows;
      let inserts = 0;
      const r0 = performance.now();
      for (let i = 0; i < rows.length; i += batch) {
        await ch.client.insert({ table, values: rows.slice(i, i + batch), format: 'JSONEachRow' });
        inserts++;
      }
      const insertSeconds = (performance.now() - r0) / 1000;
      const rs = await ch.client.query({ query: `SELECT count() AS n FROM ${table}`, format: 'JSONEachRow' });
      const n = Number((await rs.json<{ n: string | number }>())[0]?.n ?? -1);
      raw = { insertSeconds: round(insertSeconds), eventsPerSec: round(rows.length / insertSeconds, 0), inserts, rowsInTable: n };
    } finally {
      await ch.close();
    }
    o.log(`archive: raw insert ${raw.insertSeconds} s (${raw.eventsPerSec} events/s)`);
    return {
      params: { events: o.events, rooms: o.rooms, partitions, batchRows: run.batchRows, clickhouse: 'embedded' },
      textSource: filled.textSource,
      produceSeconds: round(filled.produceSeconds),
      avroBytes: filled.bytes,
      archiver: { startSeconds: round(run.startSeconds), catchUpSeconds: round(run.catchUpSeconds), eventsPerSec: round(run.eventsPerSec, 0), cpuSeconds: round(run.cpuSeconds), exitCode, rowsInserted: archivedRows, inserts: archiverInserts },
      raw,
      ratio: round(run.eventsPerSec / raw.eventsPerSec, 3),
    };
  } finally {
    await cleanupLog(cfg, env);
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function archiveTable(r: ArchiveResult): string {
  const rows = [
    ['path', 'events', 'events/s', 'seconds', 'inserts', 'rows inserted'],
    ['archiver (Kafka → ClickHouse)', String(r.params.events), String(r.archiver.eventsPerSec), String(r.archiver.catchUpSeconds), String(r.archiver.inserts), String(r.archiver.rowsInserted)],
    ['raw client.insert', String(r.params.events), String(r.raw.eventsPerSec), String(r.raw.insertSeconds), String(r.raw.inserts), String(r.raw.rowsInTable)],
  ];
  return [
    textTable(rows),
    `archiver / raw insert = ${r.ratio} (batches of ${r.params.batchRows} rows, embedded ClickHouse; archiver start-up ${r.archiver.startSeconds} s not counted; archiver CPU ${r.archiver.cpuSeconds} s)`,
  ].join('\n');
}

export function archiveChart(r: ArchiveResult, machine: string): string {
  const a = bars({ x: 90, y: 80, w: 420, h: 300, title: 'Into ClickHouse', yLabel: 'events/s', groups: ['archiver', 'raw insert'], series: [{ name: `${r.params.events} events, batches of ${r.params.batchRows}`, values: [r.archiver.eventsPerSec, r.raw.eventsPerSec] }] });
  const b = bars({ x: 620, y: 80, w: 340, h: 300, title: 'Time', yLabel: 'seconds', groups: ['archiver catch-up', 'archiver start', 'raw insert'], series: [{ name: 'seconds', values: [r.archiver.catchUpSeconds, r.archiver.startSeconds, r.raw.insertSeconds] }] });
  return svg(1040, 440, `archive: archiver vs raw insert of ${r.params.events} events (ratio ${r.ratio})`, machine, [a, b]);
}
