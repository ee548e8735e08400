/**
 * The processors as a service: runs projection workers for the active version
 * of each projection (and, when asked, the moderation processor), follows
 * version switches made by a rebuild, and measures consumer lag into
 * `metricsRegistry` (served by the process that runs it, see services/).
 * Lifecycle and health as every long-running part (core/service.ts).
 */
import client from 'prom-client';
import type { Config } from '../core/config.ts';
import { Liveness, type Health, type Service } from '../core/service.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogClient } from '../topics/kafka.ts';
import { topicNames } from '../topics/topics.ts';
import { projectionsOf, type ProjectionName } from './catalog.ts';
import { ModerationWorker } from './moderation/processor.ts';
import { defaultModerationSettings, type ModerationSettings } from './moderation/rules.ts';
import { WordListFile } from './moderation/wordlist.ts';
import { activeVersion, type ProjectionNaming } from './naming.ts';
import { ProjectionWorker } from './runner.ts';
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
const skippedCounter = new client.Counter({ name: 'danmaku_projection_events_skipped_total', help: 'Redelivered events skipped by the fence.', labelNames: ['projection'], registers: [metricsRegistry] });

export class ProcessorService implements Service {
  readonly name: string;
  private readonly live = new Liveness();
  readonly failed = this.live.failed;
  private redis: RedisClient | undefined;
  private client: LogClient | undefined;
  private admin: LogAdmin | undefined;
  private codec: EventCodec | undefined;
  private readonly workers = new Map<ProjectionName, ProjectionWorker<unknown>>();
  private moderator: ModerationWorker | undefined;
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
    for (const name of this.o.projections) await this.startWorker(name, await activeVersion(this.redis, this.naming, name));
    if (this.o.moderation) await this.startModerator();
    this.timers.push(setInterval(() => void this.followVersions(), this.o.versionPollMs ?? 1000));
    this.timers.push(setInterval(() => void this.updateLag(), cfg.pipelines.lagIntervalMs));
    const running = [...this.workers.values()].map((w) => w.groupId);
    if (this.moderator) running.push(this.moderator.groupId);
    this.live.set('ok', `groups ${running.join(', ')}`);
  }

  health(): Health {
    return this.live.health;
  }

  private async startWorker(name: ProjectionName, version: number): Promise<void> {
    const projection = projectionsOf(this.o.cfg)[name];
    const w = new ProjectionWorker({
      client: this.client!,
      redis: this.redis!,
      codec: this.codec!,
      topic: this.topics.roomEvents,
      deadLetterTopic: this.topics.deadLetter,
      naming: this.naming,
      projection,
      version,
      notify: true,
      onApplied: (_room, applied, skipped) => {
        appliedCounter.inc({ projection: name }, applied);
        if (skipped) skippedCounter.inc({ projection: name }, skipped);
      },
      onError: (err) => this.log(`${name}: ${(err as Error).message}`),
      onAssigned: (partitions) => this.log(`${name}: assigned partitions [${partitions.join(',')}]`),
    });
    this.workers.set(name, w);
    await w.start();
    this.log(`${name}: running version ${version} (group ${w.groupId})`);
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
    };
    const list = new WordListFile(m.wordlist);
    this.moderator = new ModerationWorker({
      client: this.client!,
      redis: this.redis!,
      codec: this.codec!,
      topic: this.topics.roomEvents,
      deadLetterTopic: this.topics.deadLetter,
      naming: this.naming,
      settings,
      words: () => {
        if (list.refresh()) this.log(`moderation: word list reloaded (${list.words().length} entries)`);
        return list.current();
      },
      onError: (err) => this.log(`moderation: ${(err as Error).message}`),
      onAssigned: (partitions) => this.log(`moderation: assigned partitions [${partitions.join(',')}]`),
    });
    await this.moderator.start();
    this.log(`moderation: running (group ${this.moderator.groupId}, word list ${m.wordlist})`);
  }

  private versionOf(w: ProjectionWorker<unknown>): number {
    return Number(/\.v(\d+)$/.exec(w.groupId)![1]);
  }

  /** A rebuild switched readers to a new version: continue in that version's group. */
  private async followVersions(): Promise<void> {
    if (this.stopped || !this.redis) return;
    for (const [name, w] of this.workers) {
      const v = await activeVersion(this.redis, this.naming, name).catch(() => undefined);
      if (v === undefined || v === this.versionOf(w) || this.stopped) continue;
      this.log(`${name}: active version is now ${v}; switching from ${this.versionOf(w)}`);
      await w.stop();
      await this.startWorker(name, v);
    }
  }

  async updateLag(): Promise<void> {
    if (!this.admin) return;
    const groups = [...this.workers.values()].map((w) => w.groupId);
    if (this.moderator) groups.push(this.moderator.groupId);
    for (const groupId of groups) {
      const w = { groupId };
      const lag = await measureLag(this.admin, w.groupId, this.topics.roomEvents).catch(() => undefined);
      for (const [p, n] of lag ?? []) lagGauge.set({ group: w.groupId, topic: this.topics.roomEvents, partition: String(p) }, n);
    }
  }

  worker(name: ProjectionName): ProjectionWorker<unknown> | undefined {
    return this.workers.get(name);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.all([...this.workers.values()].map((w) => w.stop()));
    await this.moderator?.stop();
    await this.admin?.disconnect();
    await this.client?.close();
    this.redis?.disconnect();
    this.live.set('stopped');
  }
}
