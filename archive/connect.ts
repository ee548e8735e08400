/**
 * Opening the archive from config: the embedded engine, or the server at
 * CLICKHOUSE_URL — `core/clickhouse.ts` hides which; everything after this
 * runs the same statements either way.
 */
import { backoffMs } from '../core/backoff.ts';
import { openClickHouse, type ClickHouse, type ClickHouseOptions } from '../core/clickhouse.ts';
import type { Config } from '../core/config.ts';
import { migrate } from './migrate.ts';

export function clickhouseOptions(cfg: Config): ClickHouseOptions {
  return { url: cfg.clickhouse.url, dataDir: cfg.clickhouse.dataDir, database: cfg.clickhouse.database, username: cfg.clickhouse.username, password: cfg.clickhouse.password };
}

/** Opens ClickHouse and applies the migrations, backing off while a server is unavailable. */
export async function openArchive(cfg: Config, opts: { log?: (m: string) => void; signal?: AbortSignal; maxAttempts?: number } = {}): Promise<ClickHouse> {
  for (let attempt = 0; ; attempt++) {
    let ch: ClickHouse | undefined;
    try {
      ch = await openClickHouse(clickhouseOptions(cfg));
      await migrate(ch, { log: opts.log });
      return ch;
    } catch (err) {
      await ch?.close().catch(() => {});
      // Embedded: a directory held by another process will not free itself by waiting here.
      if (!cfg.clickhouse.url || opts.signal?.aborted || attempt + 1 >= (opts.maxAttempts ?? Infinity)) throw err;
      const wait = backoffMs(attempt, cfg.archive.maxBackoffMs, 200);
      opts.log?.(`ClickHouse unavailable (${(err as Error).message.split('\n')[0]}); retrying in ${Math.round(wait)} ms`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
