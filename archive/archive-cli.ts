/**
 * npm run archive -- rebuild-views [--tables room_minute,chatter_hour] [--chunk-rows 1000000]
 *
 * Recomputes the derived tables (the materialized views' targets) from the
 * raw events table, chunk by chunk with a progress bar, each into a new table
 * swapped in once complete (archive/views.ts). Stop the archiver first: rows
 * it archives meanwhile would reach only the old tables (the rebuild notices
 * and keeps them). In embedded mode it cannot run beside the archiver anyway:
 * the data directory belongs to one process at a time.
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { openClickHouse } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { clickhouseOptions } from './connect.ts';
import { migrate } from './migrate.ts';
import { rebuildViews } from './views.ts';

const USAGE = `usage: npm run archive -- rebuild-views [--tables <t1,t2>] [--chunk-rows <n>]

  rebuild-views   recompute every derived table (room_minute, room_minute_reactions,
                  moderation_minute, chatter_hour) from the raw events table, one row
                  per event (FINAL), in chunks of whole hours of event time; each table
                  is built beside the old one and swapped in when complete.
                  Stop the archiver first (embedded mode: it holds the data directory).
  --tables        only these derived tables (comma-separated)
  --chunk-rows    most raw rows read per statement (default 1000000)`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { tables: { type: 'string' }, 'chunk-rows': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});

async function main(): Promise<number> {
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals[0] !== 'rebuild-views' || positionals.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const chunkRows = values['chunk-rows'] === undefined ? undefined : Number(values['chunk-rows']);
  if (chunkRows !== undefined && !(Number.isInteger(chunkRows) && chunkRows > 0)) throw new AppError('ERR_USAGE', `--chunk-rows must be a positive integer, got "${values['chunk-rows']}"`);
  const tables = values.tables?.split(',').map((t) => t.trim()).filter(Boolean);

  const cfg = loadConfig();
  const ch = await openClickHouse(clickhouseOptions(cfg));
  const bar = new cliProgress.SingleBar(
    { format: 'rebuild-views [{bar}] {percentage}% | {table} | {value}/{total} rows | {eta_formatted} left', noTTYOutput: true, notTTYSchedule: 1000, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  try {
    // The views must exist (and be the current ones) before they are recomputed.
    await migrate(ch, { log: (m) => console.log(`[archive] ${m}`) });
    const r = await rebuildViews(ch, {
      tables,
      chunkRows,
      onStart: (total, list, chunks) => {
        console.log(`[archive] rebuilding ${list.map((t) => t.table).join(', ')} from ${ch.database}.events (${ch.mode}): ${total / Math.max(1, list.length)} events in ${chunks.length} chunks`);
        bar.start(total, 0, { table: list[0]?.table ?? '-' });
      },
      onProgress: (p) => bar.update(p.done, { table: p.table }),
      log: (m) => {
        bar.stop();
        console.log(`[archive] ${m}`);
      },
    });
    bar.stop();
    for (const t of r.tables) console.log(`[archive] ${t.table}: ${t.rows} rows`);
    console.log(`[archive] done: ${r.tables.length} tables from ${r.events} events in ${r.chunks} chunks, ${r.seconds.toFixed(1)} s`);
    return 0;
  } finally {
    bar.stop();
    await ch.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `[archive] ${err.code}: ${err.message}` : `[archive] ${(err as Error).message ?? err}`);
    process.exit(1);
  },
);
