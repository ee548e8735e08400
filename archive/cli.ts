/**
 * npm run archiver -- run [--gateway]   archive the log into ClickHouse (migrations first);
 *                                       --gateway also serves the gateway, replay and stats
 *                                       from this process (what embedded mode needs)
 * npm run archiver -- migrate           apply the ClickHouse migrations and exit
 * npm run archiver -- status            per partition: log end, committed, archived rows
 */
import { parseArgs } from 'node:util';
import { openClickHouse } from '../core/clickhouse.ts';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { shutdownSignal, untilAborted } from '../core/lifecycle.ts';
import { measureLag } from '../pipelines/service.ts';
import { logClient } from '../topics/client.ts';
import { topicNames } from '../topics/topics.ts';
import { archiverGroup } from './archiver.ts';
import { migrate, quoteIdent } from './migrate.ts';
import { clickhouseOptions } from './connect.ts';
import { ArchiveService } from './service.ts';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { gateway: { type: 'boolean' } } });
const cfg = loadConfig();
const log = (m: string) => console.log(`[archiver] ${new Date().toISOString()} ${m}`);

async function run(): Promise<void> {
  const svc = new ArchiveService({ cfg, log });
  const signal = shutdownSignal(log);
  await svc.start(signal);
  let closeGateway = async () => {};
  if (values.gateway) {
    // One process holds the embedded data directory, so the routes reading it live here too.
    const { createGatewayDeps } = await import('../gateway/deps.ts');
    const { buildGateway } = await import('../gateway/app.ts');
    const deps = await createGatewayDeps(cfg);
    deps.clickhouse = svc.clickhouse;
    const app = await buildGateway(deps, { logger: cfg.logLevel !== 'silent' });
    const address = await app.listen({ host: cfg.gateway.host, port: cfg.gateway.port });
    log(`gateway ${cfg.gateway.id} listening on ${address} (replay and stats on this process's ClickHouse)`);
    closeGateway = async () => {
      await app.close();
      await deps.close();
    };
  }
  log(`ready (group ${svc.groupId}, batches of up to ${cfg.archive.batchRows} rows / ${cfg.archive.batchMs} ms)`);
  const crashed = await Promise.race([
    untilAborted(signal).then(() => undefined),
    svc.crashed,
  ]);
  await closeGateway();
  await svc.stop();
  if (crashed) throw crashed;
  const s = svc.stats;
  log(`stopped (${s.inserted} rows in ${s.inserts} inserts this run, ${s.failures} failed attempts)`);
}

async function status(): Promise<void> {
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

async function main(): Promise<void> {
  switch (positionals[0]) {
    case 'run':
      return run();
    case 'migrate': {
      const ch = await openClickHouse(clickhouseOptions(cfg));
      try {
        const r = await migrate(ch, { log });
        log(`applied: ${r.applied.join(', ') || 'none'}; already applied: ${r.alreadyApplied.join(', ') || 'none'} (${ch.mode}, database ${ch.database})`);
      } finally {
        await ch.close();
      }
      return;
    }
    case 'status':
      return status();
    default:
      console.error('usage: npm run archiver -- <run [--gateway]|migrate|status>');
      process.exitCode = 2;
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    console.error(err instanceof AppError ? `[archiver] ${err.code}: ${err.message}` : err);
    process.exit(1);
  },
);
