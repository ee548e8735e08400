/**
 * ClickHouse schema as migrations: `infra/clickhouse/migrations/NNNN_name.sql`,
 * applied in name order, each once, recorded in `schema_migrations` with a
 * checksum. A recorded migration whose file changed is an error (schema drift):
 * add a new migration instead of editing an applied one.
 *
 * Every statement is idempotent (`IF NOT EXISTS`), so a migration interrupted
 * half-way is simply run again. Table names are qualified with the configured
 * database (`${database}` in the files): the same statements then run on the
 * embedded engine, where there is no per-request database, and on a server.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';
import type { ClickHouse } from '../core/clickhouse.ts';
import { AppError } from '../core/errors.ts';

export const MIGRATIONS_DIR = path.join(REPO_ROOT, 'infra', 'clickhouse', 'migrations');

export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

export function quoteIdent(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

/** The migration files, in order (pure apart from reading the folder). */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = fs.readFileSync(path.join(dir, f), 'utf8');
      return { version: f.slice(0, 4), name: f.replace(/\.sql$/, ''), sql, checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16) };
    });
}

/** Splits a file into statements (`;` ends a statement at the end of a line) with the database substituted. */
export function statementsOf(sql: string, database: string): string[] {
  return sql
    .replaceAll('${database}', quoteIdent(database))
    .split(/;[ \t]*(?:\r?\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.split('\n').some((line) => line.trim() !== '' && !line.trim().startsWith('--')));
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

export async function migrate(ch: ClickHouse, opts: { dir?: string; log?: (m: string) => void } = {}): Promise<MigrateResult> {
  const db = quoteIdent(ch.database);
  const log = opts.log ?? (() => {});
  await ch.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
  await ch.client.command({
    query: `CREATE TABLE IF NOT EXISTS ${db}.schema_migrations (version String, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version`,
  });
  const rs = await ch.client.query({ query: `SELECT version, name, checksum FROM ${db}.schema_migrations ORDER BY version`, format: 'JSONEachRow' });
  const done = new Map((await rs.json<{ version: string; name: string; checksum: string }>()).map((r) => [r.version, r]));
  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  for (const m of loadMigrations(opts.dir)) {
    const prior = done.get(m.version);
    if (prior) {
      if (prior.checksum !== m.checksum) {
        throw new AppError(
          'ERR_MIGRATION_DRIFT',
          `migration ${m.name} was applied with checksum ${prior.checksum} but the file now has ${m.checksum}: add a new migration instead of editing an applied one`,
        );
      }
      result.alreadyApplied.push(m.name);
      continue;
    }
    for (const statement of statementsOf(m.sql, ch.database)) await ch.client.command({ query: statement });
    await ch.client.insert({
      table: `${db}.schema_migrations`,
      values: [{ version: m.version, name: m.name, checksum: m.checksum }],
      format: 'JSONEachRow',
      // Explicit, because on the embedded engine settings stick to the session.
      clickhouse_settings: { insert_deduplication_token: '' },
    });
    result.applied.push(m.name);
    log(`migration ${m.name} applied`);
  }
  return result;
}
