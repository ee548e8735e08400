/**
 * The archiver's operator commands (run by services/cli.ts):
 * `migrate` applies the ClickHouse migrations; `status` prints, per
 * partition, the log end, the archiver's committed offset, its lag and what
 * the archive holds.
 */
import { openClickHouse } from '../core/clickhouse.ts';
import type { Config } from '../core/config.ts';
import { logClient } from '../topics/client.ts';
import { measureLag } from '../topics/lag.ts';
import { topicNames } from '../topics/topics.ts';
import { archiverGroup } from '../pipelines/naming.ts';
import { clickhouseOptions } from './connect.ts';
import { migrate, quoteIdent } from './migrate.ts';

export async function migrateArchive(cfg: Config, log: (m: string) => void): Promise<void> {
  const ch = await openClickHouse(clickhouseOptions(cfg));
  try {
    const r = await migrate(ch, { log });
    log(`applied: ${r.applied.join(', ') || 'none'}; already applied: ${r.alreadyApplied.join(', ') || 'none'} (${ch.mode}, database ${ch.database})`);
  } finally {
    await ch.close();
  }
}

export async function archiveStatus(cfg: Config): Promise<void> {
  const topic = topicNames(cfg).roomEvents;
  const client = logClient(cfg, 'archiver-status');
  const admin = client.admin();
  await admin.connect();
  const group = archiverGroup(cfg.pipelines.groupPrefix);
  const [ends, committed, lag] = await Promise.all([admin.endOffsets(topic), admin.committedOffsets(group, topic), measureLag(admin, group, topic)]);
  await admin.disconnect();
  await client.close();
  const archived = new Map<number, { rows: number; max: number }>();
  let note = '';
  try {
    const ch = await openClickHouse(clickhouseOptions(cfg));
    try {
      const rs = await ch.client.query({
        query: `SELECT kafka_partition AS p, count() AS n, max(kafka_offset) AS m FROM ${quoteIdent(ch.database)}.events WHERE kafka_topic = {topic:String} GROUP BY p`,
        query_params: { topic },
        format: 'JSONEachRow',
      });
      for (const r of await rs.json<{ p: number; n: number | string; m: number | string }>()) archived.set(Number(r.p), { rows: Number(r.n), max: Number(r.m) });
    } finally {
      await ch.close();
    }
  } catch (err) {
    note = `(ClickHouse not readable from here: ${(err as Error).message.split('\n')[0]})`;
  }
  console.log(`topic ${topic}, group ${group}`);
  console.log(['partition', 'log end', 'committed', 'lag', 'rows archived', 'last offset archived'].join('\t'));
  for (const [p, end] of [...ends].sort((a, b) => a[0] - b[0])) {
    const a = archived.get(p);
    console.log([p, end, committed.get(p) ?? '-1', lag.get(p) ?? '?', a?.rows ?? '-', a?.max ?? '-'].join('\t'));
  }
  if (note) console.log(note);
}
