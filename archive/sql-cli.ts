/**
 * npm run sql -- "<query>"            runs SQL against the configured ClickHouse, prints a table
 * npm run sql -- --file q.sql         the query from a file
 * npm run sql -- --json "<query>"     rows as JSON lines instead
 *
 * Unqualified table names resolve in CLICKHOUSE_DATABASE. In embedded mode the
 * data directory must not be held by another process (a running archiver):
 * stop it, or point CLICKHOUSE_URL at a server.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { openClickHouse } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { clickhouseOptions } from './connect.ts';
import { renderTable, runSql } from './sql.ts';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { file: { type: 'string', short: 'f' }, json: { type: 'boolean' } } });

async function main(): Promise<number> {
  const sql = values.file ? fs.readFileSync(values.file, 'utf8') : positionals.join(' ');
  if (!sql.trim()) {
    console.error('usage: npm run sql -- "<query>"   (or --file q.sql; --json for JSON lines)');
    return 2;
  }
  const cfg = loadConfig();
  const ch = await openClickHouse(clickhouseOptions(cfg));
  try {
    const r = await runSql(ch, sql);
    if (!r.returnsRows) console.log(`ok (${r.seconds.toFixed(3)} s)`);
    else if (values.json) for (const row of r.rows) console.log(JSON.stringify(row));
    else {
      console.log(renderTable(r));
      console.log(`${r.rows.length} row${r.rows.length === 1 ? '' : 's'} in ${r.seconds.toFixed(3)} s (${ch.mode}, database ${ch.database})`);
    }
    return 0;
  } finally {
    await ch.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `${err.code}: ${err.message}` : (err as Error).message ?? err);
    process.exit(1);
  },
);
