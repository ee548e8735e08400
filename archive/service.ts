/**
 * The archiver as a service: opens ClickHouse (embedded or server, one code
 * path), applies the migrations, runs the archiver and measures its lag into
 * `archiveMetrics` (served by the process that runs it, see services/). Lifecycle `start(signal)` / `stop()` like every
 * long-running part. In embedded mode the data directory belongs to this one
 * process, so the replay and analytics routes use `clickhouse` from here (see
 * `npm run archiver -- run --gateway`); with a server they may run anywhere.
 *
 * Every generation of the log is archived (topics/generations.ts): a
 * repartition's new topic is found among the broker's topics and gets an
 * archiver of its own, in the group `<group>.g<N>`; the old one's archiver
 * goes on until the end (its topic no longer grows). Order across
 * generations is kept by the rows' positions, not by insertion.
 */
import client from 'prom-client';
import type { ClickHouse } from '../core/clickhouse.ts';
import type { Config } from '../core/config.ts';
import { Liveness, type Health, type Service } from '../core/service.ts';
import { measureLag } from '../topics/lag.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogClient } from '../topics/kafka.ts';
import { topicNames } from '../topics/topics.ts';
import { generationGroup, generationOfTopic, generationTopic } from '../topics/generations.ts';
import { archiverGroup } from '../pipelines/naming.ts';
import { Archiver } from './archiver.ts';
import { openArchive } from './connect.ts';
import { migrate } from './migrate.ts';

export const archiveMetrics = new client.Registry();
const insertedRows = new client.Counter({ name: 'danmaku_archiver_rows_inserted_total', help: 'Events inserted into ClickHouse.', registers: [archiveMetrics] });
const insertSeconds = new client.Histogram({
  name: 'danmaku_archiver_insert_seconds',
  help: 'Duration of one batch insert (journal + rows).',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [archiveMetrics],
});
const batchRows = new client.Histogram({ name: 'danmaku_archiver_batch_rows', help: 'Rows per insert.', buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000], registers: [archiveMetrics] });
const failures = new client.Counter({ name: 'danmaku_archiver_failures_total', help: 'Failed attempts (ClickHouse or registry unavailable), retried with backoff.', labelNames: ['what'], registers: [archiveMetrics] });
const deadLettered = new client.Counter({ name: 'danmaku_archiver_dead_lettered_total', help: 'Undecodable records sent to the dead-letter topic.', registers: [archiveMetrics] });
const recoveries = new client.Counter({ name: 'danmaku_archiver_recoveries_total', help: 'Inserts begun before a restart and re-sent with their token (exact = the same range).', labelNames: ['exact'], registers: [archiveMetrics] });
const lagGauge = new client.Gauge({ name: 'danmaku_archiver_lag', help: 'Records in the log not yet archived, per partition.', labelNames: ['partition'], registers: [archiveMetrics] });

export interface ArchiveServiceOptions {
  cfg: Config;
  log?: (m: string) => void;
  /** Share a handle opened elsewhere (the caller closes it). */
  clickhouse?: ClickHouse;
}

export class ArchiveService implements Service {
  readonly name = 'archiver';
  private readonly live = new Liveness();
  /** Settles when the consumer stops for good on its own (the process should exit). */
  readonly failed = this.live.failed;
  private ch: ClickHouse | undefined;
  private ownsClickHouse = false;
  private client: LogClient | undefined;
  private admin: LogAdmin | undefined;
  private archiver: Archiver | undefined;
  /** Archivers of the later log generations, by generation. */
  private readonly later = new Map<number, Archiver>();
  private codec: EventCodec | undefined;
  private timer: NodeJS.Timeout | undefined;
  private generationsTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly groupId: string;

  constructor(private readonly o: ArchiveServiceOptions) {
    this.groupId = archiverGroup(o.cfg.pipelines.groupPrefix);
  }

  health(): Health {
    return this.live.health;
  }

  get clickhouse(): ClickHouse {
    if (!this.ch) throw new Error('archive service not started');
    return this.ch;
  }

  get stats(): { inserted: number; inserts: number; failures: number } {
    const all = [this.archiver, ...this.later.values()].filter((a): a is Archiver => a !== undefined);
    const sum = (f: (a: Archiver) => number) => all.reduce((n, a) => n + f(a), 0);
    return { inserted: sum((a) => a.inserted), inserts: sum((a) => a.inserts), failures: sum((a) => a.failures) };
  }

  async start(signal?: AbortSignal): Promise<void> {
    const { cfg } = this.o;
    const log = (m: string) => this.o.log?.(m);
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.o.clickhouse) {
      this.ch = this.o.clickhouse;
      await migrate(this.ch, { log });
    } else {
      this.ch = await openArchive(cfg, { log, signal });
      this.ownsClickHouse = true;
    }
    log(`ClickHouse ${this.ch.mode}${this.ch.mode === 'embedded' ? ` (${cfg.clickhouse.dataDir})` : ` (${cfg.clickhouse.url})`}, database ${this.ch.database}`);
    const topics = topicNames(cfg);
    this.client = logClient(cfg, 'archiver');
    this.admin = this.client.admin();
    await this.admin.connect();
    const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topics.roomEvents) });
    await codec.init();
    this.codec = codec;
    this.archiver = this.archiverOf(topics.roomEvents, 0, this.groupId);
    await this.archiver.start();
    await this.followGenerations();
    this.generationsTimer = setInterval(() => void this.followGenerations().catch((err: unknown) => log(`log generations: ${(err as Error).message}`)), 2000);
    this.timer = setInterval(() => void this.updateLag(), cfg.pipelines.lagIntervalMs);
    this.live.set('ok', `group ${this.groupId}, batches of up to ${cfg.archive.batchRows} rows / ${cfg.archive.batchMs} ms`);
  }

  /** Starts an archiver for each generation topic the broker has that none archives yet. */
  private async followGenerations(): Promise<void> {
    if (this.stopped || !this.admin) return;
    const base = topicNames(this.o.cfg).roomEvents;
    for (const topic of await this.admin.listTopics()) {
      const g = generationOfTopic(base, topic);
      if (g === undefined || g === 0 || this.later.has(g) || this.stopped) continue;
      const a = this.archiverOf(topic, g, generationGroup(this.groupId, g));
      this.later.set(g, a);
      this.o.log?.(`archiving log generation ${g} (${topic}) in group ${generationGroup(this.groupId, g)}`);
      await a.start();
    }
  }

  private archiverOf(topic: string, generation: number, groupId: string): Archiver {
    const { cfg } = this.o;
    const log = (m: string) => this.o.log?.(m);
    return new Archiver({
      client: this.client!,
      codec: this.codec!,
      ch: this.ch!,
      topic,
      generation,
      deadLetterTopic: topicNames(cfg).deadLetter,
      groupId,
      batchRows: cfg.archive.batchRows,
      batchMs: cfg.archive.batchMs,
      maxBackoffMs: cfg.archive.maxBackoffMs,
      log,
      onInserted: (rows, seconds) => {
        insertedRows.inc(rows);
        insertSeconds.observe(seconds);
        batchRows.observe(rows);
      },
      onFailure: (what) => failures.inc({ what }),
      onDeadLettered: (n) => deadLettered.inc(n),
      onRecovered: (_p, exact) => recoveries.inc({ exact: String(exact) }),
      onCrash: (err) => this.live.died(err),
    });
  }

  /** Lag on the newest log generation (the one writers write; older ones no longer grow). */
  async updateLag(): Promise<Map<number, number> | undefined> {
    if (!this.admin) return undefined;
    const newest = Math.max(0, ...this.later.keys());
    const topic = generationTopic(topicNames(this.o.cfg).roomEvents, newest);
    const lag = await measureLag(this.admin, generationGroup(this.groupId, newest), topic).catch(() => undefined);
    for (const [p, n] of lag ?? []) lagGauge.set({ partition: String(p) }, n);
    return lag;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.generationsTimer) clearInterval(this.generationsTimer);
    await this.archiver?.stop();
    for (const a of this.later.values()) await a.stop();
    await this.admin?.disconnect();
    await this.client?.close();
    if (this.ownsClickHouse) await this.ch?.close();
    this.live.set('stopped');
    const st = this.stats;
    this.o.log?.(`stopped (${st.inserted} rows in ${st.inserts} inserts this run, ${st.failures} failed attempts)`);
  }
}
