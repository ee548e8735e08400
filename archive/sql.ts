/**
 * Running ad-hoc SQL against the archive (embedded or server, one code path)
 * and rendering the result as a table, for `npm run sql` and the docs' checks.
 */
import Table from 'cli-table3';
import type { ClickHouse } from '../core/clickhouse.ts';

export interface SqlResult {
  columns: { name: string; type: string }[];
  rows: Record<string, unknown>[];
  /** False for statements that return no rows (DDL, INSERT, SET ...). */
  returnsRows: boolean;
  seconds: number;
}

const ROW_STATEMENTS = /^\s*(\(|select\b|with\b|show\b|desc\b|describe\b|explain\b|exists\b|check\b)/i;

/** Strips leading comments and a trailing semicolon, so `-- note\nSELECT 1;` runs as typed. */
export function cleanStatement(sql: string): string {
  return sql
    .replace(/^(\s*--[^\n]*\n)+/, '')
    .trim()
    .replace(/;\s*$/, '');
}

export async function runSql(ch: ClickHouse, sql: string, params: Record<string, unknown> = {}): Promise<SqlResult> {
  const query = cleanStatement(sql);
  const t0 = performance.now();
  if (!ROW_STATEMENTS.test(query)) {
    await ch.client.command({ query, query_params: params });
    return { columns: [], rows: [], returnsRows: false, seconds: (performance.now() - t0) / 1000 };
  }
  const rs = await ch.client.query({ query, query_params: params, format: 'JSON' });
  const body = await rs.json<Record<string, unknown>>();
  return { columns: body.meta ?? [], rows: body.data, returnsRows: true, seconds: (performance.now() - t0) / 1000 };
}

const cell = (v: unknown): string => (v === null || v === undefined ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** A boxed table; CJK text is measured by display width, so columns line up. */
export function renderTable(r: SqlResult, maxCell = 80): string {
  const table = new Table({ head: r.columns.map((c) => c.name), style: { head: [], border: [], compact: true }, wordWrap: false });
  for (const row of r.rows) {
    table.push(r.columns.map((c) => {
      const s = cell(row[c.name]).replace(/\s+/g, ' ');
      return s.length > maxCell ? `${s.slice(0, maxCell - 1)}…` : s;
    }));
  }
  return table.toString();
}
