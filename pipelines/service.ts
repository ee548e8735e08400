/**
 * The processors as a service: one worker for the active version of each of
 * its projections, sharing one consumer group (`<prefix>processors`: each
 * record fetched and decoded once), and, when asked, the moderation processor
 * in its own group. It follows version switches made by a rebuild (the shared
 * worker applies the new version from its next batch; its position makes the
 * partition rewind to where the rebuild stopped), and measures consumer lag
 * and batch sizes into `metricsRegistry` (served by the process that runs it,
 * see services/). Lifecycle and health as every long-running part
 * (core/service.ts).
 *
 * Across a repartition (topics/repartition.ts) each group reads one log
 * generation at a time (pipelines/generations.ts): the old one to the ends it
 * was sealed at, then the new one, so a room's events are applied in order
 * across the switch. Moderation writes its decisions through a LogWriter, to
 * the current generation.
 */
import client from 'prom-client';
import type { Config } from '../core/config.ts';
import { Liveness, type Health, type Service } from '../core/service.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogClient, LogProducer } from '../topics/kafka.ts';
import { topicNames } from '../topics/topics.ts';
import { LogWriter } from '../topics/writer.ts';
import type { Generation } from '../topics/generations.ts';
import { GenerationChain } from './generations.ts';
import { projectionsOf, type ProjectionName } from './catalog.ts';
import { ModerationWorker, reputationStore } from './moderation/processor.ts';
import { defaultModerationSettings, type ModerationSettings } from './moderation/rules.ts';
import { WordListFile } from './moderation/wordlist.ts';
import { activeVersion, groupOf, liveGroupOf, moderatorGroupOf, positionField, positionsKey, type ProjectionNaming } from './naming.ts';
import { ProjectionWorker, type Lane } from './runner.ts';
import { measureLag } from '../topics/lag.ts';

export interface ServiceOptions {
  cfg: Config;
  /** Its name in the composition root (default 'processors'). */
  name?: string;
  projections: ProjectionName[];
  /** Also run the moderation processor. */
  moderation?: boolean;
  /** Poll interval for version switches (a rebuild flips the active version). */
  versionPollMs?: number;
  log?: (msg: string) => void;
}

export const metricsRegistry = new client.Registry();
const lagGauge = new client.Gauge({ name: 'danmaku_consumer_lag', help: 'Records in the log not yet applied by a processor group, per partition.', labelNames: ['group', 'topic', 'partition'], registers: [metricsRegistry] });
const appliedCounter = new client.Counter({ name: 'danmaku_projection_events_applied_total', help: 'Events applied to a projection (after fence checks).', labelNames: ['projection'], registers: [metricsRegistry] });
const restoredCounter = new client.Counter({
  name: 'danmaku_projection_rooms_restored_total',
  help: 'Idle rooms whose keys had expired (ROOM_IDLE_TTL_SEC), restored from the log when they got an event again.',
  labelNames: ['projection'],
  registers: [metricsRegistry],
});
const skippedCounter = new client.Counter({ name: 'danmaku_projection_events_skipped_total', help: 'Redelivered events skipped by the fence.', labelNames: ['projection'], registers: [metricsRegistry] });
const batchRecords = new client.Histogram({
  name: 'danmaku_consumer_batch_records',
  help: 'Records per partition batch a processor group handled (as the fetch gave them).',
  labelNames: ['group'],
  buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  registers: [metricsRegistry],
});
const batchSeconds = new client.Histogram({
  name: 'danmaku_consumer_batch_seconds',
  help: 'Time from a batch handed over to its offset committed (decode, every lane\'s effects, commit).',
  labelNames: ['group'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [metricsRegistry],
});

export class ProcessorService implements Service {
  readonly name: string;
  private readonly liveness = new Liveness();
  readonly failed = this.liveness.failed;
  private redis: RedisClient | undefined;
  private client: LogClient | undefined;
  private admin: LogAdmin | undefined;
  private codec: EventCodec | undefined;
  /** The live set's worker, on the oldest generation its group has not read to the end. */
  private liveChain: GenerationChain<ProjectionWorker> | undefined;
  private moderatorChain: GenerationChain<ModerationWorker> | undefined;
  private writer: LogWriter | undefined;
  private writerProducer: LogProducer | undefined;
  /** The version each projection of the live set applies: read by the worker per batch, moved by followVersions. */
  private readonly versions = new Map<ProjectionName, number>();
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  readonly naming: ProjectionNaming;
  private readonly topics;

  constructor(private readonly o: ServiceOptions) {
    this.name = o.name ?? 'processors';
    this.naming = { keyPrefix: o.cfg.redis.keyPrefix, groupPrefix: o.cfg.pipelines.groupPrefix };
    this.topics = topicNames(o.cfg);
  }

  private log(m: string) {
    this.o.log?.(m);
  }

  async start(signal?: AbortSignal): Promise<void> {
    const { cfg } = this.o;
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.redis = openRedis({ ...redisOptions(cfg), name: 'processor' });
    this.client = logClient(cfg, 'processor');
    this.admin = this.client.admin();
    await this.admin.connect();
    this.codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(this.topics.roomEvents) });
    await this.codec.init();
    for (const name of this.o.projections) this.versions.set(name, await activeVersion(this.redis, this.naming, name));
    if (this.versions.size > 0) await this.startLive();
    if (this.o.moderation) await this.startModerator();
    this.timers.push(setInterval(() => void this.followVersions(), this.o.versionPollMs ?? 1000));
    this.timers.push(setInterval(() => void this.followGenerations(), this.o.versionPollMs ?? 1000));
    this.timers.push(setInterval(() => void this.updateLag(), cfg.pipelines.lagIntervalMs));
    const running = [this.live?.groupId, this.moderator?.groupId].filter(Boolean);
    this.liveness.set('ok', `groups ${running.join(', ')}`);
  }

  health(): Health {
    return this.liveness.health;
  }

  private lanes(): Lane[] {
    const all = projectionsOf(this.o.cfg);
    return [...this.versions].map(([name, version]) => ({ projection: all[name], version }));
  }

  private get live(): ProjectionWorker | undefined {
    return this.liveChain?.current;
  }

  private get moderator(): ModerationWorker | undefined {
    return this.moderatorChain?.current;
  }

  private chain<W extends { stop(): Promise<void> }>(group: string, open: (g: Generation, groupId: string, until: (p: number) => number | undefined) => Promise<W>): GenerationChain<W> {
    return new GenerationChain<W>({
      redis: this.redis!,
      admin: this.admin!,
      keyPrefix: this.naming.keyPrefix,
      baseTopic: this.topics.roomEvents,
      partitions: this.o.cfg.topics.partitions,
      group,
      open,
      log: (m) => this.log(m),
    });
  }

  private async startLive(): Promise<void> {
    this.liveChain = this.chain(liveGroupOf(this.naming), async (g, groupId, until) => {
      // Groups from before the shared one only ever read generation 0.
      if (g.generation === 0) await this.adoptOldGroups(this.lanes());
      const w = this.liveWorker(g, groupId, until);
      await w.start();
      this.log(`running ${[...this.versions].map(([n, v]) => `${n} v${v}`).join(', ')} in group ${groupId} (log generation ${g.generation}, ${g.topic})`);
      return w;
    });
    await this.liveChain.start();
  }

  private liveWorker(g: Generation, groupId: string, until: (p: number) => number | undefined): ProjectionWorker {
    return new ProjectionWorker({
      client: this.client!,
      redis: this.redis!,
      codec: this.codec!,
      topic: g.topic,
      generation: g.generation,
      until,
      deadLetterTopic: this.topics.deadLetter,
      naming: this.naming,
      groupId,
      lanes: () => this.lanes(),
      positions: true,
      notify: true,
      partitionsConsumedConcurrently: this.o.cfg.pipelines.partitionsConcurrently,
      sessionTimeoutMs: this.o.cfg.pipelines.sessionTimeoutMs,
      idleTtlSec: this.o.cfg.pipelines.roomIdleTtlSec,
      onRestored: (projection, version, room, events) => {
        restoredCounter.inc({ projection });
        this.log(`restored ${room} (${projection} v${version}) from ${events} events of the log: its keys had expired (idle)`);
      },
      onApplied: (projection, _room, applied, skipped) => {
        if (applied) appliedCounter.inc({ projection }, applied);
        if (skipped) skippedCounter.inc({ projection }, skipped);
      },
      onBatch: (_partition, records, ms) => {
        batchRecords.observe({ group: groupId }, records);
        batchSeconds.observe({ group: groupId }, ms / 1000);
      },
      onError: (err) => this.log(`${groupId}: ${(err as Error).message}`),
      onAssigned: (partitions) => this.log(`group ${groupId}: assigned partitions [${partitions.join(',')}]`),
    });
  }

  /**
   * Before the shared group, each projection version had its own group
   * (`<prefix>projector.<name>.v<N>`), whose committed offsets say what it
   * applied. A lane with no position yet takes them as its position, so the
   * shared group (which starts at the log's start) skips, without decoding,
   * what those groups had applied, instead of folding the log again. The
   * old groups are left alone (delete them once the shared group runs).
   */
  private async adoptOldGroups(lanes: Lane[]): Promise<void> {
    const key = positionsKey(this.naming);
    for (const { projection, version } of lanes) {
      const old = await this.admin!.committedOffsets(groupOf(this.naming, projection.name, version), this.topics.roomEvents).catch(() => new Map<number, string>());
      for (const [partition, offset] of old) {
        if (Number(offset) < 0) continue;
        const field = positionField(projection.name, version, partition);
        if ((await this.redis!.hsetnx(key, field, offset)) === 1) this.log(`${projection.name} v${version}: partition ${partition} starts at ${offset}, where group ${groupOf(this.naming, projection.name, version)} left it`);
      }
    }
  }

  private async startModerator(): Promise<void> {
    const { cfg } = this.o;
    const m = cfg.moderation;
    const settings: ModerationSettings = {
      ...defaultModerationSettings,
      maxCharRun: m.maxCharRun,
      repeatMax: m.repeatMax,
      floodMax: m.floodMax,
      offensesToMute: m.offensesToMute,
      muteMs: m.muteSec * 1000,
      muteKind: m.muteKind,
      holdLinks: m.holdLinks,
      reputation: {
        ...defaultModerationSettings.reputation,
        holdAt: m.reputation.holdAt,
        shadowAt: m.reputation.shadowAt,
        halfLifeMs: m.reputation.halfLifeHours * 3_600_000,
        goodCredit: m.reputation.goodCredit,
        muteMs: m.reputation.muteHours * 3_600_000,
      },
    };
    const list = new WordListFile(m.wordlist);
    // Decisions go to the log's current generation; the lease lets a repartition know when none can go to the old one.
    this.writerProducer = this.client!.producer({ lingerMs: 0 });
    await this.writerProducer.connect();
    this.writer = new LogWriter({
      producer: this.writerProducer,
      redis: this.redis!,
      keyPrefix: this.naming.keyPrefix,
      baseTopic: this.topics.roomEvents,
      partitions: cfg.topics.partitions,
      name: 'moderation',
      leaseMs: cfg.topics.writerLeaseMs,
      log: (msg) => this.log(msg),
    });
    await this.writer.start();
    this.moderatorChain = this.chain(moderatorGroupOf(this.naming), async (g, groupId, until) => {
      await this.adoptModeratorOffsets(g.topic, g.generation, groupId);
      const w = this.moderationWorker(g, groupId, until, settings, list);
      await w.start();
      this.log(`moderation: running (group ${groupId}, log generation ${g.generation}, word list ${m.wordlist})`);
      return w;
    });
    await this.moderatorChain.start();
  }

  /**
   * The moderation group kept no positions in Redis before; its committed
   * offsets say what it judged. Without a position the worker would read the
   * partition from the log's start and emit every decision again.
   */
  private async adoptModeratorOffsets(topic: string, generation: number, groupId: string): Promise<void> {
    const committed = await this.admin!.committedOffsets(groupId, topic).catch(() => new Map<number, string>());
    for (const [partition, offset] of committed) {
      if (Number(offset) < 0) continue;
      const field = positionField('moderation', 1, partition, generation);
      if ((await this.redis!.hsetnx(positionsKey(this.naming), field, offset)) === 1) this.log(`moderation: partition ${partition} starts at ${offset}, where group ${groupId} left it`);
    }
  }

  private moderationWorker(g: Generation, groupId: string, until: (p: number) => number | undefined, settings: ModerationSettings, list: WordListFile): ModerationWorker {
    const { cfg } = this.o;
    return new ModerationWorker({
      client: this.client!,
      redis: this.redis!,
      codec: this.codec!,
      topic: g.topic,
      generation: g.generation,
      until,
      groupId,
      writer: this.writer,
      deadLetterTopic: this.topics.deadLetter,
      naming: this.naming,
      settings,
      reputation: reputationStore(this.redis!, this.naming.keyPrefix),
      words: () => {
        if (list.refresh()) this.log(`moderation: word list reloaded (${list.words().length} entries)`);
        return list.current();
      },
      partitionsConsumedConcurrently: cfg.pipelines.partitionsConcurrently,
      sessionTimeoutMs: cfg.pipelines.sessionTimeoutMs,
      idleTtlSec: cfg.pipelines.roomIdleTtlSec,
      onError: (err) => this.log(`moderation: ${(err as Error).message}`),
      onAssigned: (partitions) => this.log(`moderation: assigned partitions [${partitions.join(',')}]`),
    });
  }

  /** A repartition sealed the generation a group reads: once read to its ends, the group moves to the next. */
  private async followGenerations(): Promise<void> {
    if (this.stopped) return;
    for (const c of [this.liveChain, this.moderatorChain]) await c?.follow().catch((err: unknown) => this.log(`log generations: ${(err as Error).message}`));
  }

  /**
   * A rebuild switched readers to a new version: the shared worker applies it
   * from its next batch. Nothing is lost in between: the new version's
   * position is where the rebuild stopped, so if the group is past it, the
   * partition rewinds to it (the other lanes skip what they applied), and its
   * fences skip what the rebuild applied.
   */
  private async followVersions(): Promise<void> {
    if (this.stopped || !this.redis) return;
    for (const [name, current] of this.versions) {
      const v = await activeVersion(this.redis, this.naming, name).catch(() => undefined);
      if (v === undefined || v === current || this.stopped) continue;
      this.log(`${name}: active version is now ${v}; switching from ${current}`);
      this.versions.set(name, v);
      await this.live?.lanesChanged().catch((err: unknown) => this.log(`${name}: ${(err as Error).message}`));
    }
  }

  async updateLag(): Promise<void> {
    if (!this.admin) return;
    for (const c of [this.liveChain, this.moderatorChain]) {
      const r = c?.reading;
      if (!r) continue;
      const lag = await measureLag(this.admin, r.groupId, r.generation.topic).catch(() => undefined);
      for (const [p, n] of lag ?? []) lagGauge.set({ group: r.groupId, topic: r.generation.topic, partition: String(p) }, n);
    }
  }

  /** The live set's worker (undefined without projections). */
  worker(): ProjectionWorker | undefined {
    return this.live;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await this.liveChain?.stop();
    await this.moderatorChain?.stop();
    await this.writer?.stop();
    await this.writerProducer?.disconnect();
    await this.admin?.disconnect();
    await this.client?.close();
    this.redis?.disconnect();
    this.liveness.set('stopped');
  }
}
