/**
 * Rebuilding the derived tables (the materialized views' targets:
 * room_minute, room_minute_reactions, moderation_minute, chatter_hour) from
 * the raw `events` table — after a view was changed, a target lost or
 * damaged, or to drop what duplicates from outside had added (a view counts
 * every inserted row; the rebuild reads the log with FINAL, one row per event).
 *
 * What to recompute comes from ClickHouse itself, not from a copy: each view
 * that reads `events` (system.tables: `events`' dependencies) with its own
 * SELECT (`as_select`) and its target (the `TO` of its definition). So the
 * rebuild runs exactly what the view runs on every insert, and cannot drift
 * from a later migration that changes a view.
 *
 * Per table: a new table of the same definition (`<table>__rebuild`), filled
 * chunk by chunk — whole hours of event time, grouped up to `chunkRows` rows,
 * so a chunk holds every row of each minute and hour the views group by —
 * with the view's SELECT, reading only the chunk (`additional_table_filters`)
 * and FINAL. Once every table is built, each is swapped with its old one
 * (EXCHANGE TABLES: atomic, so a reader sees the old table or the new, never
 * one half built), and the old one dropped. The view keeps writing to the
 * table by its name, the new one.
 *
 * The archiver must be stopped meanwhile: rows it archived during the rebuild
 * would reach only the old tables. The rebuild notices (the newest
 * `archived_at` moved) and keeps the old tables. In embedded mode it cannot
 * run beside the archiver anyway: the data directory belongs to one process.
 */
import type { ClickHouse } from '../core/clickhouse.ts';
import { AppError } from '../core/errors.ts';
import { quoteIdent } from './migrate.ts';

export interface DerivedTable {
  /** The materialized view. */
  view: string;
  /** Its target: the derived table readers query. */
  table: string;
  /** The view's SELECT, as ClickHouse holds it (reads the events table). */
  select: string;
}

/** A range of event time [fromSec, toSec) and the raw rows in it (for progress). */
export interface Chunk {
  fromSec: number;
  toSec: number;
  rows: number;
}

export interface RebuildProgress {
  table: string;
  /** Raw rows read so far, over every table. */
  done: number;
  total: number;
}

export interface RebuildOptions {
  /** Only these derived tables (default: all). */
  tables?: string[];
  /** Most raw rows per chunk (whole hours: one busy hour may be more). */
  chunkRows?: number;
  onStart?(total: number, tables: DerivedTable[], chunks: Chunk[]): void;
  /** After each chunk; awaited. */
  onProgress?(p: RebuildProgress): void | Promise<void>;
  log?(m: string): void;
}

export interface RebuildResult {
  tables: { table: string; rows: number }[];
  /** Raw rows (events) the rebuild read, per table. */
  events: number;
  chunks: number;
  seconds: number;
}

const SUFFIX = '__rebuild';

type N = number | string;

async function rows<T>(ch: ClickHouse, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  return (await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })).json<T>();
}

/** `db.name`, `` `db`.`name` `` → name (the last part, unquoted). */
function lastName(qualified: string): string {
  const parts = qualified.match(/`(?:[^`\\]|\\.)*`|[^.`]+/g) ?? [qualified];
  const last = parts[parts.length - 1]!;
  return last.startsWith('`') ? last.slice(1, -1).replace(/\\(.)/g, '$1') : last;
}

/** The views that read the events table, with their targets and SELECTs, as ClickHouse holds them. */
export async function derivedTables(ch: ClickHouse): Promise<DerivedTable[]> {
  const [events] = await rows<{ deps: string[] }>(ch, `SELECT dependencies_table AS deps FROM system.tables WHERE database = {db:String} AND name = 'events'`, { db: ch.database });
  const deps = events?.deps ?? [];
  if (deps.length === 0) return [];
  const views = await rows<{ name: string; as_select: string; create_table_query: string }>(
    ch,
    `SELECT name, as_select, create_table_query FROM system.tables
     WHERE database = {db:String} AND engine = 'MaterializedView' AND has({deps:Array(String)}, name) ORDER BY name`,
    { db: ch.database, deps },
  );
  return views.map((v) => {
    const to = /^CREATE MATERIALIZED VIEW\s+(?:`(?:[^`\\]|\\.)*`|\S)+?\s+TO\s+((?:`(?:[^`\\]|\\.)*`|[^\s(`])+)/.exec(v.create_table_query);
    if (!to || !v.as_select) throw new Error(`materialized view ${v.name} has no TO table or no SELECT in system.tables: ${v.create_table_query.slice(0, 200)}`);
    return { view: v.name, table: lastName(to[1]!), select: v.as_select };
  });
}

/** Whole hours of event time, grouped in order up to `chunkRows` raw rows each. */
export async function chunksOf(ch: ClickHouse, chunkRows: number): Promise<Chunk[]> {
  const hours = await rows<{ h: N; n: N }>(ch, `SELECT toUnixTimestamp(toStartOfHour(occurred_at)) AS h, count() AS n FROM ${quoteIdent(ch.database)}.events GROUP BY h ORDER BY h`);
  const chunks: Chunk[] = [];
  for (const { h, n } of hours) {
    const [from, count] = [Number(h), Number(n)];
    const last = chunks[chunks.length - 1];
    if (last && last.rows + count <= chunkRows) {
      last.toSec = from + 3600;
      last.rows += count;
    } else chunks.push({ fromSec: from, toSec: from + 3600, rows: count });
  }
  return chunks;
}

/**
 * What moves whenever anything is archived: the newest archived_at of the
 * events (set by ClickHouse at insert) and of the archiver's batch journal.
 * Not a row count: merges of duplicates lower it with nothing archived.
 */
async function watermark(ch: ClickHouse): Promise<string> {
  const db = quoteIdent(ch.database);
  const [w] = await rows<{ e: N; b: N }>(
    ch,
    `SELECT (SELECT toUnixTimestamp64Milli(max(archived_at)) FROM ${db}.events) AS e, (SELECT toUnixTimestamp64Milli(max(at)) FROM ${db}.archive_batches) AS b`,
  );
  return `${w?.e ?? 0}/${w?.b ?? 0}`;
}

export async function rebuildViews(ch: ClickHouse, o: RebuildOptions = {}): Promise<RebuildResult> {
  const t0 = performance.now();
  const db = quoteIdent(ch.database);
  const log = o.log ?? (() => {});
  const all = await derivedTables(ch);
  const unknown = (o.tables ?? []).filter((t) => !all.some((d) => d.table === t));
  if (unknown.length > 0) throw new AppError('ERR_USAGE', `not a derived table of ${ch.database}.events: ${unknown.join(', ')} (they are: ${all.map((d) => d.table).join(', ')})`);
  const tables = o.tables ? all.filter((d) => o.tables!.includes(d.table)) : all;
  const before = await watermark(ch);
  const chunks = await chunksOf(ch, o.chunkRows ?? 1_000_000);
  const events = chunks.reduce((a, c) => a + c.rows, 0);
  const total = events * tables.length;
  o.onStart?.(total, tables, chunks);
  // The filter applies to every read of the events table in the view's SELECT; its key is how the SELECT names it.
  const source = `${ch.database}.events`.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
  const built: string[] = [];
  let done = 0;
  try {
    for (const t of tables) {
      const fresh = `${db}.${quoteIdent(t.table + SUFFIX)}`;
      // Left over by an interrupted rebuild: never read by anyone, start again.
      await ch.client.command({ query: `DROP TABLE IF EXISTS ${fresh} SYNC` });
      await ch.client.command({ query: `CREATE TABLE ${fresh} AS ${db}.${quoteIdent(t.table)}` });
      built.push(t.table);
      for (const c of chunks) {
        const filter = `occurred_at >= toDateTime64(${c.fromSec}, 3, \\'UTC\\') AND occurred_at < toDateTime64(${c.toSec}, 3, \\'UTC\\')`;
        // Settings in the statement, not per request: on the embedded engine request settings stick
        // to the session (the archiver's deduplication token would otherwise drop every chunk after the first).
        await ch.client.command({
          query: `INSERT INTO ${fresh} SETTINGS insert_deduplicate = 0, insert_deduplication_token = '' ${t.select} SETTINGS final = 1, additional_table_filters = {'${source}': '${filter}'}`,
        });
        done += c.rows;
        await o.onProgress?.({ table: t.table, done, total });
      }
    }
    const after = await watermark(ch);
    if (after !== before) {
      throw new AppError('ERR_REBUILD_RACED', `events were archived while the views were rebuilt (newest archived_at of events/batches ${before} → ${after}): stop the archiver and run it again; the tables were left as they were`);
    }
    for (const table of built) {
      const fresh = `${db}.${quoteIdent(table + SUFFIX)}`;
      await ch.client.command({ query: `EXCHANGE TABLES ${db}.${quoteIdent(table)} AND ${fresh}` });
      await ch.client.command({ query: `DROP TABLE ${fresh} SYNC` });
      log(`${table}: rebuilt and swapped in`);
    }
  } catch (err) {
    // Nothing was swapped (or the swaps done are complete tables): drop what was built and not swapped.
    for (const table of built) await ch.client.command({ query: `DROP TABLE IF EXISTS ${db}.${quoteIdent(table + SUFFIX)} SYNC` }).catch(() => {});
    throw err;
  }
  const counts = await Promise.all(tables.map(async (t) => ({ table: t.table, rows: Number((await rows<{ n: N }>(ch, `SELECT count() AS n FROM ${db}.${quoteIdent(t.table)}`))[0]?.n ?? 0) })));
  return { tables: counts, events, chunks: chunks.length, seconds: (performance.now() - t0) / 1000 };
}
