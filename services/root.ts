/**
 * The composition root: the one place that knows every part of the product
 * and wires them into runnable services — processors, moderation, the
 * archiver, the gateway, the demo chatter. Layers below (pipelines/, archive/,
 * gateway/) never import each other's internals; where they meet (the
 * gateway's replay routes read the archive), the root hands one the other's
 * implementation of a small interface.
 *
 * In embedded mode ClickHouse belongs to one process, so the archiver and the
 * gateway must share a process for replay to work; `processGroups` says which
 * services `npm start` runs together.
 */
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { openClickHouse, type ClickHouse } from '../core/clickhouse.ts';
import { REPO_ROOT, type Config } from '../core/config.ts';
import { AppError, ConfigError } from '../core/errors.ts';
import type { Service } from '../core/service.ts';
import { clickhouseOptions } from '../archive/connect.ts';
import { ArchiveReader } from '../archive/reader.ts';
import { archiveMetrics, ArchiveService } from '../archive/service.ts';
import { jwtSecretOf, MIN_SECRET_LENGTH, tokenSigner } from '../gateway/auth.ts';
import { ChatterService } from '../gateway/demo/chatter.ts';
import { GatewayService } from '../gateway/service.ts';
import { PROJECTION_NAMES, type ProjectionName } from '../pipelines/catalog.ts';
import { ModelStageService, modelMetrics } from '../pipelines/moderation/model/service.ts';
import { metricsRegistry, ProcessorService } from '../pipelines/service.ts';
import type { MetricsSource } from './metrics.ts';

/** The service processes' command line (services/cli.ts), which gateway workers run too. */
const CLI = path.join(REPO_ROOT, 'services', 'cli.ts');

export const SERVICE_NAMES = ['processors', 'moderation', 'moderation-model', 'archiver', 'gateway', 'chatter'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export function parseServiceNames(list: string): ServiceName[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(SERVICE_NAMES as readonly string[]).includes(n)) throw new AppError('ERR_USAGE', `unknown service "${n}"; one of ${SERVICE_NAMES.join(', ')}`);
  }
  if (names.length === 0) throw new AppError('ERR_USAGE', `name at least one service: ${SERVICE_NAMES.join(', ')}`);
  return names as ServiceName[];
}

export interface RootOptions {
  /** Projections the processors run (default: all). */
  projections?: ProjectionName[];
  /** The demo chatter's room and rate. */
  chatter?: { room: string; rate: number };
  log?: (service: string, msg: string) => void;
}

/** What a process runs: its services in start order, and where their metrics are served. */
export interface Composition {
  services: Service[];
  metrics: Map<number, MetricsSource[]>;
  /** Closes what the root opened for the services (a lazily opened archive handle). */
  close(): Promise<void>;
}

/**
 * Builds the services named, in a sensible start order (consumers before the
 * gateway, the chatter last), wired to each other where they share a process.
 */
export function compose(cfg: Config, names: readonly ServiceName[], o: RootOptions = {}): Composition {
  const log = (svc: string) => (m: string) => o.log?.(svc, m);
  const want = new Set(names);
  const services: Service[] = [];
  const metrics = new Map<number, MetricsSource[]>();
  const reportAt = (port: number, src: MetricsSource) => {
    if (port > 0) metrics.set(port, [...(metrics.get(port) ?? []), src]);
  };
  const closers: (() => Promise<void>)[] = [];

  if (want.has('processors')) {
    const p = new ProcessorService({ cfg, name: 'processors', projections: o.projections ?? [...PROJECTION_NAMES], log: log('processors') });
    services.push(p);
    reportAt(cfg.pipelines.metricsPort, { registry: metricsRegistry, beforeScrape: () => p.updateLag() });
  }
  if (want.has('moderation')) {
    const m = new ProcessorService({ cfg, name: 'moderation', projections: [], moderation: true, log: log('moderation') });
    services.push(m);
    reportAt(cfg.moderation.metricsPort, { registry: metricsRegistry, beforeScrape: () => m.updateLag() });
  }
  let archiver: ArchiveService | undefined;
  if (want.has('archiver')) {
    archiver = new ArchiveService({ cfg, log: log('archiver') });
    services.push(archiver);
    const a = archiver;
    reportAt(cfg.archive.metricsPort, { registry: archiveMetrics, beforeScrape: () => a.updateLag() });
  }
  if (want.has('gateway')) {
    // Replay and analytics: the archiver's own handle when it runs here (the
    // only way in embedded mode); a server's, opened on first use; else none.
    const a = archiver;
    const archive = archiveReaderFor(cfg, a ? async () => a.clickhouse : undefined);
    if (archive) closers.push(() => archive.close());
    // GATEWAY_WORKERS > 1: the service forks workers that run this CLI's `gateway` command (each the
    // whole gateway; replay and analytics only through a ClickHouse server: chdb is one process's).
    services.push(new GatewayService({ cfg, archive, log: log('gateway'), worker: { exec: CLI, args: ['gateway'] } }));
  }
  if (want.has('moderation-model')) {
    // The trained classifier: a Python process in its own consumer group that
    // only adds removals, so it starts after what delivers comments.
    services.push(new ModelStageService({ cfg, log: log('moderation-model') }));
    reportAt(cfg.moderation.model.metricsPort, { registry: modelMetrics });
  }
  if (want.has('chatter')) {
    const c = o.chatter ?? { room: 'demo', rate: 3 };
    const base = cfg.gateway.publicUrl ?? `http://${cfg.gateway.host}:${cfg.gateway.port}`;
    const secret = jwtSecretOf(cfg);
    if (!secret) throw new AppError('ERR_USAGE', 'the demo chatter signs its viewers\' tokens with JWT_SECRET; this deployment verifies public keys');
    const sign = tokenSigner(secret, cfg.auth.devTokenTtlSec);
    services.push(new ChatterService({ baseUrl: base, room: c.room, rate: c.rate, token: (user) => sign({ sub: user }) }));
  }
  return {
    services,
    metrics,
    async close() {
      for (const c of closers) await c();
    },
  };
}

/**
 * The secret replay cursors are sealed with (archive/replay.ts derives the
 * AES key from it): REPLAY_CURSOR_SECRET, or one derived from the JWT secret
 * (so every gateway of a deployment agrees without more configuration). A
 * deployment verifying public keys has no secret to derive from and must set
 * one; an operator's secret shorter than MIN_SECRET_LENGTH is refused outside
 * DEV_MODE, as JWT_SECRET is: both fail closed at start, naming the variable.
 */
export function replayCursorKey(cfg: Config): Buffer {
  const own = cfg.archive.cursorSecret;
  if (own !== undefined && own !== '') {
    if (!cfg.auth.devMode && own.length < MIN_SECRET_LENGTH) {
      throw new ConfigError(`REPLAY_CURSOR_SECRET is shorter than ${MIN_SECRET_LENGTH} characters: a short secret lets anyone who guesses it read and forge replay cursors`, ['REPLAY_CURSOR_SECRET: too short']);
    }
    return Buffer.from(own);
  }
  const jwt = jwtSecretOf(cfg);
  if (!jwt) throw new ConfigError('REPLAY_CURSOR_SECRET is not set: with public-key auth the gateway has no secret to sign replay cursors with', ['REPLAY_CURSOR_SECRET: not set']);
  return createHmac('sha256', jwt).update('danmaku replay cursor v1').digest();
}

/**
 * The archive as the gateway reads it: through `handle` when given (the
 * archiver's own, in the same process), else a ClickHouse server's when
 * CLICKHOUSE_URL is set (opened on first use, closed with the reader), else
 * none (the routes answer 503 ERR_ARCHIVE_UNAVAILABLE).
 */
export function archiveReaderFor(cfg: Config, handle?: () => Promise<ClickHouse>): ArchiveReader | undefined {
  const opts = { perSecond: cfg.pipelines.sampledPerSecond, maxItems: cfg.pipelines.feedMaxItems, chunkRows: cfg.archive.replayChunkRows, cursorKey: replayCursorKey(cfg) };
  if (handle) return new ArchiveReader({ ...opts, clickhouse: handle });
  if (!cfg.clickhouse.url) return undefined;
  let opened: Promise<ClickHouse> | undefined;
  return new ArchiveReader({
    ...opts,
    clickhouse: () =>
      (opened ??= openClickHouse(clickhouseOptions(cfg)).catch((err: unknown) => {
        opened = undefined;
        throw err;
      })),
    async close() {
      const ch = await opened?.catch(() => undefined);
      await ch?.close();
    },
  });
}

/**
 * Which services `npm start` runs in which process: processors and
 * moderation together; the archiver with the gateway when ClickHouse is
 * embedded (one process per data directory), apart with a server; the model
 * stage (when MODERATION_MODEL_ENABLED) last and alone, so delivery is up
 * before it and never shares a process with it.
 */
export function processGroups(cfg: Config): ServiceName[][] {
  // Moderation runs beside the processors, not with them: at a burst of one
  // room its rules saturated the shared process and the feed's p99 went past
  // a second (docs/benchmarks.md); apart, each has a core's worth to use.
  const pipelines: ServiceName[][] = cfg.moderation.enabled ? [['processors'], ['moderation']] : [['processors']];
  const groups: ServiceName[][] = cfg.clickhouse.url ? [...pipelines, ['archiver'], ['gateway']] : [...pipelines, ['archiver', 'gateway']];
  return cfg.moderation.model.enabled ? [...groups, ['moderation-model']] : groups;
}
