/**
 * Child of the chaos run: writes the archive's event ids of one topic and how
 * many rows each has (`<id>\t<rows>` lines) to a file. A process of its own,
 * because the embedded engine's folder belongs to one process at a time (the
 * archiver has stopped by then) and one process opens one folder; a file, not
 * stdout, because a process that exits right after writing to a pipe may cut
 * the output short.
 *
 *   node --import tsx chaos/archive-ids.ts <topic> <out-file>   (CLICKHOUSE_DATA_DIR or CLICKHOUSE_URL from the environment)
 */
import fs from 'node:fs';
import { clickhouseOptions } from '../archive/connect.ts';
import { openClickHouse } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';

const [topic, out] = process.argv.slice(2);
if (!topic || !out) {
  console.error('usage: archive-ids.ts <topic> <out-file>');
  process.exit(2);
}
const ch = await openClickHouse(clickhouseOptions(loadConfig()));
try {
  const rs = await ch.client.query({
    query: 'SELECT event_id, count() FROM events WHERE kafka_topic = {topic:String} GROUP BY event_id',
    query_params: { topic },
    format: 'JSONCompactEachRow',
  });
  const rows = await rs.json<[string, string | number]>();
  fs.writeFileSync(out, rows.map(([id, n]) => `${id}\t${n}`).join('\n'));
  console.log(`${rows.length} event ids`);
} finally {
  await ch.close();
}
